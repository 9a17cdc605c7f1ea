// The rebalance tool run with a lower -replicas: each key keeps some of its
// replicas and the others' copies are deleted, nothing copied. When a kept
// replica has lost its file (a disk replaced, nginx does not fsync), the
// copies deleted were the value's last ones: the tool must see that first
// (as REBALANCE does, HEAD-checking the replicas) and copy the value back
// to the kept replica before it deletes any. It deleted them: the key was
// left recorded on a volume with no file of it, the acknowledged value lost.
import { Cluster, randomBytes, randomKey, runMain } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { key2path, key2volume } from "../../lib/keys.ts";
import { openIndex } from "../../lib/open.ts";

const enc = new TextEncoder();

Deno.test("rebalance to fewer replicas whose kept replica lost its file copies the value back before deleting the others", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "2"] });
  try {
    const key = randomKey("/kept");
    const value = randomBytes(10_000);
    const put = await fetch(c.url + key, { method: "PUT", body: value });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    await c.stopMaster();
    const path = key2path(enc.encode(key));
    // The replica that -replicas 1 keeps loses its file.
    const [kept] = key2volume(enc.encode(key), c.volumes, 1, 10);
    const gone = await fetch(`http://${kept}${path}`, { method: "DELETE" });
    await gone.body?.cancel();
    assertEquals(gone.status, 204);

    const flags = ["-replicas", "1", "-volumes", c.volumes.join(","), "-db", c.db];
    const moved = await runMain(["rebalance", ...flags]);
    assertEquals(moved.code, 0, moved.stdout + moved.stderr);

    const index = await openIndex(c.db);
    const e = await index.get(enc.encode(key));
    index.close();
    assertEquals(e?.rec.rvolumes, [kept]);
    const file = await fetch(`http://${kept}${path}`);
    assertEquals(file.status, 200);
    assertEquals(new Uint8Array(await file.arrayBuffer()), value);
    await c.startMaster(["-replicas", "1"]);
    const got = await fetch(c.url + key);
    assertEquals(got.status, 200);
    assertEquals(new Uint8Array(await got.arrayBuffer()), value);
  } finally {
    await c.stop();
  }
});
