// RELINK through volumes whose HEAD answers carry no Content-Length (a
// proxy in front of nginx that sends them chunked). Such an answer does not
// say the replica's size, which RELINK checks: it answered 503, as if the
// volume had not answered, and the key could not be relinked at all.
import { Cluster, randomBytes, randomKey } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { UnsizedHead } from "./unsized_head.ts";
import { key2path } from "../../lib/keys.ts";

const enc = new TextEncoder();

const CUT_OFF = "The master is shutting down and cut this request off: retry (on another master)\n";

/**
 * A cluster of `volumes` volumes, each behind an UnsizedHead, holding an
 * unlinked key of 10,000 bytes on every one; `check` runs with it.
 */
async function withUnlinkedKey(
  opts: { volumes: number; flags?: string[] },
  check: (
    run: {
      c: Cluster;
      proxies: UnsizedHead[];
      /** The key's replicas, in its record's order. */
      replicas: string[];
      key: string;
      value: Uint8Array<ArrayBuffer>;
      path: string;
    },
  ) => Promise<void>,
) {
  const n = String(opts.volumes);
  const c = await Cluster.start({
    volumes: opts.volumes,
    flags: ["-replicas", n, "-subvolumes", "1", ...opts.flags ?? []],
  });
  const proxies = c.volumes.map((v) => new UnsizedHead(v));
  try {
    await c.stopMaster();
    await c.startMaster([], proxies.map((p) => p.volume));
    const key = randomKey("/unsized");
    const value = randomBytes(10_000);
    const put = await fetch(c.url + key, { method: "PUT", body: value });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    const get = await fetch(c.url + key, { redirect: "manual" });
    await get.body?.cancel();
    const replicas = get.headers.get("key-volumes")!.split(",");
    const unlink = await fetch(c.url + key, { method: "UNLINK" });
    await unlink.body?.cancel();
    assertEquals(unlink.status, 204);
    await check({ c, proxies, replicas, key, value, path: key2path(enc.encode(key)) });
  } finally {
    for (const p of proxies) await p.stop();
    await c.stop();
  }
}

async function answer(url: string, init: RequestInit = {}): Promise<[number, string]> {
  const res = await fetch(url, init);
  return [res.status, await res.text()];
}

Deno.test("RELINK reads in full a replica whose HEAD gives no size, and relinks the key it holds whole", async () => {
  await withUnlinkedKey({ volumes: 2 }, async ({ c, key, value }) => {
    assertEquals(await answer(c.url + key, { method: "RELINK" }), [204, ""]);
    const got = await fetch(c.url + key);
    assertEquals(got.status, 200);
    assertEquals(new Uint8Array(await got.arrayBuffer()), value);
  });
});

Deno.test("RELINK answers 404 when the replicas whose HEAD gives no size are cut short, read in full, and the key stays unlinked", async () => {
  await withUnlinkedKey({ volumes: 2 }, async ({ c, replicas, key, value, path }) => {
    for (const v of c.volumes) {
      const cut = await fetch(`http://${v}${path}`, {
        method: "PUT",
        body: value.subarray(0, 5000),
      });
      await cut.body?.cancel();
      // nginx: 204 for a file it overwrote.
      assertEquals(cut.status, 204);
    }
    const held = replicas.map((v) => `${v} holds 5000 bytes`).join(", ");
    assertEquals(await answer(c.url + key, { method: "RELINK" }), [
      404,
      `No replica of the unlinked key remains whole (${held}, recorded 10000)\n`,
    ]);
    const list = await fetch(`${c.url}${key}?unlinked`).then((r) => r.json());
    assertEquals(list.keys, [key]);
  });
});

Deno.test("RELINK answers 404 when the replica whose HEAD gives no size is gone by the time it is read, and the key stays unlinked", async () => {
  await withUnlinkedKey({ volumes: 1 }, async ({ c, proxies: [proxy], key, path }) => {
    proxy.afterHead = async (headed) => {
      if (headed !== path) return;
      const gone = await fetch(`http://${c.volumes[0]}${path}`, { method: "DELETE" });
      await gone.body?.cancel();
      assertEquals(gone.status, 204);
    };
    assertEquals(await answer(c.url + key, { method: "RELINK" }), [
      404,
      "No replica of the unlinked key remains\n",
    ]);
    const list = await fetch(`${c.url}${key}?unlinked`).then((r) => r.json());
    assertEquals(list.keys, [key]);
  });
});

Deno.test("RELINK answers 503 when the read of a replica whose HEAD gives no size stalls for -voltimeout, and the key stays unlinked", async () => {
  const flags = ["-voltimeout", "300ms"];
  await withUnlinkedKey({ volumes: 1, flags }, async ({ c, proxies: [hung], key }) => {
    hung.midBody = true;
    hung.hangOn("GET", key);
    assertEquals(await answer(c.url + key, { method: "RELINK" }), [
      503,
      `No replica of the unlinked key was found whole, and ${hung.volume} did not say ` +
      "whether it holds one: RELINK again once it answers\n",
    ]);
    hung.holds = null;
    assertEquals(await answer(c.url + key, { method: "RELINK" }), [204, ""]);
  });
});

Deno.test("SIGTERM: a RELINK reading a replica whose HEAD gives no size at the -drain deadline answers the cut's 503, the key stays unlinked, and the master exits 0", async () => {
  const flags = ["-voltimeout", "30s", "-drain", "1s"];
  await withUnlinkedKey({ volumes: 1, flags }, async ({ c, proxies: [hung], key }) => {
    hung.midBody = true;
    hung.hangOn("GET", key);
    const relink = fetch(c.url + key, { method: "RELINK" });
    // An answer before the hang (a failure) ends the wait too, to be asserted on.
    await Promise.race([hung.arrived, relink]);
    const master = c.masterProcess!;
    master.kill("SIGTERM");
    const res = await relink;
    assertEquals([res.status, await res.text(), (await master.status).code], [503, CUT_OFF, 0]);
    hung.holds = null;
    await c.startMaster([], [hung.volume]);
    const list = await fetch(`${c.url}${key}?unlinked`).then((r) => r.json());
    assertEquals(list.keys, [key]);
  });
});
