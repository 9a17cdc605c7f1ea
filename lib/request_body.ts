// A request's body as the store reads it. Two ways around Deno 2.9.6's
// HTTP/1.1 server, for a body sent chunked by a client ahead of the
// replicas (`cat big | curl -T -`; BENCHMARKS.md, sessions 8, 21 and 22):
//
// - Each read of the body first reads up to the read's size from the socket
//   into the connection's buffer, then hands over at most one chunk of the
//   chunked encoding and moves the rest of the buffer down. Reads of 64 KiB
//   (a ReadableStream's own) append more than each chunk the client sent
//   (curl sends what it read from the pipe: 65,524 bytes, 4,096, 12...), so
//   the buffer grows for the whole body, every read moves all of it (256 MiB
//   took 5-14 s, 1 GiB 68-172 s, the master's memory +288 MiB), and a client
//   that then goes away leaves the connection moving the rest out chunk by
//   chunk in one go, the event loop held for seconds. Reads of PIECE bytes
//   append no more than they take but at a chunk's end: the buffer stays
//   small (256 MiB in 1.3-1.6 s, 1 GiB in 6.3 s, +34 MiB). They are joined
//   into chunks of up to CHUNK bytes for the replicas.
// - A read is ready at once while the buffer holds bytes, so the event loop
//   never waits and never polls the sockets: other requests, volume answers
//   and probes wait (GETs of other keys over 5 s, every volume taken for
//   down). A timer every POLL_EVERY ms of the reading (~2 ms; setImmediate
//   does not wait, and does not help) lets the loop poll them.
//
// By the request's framing, not the value's length: an S3 upload in
// aws-chunked has a known length and can still come chunked.

const POLL_EVERY = 50;
const PIECE = 4 * 1024;
const CHUNK = 64 * 1024;

function pollSockets(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

/** Whether the request's body came with Transfer-Encoding: chunked. */
function chunked(headers: Headers): boolean {
  return (headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked");
}

/**
 * `req.body`, read as above when it came chunked. The request's body is
 * locked only once read: a body never read can still be cancelled as
 * `req.body`.
 */
export function requestBody(req: Request): ReadableStream<Uint8Array> | null {
  const body = req.body;
  if (!body || !chunked(req.headers)) return body;
  let reader: Reader | null = null;
  let polled = performance.now();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (performance.now() - polled > POLL_EVERY) {
        await pollSockets();
        polled = performance.now();
      }
      reader ??= readerOf(body);
      const got = reader instanceof ReadableStreamBYOBReader
        ? await readChunk(reader)
        : await readPlain(reader);
      if (got === null) return;
      if (got.bytes.byteLength > 0) controller.enqueue(got.bytes);
      if (got.done) controller.close();
    },
    cancel(reason) {
      return reader ? reader.cancel(reason) : body.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

type Reader = ReadableStreamBYOBReader | ReadableStreamDefaultReader<Uint8Array>;

/** What a read gave: bytes (none only at the end), and whether the body ended. */
interface Got {
  bytes: Uint8Array;
  done: boolean;
}

/** A reader of pieces; Deno makes an empty body a stream that has none. */
function readerOf(body: ReadableStream<Uint8Array>): Reader {
  try {
    return body.getReader({ mode: "byob" });
  } catch {
    return body.getReader();
  }
}

/** The next chunk as it comes, or the end. */
async function readPlain(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Got> {
  while (true) {
    const { value, done } = await reader.read();
    if (done) return { bytes: new Uint8Array(0), done: true };
    if (value.byteLength > 0) return { bytes: value, done: false };
  }
}

/**
 * Up to CHUNK bytes in reads of PIECE; fewer once a read comes short (the
 * client's bytes ran out for now, or its chunk did) or a read waited (what
 * came is not held back from the replicas), and at the body's end; null
 * once cancelled.
 */
async function readChunk(
  reader: ReadableStreamBYOBReader,
): Promise<Got | null> {
  let buf = new ArrayBuffer(CHUNK), filled = 0;
  const started = performance.now();
  while (filled < CHUNK) {
    const want = Math.min(PIECE, CHUNK - filled);
    const { value, done } = await reader.read(new Uint8Array(buf, filled, want));
    // Cancelled meanwhile: the buffer is gone, and so is whoever wanted it.
    if (!value) return null;
    buf = value.buffer as ArrayBuffer;
    if (done) return { bytes: new Uint8Array(buf, 0, filled), done: true };
    filled += value.byteLength;
    // Never empty but at the end: a pull that enqueues nothing is not called again.
    if (filled === 0) continue;
    if (value.byteLength < want || performance.now() - started > POLL_EVERY) break;
  }
  return { bytes: new Uint8Array(buf, 0, filled), done: false };
}
