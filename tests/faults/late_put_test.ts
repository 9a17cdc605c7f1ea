// A PUT that a volume never answered in time may still be carried out by it
// later (a volume or a proxy that held it). Landing after the key's next
// write, it would put the failed value in place of the acknowledged one: so
// the key waits out its lease (409) before it can be written again.
import { Cluster, randomBytes, randomKey, runMain } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { key2path } from "../../lib/keys.ts";
import { replicas, VolumeProxy, where } from "./replace_faults.ts";

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
  "retry once -lease has passed (in N s)\n";

/** The answer's reason with its seconds left as N (they run down as the test goes). */
function counted(text: string): string {
  return text.replace(/ \(in [1-3] s\)\n$/, " (in N s)\n");
}

/** Releases the PUT `proxy` holds, and waits until it has landed and the lease (3 s from `failedAt`) is over. */
async function landedAndLeaseOver(proxy: LatePut, failedAt: number): Promise<void> {
  proxy.release();
  await proxy.landed.promise;
  await new Promise((r) => setTimeout(r, Math.max(0, failedAt + 3100 - performance.now())));
}

/**
 * A cluster whose volume 0 sits behind a LatePut, and a master on it
 * (-voltimeout 200ms, -lease 3s, in `flags`); `stop()` stops them all.
 */
async function lateCluster() {
  const c = await Cluster.start();
  const proxy = new LatePut(c.volumes[0]);
  const volumes = [proxy.volume, c.volumes[1], c.volumes[2]];
  const flags = ["-volumes", volumes.join(","), "-voltimeout", "200ms", "-lease", "3s"];
  const m = await c.spawnMaster(flags);
  return {
    c,
    proxy,
    volumes,
    flags,
    m,
    async stop() {
      proxy.release();
      await m.stop();
      await proxy.stop();
      await c.stop();
    },
  };
}

/**
 * A REPLACE of `key` waits (409) while the PUT `proxy` holds may land; once
 * it has landed and the lease (3 s from `failedAt`) is over, one takes, and
 * every replica holds exactly its value.
 */
async function assertWaitsOutTheLease(
  master: string,
  key: string,
  opts: { volumes: string[]; proxy: LatePut; failedAt: number },
) {
  const value = randomBytes(3000);
  const early = await fetch(master + key, { method: "REPLACE", body: value });
  assertEquals([early.status, counted(await early.text())], [409, WAITING]);
  await landedAndLeaseOver(opts.proxy, opts.failedAt);
  const late = await fetch(master + key, { method: "REPLACE", body: value });
  assertEquals([late.status, await late.text()], [201, ""]);
  for (const f of await replicas(opts.volumes, key)) assertEquals(f, value);
}

for (const size of [1000, 600_000]) {
  Deno.test(`a ${size}-byte PUT a volume carries out after the master gave up replaces no later value`, async () => {
    const { proxy, volumes, m, stop } = await lateCluster();
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
        assertEquals([again.status, counted(said)], [409, WAITING]);
        // The lease over, the key takes writes again.
        await landedAndLeaseOver(proxy, failedAt);
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
      await stop();
    }
  });
}

Deno.test("a REBALANCE copy a volume carries out after the master gave up replaces no later value", async () => {
  const c = await Cluster.start({ volumes: 4 });
  const proxy = new LatePut(c.volumes[3]);
  const before = c.volumes.slice(0, 3);
  const after = [...before, proxy.volume];
  const old = await c.spawnMaster(["-volumes", before.join(",")]);
  const m = await c.spawnMaster([
    "-volumes",
    after.join(","),
    "-voltimeout",
    "200ms",
    "-lease",
    "3s",
  ]);
  try {
    // A key the 4th volume should hold once rebalanced.
    let key = randomKey("/late-copy");
    while (!where(after, key).some((r) => r.startsWith(`${proxy.volume}/`))) {
      key = randomKey("/late-copy");
    }
    proxy.path = key2path(new TextEncoder().encode(key));
    const put = await fetch(old.url + key, { method: "PUT", body: randomBytes(1000) });
    assertEquals([put.status, await put.text()], [201, ""]);
    // The copy to the 4th volume goes unanswered; tried again from another
    // replica, it is answered: moved, but the first copy may land yet.
    const moved = await fetch(m.url + key, { method: "REBALANCE" });
    const failedAt = performance.now();
    assertEquals([moved.status, await moved.text()], [204, ""]);
    await assertWaitsOutTheLease(m.url, key, { volumes: after, proxy, failedAt });
  } finally {
    proxy.release();
    await old.stop();
    await m.stop();
    await proxy.stop();
    await c.stop();
  }
});

Deno.test("a verify -repair copy a volume carries out after verify gave up replaces no later value", async () => {
  const { c, proxy, volumes, flags, m, stop } = await lateCluster();
  try {
    const key = randomKey("/late-repair");
    const path = key2path(new TextEncoder().encode(key));
    const put = await fetch(m.url + key, { method: "PUT", body: randomBytes(1000) });
    assertEquals([put.status, await put.text()], [201, ""]);
    // The replica behind the proxy goes missing; verify -repair copies it
    // back, and that copy goes unanswered.
    const replica = where(volumes, key).find((r) => r.startsWith(`${proxy.volume}/`))!;
    const gone = await fetch(`http://${replica.replace(proxy.volume, c.volumes[0])}${path}`, {
      method: "DELETE",
    });
    assertEquals(gone.status, 204);
    proxy.path = path;
    const repair = await runMain(["verify", "-repair", "-db", c.db, ...flags]);
    const failedAt = performance.now();
    assertEquals(repair.code, 1, repair.stdout + repair.stderr);
    assert(repair.stdout.includes(`missing replica: "${key}" on ${replica} (cannot repair: `));
    await assertWaitsOutTheLease(m.url, key, { volumes: volumes, proxy, failedAt });
  } finally {
    await stop();
  }
});
