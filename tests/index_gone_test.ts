// A master whose index file is removed while it runs: what it would write
// there is lost when it closes, and a restart opens a new, empty index.
import { Cluster, randomKey, status, volumeFiles } from "./cluster.ts";
import { assertEquals } from "./assert.ts";

const GONE = (db: string) =>
  `The index file "${db}/index.sqlite3" was removed while this master had it open: ` +
  `nothing more is written to it; restart the master (and rebuild the index if it is ` +
  `missing keys)`;

Deno.test("a PUT after the index file was removed answers 503 and stores nothing, not a 201 that a restart loses", async () => {
  const c = await Cluster.start();
  try {
    for await (const f of Deno.readDir(c.db)) await Deno.remove(`${c.db}/${f.name}`);
    const key = randomKey();
    const res = await fetch(c.url + key, { method: "PUT", body: "value" });
    assertEquals(res.status, 503);
    assertEquals(await res.text(), GONE(c.db) + "\n");
    // Refused before any volume was written: no file of the key anywhere.
    for (const v of c.volumes) assertEquals(await volumeFiles(v), []);
  } finally {
    await c.stop();
  }
});

Deno.test("a GET after the index file was removed answers 503 saying so, once a heartbeat has seen it", async () => {
  const c = await Cluster.start();
  try {
    const key = randomKey();
    assertEquals(await status(c.url + key, { method: "PUT", body: "value" }), 201);
    for await (const f of Deno.readDir(c.db)) await Deno.remove(`${c.db}/${f.name}`);
    await new Promise((r) => setTimeout(r, 1500)); // a heartbeat
    const res = await fetch(c.url + key, { redirect: "manual" });
    assertEquals(res.status, 503);
    assertEquals(await res.text(), GONE(c.db) + "\n");
  } finally {
    await c.stop();
  }
});
