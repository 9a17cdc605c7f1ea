// A copy of a key's file left on a volume the key no longer hashes to
// (volumes added, the key not rebalanced), recorded nowhere, came back after
// a DELETE of the key and a rebuild (which records what the volumes hold):
// a REBALANCE whose removal of the old copy failed (its volume down) left it
// so, answering 204; a PUT over an unlinked key left the unlinked value's
// copy so, answering 201. `deno task test:faults`.
import { call, keyMovingOffVolume0, statusAfterDeleteAndRebuild } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";

Deno.test("a key REBALANCEd while a volume holding an old copy was down stays deleted after DELETE and rebuild", async () => {
  const { c, key } = await keyMovingOffVolume0({ volumes: 3, replicas: 2, prefix: "/leftover" });
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
  const { c, key } = await keyMovingOffVolume0({ volumes: 3, replicas: 2, prefix: "/leftover" });
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
  const { c, key } = await keyMovingOffVolume0({ volumes: 2, replicas: 1, prefix: "/leftover" });
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
  const { c, key } = await keyMovingOffVolume0({ volumes: 2, replicas: 1, prefix: "/leftover" });
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
