// Opening the index: the one place that touches the disk for it.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { isBusy } from "./group_commit.ts";
import { Index } from "./index_db.ts";
import { Membership, type MembershipOptions } from "./membership.ts";

/** Heartbeat interval of index members (masters and writing tools). */
export const MEMBER_INTERVAL = 1000;

/**
 * How long the master and the tools wait for the first answer of an index
 * another process holds the write lock of (a first access waits as long as
 * the lock is held): as long as a write may take to fail on it (it waits up
 * to 5 s on the lock, and is tried again until 10 s have passed: retryBusy).
 */
export const LOCKED_MS = 15_000;

/** Why a master or tool gave up on a locked index, for the operator. */
export const LOCKED_FOR = `the index stayed locked for over ${
  LOCKED_MS / 1000
} s (another process holds its write lock)`;

/**
 * The index did not answer within LOCKED_MS (firstAnswer), or refused the
 * registration, locked past retrying (joinIndex): nothing was read or
 * written but that registration.
 */
export class IndexLocked extends Error {}

/**
 * Waits for the index's first answer, at most LOCKED_MS; throws IndexLocked
 * with `refusal` (which says what to do) when none came. Deno KV's first
 * access of a file whose write lock another process holds waits as long as
 * the lock is held: a master or tool started then would hang without a
 * word. Unanswered, the index is not to be closed (Deno KV's close blocks
 * the process until the read in flight ends): the caller exits.
 */
export async function firstAnswer(index: Index, refusal: string): Promise<void> {
  if (!await index.answers(LOCKED_MS)) throw new IndexLocked(refusal);
}

/**
 * Opens the index at `db`: a KV Connect URL (https://...) as is, otherwise a
 * folder (created if missing) holding the SQLite file, as mkv's -db names a
 * LevelDB folder. An existing plain file is opened as the SQLite file itself.
 */
export async function openIndex(db: string): Promise<Index> {
  try {
    return await open(db);
  } catch (err) {
    // Alone, "file is not a database" or an ENOENT named neither the index nor -db.
    throw new Error(`Cannot open the index "${db}": ${err instanceof Error ? err.message : err}`);
  }
}

/**
 * Opens an index that must already exist (verify, rebalance). Opened as the
 * master opens it, a mistyped -db would be a new, empty index: every file
 * on the volumes an orphan there, which verify -repair deletes.
 */
export async function openExistingIndex(db: string, tool: string): Promise<Index> {
  if (!isUrl(db) && !await hasIndex(db)) {
    throw new Error(
      `No index at "${db}" (-db): ${tool} reads an existing index (rebuild makes one ` +
        `from the volumes)`,
    );
  }
  return await openIndex(db);
}

/** Whether `db` is a SQLite file, or a folder holding index.sqlite3. */
async function hasIndex(db: string): Promise<boolean> {
  const info = await Deno.stat(db).catch(() => null);
  if (!info?.isDirectory) return info?.isFile ?? false;
  return (await Deno.stat(join(db, "index.sqlite3")).catch(() => null))?.isFile ?? false;
}

function isUrl(db: string): boolean {
  return /^https?:\/\//.test(db);
}

async function open(db: string): Promise<Index> {
  // Its client sends a commit again when the answer is lost: marks tell
  // one that landed from one whose checks failed (lib/group_commit.ts).
  if (isUrl(db)) return new Index(await Deno.openKv(db), { marked: true });
  let path = db;
  const info = await Deno.stat(db).catch(() => null);
  if (!info || info.isDirectory) {
    await mkdir(db, { recursive: true });
    path = join(db, "index.sqlite3");
  }
  const index = new Index(await Deno.openKv(path));
  index.watchFile(path);
  return index;
}

export interface JoinOptions
  extends Pick<MembershipOptions, "placement" | "onPlacements" | "rejoin"> {
  /**
   * The refusal (IndexLocked's message) when the index refuses the
   * registration, locked past its retries (the lock taken after the first
   * answer); unset, "database is locked" is thrown as it came.
   */
  locked?: string;
}

/**
 * Registers `id` as a writer of the index (see lib/membership.ts) and lets
 * the index cache what it reads while this is its sole writer. A master
 * gives its placement (and what to do when others differ).
 */
export async function joinIndex(index: Index, id: string, opts: JoinOptions = {}): Promise<void> {
  const { locked, ...rest } = opts;
  const m = new Membership(index, id, {
    ...rest,
    interval: MEMBER_INTERVAL,
    onSole: (sole) => index.onSole(sole),
  });
  index.membership = m;
  try {
    await m.join();
  } catch (err) {
    if (locked !== undefined && isBusy(err)) throw new IndexLocked(locked);
    throw err;
  }
}
