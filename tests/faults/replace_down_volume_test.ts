// A REPLACE of a key that moves off a volume holding its old value (volumes
// added, the key not rebalanced) removes that old copy once the switch is
// made. When that volume did not answer, the copy was left there, recorded
// nowhere, and the REPLACE answered 201: a DELETE of the key then removed
// only the new value's files, and a rebuild brought the deleted key back with
// its old value. `deno task test:faults`.
import { Cluster, randomKey, runMain, status, volumeFiles } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { key2volume } from "../../lib/keys.ts";

const enc = new TextEncoder();

/**
 * A cluster of two volumes whose master (-replicas 1) wrote `key` with
 * only volume 0 in -volumes, and now has both, the hash putting the key on
 * volume 1: its one copy, on volume 0, is left there until it is moved.
 */
async function keyMovingOffVolume0(): Promise<{ c: Cluster; key: string }> {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "1"] });
  try {
    let key = randomKey("/moving");
    while (!key2volume(enc.encode(key), c.volumes, 1, 10)[0].startsWith(`${c.volumes[1]}/`)) {
      key = randomKey("/moving");
    }
    await c.stopMaster();
    await c.startMaster([], [c.volumes[0]]);
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

Deno.test("a REPLACE whose key's old copy is on a volume that does not answer answers 503, changing nothing", async () => {
  const { c, key } = await keyMovingOffVolume0();
  try {
    const before = await call(c, key, "HEAD");
    await c.stopVolume(0);
    const r = await call(c, key, "REPLACE", "new value");
    assertEquals(r.status, 503);
    assert(r.text.startsWith(`Volume ${c.volumes[0]} holds the key's old value`), r.text);
    await c.startVolume(0);
    const after = await call(c, key, "HEAD");
    assertEquals(after.headers.get("content-md5"), before.headers.get("content-md5"));
    assertEquals(after.headers.get("key-volumes"), before.headers.get("key-volumes"));
    assertEquals(await (await fetch(c.url + key)).text(), "old value");
    const temps = (await volumeFiles(c.volumes[1])).filter((f) => f.includes("/replace."));
    assertEquals(temps, [], "the temporary written is removed");
  } finally {
    await c.stop();
  }
});

Deno.test("a key REPLACEd while a volume holding its old value was down stays deleted after DELETE and rebuild", async () => {
  const { c, key } = await keyMovingOffVolume0();
  try {
    await c.stopVolume(0);
    const replaced = await call(c, key, "REPLACE", "new value");
    await c.startVolume(0);
    // Refused (503) while the old copy cannot be removed, then made once it
    // can. (It answered 201, leaving the old copy on volume 0.)
    if (replaced.status === 503) {
      assertEquals((await call(c, key, "REPLACE", "new value")).status, 201);
    }
    assertEquals((await call(c, key, "DELETE")).status, 204);
    await c.stopMaster();
    const r = await runMain([
      "rebuild",
      "-replicas",
      "1",
      "-volumes",
      c.volumes.join(","),
      "-db",
      c.db,
    ]);
    assertEquals(r.code, 0, r.stderr);
    await c.startMaster();
    assertEquals((await call(c, key, "GET")).status, 404, "the deleted key came back");
  } finally {
    await c.stop();
  }
});
