// At start, an index that holds no key while the volumes hold files (the
// master restarted on a new or emptied -db): every key on them would answer
// 404, silently. The master looks, in the background, and says so (its log,
// ?status) until it stops. Likewise an index whose records name volumes
// that -volumes does not (the volumes started on other ports, a host
// renamed, one dropped before a rebalance): said in its log.
import type { Index } from "./index_db.ts";
import { volumeOfReplica } from "./keys.ts";
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

/** Keys looked at, at most, by lookForUnknownVolumes: the look stays cheap on a big index. */
const SAMPLE = 1_000;

/** The volumes the index's records name that -volumes does not. */
export interface UnknownVolumes {
  /** Each, with how many of the keys looked at have a replica there. */
  volumes: { volume: string; keys: number }[];
  /** How many keys were looked at: the index's first (at most SAMPLE), in key order. */
  looked: number;
}

/**
 * The volumes that the records of `index`'s first keys name and `volumes`
 * does not: a master given other names for its volumes than its keys were
 * written with reads their replicas only while something answers at those
 * names. Null when there is none.
 */
export async function lookForUnknownVolumes(
  index: Index,
  volumes: string[],
): Promise<UnknownVolumes | null> {
  const known = new Set(volumes);
  const counts = new Map<string, number>();
  let looked = 0;
  for await (const [, e] of index.entries()) {
    for (const v of new Set(e.rec.rvolumes.map(volumeOfReplica))) {
      if (!known.has(v)) counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    if (++looked === SAMPLE) break;
  }
  if (counts.size === 0) return null;
  return { volumes: [...counts].map(([volume, keys]) => ({ volume, keys })), looked };
}
