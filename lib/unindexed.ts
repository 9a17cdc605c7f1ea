// At start, an index that holds no key while the volumes hold files (the
// master restarted on a new or emptied -db): every key on them would answer
// 404, silently. The master looks, in the background, and says so (its log,
// ?status) until it stops.
import type { Index } from "./index_db.ts";
import { someKeyFile, type Walker } from "./walk.ts";

/** What the look at start found. */
export interface Unindexed {
  /** The volumes holding a key's file, each with one such file. */
  volumes: { volume: string; file: string }[];
  /** When the look ended (ms since epoch). */
  at: number;
}

/** Listings asked of each volume at most: the look stays cheap on a big, sparse one. */
const BUDGET = 16;

let seen: Unindexed | null = null;

/** What the look at start found, or null (the index held keys, or no volume holds any). */
export function unindexed(): Unindexed | null {
  return seen;
}

/**
 * When `index` holds no key, looks on each volume for a key's file (a few
 * listings each, every one within `timeout`; a volume that does not answer
 * is given up at its first); what it finds is kept for unindexed().
 */
export async function lookForUnindexed(
  index: Index,
  volumes: string[],
  opts: { timeout: number },
): Promise<Unindexed | null> {
  if (await index.holdsKeys()) return null;
  const w: Walker = { timeout: opts.timeout, errors: [] };
  const found = await Promise.all(volumes.map((v) => someKeyFile(w, v, BUDGET)));
  const holding: Unindexed["volumes"] = [];
  for (const [i, f] of found.entries()) {
    // A key written since the index was read (a PUT already taken) is indexed.
    if (f && await index.get(f.key) === null) holding.push({ volume: volumes[i], file: f.file });
  }
  if (holding.length === 0) return null;
  seen = { volumes: holding, at: Date.now() };
  return seen;
}
