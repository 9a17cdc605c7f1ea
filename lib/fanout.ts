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

export interface Fanout {
  branches: ReadableStream<Uint8Array>[];
  /** Resolves when the whole source has been handed to every branch. */
  done: Promise<FanoutResult>;
  /** Stops the copy and errors every branch. */
  abort(reason: unknown): void;
}

export function fanout(
  source: ReadableStream<Uint8Array>,
  count: number,
  options: { md5: boolean },
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
        const { value, done } = await reader.read();
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
  return { branches: pipes.map((p) => p.readable), done, abort };
}
