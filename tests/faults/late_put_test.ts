// A PUT that a volume never answered in time may still be carried out by it
// later (a volume or a proxy that held it). Landing after the key's next
// write, it would put the failed value in place of the acknowledged one: so
// the key waits out its lease (409) before it can be written again.
import { Cluster, randomBytes, randomKey } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { key2path } from "../../lib/keys.ts";
import { replicas, VolumeProxy } from "./replace_faults.ts";

/** Holds the first PUT of `path` (its body read whole) until release(), then carries it out. */
class LatePut extends VolumeProxy {
  #held = false;
  path = "";
  readonly landed = Promise.withResolvers<void>();

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== "PUT" || this.#held || !this.path || !req.url.endsWith(this.path)) {
      return await this.forward(req);
    }
    this.#held = true;
    const body = new Uint8Array(await req.arrayBuffer());
    await this.released;
    const late = new Request(req.url, { method: "PUT", headers: req.headers, body });
    const res = await this.forward(late);
    await res.body?.cancel();
    this.landed.resolve();
    return new Response(null, { status: res.status });
  }
}

const WAITING = "A volume has yet to answer for this key's last write: " +
  "retry once -lease has passed\n";

for (const size of [1000, 600_000]) {
  Deno.test(`a ${size}-byte PUT a volume carries out after the master gave up replaces no later value`, async () => {
    const c = await Cluster.start();
    const proxy = new LatePut(c.volumes[0]);
    const volumes = [proxy.volume, c.volumes[1], c.volumes[2]];
    const flags = ["-volumes", volumes.join(","), "-voltimeout", "200ms", "-lease", "3s"];
    const m = await c.spawnMaster(flags);
    try {
      const key = randomKey("/late");
      proxy.path = key2path(new TextEncoder().encode(key));
      const res = await fetch(m.url + key, { method: "PUT", body: randomBytes(size) });
      const failedAt = performance.now();
      const why = await res.text();
      assertEquals(res.status, 500, why);
      const value = randomBytes(size + 1000);
      const again = await fetch(m.url + key, { method: "PUT", body: value });
      const said = await again.text();
      if (again.status !== 201) {
        assertEquals([again.status, said], [409, WAITING]);
        proxy.release();
        await proxy.landed.promise;
        // The lease over, the key takes writes again.
        await new Promise((r) => setTimeout(r, Math.max(0, failedAt + 3100 - performance.now())));
        const last = await fetch(m.url + key, { method: "PUT", body: value });
        assertEquals([last.status, await last.text()], [201, ""]);
      } else {
        // Acknowledged: it must stay exact, whatever lands late.
        proxy.release();
        await proxy.landed.promise;
      }
      for (const f of await replicas(volumes, key)) {
        assertEquals(f?.length, value.length, "a replica of the acknowledged value");
        assertEquals(f, value);
      }
    } finally {
      proxy.release();
      await m.stop();
      await proxy.stop();
      await c.stop();
    }
  });
}
