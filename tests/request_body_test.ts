// Unit tests of lib/request_body.ts, on a real Deno.serve: a chunked body
// reads back exact, in chunks of at most 64 KiB, however its client cut
// it; any other body is the request's own; a body nobody read can still be
// cancelled.
import { createHash } from "node:crypto";
import { requestBody } from "../lib/request_body.ts";
import { assertEquals } from "./assert.ts";
import { concatBytes, randomBytes } from "./cluster.ts";

/** What the server saw of a body: its size, MD5, and whether no chunk was over 64 KiB. */
interface Seen {
  size: number;
  md5: string;
  within: boolean;
}

/** A server that answers each request with `answer`'s JSON; closed after `fn`. */
async function withServer(
  answer: (req: Request) => unknown,
  fn: (url: string) => Promise<void>,
) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => Response.json(await answer(req)),
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/`);
  } finally {
    await server.shutdown();
  }
}

async function seen(req: Request): Promise<Seen> {
  const hash = createHash("md5");
  let size = 0, largest = 0;
  for await (const chunk of requestBody(req)!) {
    hash.update(chunk);
    size += chunk.length;
    largest = Math.max(largest, chunk.length);
  }
  return { size, md5: hash.digest("hex"), within: largest <= 65536 };
}

/** PUTs `chunks` as a stream (sent chunked, one HTTP chunk each): what the server saw. */
async function putChunked(url: string, chunks: Uint8Array[]): Promise<Seen> {
  const body = ReadableStream.from(chunks);
  const res = await fetch(url, { method: "PUT", body });
  assertEquals(res.status, 200);
  return await res.json();
}

function md5(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

Deno.test("a chunked body reads back exact, in chunks of at most 64 KiB, whatever the client's chunks", async () => {
  await withServer(seen, async (url) => {
    for (const sizes of [[1, 12, 4096, 65524, 7], [1 << 20, 3, 1 << 20], [65536, 65537, 65535]]) {
      const chunks = sizes.map(randomBytes);
      const whole = concatBytes(chunks);
      assertEquals(await putChunked(url, chunks), {
        size: whole.length,
        md5: md5(whole),
        within: true,
      });
    }
  });
});

Deno.test("an empty chunked body ends at once, with no bytes", async () => {
  await withServer(seen, async (url) => {
    assertEquals(await putChunked(url, []), { size: 0, md5: md5(new Uint8Array()), within: true });
  });
});

Deno.test("a body with a Content-Length, or none, is the request's own", async () => {
  await withServer((req) => requestBody(req) === req.body, async (url) => {
    const sized = await fetch(url, { method: "PUT", body: randomBytes(100_000) });
    assertEquals(await sized.json(), true);
    const none = await fetch(url, { method: "GET" });
    assertEquals(await none.json(), true);
  });
});

Deno.test("a chunked body taken but never read can still be cancelled as the request's", async () => {
  await withServer(async (req) => {
    requestBody(req);
    const locked = req.body!.locked;
    await req.body!.cancel();
    return { locked, used: req.bodyUsed };
  }, async (url) => {
    const res = await fetch(url, { method: "PUT", body: ReadableStream.from([randomBytes(10)]) });
    assertEquals(await res.json(), { locked: false, used: true });
  });
});

Deno.test("cancelling a chunked body part-way cancels the request's, with its reason", async () => {
  // A Request of our own, so that its source can tell what became of it.
  let cancelled: unknown = "not cancelled";
  const source = new ReadableStream({
    type: "bytes",
    pull(c) {
      c.enqueue(randomBytes(1 << 20));
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  const req = new Request("http://127.0.0.1/k", {
    method: "PUT",
    body: source,
    headers: { "transfer-encoding": "chunked" },
  });
  const reader = requestBody(req)!.getReader();
  assertEquals((await reader.read()).value!.length, 65536);
  const reason = new Error("enough");
  await reader.cancel(reason);
  assertEquals(cancelled, reason);
});
