// A volume whose host takes no connections: SYNs dropped (a host gone from
// the network), or, as here, an accept queue that is full. The kernel keeps
// retrying a connect for ~2 minutes; a request of the master must not wait
// for that. `deno task test:faults`.
import { Cluster, randomBytes, randomKey, status } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";

/**
 * Listens on `port` and fills the accept queue with connections nobody
 * accepts: past it, a new connection to the port never opens.
 */
async function deadPort(port: number): Promise<{ close(): void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const conns: Deno.Conn[] = [];
  while (conns.length < 10_000) {
    try {
      const signal = AbortSignal.timeout(200);
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port, signal }));
    } catch {
      break; // the queue is full: this one did not open
    }
  }
  return {
    close() {
      for (const c of conns) c.close();
      listener.close();
    },
  };
}

Deno.test("a volume that takes no connections: GETs and PUTs, small and large, answer in bounded time", async () => {
  // -voltimeout 200ms: HEADs within 200 ms, value transfers stall at 2 s.
  const c = await Cluster.start({ flags: ["-voltimeout", "200ms"] });
  let dead: { close(): void } | null = null;
  try {
    const keys: string[] = [];
    for (let i = 0; i < 6; i++) {
      const k = randomKey("/dead");
      assertEquals(await status(c.url + k, { method: "PUT", body: `value ${i}` }), 201);
      keys.push(k);
    }
    await c.stopVolume(0);
    dead = await deadPort(c.volumePorts[0]);
    for (const k of keys) {
      const started = performance.now();
      const res = await fetch(c.url + k, { redirect: "manual" });
      await res.body?.cancel();
      assertEquals(res.status, 302, k);
      assert(!res.headers.get("location")!.includes(c.volumes[0]), "not to the dead volume");
      assert(
        performance.now() - started < 2000,
        `GET answered in ${performance.now() - started}ms`,
      );
    }
    for (const body of [new TextEncoder().encode("small"), randomBytes(2 << 20)]) {
      const k = randomKey("/dead-put");
      const started = performance.now();
      const res = await fetch(c.url + k, { method: "PUT", body });
      const text = await res.text();
      const ms = performance.now() - started;
      assertEquals(res.status, 500, text);
      assert(text.includes(c.volumes[0]) && text.includes("timed out"), text);
      assert(ms < 5000, `a ${body.length} byte PUT gave up in ${ms}ms`);
      assertEquals(await status(c.url + k), 404, "no live key");
    }
  } finally {
    dead?.close();
    await c.stop();
  }
});
