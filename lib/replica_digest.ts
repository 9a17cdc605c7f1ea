// What a replica holds, read in full: its size and MD5. verify reads a
// replica so when its MD5 is asked for, or when its volume's HEAD answer
// does not say its size.
import { md5Stream } from "./md5_stream.ts";
import { remoteGet } from "./volumes.ts";

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
 */
export async function readDigest(
  url: string,
  opts: { stall: number; length?: number | null },
): Promise<Digest> {
  const h = md5Stream(opts.length ?? null);
  let bytes = 0;
  try {
    const read = await remoteGet(url, { signal: new AbortController().signal, stall: opts.stall });
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
