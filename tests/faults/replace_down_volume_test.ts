// A REPLACE of a key that moves off a volume holding its old value (volumes
// added, the key not rebalanced) removes that old copy once the switch is
// made. When that volume did not answer, the copy was left there, recorded
// nowhere, and the REPLACE answered 201: a DELETE of the key then removed
// only the new value's files, and a rebuild brought the deleted key back with
// its old value. `deno task test:faults`.
import { call, keyMovingOffVolume0, statusAfterDeleteAndRebuild, volumeFiles } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";

Deno.test("a REPLACE whose key's old copy is on a volume that does not answer answers 503, changing nothing", async () => {
  const { c, key } = await keyMovingOffVolume0({ volumes: 2, replicas: 1 });
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
  const { c, key } = await keyMovingOffVolume0({ volumes: 2, replicas: 1 });
  try {
    await c.stopVolume(0);
    const replaced = await call(c, key, "REPLACE", "new value");
    await c.startVolume(0);
    // Refused (503) while the old copy cannot be removed, then made once it
    // can. (It answered 201, leaving the old copy on volume 0.)
    if (replaced.status === 503) {
      assertEquals((await call(c, key, "REPLACE", "new value")).status, 201);
    }
    assertEquals(await statusAfterDeleteAndRebuild(c, key, 1), 404, "the deleted key came back");
  } finally {
    await c.stop();
  }
});
