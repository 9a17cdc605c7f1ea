// `mkv verify -volumes ... -db DIR [-md5] [-repair [-grace 1h]]`: checks the
// index against the volumes.
//
// For every live or unlinked key (RELINK can make it live again), each
// recorded replica must exist (HEAD) with the recorded size (when known)
// and, with -md5, the recorded MD5 (read in full; with none recorded, the
// replicas are compared with each other, and named when they differ). Keys
// with fewer healthy replicas than -replicas are named. Then the volumes
// are walked: a file of a key with no record, or on a volume its live
// record does not list, is an orphan; so is a multipart part no upload
// records and a REPLACE temporary older than -grace. Exits 1 when anything
// is wrong.
//
// With -repair: a missing or corrupt replica is copied again from a healthy
// one (of a key with no MD5 recorded, only when the healthy ones agree,
// their MD5 then recorded); orphans older than -grace are deleted; a
// "writing" record whose lease ran out (its writer died) is removed with
// its files; records of parts of an upload that has ended are dropped.
// While the index is marked incomplete, no file of a key with no record is
// deleted: orphans are kept, and an expired "writing" record goes without
// its files.
import {
  compareReplicas,
  differMessage,
  type Digest,
  groupsOf,
  readDigest,
} from "../lib/replica_digest.ts";
import type { FlagValues } from "../lib/flags.ts";
import { requireDb, storeOptions } from "../lib/config.ts";
import { placementOf } from "../lib/membership.ts";
import { type Outcome, Store } from "../lib/store.ts";
import { Fenced, isBusy, LOCKED } from "../lib/group_commit.ts";
import { Claim, isClaimed, unleased } from "../lib/claim.ts";
import { firstAnswer, joinIndex, LOCKED_FOR, openExistingIndex } from "../lib/open.ts";
import { type Entry, type Index, KEY_LIMIT, keyFits } from "../lib/index_db.ts";
import type { Record } from "../lib/record.ts";
import { key2path, volumeOfReplica } from "../lib/keys.ts";
import { latin1 } from "../lib/bytes.ts";
import { pool } from "../lib/pool.ts";
import { nameSome, plural, Progress } from "../lib/progress.ts";
import { aliasesMessage, checkNames, isMarker, mastersMessage } from "../lib/aliases.ts";
import { concurrencyOf, graceOf } from "../lib/tool_flags.ts";
import {
  describe,
  headStatus,
  isFolder,
  readSize,
  remoteDelete,
  remoteHead,
  unanswered,
  volumeUrl,
} from "../lib/volumes.ts";
import {
  type Found,
  hexFolders,
  keysIn,
  type Other,
  subvolumesOf,
  type Walker,
} from "../lib/walk.ts";
import { logInfo, logLine } from "../lib/log.ts";

const decoder = new TextDecoder();

/** What a replica turned out to be. */
type Health = "ok" | "missing" | "corrupt" | "unreachable";

/** A replica's health and why it is not ok ("" when ok or missing): for the operator. */
interface Judged {
  health: Health;
  why: string;
  /** Its MD5, when it was read in full (-md5) for a key whose MD5 is not recorded. */
  md5?: string;
  /** A folder stands at its path: no copy can be put there (nginx answers 409). */
  folder?: boolean;
}

/** Why a replica whose path is a folder is corrupt. */
const FOLDER = "a folder stands at its path: HEAD answered 301";

interface Ctx {
  index: Index;
  /** Its verbs delete orphans under a claim on their key. */
  store: Store;
  timeout: number;
  stall: number;
  replicas: number;
  md5: boolean;
  repair: boolean;
  grace: number;
  progress: Progress;
  problems: Problem[];
  /** Keys held by a write in flight (a live lease), not checked: each named with its holder. */
  held: string[];
  /** Every volume a live or unlinked record names. */
  recorded: Set<string>;
  /** "volume path" of the temporaries of unfinished REPLACEs: not orphans. */
  pending: Set<string>;
  /**
   * When the scan of the keys began: `pending` knows of the switches
   * recorded by then, so a temporary is judged old against this time.
   */
  scanned: number;
  /** The index lacks keys the volumes hold (a partial rebuild): delete no orphan. */
  keepOrphans: boolean;
  /**
   * Keys (latin1) with no healthy recorded replica: a file of theirs the
   * record does not name may be the value's last copy, kept.
   */
  unhealthy: Set<string>;
}

interface Problem {
  text: string;
  /** What -repair did about it, "" when nothing (yet). */
  fixed: string;
}

function report(ctx: Ctx, text: string): Problem {
  const p = { text, fixed: "" };
  ctx.problems.push(p);
  ctx.progress.add("problems");
  return p;
}

export async function verify(flags: FlagValues): Promise<number> {
  const opts = storeOptions(flags);
  const concurrency = concurrencyOf(flags);
  const grace = graceOf(flags);
  const index = await openExistingIndex(requireDb(flags), "verify");
  const locked = (why: string) =>
    `verify: ${why}; nothing was checked: run verify again once the lock is released`;
  await firstAnswer(index, locked(LOCKED_FOR));
  const repair = flags.repair === true;
  // A writer of the index only when repairing: a master running meanwhile
  // then stops trusting its caches. A plain check only reads, and leaves a
  // running master its fast path.
  // Its record carries its flags (-replicas is the count it checks keys
  // against): a master names it on ?status when they differ from its own.
  if (repair) {
    await joinIndex(index, `verify:${Deno.pid}`, {
      locked: locked(LOCKED),
      placement: placementOf(opts),
    });
  }
  const progress = new Progress("verify", { main: "keys" });
  const timeout = Math.max(opts.voltimeout, 10_000);
  const ctx: Ctx = {
    index,
    store: new Store(index, { ...opts, voltimeout: timeout }),
    timeout,
    stall: opts.stall,
    replicas: opts.replicas,
    md5: flags.md5 === true,
    repair,
    grace,
    progress,
    problems: [],
    held: [],
    recorded: new Set(),
    pending: new Set(),
    scanned: Date.now(),
    keepOrphans: false,
    unhealthy: new Set(),
  };
  try {
    // Problems found before a step failed are reported all the same.
    const stopped = await runSteps(ctx, opts.volumes, concurrency);
    progress.done();
    return summarize(ctx, stopped);
  } finally {
    progress.stop();
    await index.membership?.leave();
    index.close();
  }
}

/**
 * Says what the run found (each problem, then the totals, then the keys
 * held); the exit code: 1 when a problem is left or the run stopped.
 */
function summarize(ctx: Ctx, stopped: string | null): number {
  for (const p of ctx.problems) {
    if (p.fixed) logInfo(`${p.text}: repaired, ${p.fixed}`);
    else logLine("warn", p.text, {}, "stdout");
  }
  if (stopped) {
    logLine(
      "error",
      `verify stopped ${stopped}; the problems above are those found until then, ` +
        `the rest was not checked`,
      {},
      "stdout",
    );
  }
  const left = ctx.problems.filter((p) => !p.fixed).length;
  logInfo(
    `verify: ${plural(ctx.progress.get("keys"), "key")}, ${
      plural(ctx.problems.length, "problem")
    }` +
      (ctx.repair ? `, ${ctx.problems.length - left} repaired` : "") +
      (ctx.held.length > 0 ? `, ${ctx.held.length} held (not checked)` : "") +
      (stopped ? ", stopped" : ""),
  );
  nameHeld(ctx);
  // Held keys are no fault (writes in flight beside the masters), and
  // leave the exit code alone: the summary says they were not checked.
  return left > 0 || stopped ? 1 : 0;
}

/**
 * The keys skipped because a write in flight held them, after the summary:
 * a run that checked none of them must not read as all clean.
 */
function nameHeld(ctx: Ctx): void {
  if (ctx.held.length === 0) return;
  const lease = `${ctx.store.opts.lease / 1000}s`;
  logInfo(
    `verify: ${plural(ctx.held.length, "key was", "keys were")} held by a write in flight ` +
      `and not checked (a hold lasts until its write ends, or its lease runs out, within ` +
      `-lease ${lease}): run verify again then:`,
  );
  nameSome(ctx.held.sort(), 50, "info");
}

/** A key skipped as held: named with what holds it and for how long yet. */
function skipHeld(ctx: Ctx, name: string, rec: Record): void {
  ctx.progress.add("held");
  const secs = Math.ceil(((rec.until ?? 0) - Date.now()) / 1000);
  const by = rec.owner
    ? `${rec.state === "writing" ? "being written" : "held"} by ${rec.owner}`
    : "held until a volume answers a call of its last write";
  ctx.held.push(`${name} (${by}; lease ends in ${secs}s)`);
}

/**
 * The steps of a check in turn, until one throws (an index read failed:
 * the file damaged or locked past its wait, a KV Connect server erring):
 * then "while <step>: <why>". The steps after it are not run: the walk
 * judges REPLACE temporaries and names by what the scan recorded.
 */
async function runSteps(
  ctx: Ctx,
  volumes: string[],
  concurrency: number,
): Promise<string | null> {
  const w: Walker = { timeout: ctx.timeout, errors: [], strays: [] };
  const steps: [string, () => Promise<void>][] = [
    ["reading the index's rebuild mark", () => keepOrphansOfPartialIndex(ctx)],
    [
      "scanning the index's keys",
      () => pool(ctx.index.entries(), concurrency, ([key, e]) => checkKeyAlone(ctx, key, e)),
    ],
    ["checking the parts of ended uploads", () => checkEndedParts(ctx)],
    ["checking for two names of one volume", async () => {
      if (ctx.repair) await keepOrphansOfAliases(ctx, volumes);
    }],
    ["walking the volumes", () => findOrphans(ctx, w, volumes, concurrency)],
  ];
  let stopped: string | null = null;
  for (const [what, step] of steps) {
    try {
      await step();
    } catch (err) {
      stopped = `while ${what}: ${messageOf(err)}`;
      break;
    }
  }
  // Before the last progress line, so that it counts them too.
  for (const e of w.errors) report(ctx, `unreadable folder: ${e}`);
  return stopped;
}

/**
 * One key's check, whatever it throws (an index write of a repair refused,
 * Fenced: this tool was taken for gone, paused past its heartbeat): that is
 * the key's problem, and the other keys are checked all the same.
 */
async function checkKeyAlone(ctx: Ctx, key: Uint8Array, e: Entry): Promise<void> {
  try {
    await checkKey(ctx, key, e);
  } catch (err) {
    report(ctx, `cannot check ${JSON.stringify(decoder.decode(key))}: ${messageOf(err)}`);
  }
}

/** One key's record against its replicas. */
async function checkKey(ctx: Ctx, key: Uint8Array, e: Entry, first = true): Promise<void> {
  if (first) ctx.progress.add("keys");
  const { rec } = e;
  const name = JSON.stringify(decoder.decode(key));
  if (rec.state === "writing") {
    if (isClaimed(rec)) return skipHeld(ctx, name, rec);
    return await removeExpiredWrite(ctx, key, e, name);
  }
  for (const v of rec.rvolumes) ctx.recorded.add(v);
  // The temporaries of a recorded switch are no orphans, even while its
  // REPLACE holds the key (a master killed amid its renames, its lease not
  // yet run out): they may be the new value's only copies.
  for (const v of rec.next?.rec.rvolumes ?? []) ctx.pending.add(`${v} ${rec.next!.tmp}`);
  // An unlinked key is checked as a live one: RELINK can make its value
  // live again, so its replicas are kept whole, and a copy of it that its
  // record does not name may be its last (kept, as a live key's).
  const label = rec.state === "unlinked" ? `${name} (unlinked)` : name;
  // A key being replaced holds a lease too: its files are in flux.
  if (isClaimed(rec)) return skipHeld(ctx, label, rec);
  if (rec.next) {
    const what = rec.next.put ? "PUT over the unlinked value" : "replace";
    return await finishSwitch(ctx, key, { name: label, owner: rec.owner, what });
  }
  const path = key2path(key);
  const judged = await Promise.all(
    rec.rvolumes.map((v) => checkReplica(ctx, volumeUrl(v, path), rec.size, rec.hash)),
  );
  if (judged.some((j) => j.health !== "ok") || readDiffer(judged)) {
    // The record was read by the scan, maybe a while ago: a key written
    // since (replaced, deleted) has other files than it says, and that is
    // no fault (replicas that differ included: replaced between their
    // reads). Judged against its record as it is now, once.
    const now = await ctx.index.get(key);
    if (now?.versionstamp !== e.versionstamp) {
      if (now && first) return await checkKey(ctx, key, now, false);
      ctx.progress.add("changed");
      return;
    }
  }
  await reportReplicas(ctx, key, e, { label, judged });
}

/** Whether replicas read in full (-md5, no MD5 recorded) hold other bytes. */
function readDiffer(judged: Judged[]): boolean {
  return new Set(judged.flatMap((j) => j.md5 ? [j.md5] : [])).size > 1;
}

/**
 * The replicas of a key as judged (`judged`, in the order of its record):
 * each one not ok named, the key named when under-replicated or when its
 * replicas differ; with -repair, the missing and corrupt ones copied again.
 */
async function reportReplicas(
  ctx: Ctx,
  key: Uint8Array,
  e: Entry,
  of: { label: string; judged: Judged[] },
): Promise<void> {
  const { label, judged } = of;
  const { rec } = e;
  const health = judged.map((j) => j.health);
  const healthy = rec.rvolumes.filter((_, i) => health[i] === "ok");
  if (healthy.length === 0) ctx.unhealthy.add(latin1(key));
  // With no MD5 recorded, replicas of the recorded size may still hold
  // other bytes: -md5 read them, and compares them with each other.
  const read = groupsOf(
    rec.rvolumes.flatMap((v, i) => judged[i].md5 ? [[v, judged[i].md5!] as [string, string]] : []),
  );
  if (read.size > 1) report(ctx, `replicas differ: ${label} ${differMessage(read)}`);
  const bad = rec.rvolumes.map((v, i) =>
    health[i] === "ok"
      ? null
      : report(ctx, `${health[i]} replica: ${label} on ${v}${because(judged[i])}`)
  );
  const under = healthy.length < ctx.replicas
    ? report(
      ctx,
      `under-replicated: ${label} has ${healthy.length} healthy of ${
        plural(ctx.replicas, "replica")
      }`,
    )
    : null;
  if (!ctx.repair || healthy.length === 0) return;
  // Removing the folder would take whatever it holds with it: left to the operator.
  for (const [i, j] of judged.entries()) {
    if (j.folder) bad[i]!.text += " (cannot repair: remove the folder first)";
  }
  const fixable = rec.rvolumes.flatMap((v, i) =>
    bad[i] && !judged[i].folder && (health[i] === "missing" || health[i] === "corrupt")
      ? [[v, bad[i]] as const]
      : []
  );
  if (fixable.length === 0) return;
  const fixed = await copyReplicas(ctx, key, e, { name: label, healthy, fixable, read });
  if (under && healthy.length + fixed >= ctx.replicas) under.fixed = "replicas copied";
}

/**
 * A "writing" record whose lease ran out: with no owner, a write that
 * failed, kept while a volume might still answer. Removed with -repair.
 */
async function removeExpiredWrite(ctx: Ctx, key: Uint8Array, e: Entry, name: string) {
  const owner = e.rec.owner ? `owner ${e.rec.owner}` : "a failed write";
  const p = report(ctx, `expired write: ${name} (${owner})`);
  if (!ctx.repair) return;
  // Only while the record is still the one read: a PUT may have taken the
  // key over since (the lease had run out), and its files are not ours.
  // On an incomplete index, its files may be a value the index lacks (a
  // PUT that claimed the key, found a file and died before it dropped the
  // claim): they are kept, as orphans are then.
  const keepFiles = ctx.keepOrphans;
  const out = await ctx.store.removeExpired(key, e, { keepFiles }).catch(thrown);
  if (out.status === 204 && keepFiles) {
    p.fixed = "record removed, files kept (the index is incomplete: they may hold a value " +
      "it lacks; run rebuild)";
  } else if (out.status === 204) p.fixed = "record and files removed";
  else if (out.status === 409) p.text += " (changed meanwhile, kept)";
  else p.text += ` (cannot remove: ${out.message})`;
}

/**
 * A REPLACE (or a PUT over an unlinked key: `what`) whose master died amid
 * its renames: its replicas hold the old value or the new, which the record
 * does not say yet. With -repair, the store's read of the key finishes the
 * switch.
 */
async function finishSwitch(
  ctx: Ctx,
  key: Uint8Array,
  of: { name: string; owner?: string; what: string },
) {
  const p = report(ctx, `unfinished ${of.what}: ${of.name} (owner ${of.owner ?? "?"})`);
  if (!ctx.repair) return;
  const now = await ctx.store.entry(key).catch((err) => {
    p.text += ` (cannot finish the switch now: ${messageOf(err)})`;
    return undefined;
  });
  if (now === undefined) return;
  if (now && !now.rec.next && now.rec.until === undefined) p.fixed = "switch finished";
  else p.text += " (cannot finish the switch now)";
}

/**
 * Copies a healthy replica over each fixable one (missing or corrupt);
 * how many were copied. `read`: the healthy replicas by MD5 when -md5 read
 * those of a key whose MD5 is not recorded.
 */
async function copyReplicas(
  ctx: Ctx,
  key: Uint8Array,
  e: Entry,
  bad: {
    name: string;
    healthy: string[];
    fixable: (readonly [string, Problem])[];
    read: Map<string, string[]>;
  },
): Promise<number> {
  const { name, healthy, fixable } = bad;
  const { rec } = e;
  const path = key2path(key);
  // The replicas were judged against the record read by the scan, which a
  // write may have changed since (a REPLACE, a DELETE then a PUT): copying
  // then would put an older value over the live one. So the copies are made
  // under a hold on the record as read (a compare-and-set, as REPLACE
  // holds a key), which also makes a write of the key meanwhile wait (409).
  let claim: Claim | null;
  try {
    claim = await Claim.hold(ctx.index, key, e, ctx.store.opts);
  } catch (err) {
    for (const [, p] of fixable) p.text += ` (cannot repair: ${messageOf(err)})`;
    return 0;
  }
  if (!claim) {
    for (const [, p] of fixable) p.text += " (changed meanwhile, not repaired)";
    return 0;
  }
  let fixed = 0;
  // A copy sent whole and never answered may be stored yet, over the file
  // of the key's next write: the key's writers then wait out the lease.
  let linger = false;
  let source: Source | null = null;
  try {
    // Without -md5 the healthy replicas were judged by their size only: the
    // source and each copy are checked against a known MD5 all the same,
    // so that a replica of the right size and wrong bytes is not spread.
    source = await sourceOf(ctx, { name, healthy, path, rec, read: bad.read });
    for (const [v, p] of fixable) {
      const copy = await copyOne(ctx, { claim, source, path, size: rec.size, to: v });
      linger ||= copy.linger;
      if (copy.failed !== null) p.text += ` (cannot repair: ${copy.failed})`;
      else {
        p.fixed = `copied from ${source.volume}`;
        fixed++;
      }
    }
  } finally {
    // Every replica now holds the MD5 two or more agreed on: the index
    // records it, and the next checks and copies are held to it.
    const agreed = source !== null && !rec.hash && source.agreeing >= 2 &&
      source.agreeing + fixed === rec.rvolumes.length;
    const final = agreed ? { ...unleased(rec), hash: source!.hash } : null;
    if (await release(ctx, name, claim, { linger, final }) && agreed) {
      for (const [, p] of fixable) if (p.fixed) p.fixed += `; MD5 ${source!.hash} recorded`;
    }
  }
  return fixed;
}

/**
 * Gives back the hold a repair took, the record as it was or `final`;
 * whether the index took it back. One the index does not take back (a
 * write refused: locked past its wait, Fenced twice; or the hold lost
 * meanwhile, its renewal refused) stays on the key until its lease runs
 * out, and until then every write of the key answers 409: a problem of
 * its own, not fixed by this run. The copies made stand.
 */
async function release(
  ctx: Ctx,
  name: string,
  claim: Claim,
  opts: { linger: boolean; final: Record | null },
): Promise<boolean> {
  const { linger, final } = opts;
  const done = final ? claim.finish(final, { linger }) : claim.release({ linger });
  const why = await done.then(
    (ok) => ok ? null : "the hold was lost meanwhile",
    (err) => `the index refused it: ${messageOf(err)}`,
  );
  if (why !== null) holdNotReleased(ctx, name, why);
  return why === null;
}

/** A hold on key `name` left on it (`why`): a problem of its own. */
function holdNotReleased(ctx: Ctx, name: string, why: string): void {
  const lease = `${ctx.store.opts.lease / 1000}s`;
  report(
    ctx,
    `hold not released: ${name} (${why}; writes of the key get 409 until its lease ` +
      `runs out, within -lease ${lease})`,
  );
}

/**
 * Part records left by an upload that has ended (its master killed inside
 * endUpload): their files are orphans (checkLeftover), the records dead
 * weight. -repair drops those older than -grace (an upload ending right now
 * drops its own).
 */
async function checkEndedParts(ctx: Ctx): Promise<void> {
  const now = Date.now();
  for await (const { id, number, part } of ctx.index.endedParts()) {
    const p = report(ctx, `index: part ${number} of ended upload ${id} still recorded`);
    if (!ctx.repair) continue;
    if (!(now - part.mtime >= ctx.grace)) p.text += " (kept: younger than -grace)";
    else if (await ctx.index.dropEndedPart(id, number)) p.fixed = "record dropped";
  }
}

/**
 * An index rebuilt from part of the volumes (a volume down, the rebuild
 * killed) lacks keys they hold: their files would look orphans. Then
 * orphans are only reported, never deleted.
 */
async function keepOrphansOfPartialIndex(ctx: Ctx): Promise<void> {
  const partial = await ctx.index.incomplete();
  if (!partial) return;
  const at = new Date(partial.at).toISOString();
  report(ctx, `index incomplete: ${partial.why} (${at}); run rebuild again`);
  ctx.keepOrphans = true;
}

/**
 * With two names for one volume, every file looks an orphan of the other
 * name: then orphans are only reported, never deleted.
 */
async function keepOrphansOfAliases(ctx: Ctx, volumes: string[]): Promise<void> {
  const { aliases, masters } = await checkNames(volumes, ctx.recorded, ctx.timeout);
  // A master's keys, walked as a volume's files, are all orphans of it.
  if (masters.length > 0) report(ctx, `${mastersMessage(masters)}; orphans not deleted`);
  if (aliases.length > 0) report(ctx, `${aliasesMessage(aliases)}; orphans not deleted`);
  if (aliases.length > 0 || masters.length > 0) ctx.repair = false;
}

/**
 * One copy of a repair, from `source` to `to`, checked once made; why it
 * failed (null: copied), and whether a PUT of it went out whole and was
 * never answered (the volume may store it yet: the hold lingers).
 */
async function copyOne(
  ctx: Ctx,
  copy: { claim: Claim; source: Source; path: string; size: number; to: string },
): Promise<{ failed: string | null; linger: boolean }> {
  const { claim, source, path, size, to } = copy;
  const notAnswered = new Set<string>();
  try {
    if (!(await claim.confirm())) throw new Error("lost the hold on the key");
    if (source.volume === null) throw new Error(source.why);
    // The store's copy: stopped once the hold is lost (a copy going on
    // would land over the key's next value), checked against the record.
    const failed = await ctx.store.copyReplica(path, source.volume, {
      targets: [to],
      size,
      hash: source.hash,
      claim,
      unanswered: notAnswered,
    });
    if (failed !== null) throw failed;
    const copied = await checkReplica(ctx, volumeUrl(to, path), size, source.hash, true);
    if (copied.health !== "ok") {
      throw new Error(`the copy does not check out: ${copied.health}${because(copied)}`);
    }
    return { failed: null, linger: notAnswered.size > 0 };
  } catch (err) {
    return { failed: messageOf(err), linger: notAnswered.size > 0 || unanswered(err) };
  }
}

/** What a repair copies from. */
interface Source {
  /** The replica, null when none may be copied (`why`). */
  volume: string | null;
  why: string;
  /** The MD5 the copies are held to: the recorded one, or the one the replicas agree on. */
  hash: string;
  /** With no MD5 recorded, how many replicas were read and hold `hash`. */
  agreeing: number;
}

/**
 * With a recorded MD5, the first of the `healthy` replicas (checked for
 * size only, unless -md5) whose bytes have it; those that do not are named
 * corrupt. With none recorded, the healthy replicas are read (unless -md5
 * did: `read`) and compared: a copy of one that agrees with every other
 * read, none when they differ (nothing tells which holds the value).
 */
async function sourceOf(
  ctx: Ctx,
  of: { name: string; healthy: string[]; path: string; rec: Record; read: Map<string, string[]> },
): Promise<Source> {
  const { name, healthy, path, rec } = of;
  const { size, hash } = rec;
  if (hash) {
    const source = { why: "no replica holds the recorded MD5", hash, agreeing: 0 };
    if (ctx.md5) return { ...source, volume: healthy[0] };
    for (const v of healthy) {
      const judged = await checkReplica(ctx, volumeUrl(v, path), size, hash, true);
      if (judged.health === "ok") return { ...source, volume: v };
      if (judged.health === "corrupt") {
        report(ctx, `corrupt replica: ${name} on ${v}${because(judged)}`);
      }
    }
    return { ...source, volume: null };
  }
  let groups = of.read;
  if (!ctx.md5) {
    const compared = await compareReplicas(path, healthy, { stall: ctx.stall, size });
    groups = compared.groups;
    for (const { volume, why, failed } of compared.passed) {
      report(ctx, `${failed ? "unreachable" : "corrupt"} replica: ${name} on ${volume} (${why})`);
    }
    if (groups.size > 1) report(ctx, `replicas differ: ${name} ${differMessage(groups)}`);
  }
  if (groups.size > 1) {
    return { volume: null, why: `its replicas differ ${differMessage(groups)}`, hash, agreeing: 0 };
  }
  const [agreed] = groups;
  if (!agreed) return { volume: null, why: "no healthy replica could be read", hash, agreeing: 0 };
  return { volume: agreed[1][0], why: "", hash: agreed[0], agreeing: agreed[1].length };
}

/**
 * HEAD (size) and, with -md5 (or `md5`), a full read of one replica: its
 * MD5 against the recorded one, or, none recorded, kept to compare with
 * the key's other replicas; a full read too when the HEAD answer does not
 * say the size. What is wrong says how (the sizes or MD5s, the answer).
 */
async function checkReplica(
  ctx: Ctx,
  url: string,
  size: number,
  hash: string,
  md5 = ctx.md5,
): Promise<Judged> {
  let head: { status: number; length: number | null };
  try {
    head = await remoteHead(url, ctx.timeout);
  } catch (err) {
    return { health: "unreachable", why: `HEAD unanswered: ${describe(err)}` };
  }
  const { status, length } = head;
  if (status === 404) return { health: "missing", why: "" };
  if (isFolder(status)) return { health: "corrupt", why: FOLDER, folder: true };
  if (status !== 200) return { health: "unreachable", why: `HEAD answered ${status}` };
  if (size >= 0 && length !== null && length !== size) {
    return { health: "corrupt", why: `size ${plural(length, "byte")}, recorded ${size}` };
  }
  // A HEAD answered without Content-Length (a proxy in front of nginx
  // sending it chunked) does not say the size: the replica is read in full
  // to learn it, not taken to have the recorded one.
  const unsized = size >= 0 && length === null;
  const hashed = md5 && hash !== "";
  if (!md5 && !unsized) return { health: "ok", why: "" };
  let read: Digest | null;
  try {
    // Only the size asked for: counted, not hashed.
    read = md5 ? await readDigest(url, { stall: ctx.stall, length }) : await sizeOnly(ctx, url);
  } catch (err) {
    return { health: "unreachable", why: `read failed: ${describe(err)}` };
  }
  // Gone since the HEAD.
  if (!read) return { health: "missing", why: "" };
  if (size >= 0 && read.bytes !== size) {
    const how = unsized ? "; read in full: its HEAD answer gave no Content-Length" : "";
    return { health: "corrupt", why: `size ${plural(read.bytes, "byte")}, recorded ${size}${how}` };
  }
  if (hashed && read.md5 !== hash) {
    return { health: "corrupt", why: `MD5 ${read.md5}, recorded ${hash}` };
  }
  // No MD5 recorded (a rebuilt key): kept, to compare with the other replicas'.
  return { health: "ok", why: "", md5: md5 && !hash ? read.md5 : undefined };
}

/** A replica read in full for its size alone (no MD5); null when gone. */
async function sizeOnly(ctx: Ctx, url: string): Promise<Digest | null> {
  const bytes = await readSize(url, { stall: ctx.stall });
  return bytes === null ? null : { bytes, md5: "" };
}

/** " (why)" when there is a why. */
function because(j: Judged): string {
  return j.why ? ` (${j.why})` : "";
}

/**
 * Walks every (sub)volume: files whose key has no record, or a live or
 * unlinked record not listing that volume, are orphans. Files of a key being
 * written are left alone.
 */
async function findOrphans(
  ctx: Ctx,
  w: Walker,
  volumes: string[],
  concurrency: number,
): Promise<void> {
  const rootFiles: Other[] = [];
  const vols = (await Promise.all(volumes.map((v) => subvolumesOf(w, v, rootFiles)))).flat();
  ctx.progress.add("volumes", vols.length);
  for (const f of rootFiles) await checkMarker(ctx, f, Date.now());
  const tops = await hexFolders(w, vols, "/");
  const folders: [string, string[]][] = [];
  await pool(tops.entries(), concurrency, async ([ab, abVols]) => {
    const subs = await hexFolders(w, abVols, `/${ab}/`);
    for (const [cd, cdVols] of subs) folders.push([`/${ab}/${cd}/`, cdVols]);
  });
  const now = Date.now();
  const uploads = new Map<string, Promise<Set<string>>>();
  await pool(folders, concurrency, async ([folder, cdVols]) => {
    // Whatever it throws (an index read failed) is that folder's problem:
    // the other folders are walked all the same, and the summary says so.
    await checkFolder(ctx, w, folder, cdVols, uploads, now).catch((err) => {
      report(ctx, `cannot check folder ${folder} on ${cdVols.join(", ")}: ${messageOf(err)}`);
    });
  });
  for (const f of w.strays ?? []) unknownFile(ctx, f);
}

/**
 * A file that is no key's nor any the masters or tools write: named (quoted,
 * as keys are: its name is anyone's, spaces and newlines included), left alone.
 */
function unknownFile(ctx: Ctx, f: Other): void {
  const url = JSON.stringify(volumeUrl(f.volume, f.path));
  report(ctx, `unknown file: ${url} (not a key's; left alone)`);
}

/** The files of one key folder ("/ab/cd/") on the (sub)volumes that have it. */
async function checkFolder(
  ctx: Ctx,
  w: Walker,
  folder: string,
  cdVols: string[],
  uploads: Map<string, Promise<Set<string>>>,
  now: number,
): Promise<void> {
  const others: Other[] = [];
  const keys = await keysIn(w, cdVols, folder, others);
  for (const other of others) await checkLeftover(ctx, other, uploads, now);
  for (const found of keys) {
    ctx.progress.add("files", found.volumes.length);
    if (!keyFits(found.key)) {
      unrecordable(ctx, found);
      continue;
    }
    const e = await ctx.index.get(found.key);
    if (e && (e.rec.state === "writing" || (e.rec.until ?? 0) > now)) continue;
    const name = JSON.stringify(decoder.decode(found.key));
    const path = key2path(found.key);
    for (const [i, v] of found.volumes.entries()) {
      if (e && e.rec.rvolumes.includes(v)) continue;
      const url = volumeUrl(v, path);
      if (!await stillOrphan(ctx, found.key, e, url)) {
        ctx.progress.add("changed");
        continue;
      }
      const p = report(
        ctx,
        `orphan file: ${url} (${e ? `${name} is not recorded on ${v}` : "no record"})`,
      );
      if (!ctx.repair) continue;
      if (ctx.keepOrphans) {
        p.text += " (kept: the index is incomplete)";
        continue;
      }
      const lastCopy =
        " (kept: no recorded replica of the key is healthy; this may be its last copy)";
      if (e && ctx.unhealthy.has(latin1(found.key))) {
        p.text += lastCopy;
        continue;
      }
      if (!(now - found.mtimes[i] >= ctx.grace)) {
        p.text += " (kept: younger than -grace)";
        continue;
      }
      if (e && !await recordedHealthy(ctx, found.key, { rec: e.rec, down: w.down })) {
        p.text += lastCopy;
        continue;
      }
      try {
        // Under a claim on the key: a write may have come since the listing.
        const out = await ctx.store.removeOrphan(found.key, v);
        p.fixed = out.status === 204 ? "deleted" : "in use again, kept";
        if (out.status === 204 && out.message) holdNotReleased(ctx, name, out.message);
      } catch (err) {
        p.text += ` (cannot delete: ${messageOf(err)})`;
      }
    }
  }
}

/**
 * Whether a recorded replica of the key is healthy now (HEAD, its size):
 * the scan judged them, maybe hours before the walk reached the key's
 * folder, and a replica lost since leaves the orphan copy the value's last.
 */
async function recordedHealthy(
  ctx: Ctx,
  key: Uint8Array,
  of: { rec: Record; down?: Set<string> },
): Promise<boolean> {
  const { rec, down } = of;
  const path = key2path(key);
  // A volume that stopped answering the walk is not waited on again.
  const judged = await Promise.all(
    rec.rvolumes.filter((v) => !down?.has(volumeOfReplica(v))).map((v) =>
      checkReplica(ctx, volumeUrl(v, path), rec.size, rec.hash, false)
    ),
  );
  if (judged.some((j) => j.health === "ok")) return true;
  ctx.unhealthy.add(latin1(key));
  return false;
}

/**
 * The files of a key longer than the index takes (written by Go mkv, which
 * has no such limit, or onto the volume by hand): no record can name it,
 * so it is no orphan of a failed write, and no master can serve it (414).
 * Named and left alone: deleting it would lose the value.
 */
function unrecordable(ctx: Ctx, found: Found): void {
  const path = key2path(found.key);
  for (const v of found.volumes) {
    report(
      ctx,
      `unrecordable file: ${volumeUrl(v, path)} (its key of ${found.key.length} bytes is ` +
        `too long for the index, ${KEY_LIMIT}; left alone)`,
    );
  }
}

/**
 * Whether a file that the listing showed and the key's record `e` (read
 * after the listing) does not name is an orphan still: a DELETE or a
 * REBALANCE of the key between the listing and that read removed it (then
 * no more there), and a write since may have recorded it (then the record
 * changed). Once the file is seen again and the record is still `e`, no
 * write came between. A volume that cannot say keeps it an orphan.
 */
async function stillOrphan(
  ctx: Ctx,
  key: Uint8Array,
  e: Entry | null,
  url: string,
): Promise<boolean> {
  if (await headStatus(url, ctx.timeout) === 404) return false;
  return (await ctx.index.get(key))?.versionstamp === e?.versionstamp;
}

/**
 * A file that is no key's: a part of a multipart upload (an orphan once the
 * upload has no record of it), a REPLACE's temporary (an orphan once older
 * than -grace: a REPLACE renames it within moments of writing it), or
 * something else, reported and left alone.
 */
async function checkLeftover(
  ctx: Ctx,
  f: Other,
  uploads: Map<string, Promise<Set<string>>>,
  now: number,
) {
  const name = f.path.slice(f.path.lastIndexOf("/") + 1);
  const url = volumeUrl(f.volume, f.path);
  const part = /^mpu\.([0-9a-f]{32})\.\d+\.[0-9a-f-]+$/.exec(name);
  let what: string;
  if (part) {
    let recorded = uploads.get(part[1]);
    if (!recorded) {
      // Parts still recorded for an upload that has ended (its master
      // killed inside endUpload, between its commits) are orphans too.
      const id = part[1];
      recorded = ctx.index.upload(id).then(async (u) =>
        u === null ? new Set<string>() : new Set(
          [...(await ctx.index.parts(id)).values()].flatMap((p) =>
            p.volumes.map((v) => `${v} ${p.path}`)
          ),
        )
      );
      uploads.set(part[1], recorded);
    }
    if ((await recorded).has(`${f.volume} ${f.path}`)) return;
    what = "multipart part that no upload in progress records";
  } else if (/^replace\.[0-9a-f-]{36}$/.test(name) || /\.replace-[0-9a-f-]{36}$/.test(name)) {
    // Older than -grace when the scan began, not the walk: a REPLACE that
    // recorded its switch after the scan read its key (a scan longer than
    // -grace) is not in `pending`, and its temporaries may be the new
    // value's only copies.
    if (!(ctx.scanned - f.mtime >= ctx.grace) || ctx.pending.has(`${f.volume} ${f.path}`)) {
      return;
    }
    what = "REPLACE temporary left by a failed REPLACE or PUT over an unlinked key";
  } else return unknownFile(ctx, f);
  // Gone since the listing: its upload ended or its REPLACE renamed it.
  if (await headStatus(url, ctx.timeout) === 404) return;
  const p = report(ctx, `orphan file: ${url} (${what})`);
  if (!ctx.repair) return;
  if (ctx.keepOrphans) {
    p.text += " (kept: the index is incomplete)";
    return;
  }
  if (!(now - f.mtime >= ctx.grace)) {
    p.text += " (kept: younger than -grace)";
    return;
  }
  try {
    await remoteDelete(url, ctx.timeout);
    p.fixed = "deleted";
  } catch (err) {
    p.text += ` (cannot delete: ${messageOf(err)})`;
  }
}

/**
 * A file at a volume's root: a marker of the check for two names of one
 * volume (lib/aliases.ts) is an orphan once older than -grace (a check
 * lasts seconds). Its check removes it, but one whose PUT the volume
 * carried out after that removal (paused meanwhile) stays. Other files
 * there are no key's: named, left alone.
 */
async function checkMarker(ctx: Ctx, f: Other, now: number) {
  if (!isMarker(f.path.slice(1))) return unknownFile(ctx, f);
  if (!(now - f.mtime >= ctx.grace)) return;
  const url = volumeUrl(f.volume, f.path);
  if (await headStatus(url, ctx.timeout) === 404) return;
  const p = report(ctx, `orphan file: ${url} (marker of a master's or tool's check of -volumes)`);
  if (!ctx.repair) return;
  try {
    await remoteDelete(url, ctx.timeout);
    p.fixed = "deleted";
  } catch (err) {
    p.text += ` (cannot delete: ${messageOf(err)})`;
  }
}

/** A verb of the store that threw (an index write refused: Fenced, locked), as its outcome. */
function thrown(err: unknown): Outcome {
  return { status: err instanceof Fenced || isBusy(err) ? 503 : 500, message: messageOf(err) };
}

function messageOf(err: unknown): string {
  // Not SQLite's bare "database is locked": why, and for how long.
  if (isBusy(err)) return LOCKED;
  return err instanceof Error ? err.message : String(err);
}
