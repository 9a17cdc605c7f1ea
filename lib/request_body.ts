// A request's body as the store reads it. Deno's HTTP/1.1 server hands a
// chunked body's chunks out of its own buffer without waiting on the socket:
// while the client is ahead of the replicas (`cat big | curl -T -`), every
// read is ready at once, the event loop never waits, and so never polls the
// sockets. Every other request, volume answer and probe then waits:
// measured, GETs of other keys took over 5 s during a 1 GiB pipe PUT and the
// probes took every volume for down. A chunked body waits on a timer every
// POLL_EVERY ms of its reading (~2 ms; setImmediate does not wait, and does
// not help), which lets the loop poll them: no volume was taken for down
// then, and with a timer every 20 ms GETs took at most 56 ms (BENCHMARKS.md).
// By the request's framing, not the value's length: an S3 upload in
// aws-chunked has a known length and can still come chunked.

const POLL_EVERY = 50;

function pollSockets(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

/** Whether the request's body came with Transfer-Encoding: chunked. */
function chunked(headers: Headers): boolean {
  return (headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked");
}

/**
 * `req.body`, read through a stream that lets the event loop poll its
 * sockets now and then when it came chunked. The request's body is locked
 * only once read: a body never read can still be cancelled as `req.body`.
 */
export function requestBody(req: Request): ReadableStream<Uint8Array> | null {
  const body = req.body;
  if (!body || !chunked(req.headers)) return body;
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let polled = performance.now();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (performance.now() - polled > POLL_EVERY) {
        await pollSockets();
        polled = performance.now();
      }
      reader ??= body.getReader();
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader ? reader.cancel(reason) : body.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
