// A master draining on SIGTERM (lib/server.ts Drain): new requests are refused.
import { createHandler, Drain } from "../lib/server.ts";
import type { Store } from "../lib/store.ts";
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
