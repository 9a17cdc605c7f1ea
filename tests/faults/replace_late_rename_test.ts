// A REPLACE whose every rename went unanswered (503) keeps its switch
// recorded. Those renames may still land. A master that finished the switch
// meanwhile and found every rename refused, the temporaries still there,
// kept the old value and removed the temporaries: a late rename landing
// between the two put the new value under the old record's MD5. The switch
// now waits out the lease (as a dead master's does) before anyone finishes it.
import { Cluster, randomBytes, randomKey, type SpawnedMaster } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { key2path, md5, toHex } from "../../lib/keys.ts";
import { assertServes, replicas, VolumeProxy } from "./replace_faults.ts";

/**
 * MOVEs: held, never answered while `hold`; refused (403) otherwise until
 * `open`. A held MOVE is sent on when a DELETE of its temporary comes (it
 * lands just before), or on `land()`.
 */
class LateMoves extends VolumeProxy {
  hold = true;
  open = false;
  #held: Request[] = [];

  async land() {
    for (const req of this.#held.splice(0)) await (await this.forward(req)).body?.cancel();
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "DELETE" && new URL(req.url).pathname.includes("/replace.")) {
      await this.land();
    }
    if (req.method !== "MOVE" || this.open) return await this.forward(req);
    if (this.hold) {
      this.#held.push(req);
      await this.released;
      return new Response(null, { status: 503 });
    }
    return new Response("refused", { status: 403 });
  }
}

/** A GET of `key` that names an MD5 is sent to replicas holding those bytes, every one. */
async function assertNoFalseMd5(m: SpawnedMaster, key: string) {
  const res = await fetch(m.url + key, { redirect: "manual" });
  await res.body?.cancel();
  assertEquals(res.status, 302);
  const hash = res.headers.get("content-md5");
  if (hash === null) return;
  const path = key2path(new TextEncoder().encode(key));
  const sums = await Promise.all(
    res.headers.get("key-volumes")!.split(",").map(async (v) => {
      const r = await fetch(`http://${v}${path}`);
      return toHex(md5(new Uint8Array(await r.arrayBuffer())));
    }),
  );
  assertEquals(sums, sums.map(() => hash));
}

Deno.test("renames a REPLACE left unanswered, landing late, never put its value under the old MD5", async () => {
  const c = await Cluster.start();
  const proxies = c.volumes.map((v) => new LateMoves(v));
  const volumes = proxies.map((p) => p.volume);
  // Long enough that the GET below certainly comes within it.
  const lease = 5000;
  const flags = ["-volumes", volumes.join(","), "-lease", `${lease}ms`, "-voltimeout", "300ms"];
  const key = randomKey("/replace-late-rename");
  const before = randomBytes(3000);
  const after = randomBytes(5000);
  try {
    const m = await c.spawnMaster(flags);
    try {
      const put = await fetch(m.url + key, { method: "PUT", body: before });
      await put.body?.cancel();
      assertEquals(put.status, 201);
      const res = await fetch(m.url + key, { method: "REPLACE", body: after });
      await res.body?.cancel();
      assertEquals(res.status, 503);
      // The renames are refused now; the unanswered ones land late. A GET
      // meanwhile does not finish the switch (it names no MD5), and an
      // UNLINK, which a lingering claim lets through, would be undone by
      // the reader that finishes it.
      for (const p of proxies) p.hold = false;
      await assertNoFalseMd5(m, key);
      const unlink = await fetch(m.url + key, { method: "UNLINK" });
      assertEquals(
        [unlink.status, await unlink.text()],
        [503, "The key's last REPLACE is yet to be finished: retry once its volumes answer\n"],
      );
      for (const p of proxies) {
        await p.land();
        p.open = true;
      }
      await new Promise((r) => setTimeout(r, lease + 100)); // the switch's lease
      await assertServes(m.url, key, after);
      assertEquals(await replicas(volumes, key), [after, after, after]);
    } finally {
      await m.stop();
    }
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await c.stop();
  }
});
