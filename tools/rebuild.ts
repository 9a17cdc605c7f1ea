// `mkv rebuild -volumes ... -db DIR`: recreates the index from the volumes,
// with the master stopped (as mkv). Every key found becomes live, its
// volumes ordered as key2volume places them (those not where they belong
// last), its size from the listing; the MD5 is unknown (""). Copies of
// different sizes: only those of the newest copy's size are recorded.
//
// It lists the top folders ("/ab/") first, then every key folder
// ("/ab/cd/"), at most -concurrency folders at once (each on every volume
// that has it), showing progress on stderr. Every volume's root is read
// before the index is touched (its members' registrations included), and
// again once no other member can write: one that cannot be read stops the
// run, the index as it was, unless -skip-unreadable (the index then stays
// marked incomplete: it lacks the keys held only there).
import type { FlagValues } from "../lib/flags.ts";
import { requireDb, storeOptions } from "../lib/config.ts";
import { firstAnswer, joinIndex, LOCKED_FOR, MEMBER_INTERVAL, openIndex } from "../lib/open.ts";
import { liveMembers, placementOf, REBUILD } from "../lib/membership.ts";
import { key2volume, orderByPlacement, placementKey } from "../lib/keys.ts";
import { pool } from "../lib/pool.ts";
import { nameSome, plural, Progress } from "../lib/progress.ts";
import { concurrencyOf } from "../lib/tool_flags.ts";
import { Fenced, isBusy } from "../lib/group_commit.ts";
import type { StoreOptions } from "../lib/store.ts";
import { type Index, KEY_LIMIT, keyFits } from "../lib/index_db.ts";
import { type Found, hexFolders, keysIn, subvolumesOf, type Walker } from "../lib/walk.ts";
import { type Level, logError, logInfo, logLine } from "../lib/log.ts";
import { checkNames, namesProblem } from "../lib/aliases.ts";

const decoder = new TextDecoder();
/** The start of the member id rebuild's check beats under (not REBUILD's). */
const CHECK = "rebuild-check:";

export async function rebuild(flags: FlagValues): Promise<number> {
  const opts = storeOptions(flags);
  const how: How = {
    concurrency: concurrencyOf(flags),
    skipUnreadable: flags["skip-unreadable"] === true,
  };
  const db = requireDb(flags);
  const timeout = rootsTimeout(opts);
  // A run refused for the volumes' roots changes nothing, not even a -db
  // folder that did not exist: read before the index is opened (and before
  // it registers and removes the fences of members taken for stopped: a
  // master only paused would lose the write it was making).
  const first = await readRoots(opts.volumes, timeout);
  const refusedEarly = refusedRoots(first, how.skipUnreadable) ??
    await refusedNames(opts.volumes.filter((v) => !first.unreadable.includes(v)), timeout);
  if (refusedEarly !== null) return refusedEarly;
  const index = await openIndex(db);
  await firstAnswer(
    index,
    `rebuild: ${LOCKED_FOR}; nothing was changed: run rebuild again once the lock is released`,
  );
  const run = { marked: false };
  try {
    return await rebuildIndex(index, opts, how, { first, run });
  } catch (err) {
    if (fencedIn(err)) {
      // Two rebuilds that passed their checks at once (a narrow race): the
      // one that registered second had its fence removed by the other.
      const rebuilds = (await index.members()).records.map((r) => r.id)
        .filter((id) => id.startsWith(REBUILD) && id !== `${REBUILD}${Deno.pid}`);
      if (rebuilds.length > 0) return refuse(rebuilds);
      logError(
        "rebuild: stopped: it was paused past its heartbeat, and masters took it for stopped " +
          "and may have written keys since; " +
          (run.marked
            ? "the index is left marked incomplete: stop the masters and run rebuild again"
            : "the index was not changed: stop the masters and run rebuild again"),
      );
      return 1;
    }
    // The index locked past retrying (another process holds SQLite's write
    // lock): said as such, with what it left, rather than a bare "database
    // is locked".
    if (!isBusy(err)) throw err;
    logError(
      `rebuild: ${LOCKED_FOR}; ` +
        (run.marked
          ? `it is left marked incomplete, some records gone: run rebuild again once the lock is released`
          : `nothing was changed: run rebuild again once the lock is released`),
    );
    return 1;
  } finally {
    index.close();
  }
}

/** How a run goes: its flags. */
interface How {
  /** Folders listed at once. */
  concurrency: number;
  /** Volumes whose root cannot be read are left out, rather than the run refused. */
  skipUnreadable: boolean;
}

async function rebuildIndex(
  index: Index,
  opts: StoreOptions,
  { concurrency, skipUnreadable }: How,
  { first, run }: { first: Roots; run: { marked: boolean } },
): Promise<number> {
  const id = `${REBUILD}${Deno.pid}`;
  const timeout = rootsTimeout(opts);
  const refusedMembers = await register(index, id, opts);
  if (refusedMembers !== null) return refusedMembers;
  const w: Walker = { timeout, errors: [] };
  const started = performance.now();
  const progress = new Progress("rebuild", { main: "keys" });
  try {
    // Read again, now that no other member can write: one paused at the
    // check may have made a subvolume's folder since (its first key), whose
    // record the emptying would drop. (Refused now, a volume went down
    // meanwhile: the fences are gone, and the index unchanged as before.)
    // Those skipped already are not waited on again (a hung one takes
    // -voltimeout, at least 10 s).
    const roots = await readRootsAgain(opts.volumes, first, timeout);
    const refused = refusedRoots(roots, skipUnreadable);
    if (refused !== null) return refused;
    progress.add("volumes", roots.vols.length);
    // Until it has read every folder, the index lacks keys the volumes hold:
    // verify -repair must not take their files for orphans meanwhile. The
    // mark and the emptying carry this run's fence, as its records do: taken
    // for stopped before either (paused past its heartbeat: masters write
    // again), it changes nothing more.
    await index.markIncomplete({ at: Date.now(), why: "a rebuild began and has not finished" });
    run.marked = true;
    const cleared = await index.clear();
    if (cleared > 0) logInfo(`rebuild: cleared ${plural(cleared, "record")}`);
    const folders = await keyFolders(w, roots.vols, { concurrency, progress });
    const tally: Tally = { keys: 0, differ: [], unwritten: [], tooLong: [] };
    await pool(folders, concurrency, async ([folder, cdVols]) => {
      const found = await keysIn(w, cdVols, folder);
      const written = await Promise.allSettled(
        found.map((f) => recordKey(index, f, { opts, tally, progress })),
      );
      const fenced = written.find((w) => w.status === "rejected");
      if (fenced) throw fenced.reason;
      progress.add("folders");
    });
    progress.done();
    const secs = (performance.now() - started) / 1000;
    logInfo(
      `rebuild: ${plural(tally.keys, "key")} recorded from ${
        plural(roots.vols.length, "(sub)volume")
      } ` +
        `in ${secs.toFixed(1)}s${skipped(tally.tooLong.length, tally.unwritten.length)}`,
    );
    reportTally(tally);
    reportUnread(roots, w.errors);
    return await markEnd(index, tally, { unreadable: roots.unreadable, folderErrors: w.errors });
  } finally {
    progress.stop();
    await index.membership?.leave();
  }
}

/**
 * Registers the run as the index's one member, every other member's fence
 * removed; the exit code when another member is live (said why), else null.
 */
async function register(index: Index, id: string, opts: StoreOptions): Promise<number | null> {
  // It empties the index first: never under a master (or tool) using it.
  // (One paused past its heartbeat looks gone: it answers 503 once resumed
  // while this runs, lib/server.ts.) Records left by members that died are
  // watched until they have lapsed: up to 3 s, longer if the index is
  // locked meanwhile. The watch beats under an id of its own: masters take
  // it for a member, not for a rebuild (they would answer 503). Of two
  // rebuilds checking at once, the one whose check id sorts first goes on:
  // the other sees its check, or its registration, and exits.
  const check = `${CHECK}${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const { live, lapsed } = await liveMembers(
    index,
    check,
    MEMBER_INTERVAL,
    (other) => other.startsWith(CHECK) && other > check,
  );
  if (live.length > 0) return refuse(live);
  // Taken for stopped (paused past its heartbeat), it stays stopped: masters
  // write again then, and what it listed before may be older.
  await joinIndex(index, id, { rejoin: false, placement: placementOf(opts) });
  // A master started since the check (it has beaten since) is live: exit.
  // Every other member's fence goes before anything is emptied: a write a
  // paused master sent before it stopped then fails rather than land in the
  // index being refilled. (A rebuild's check writes nothing: it sees this
  // one registered and exits.)
  const late = await index.evictAll(lapsed, (other) => other === id || other.startsWith(CHECK));
  if (late.length === 0) return null;
  await index.membership?.leave();
  return refuse(late);
}

/** Every key folder ("/ab/cd/") of `vols`, with the (sub)volumes that have it. */
async function keyFolders(
  w: Walker,
  vols: string[],
  { concurrency, progress }: { concurrency: number; progress: Progress },
): Promise<[string, string[]][]> {
  const tops = await hexFolders(w, vols, "/");
  const folders: [string, string[]][] = [];
  await pool(tops.entries(), concurrency, async ([ab, abVols]) => {
    const subs = await hexFolders(w, abVols, `/${ab}/`);
    for (const [cd, cdVols] of subs) folders.push([`/${ab}/${cd}/`, cdVols]);
    progress.add("folders");
  });
  return folders;
}

/** What a run recorded and left out. */
interface Tally {
  /** Keys recorded. */
  keys: number;
  /** Keys whose copies differ in size, each with the copies kept. */
  differ: string[];
  /** Keys found whose record the index refused. */
  unwritten: string[];
  /** Keys found too long for the index (Go mkv has no such limit). */
  tooLong: string[];
}

/** Records key `f` as live on its newest copies, counted in `tally`. */
async function recordKey(
  index: Index,
  f: Found,
  { opts, tally, progress }: { opts: StoreOptions; tally: Tally; progress: Progress },
): Promise<void> {
  const name = JSON.stringify(decoder.decode(f.key));
  if (!keyFits(f.key)) {
    tally.tooLong.push(`${name} on ${f.volumes.join(", ")}`);
    progress.add("skipped");
    return;
  }
  const kvolumes = key2volume(
    placementKey(f.key, opts.colocate),
    opts.volumes,
    opts.replicas,
    opts.subvolumes,
  );
  const { volumes, size, mtime } = newestCopies(f);
  if (volumes.length < f.volumes.length) {
    tally.differ.push(
      `${name}: kept the newest on ${volumes.length} of ${f.volumes.length} (${
        volumes.join(", ")
      })`,
    );
  }
  try {
    await index.set(f.key, {
      state: "live",
      rvolumes: orderByPlacement(volumes, kvolumes),
      hash: "",
      size,
      // S3's Last-Modified survives a rebuild.
      ...(Number.isFinite(mtime) ? { mtime } : {}),
    });
  } catch (err) {
    // Fenced (this run taken for stopped: paused past its heartbeat) stops
    // the run: masters wrote again meanwhile, and this listing may be
    // older than what they wrote (sent anyway, it put an old size over a
    // new value's record).
    if (err instanceof Fenced) throw err;
    tally.unwritten.push(`${name}: ${messageOf(err)}`);
    progress.add("skipped");
    return;
  }
  tally.keys++;
  progress.add("keys");
}

/** Names the keys found that differ, were refused, or are too long. */
function reportTally({ differ, unwritten, tooLong }: Tally): void {
  if (differ.length > 0) {
    report(
      "warn",
      `rebuild: ${plural(differ.length, "key has", "keys have")} copies of different sizes; ` +
        `the older ones are left out (verify names them as orphans):`,
    );
    nameSome(differ, 50, "warn");
  }
  if (unwritten.length > 0) {
    report(
      "error",
      `rebuild: ${plural(unwritten.length, "key")} found ` +
        `could not be recorded; the index is incomplete (run rebuild again; ` +
        `until then verify -repair deletes no orphans):`,
    );
    nameSome(unwritten);
  }
  if (tooLong.length > 0) {
    // Not for rebuild to retry: no run records them, and the index lacks
    // nothing else because of them (verify -repair may delete orphans).
    report(
      "error",
      `rebuild: ${plural(tooLong.length, "key")} found ` +
        `${tooLong.length === 1 ? "is" : "are"} too long for the index (${KEY_LIMIT}) ` +
        `and left unrecorded; no master serves them, and verify names their files:`,
    );
    nameSome(tooLong);
  }
}

/** Names the volumes skipped and the folders that could not be read. */
function reportUnread({ unreadable, errors: rootErrors }: Roots, folderErrors: string[]): void {
  if (unreadable.length > 0) {
    report(
      "error",
      `rebuild: skipped ${plural(unreadable.length, "volume")} whose root could not be read ` +
        `(-skip-unreadable); the index is incomplete: keys held only there are missing ` +
        `(run rebuild again once every volume answers; until then verify -repair deletes ` +
        `no orphans):`,
    );
    nameSome(rootErrors);
  }
  if (folderErrors.length > 0) {
    report(
      "error",
      `rebuild: ${plural(folderErrors.length, "folder")} could not be read; ` +
        `the index is incomplete (run rebuild again once every volume answers; ` +
        `until then verify -repair deletes no orphans):`,
    );
    nameSome(folderErrors);
  }
}

/**
 * Marks the index complete, or incomplete with why when the run missed
 * keys; the exit code (1 when any key found is unrecorded).
 */
async function markEnd(
  index: Index,
  tally: Tally,
  { unreadable, folderErrors }: { unreadable: string[]; folderErrors: string[] },
): Promise<number> {
  const missed = [
    ...(unreadable.length > 0
      ? [
        `skipped ${plural(unreadable.length, "volume")} it could not read ` +
        `(${unreadable.join(", ")})`,
      ]
      : []),
    ...(folderErrors.length > 0 ? [`could not read ${plural(folderErrors.length, "folder")}`] : []),
  ];
  if (missed.length > 0 || tally.unwritten.length > 0) {
    const why = missed.length > 0
      ? `a rebuild ${missed.join(" and ")}`
      : `a rebuild could not record ${plural(tally.unwritten.length, "key")}`;
    await index.markIncomplete({ at: Date.now(), why });
    return 1;
  }
  await index.markIncomplete(null);
  return tally.tooLong.length > 0 ? 1 : 0;
}

/**
 * "; N more keys found, not recorded (T too long for the index, R refused
 * by the index)", or "" when every key found was recorded.
 */
function skipped(tooLong: number, refused: number): string {
  if (tooLong + refused === 0) return "";
  const why = [
    ...(tooLong > 0 ? [`${tooLong} too long for the index`] : []),
    ...(refused > 0 ? [`${refused} refused by the index`] : []),
  ];
  return `; ${plural(tooLong + refused, "more key")} found, not recorded (${why.join(", ")})`;
}

/** Whether `err` is, or (several works failed at once) holds, a fenced write. */
function fencedIn(err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.some(fencedIn);
  return err instanceof Fenced;
}

/** Exits 1, the index untouched: `live` members use it. */
function refuse(live: string[]): number {
  const masters = live.filter((id) => !id.startsWith(REBUILD) && !id.startsWith(CHECK)).length;
  logError(
    masters > 0
      ? `rebuild: ${plural(masters, "master or tool is", "masters or tools are")} using this ` +
        `index; stop them first ` +
        `(rebuild empties the index before it reads the volumes)`
      : `rebuild: another rebuild is running on this index; let it finish ` +
        `(each empties the index before it reads the volumes)`,
  );
  return 1;
}

/** The volumes' roots as read. */
interface Roots {
  /** The (sub)volumes to walk. */
  vols: string[];
  /** The volumes whose root could not be read. */
  unreadable: string[];
  /** Why, one line each. */
  errors: string[];
}

/** How long a volume's listing may take: -voltimeout, at least 10 s. */
function rootsTimeout(opts: StoreOptions): number {
  return Math.max(opts.voltimeout, 10_000);
}

async function readRoots(volumes: string[], timeout: number): Promise<Roots> {
  const w: Walker = { timeout, errors: [] };
  const perVolume = await Promise.all(volumes.map((v) => subvolumesOf(w, v)));
  return {
    vols: perVolume.flat(),
    unreadable: volumes.filter((_, i) => perVolume[i].length === 0),
    errors: w.errors,
  };
}

/** The roots read again, but for the volumes `first` found unreadable: still skipped. */
async function readRootsAgain(volumes: string[], first: Roots, timeout: number): Promise<Roots> {
  const again = await readRoots(volumes.filter((v) => !first.unreadable.includes(v)), timeout);
  return {
    vols: again.vols,
    unreadable: volumes.filter((v) => first.unreadable.includes(v) || again.unreadable.includes(v)),
    errors: [...first.errors, ...again.errors],
  };
}

/**
 * Exits 1 (said why) when two of `volumes` reach one nginx: its files
 * would be recorded twice, as two replicas that are one file (and rebalance
 * or verify -repair would then delete the one copy as its own duplicate);
 * or when one is an mkv master (its listing is no volume's). Null: go on.
 */
async function refusedNames(volumes: string[], timeout: number): Promise<number | null> {
  // Among the volumes whose roots were read (one skipped, down or hung,
  // would cost the check's timeout again); an alias takes two names, and a
  // master named alone has no nginx listing at its root (refused above).
  if (volumes.length < 2) return null;
  const wrong = namesProblem(
    await checkNames(volumes, [], timeout),
    "or one file would be recorded as two replicas of its key",
  );
  if (wrong === null) return null;
  logError(`rebuild: ${wrong}; nothing was changed`);
  return 1;
}

/** The exit code of a run refused for the roots read (said why), null when it goes on. */
function refusedRoots(roots: Roots, skipUnreadable: boolean): number | null {
  // Not one root read (a mistyped -volumes, every volume down): emptied,
  // the index would be refilled with nothing.
  if (roots.vols.length === 0) return unread(roots.errors);
  // Some not read (one volume down): emptied, the index would lose every
  // key whose copies are all there, unless the run is asked to skip them.
  if (roots.unreadable.length > 0 && !skipUnreadable) {
    return unreadSome(roots.unreadable, roots.errors);
  }
  return null;
}

/** Exits 1, the index untouched: no volume's root could be read (`errors` say why). */
function unread(errors: string[]): number {
  report(
    "error",
    `rebuild: no volume's root could be read (is -volumes right?); the index was not changed:`,
  );
  nameSome(errors);
  return 1;
}

/**
 * Exits 1, the index untouched: the roots of `skipped` could not be read
 * (`errors` say why), and a rebuild without them drops the keys held only
 * there. -skip-unreadable rebuilds from the others all the same.
 */
function unreadSome(skipped: string[], errors: string[]): number {
  report(
    "error",
    `rebuild: ${plural(skipped.length, "volume's root", "volumes' roots")} could not be read; ` +
      `the index was not changed (a rebuild without ${skipped.length === 1 ? "it" : "them"} ` +
      `would drop the keys held only there): run rebuild again once every volume answers, ` +
      `or with -skip-unreadable to rebuild from the others and leave the index marked incomplete:`,
  );
  nameSome(errors);
  return 1;
}

/** A line of the run's report, on stdout with its summary and the keys it names. */
function report(level: Level, msg: string) {
  logLine(level, msg, {}, "stdout");
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The copies of a key that hold its newest value: the newest file's size
 * (the largest of equally new ones: nginx lists whole seconds, and a copy
 * cut short is the smaller) and the volumes whose copy has that size. The
 * others hold an older value (a REPLACE renamed over some replicas only)
 * and would be served at random if recorded.
 */
function newestCopies(f: Found): { volumes: string[]; size: number; mtime: number } {
  let newest = 0;
  for (let i = 1; i < f.volumes.length; i++) {
    const [t, n] = [f.mtimes[i], f.mtimes[newest]];
    if (t > n || (t === n && f.sizes[i] > f.sizes[newest]) || Number.isNaN(n)) newest = i;
  }
  const size = f.sizes[newest];
  return {
    volumes: f.volumes.filter((_, i) => f.sizes[i] === size),
    size,
    mtime: Math.max(...f.mtimes.filter((t) => Number.isFinite(t))),
  };
}
