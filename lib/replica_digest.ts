// What a key's replicas hold, read in full: their sizes and MD5s. verify
// reads a replica so when its MD5 is asked for, or when its volume's HEAD
// answer does not say its size; verify -repair and a move (REBALANCE, the
// rebalance tool: lib/store.ts) compare the replicas of a key whose MD5 the
// index does not know (a rebuilt one) before copying one of them, since
// nothing else tells a replica of the recorded size and other bytes from
// the value.
import { md5Stream } from "./md5_stream.ts";
import { describe, remoteGet, volumeUrl } from "./volumes.ts";

/** A replica as read in full. */
export interface Digest {
  bytes: number;
  /** Lowercase hex. */
  md5: string;
}

/**
 * Reads `url` in full, counting and hashing its bytes; throws when the read
 * fails. `length`: what the volume said the size is, when it did (large
 * replicas are then hashed on the MD5 threads at once, lib/md5_stream.ts).
 * `signal`: the read is given up at its abort.
 */
export async function readDigest(
  url: string,
  opts: { stall: number; length?: number | null; signal?: AbortSignal },
): Promise<Digest> {
  const h = md5Stream(opts.length ?? null);
  let bytes = 0;
  try {
    const signal = opts.signal ?? new AbortController().signal;
    const read = await remoteGet(url, { signal, stall: opts.stall });
    for await (const chunk of read.body!) {
      bytes += chunk.byteLength;
      await h.update(chunk);
    }
    return { bytes, md5: await h.digest() };
  } catch (err) {
    h.abort();
    throw err;
  }
}

/** The replicas of one key, read and grouped by what they hold. */
export interface Compared {
  /** The volumes of the replicas of the recorded size, by their MD5. */
  groups: Map<string, string[]>;
  /** The replicas not among them, with why: their read failed (`failed`), or another size. */
  passed: { volume: string; why: string; failed: boolean }[];
}

/**
 * Reads the replicas of `path` on `volumes` in full (at once) and groups
 * those of `size` bytes by MD5. `signal`: the reads are given up at its
 * abort (each then counts as failed).
 */
export async function compareReplicas(
  path: string,
  volumes: string[],
  opts: { stall: number; size: number; signal?: AbortSignal },
): Promise<Compared> {
  const read = await Promise.all(
    volumes.map((v) =>
      readDigest(volumeUrl(v, path), {
        stall: opts.stall,
        length: opts.size >= 0 ? opts.size : null,
        signal: opts.signal,
      }).catch((err) => `read failed: ${describe(err)}`)
    ),
  );
  const out: Compared = { groups: new Map(), passed: [] };
  const digests: [string, string][] = [];
  for (const [i, d] of read.entries()) {
    const v = volumes[i];
    if (typeof d === "string") out.passed.push({ volume: v, why: d, failed: true });
    else if (opts.size >= 0 && d.bytes !== opts.size) {
      const why = `size ${d.bytes} bytes read, recorded ${opts.size}`;
      out.passed.push({ volume: v, why, failed: false });
    } else digests.push([v, d.md5]);
  }
  out.groups = groupsOf(digests);
  return out;
}

/** "MD5 <a> on v1, v2; MD5 <b> on v3": the groups of replicas that differ. */
export function describeGroups(groups: Map<string, string[]>): string {
  return [...groups].map(([md5, vs]) => `MD5 ${md5} on ${vs.join(", ")}`).join("; ");
}

/**
 * What follows "its replicas differ" when a key's replicas hold other bytes
 * (`groups`, more than one) and none is copied: with no MD5 recorded,
 * nothing tells which one is the value.
 */
export function differMessage(groups: Map<string, string[]>): string {
  return `(${describeGroups(groups)}) and the index records no MD5 to tell which holds the ` +
    `value: none is copied; REPLACE the key with its value`;
}

/**
 * Replicas ([volume, MD5]) grouped by MD5, the groups in the order of their
 * MD5s (a report reads the same every run).
 */
export function groupsOf(read: [string, string][]): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const [v, md5] of [...read].sort(([, a], [, b]) => a < b ? -1 : a > b ? 1 : 0)) {
    groups.set(md5, [...groups.get(md5) ?? [], v]);
  }
  return groups;
}
