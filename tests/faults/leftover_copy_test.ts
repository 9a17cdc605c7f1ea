// A copy of a key's file left on a volume the key no longer hashes to
// (volumes added, the key not rebalanced), recorded nowhere, came back after
// a DELETE of the key and a rebuild (which records what the volumes hold):
// a REBALANCE whose removal of the old copy failed (its volume down) left it
// so, answering 204; a PUT over an unlinked key left the unlinked value's
// copy so, answering 201. `deno task test:faults`.
import { Cluster, randomKey, runMain, status } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { key2volume } from "../../lib/keys.ts";

const enc = new TextEncoder();

/**
 * A cluster of `volumes` volumes whose master (-replicas `replicas`) wrote
 * `key` (its value "old value") by the first `replicas` volumes only, and now
 * has them all, the hash putting the key on none of volume 0: its copy
 * there is left until the key is moved.
 */
async function keyMovingOffVolume0(
  opts: { volumes: number; replicas: number },
): Promise<{ c: Cluster; key: string }> {
  const { volumes, replicas } = opts;
  const c = await Cluster.start({ volumes, flags: ["-replicas", String(replicas)] });
  try {
    const offVolume0 = (k: string) =>
      key2volume(enc.encode(k), c.volumes, replicas, 10)
        .every((v) => !v.startsWith(`${c.volumes[0]}/`));
    let key = randomKey("/leftover");
    while (!offVolume0(key)) key = randomKey("/leftover");
    await c.stopMaster();
    await c.startMaster([], c.volumes.slice(0, replicas));
    assertEquals(await status(c.url + key, { method: "PUT", body: "old value" }), 201);
    await c.stopMaster();
    await c.startMaster();
    return { c, key };
  } catch (err) {
    await c.stop();
    throw err;
  }
}

async function call(c: Cluster, key: string, method: string, body?: string) {
  const res = await fetch(c.url + key, { method, body, redirect: "manual" });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

/** DELETEs `key`, rebuilds the index from every volume, and answers the key's GET status. */
async function statusAfterDeleteAndRebuild(c: Cluster, key: string, replicas: number) {
  assertEquals((await call(c, key, "DELETE")).status, 204);
  await c.stopMaster();
  const r = await runMain([
    "rebuild",
    "-replicas",
    String(replicas),
    "-volumes",
    c.volumes.join(","),
    "-db",
    c.db,
  ]);
  assertEquals(r.code, 0, r.stderr);
  await c.startMaster();
  return (await call(c, key, "GET")).status;
}

Deno.test("a key REBALANCEd while a volume holding an old copy was down stays deleted after DELETE and rebuild", async () => {
  const { c, key } = await keyMovingOffVolume0({ volumes: 3, replicas: 2 });
  try {
    await c.stopVolume(0);
    const moved = await call(c, key, "REBALANCE");
    assertEquals(moved.status, 204, moved.text);
    await c.startVolume(0);
    assertEquals(await statusAfterDeleteAndRebuild(c, key, 2), 404, "the deleted key came back");
  } finally {
    await c.stop();
  }
});

Deno.test("a REBALANCE whose old copy's volume is down keeps that copy recorded, the key unbalanced, read from the others", async () => {
  const { c, key } = await keyMovingOffVolume0({ volumes: 3, replicas: 2 });
  try {
    await c.stopVolume(0);
    const moved = await call(c, key, "REBALANCE");
    assertEquals(moved.status, 204, moved.text);
    const head = await call(c, key, "HEAD");
    assertEquals(head.headers.get("key-balance"), "unbalanced");
    const recorded = head.headers.get("key-volumes")!.split(",");
    assertEquals(recorded.length, 3);
    assert(recorded[2].startsWith(`${c.volumes[0]}/`), recorded.join(","));
    // Never sent to the volume known down; the bytes are the value's.
    for (let i = 0; i < 5; i++) {
      const got = await call(c, key, "GET");
      assertEquals(got.status, 302);
      assert(!got.headers.get("location")!.startsWith(`http://${c.volumes[0]}/`));
      assertEquals(await (await fetch(c.url + key)).text(), "old value");
    }
    // Once the volume is back, the next REBALANCE removes the copy.
    await c.startVolume(0);
    assertEquals((await call(c, key, "REBALANCE")).status, 204);
    const after = await call(c, key, "HEAD");
    assertEquals(after.headers.get("key-balance"), "balanced");
    assertEquals(after.headers.get("key-volumes")!.split(",").length, 2);
  } finally {
    await c.stop();
  }
});

Deno.test("a PUT over an unlinked key whose old copy is on a volume that does not answer answers 503, the key kept unlinked", async () => {
  const { c, key } = await keyMovingOffVolume0({ volumes: 2, replicas: 1 });
  try {
    assertEquals((await call(c, key, "UNLINK")).status, 204);
    await c.stopVolume(0);
    const put = await call(c, key, "PUT", "new value");
    assertEquals(put.status, 503);
    assert(put.text.startsWith(`Volume ${c.volumes[0]} holds the key's old value`), put.text);
    assertEquals((await call(c, key, "GET")).status, 404);
    await c.startVolume(0);
    assertEquals((await call(c, key, "RELINK")).status, 204);
    assertEquals(await (await fetch(c.url + key)).text(), "old value");
  } finally {
    await c.stop();
  }
});

Deno.test("a key PUT over its unlinked value while a volume holding that value was down stays deleted after DELETE and rebuild", async () => {
  const { c, key } = await keyMovingOffVolume0({ volumes: 2, replicas: 1 });
  try {
    assertEquals((await call(c, key, "UNLINK")).status, 204);
    await c.stopVolume(0);
    const put = await call(c, key, "PUT", "new value");
    await c.startVolume(0);
    // Refused (503) while the old copy cannot be removed, then made once it
    // can. (It answered 201, leaving the old copy on volume 0.)
    if (put.status === 503) assertEquals((await call(c, key, "PUT", "new value")).status, 201);
    assertEquals(await statusAfterDeleteAndRebuild(c, key, 1), 404, "the deleted key came back");
  } finally {
    await c.stop();
  }
});
