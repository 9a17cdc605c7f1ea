// Finishing a dead master's REPLACE through volumes whose HEAD answers
// carry no Content-Length (a proxy in front of nginx that sends them
// chunked). A replica renamed before the master died is told from the old
// value by its size: a HEAD without one was taken for a volume that cannot
// say, so the switch went live on the one replica renamed then, and the
// new value's files on the others were removed as unswitched.
import { Cluster, randomBytes, randomKey } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { replicas } from "./replace_faults.ts";
import { UnsizedHead } from "./unsized_head.ts";
import { md5, toHex } from "../../lib/keys.ts";

/** An UnsizedHead that says when the volume has answered a MOVE (the rename landed). */
class MoveSeen extends UnsizedHead {
  readonly #moved = Promise.withResolvers<void>();

  get moved(): Promise<void> {
    return this.#moved.promise;
  }

  protected override async forward(req: Request): Promise<Response> {
    const res = await super.forward(req);
    if (req.method === "MOVE") this.#moved.resolve();
    return res;
  }
}

Deno.test("a dead master's REPLACE, renamed on replicas whose HEAD gives no size, is finished by the next GET on every replica", async () => {
  const c = await Cluster.start();
  const proxies = c.volumes.map((v) => new MoveSeen(v));
  const volumes = proxies.map((p) => p.volume);
  const flags = ["-volumes", volumes.join(","), "-lease", "1s", "-voltimeout", "5s"];
  try {
    const key = randomKey("/replace-unsized");
    const before = randomBytes(3000);
    const after = randomBytes(5000);
    const m = await c.spawnMaster(flags);
    try {
      const put = await fetch(m.url + key, { method: "PUT", body: before });
      await put.body?.cancel();
      assertEquals(put.status, 201);
      // The third volume never gets its rename: the master dies waiting.
      proxies[2].holds = (req) => req.method === "MOVE";
      fetch(m.url + key, { method: "REPLACE", body: after }).then((r) => r.body?.cancel())
        .catch(() => {}); // the master is killed before it answers
      await Promise.all([proxies[0].moved, proxies[1].moved, proxies[2].arrived]);
    } finally {
      await m.stop("SIGKILL");
    }
    proxies[2].holds = null;
    const sizes = (await replicas(volumes, key)).map((f) => f?.length).sort();
    assertEquals(sizes, [before.length, after.length, after.length].sort());
    await new Promise((r) => setTimeout(r, 1100)); // the dead master's lease
    const next = await c.spawnMaster(flags);
    try {
      const got = await fetch(next.url + key, { redirect: "manual" });
      await got.body?.cancel();
      assertEquals([got.status, got.headers.get("content-md5")], [302, toHex(md5(after))]);
      const held = (await replicas(volumes, key)).map((f) => f && toHex(md5(f)));
      assertEquals(held, [after, after, after].map((f) => toHex(md5(f))));
    } finally {
      await next.stop();
    }
  } finally {
    for (const p of proxies) await p.stop();
    await c.stop();
  }
});
