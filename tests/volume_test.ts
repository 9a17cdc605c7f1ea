// `mkv volume`: stock nginx on a folder, started clean.
import { Cluster, randomKey, status } from "./cluster.ts";
import { assertEquals } from "./assert.ts";

Deno.test("a volume starts without the partial uploads a killed nginx left", async () => {
  const c = await Cluster.start();
  try {
    await c.stopVolume(0);
    // Where nginx keeps an upload until it is whole (volume.conf: client_body_temp_path).
    const parts = `${c.volumeDir(0)}/.mkv-nginx/body/5/09`;
    await Deno.mkdir(parts, { recursive: true });
    await Deno.writeTextFile(`${parts}/0000000095`, "half of an upload");
    await c.startVolume(0);
    const left = await Deno.stat(`${parts}/0000000095`).then(() => true, () => false);
    assertEquals(left, false, "the partial upload is removed");
    // nginx made its temp folder again: uploads to the volume work.
    const key = randomKey();
    assertEquals(await status(c.url + key, { method: "PUT", body: "after" }), 201);
    assertEquals(await (await fetch(c.url + key)).text(), "after");
  } finally {
    await c.stop();
  }
});
