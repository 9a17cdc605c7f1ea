// A DELETE that a volume never answered may still be carried out, seconds
// later, by a volume that was only hung: landing after the key's next PUT,
// it would remove that write's replica. So the key stays "writing" with a
// lease nobody renews (it lingers): every write of it, a DELETE included,
// answers 409 saying why until the lease has run out. Readers get the 404
// of a key being deleted.
import { Cluster, randomBytes, randomKey, status } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { key2path } from "../../lib/keys.ts";

const WAITING = "A volume has yet to answer for this key's last write: " +
  "retry once -lease has passed (in N s)\n";

/** The answer's reason with its seconds left as N (they run down as the test goes). */
function counted(text: string): string {
  return text.replace(/ \(in [1-3] s\)\n$/, " (in N s)\n");
}

async function answer(url: string, init: RequestInit = {}): Promise<[number, string]> {
  const res = await fetch(url, init);
  return [res.status, counted(await res.text())];
}

Deno.test("a DELETE a hung volume never answered keeps the key from writers until its lease runs out", async () => {
  const c = await Cluster.start({ flags: ["-voltimeout", "200ms", "-lease", "3s"] });
  try {
    const key = randomKey("/linger");
    assertEquals(await status(c.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    await c.pauseVolume(0);
    let failed = 0;
    try {
      const [code, text] = await answer(c.url + key, { method: "DELETE" });
      failed = performance.now();
      assertEquals(code, 500);
      assertEquals(text.startsWith(`Cannot DELETE "http://${c.volumes[0]}/`), true, text);
      assertEquals(await status(c.url + key), 404);
      const value = randomBytes(2000);
      assertEquals(await answer(c.url + key, { method: "PUT", body: value }), [409, WAITING]);
      assertEquals(await answer(c.url + key, { method: "DELETE" }), [409, WAITING]);
    } finally {
      await c.resumeVolume(0);
    }
    // The hung volume carries out the DELETE once resumed; the key's
    // writers wait for the rest of the lease all the same.
    await new Promise((r) => setTimeout(r, Math.max(0, failed + 3100 - performance.now())));
    const value = randomBytes(3000);
    assertEquals(await status(c.url + key, { method: "PUT", body: value }), 201);
    const path = key2path(new TextEncoder().encode(key));
    for (const v of c.volumes) {
      const files = await fetch(`${c.url}${key}`, { redirect: "manual" });
      await files.body?.cancel();
      const volume = files.headers.get("key-volumes")!.split(",").find((r) => r.startsWith(v))!;
      const got = new Uint8Array(await (await fetch(`http://${volume}${path}`)).arrayBuffer());
      assertEquals(got, value, `the new value on ${volume}`);
    }
  } finally {
    await c.stop();
  }
});
