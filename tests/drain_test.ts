// A master draining on SIGTERM (lib/server.ts Drain): new requests are refused.
import { createHandler, Drain } from "../lib/server.ts";
import type { Store } from "../lib/store.ts";
import { metrics } from "../lib/metrics.ts";
import { assertEquals } from "./assert.ts";

Deno.test("a draining master answers 503 in text/plain, as its other errors, and closes", async () => {
  const drain = new Drain();
  await drain.drain(0);
  // Refused before the store is looked at.
  const handler = createHandler({} as Store, { verbose: false }, drain);
  const res = await handler(new Request("http://localhost/k", { method: "PUT", body: "x" }));
  assertEquals(res.status, 503);
  assertEquals(res.headers.get("content-type"), "text/plain; charset=utf-8");
  assertEquals(res.headers.get("connection"), "close");
  assertEquals(await res.text(), "Shutting down\n");
});

Deno.test("a draining master's 503 is counted in mkv_requests_total, its body in the bytes sent", async () => {
  const drain = new Drain();
  await drain.drain(0);
  const handler = createHandler({} as Store, { verbose: false }, drain);
  const before = metrics.requests.get("DELETE")?.get(503) ?? 0;
  const bytesBefore = metrics.bytesOut;
  const res = await handler(new Request("http://localhost/k", { method: "DELETE" }));
  assertEquals(res.status, 503);
  await res.body?.cancel();
  assertEquals((metrics.requests.get("DELETE")?.get(503) ?? 0) - before, 1);
  assertEquals(metrics.bytesOut - bytesBefore, "Shutting down\n".length);
});

Deno.test("-v: a draining master's 503 is logged as one request line", async () => {
  const drain = new Drain();
  await drain.drain(0);
  const handler = createHandler({} as Store, { verbose: true }, drain);
  const lines: string[] = [];
  const log = console.log;
  console.log = (line: string) => lines.push(line);
  try {
    const res = await handler(new Request("http://localhost/a%20b", { method: "PUT", body: "x" }));
    await res.body?.cancel();
  } finally {
    console.log = log;
  }
  assertEquals(lines.map((l) => l.replace(/ [0-9.]+ms /, " _ms ")), ["PUT /a%20b 503 _ms 14B"]);
});
