// Streams one body to several replicas at once, in lock step: a chunk is read
// from the client only when every replica is ready for more, so one slow
// replica slows the upload instead of making the master buffer the
// difference (as ReadableStream.tee() would, without bound). Memory stays at
// a few chunks per replica whatever the value's size.
import { createHash } from "node:crypto";

export interface FanoutResult {
  bytes: number;
  /** Lowercase hex MD5 of everything streamed, "" when not asked for. */
  md5: string;
}

/**
 * The source (a client's request body) failed: it ended before its end,
 * sent nothing for the stall time, or was empty where a value must not be.
 * Not the volumes' fault: `status` is what the client is answered (400,
 * 408, 411).
 */
export class SourceError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** The writer's claim on the key ran out (lib/claim.ts `holds`): stop writing. */
export class LostClaim extends Error {
  constructor() {
    super("Lost the claim on the key (its lease ran out)");
  }
}

export interface Fanout {
  branches: ReadableStream<Uint8Array>[];
  /**
   * Whether branch i has taken every chunk handed to it (it waits on the
   * source or on other branches, not the other way round), or the copy
   * has failed already.
   */
  waiting(i: number): boolean;
  /** Resolves when the whole source has been handed to every branch. */
  done: Promise<FanoutResult>;
  /** Stops the copy and errors every branch. */
  abort(reason: unknown): void;
}

export function fanout(
  source: ReadableStream<Uint8Array>,
  count: number,
  options: { md5: boolean; stall?: number; fence?: () => boolean; refuseEmpty?: boolean },
): Fanout {
  const pipes = Array.from({ length: count }, () =>
    new TransformStream<Uint8Array, Uint8Array>(
      undefined,
      { highWaterMark: 1 },
      { highWaterMark: 2 },
    ));
  const writers = pipes.map((p) => p.writable.getWriter());
  const reader = source.getReader();
  const hash = options.md5 ? createHash("md5") : null;
  let failed: unknown = null;

  const abort = (reason: unknown) => {
    if (failed !== null) return;
    failed = reason ?? new Error("Aborted");
    reader.cancel(failed).catch(() => {});
    for (const w of writers) w.abort(failed).catch(() => {});
  };

  const done = (async () => {
    let bytes = 0;
    try {
      while (true) {
        await Promise.all(writers.map((w) => w.ready));
        if (failed !== null) throw failed;
        const { value, done } = await readSource(reader, options.stall);
        // Nothing more goes out, not even the end, without the right to.
        if (options.fence && !options.fence()) throw new LostClaim();
        // An empty value fails before the end goes out: nginx would
        // otherwise put an empty file in place of what the path held.
        if (done && bytes === 0 && options.refuseEmpty) {
          throw new SourceError(411, "A value must not be empty");
        }
        if (done) break;
        bytes += value.byteLength;
        hash?.update(value);
        // Not awaited: `ready` above is the backpressure.
        for (const w of writers) w.write(value).catch(() => {});
      }
      await Promise.all(writers.map((w) => w.close()));
    } catch (err) {
      abort(err);
      throw failed;
    }
    return { bytes, md5: hash ? hash.digest("hex") : "" };
  })();
  done.catch(() => {});
  // Once the copy has failed, no branch is holding anything up.
  const waiting = (i: number) => failed !== null || (writers[i].desiredSize ?? 0) > 0;
  return { branches: pipes.map((p) => p.readable), waiting, done, abort };
}

/** One read of the source; its failure or its silence past `stall` ms is a SourceError. */
export async function readSource(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  stall: number | undefined,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const stalled = new Promise<never>((_, reject) => {
      if (stall === undefined) return;
      timer = setTimeout(
        () => reject(new SourceError(408, `No byte of the request body in ${stall}ms`)),
        stall,
      );
    });
    return await Promise.race([reader.read(), stalled]);
  } catch (err) {
    if (err instanceof SourceError) throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new SourceError(400, `The request body ended early: ${why}`);
  } finally {
    clearTimeout(timer);
  }
}
