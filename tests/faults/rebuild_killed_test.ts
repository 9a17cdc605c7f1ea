// A rebuild killed midway leaves the index marked incomplete, lacking the
// keys it had yet to refill. A master that was running before the rebuild
// began (paused past its heartbeat, taken for stopped) read the mark only
// as it started: resumed, it took a PUT of such a key for a create (201),
// written over the value the volumes held. Its heartbeats read the mark now.
import { randomBytes, randomKey, status } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { servedAgain, sleep, slowCluster } from "./rebuild_faults.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Waits until the index at `db` is marked incomplete and holds no key's record. */
async function cleared(db: string): Promise<void> {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  try {
    for (let i = 0; i < 300; i++) {
      const marked = (await kv.get(["rebuild"])).versionstamp !== null;
      const records = await Array.fromAsync(kv.list({ prefix: ["k"] }, { limit: 1 }));
      if (marked && records.length === 0) return;
      await sleep(50);
    }
    throw new Error("The index was not cleared by a rebuild within 15 s");
  } finally {
    kv.close();
  }
}

Deno.test("a master running before a rebuild that was killed midway refuses a PUT over a value the index lacks", async () => {
  const slow = await slowCluster();
  const { c, volumes, m } = slow;
  try {
    const key = randomKey("/rebuild-killed");
    assertEquals(await status(m.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    m.proc.kill("SIGSTOP");
    const rebuild = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "rebuild", "-db", c.db, "-volumes", volumes],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await cleared(c.db);
    } finally {
      rebuild.kill("SIGKILL");
      await rebuild.status;
    }
    m.proc.kill("SIGCONT");
    // Once the killed rebuild's heartbeat record has lapsed, the master
    // answers again: the key is missing from the index.
    assertEquals(await servedAgain(m.url + key), 404);
    const res = await fetch(m.url + key, { method: "PUT", body: "new value" });
    assertEquals([res.status, await res.text()], [
      409,
      "The index is incomplete (a rebuild has not finished) and the volumes hold a value " +
      "for this key: run rebuild\n",
    ]);
  } finally {
    await slow.stop();
  }
});
