// Two masters on one index. A master answers from memory only while it is
// the index's sole writer; the other may have sent an index write before it
// stopped (waiting on a busy index, then paused) that lands once it resumes.
// Each member's writes carry its fence (lib/membership.ts), which the sole
// master removes before trusting its memory: the late write fails, 503, and
// writes nothing, rather than land unseen and leave the other answering
// from a stale memory.
import { DatabaseSync } from "node:sqlite";
import { Cluster, randomKey, status, volumeFiles } from "../cluster.ts";
import { assertEquals } from "../assert.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sole(url: string): Promise<boolean> {
  const text = await (await fetch(`${url}/?metrics`)).text();
  return /^mkv_index_sole 1$/m.test(text);
}

Deno.test("an UNLINK stuck on a locked index, its master paused past its heartbeat, fails 503 and unlinks nothing", async () => {
  const c = await Cluster.start();
  const paused = await c.spawnMaster();
  try {
    const key = randomKey("/fence");
    assertEquals(await status(c.url + key, { method: "PUT", body: "fenced" }), 201);
    // Hold SQLite's write lock: the paused master's UNLINK waits on it.
    const db = new DatabaseSync(`${c.db}/index.sqlite3`);
    db.exec("BEGIN IMMEDIATE");
    const unlink = fetch(paused.url + key, { method: "UNLINK" });
    await sleep(300);
    paused.proc.kill("SIGSTOP");
    db.exec("COMMIT");
    db.close();
    // The other takes the paused one for gone (3 s without a heartbeat).
    for (let i = 0; i < 100 && !(await sole(c.url)); i++) await sleep(100);
    assertEquals(await sole(c.url), true, "the other master is alone");
    assertEquals(await status(c.url + key), 302, "read, and remembered");
    paused.proc.kill("SIGCONT");
    const res = await unlink;
    assertEquals(
      [res.status, await res.text()],
      [
        503,
        "Cannot write the index: this process lost its registration in it (paused past its heartbeat?): retry\n",
      ],
    );
    assertEquals(await status(c.url + key), 302, "still live");
    assertEquals(await status(paused.url + key), 302, "read by the resumed master too");
    // Once it has joined again, its writes go through.
    assertEquals(await status(paused.url + key, { method: "UNLINK" }), 204);
    assertEquals(await status(c.url + key), 404);
  } finally {
    paused.proc.kill("SIGCONT");
    await paused.stop();
    await c.stop();
  }
});

Deno.test("a REPLACE whose switch is noted on a locked index, its master paused past its heartbeat, fails 503 and the old value stays alone", async () => {
  const c = await Cluster.start();
  const paused = await c.spawnMaster();
  try {
    const key = randomKey("/fence");
    assertEquals(await status(c.url + key, { method: "PUT", body: "the old value" }), 201);
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (cc) => void (ctl = cc) });
    ctl.enqueue(new TextEncoder().encode("the new "));
    const replace = fetch(paused.url + key, { method: "REPLACE", body });
    await sleep(300); // held, its temporaries being written
    // Hold SQLite's write lock: the switch, noted once the body has ended, waits on it.
    const db = new DatabaseSync(`${c.db}/index.sqlite3`);
    db.exec("BEGIN IMMEDIATE");
    ctl.enqueue(new TextEncoder().encode("value"));
    ctl.close();
    await sleep(300);
    paused.proc.kill("SIGSTOP");
    db.exec("COMMIT");
    db.close();
    for (let i = 0; i < 100 && !(await sole(c.url)); i++) await sleep(100);
    assertEquals(await sole(c.url), true, "the other master is alone");
    assertEquals(await status(c.url + key), 302, "read, and remembered");
    paused.proc.kill("SIGCONT");
    const res = await replace;
    assertEquals(
      [res.status, await res.text()],
      [
        503,
        "Cannot write the index: this process lost its registration in it (paused past its heartbeat?): retry\n",
      ],
    );
    const got = await fetch(paused.url + key);
    assertEquals([got.status, await got.text()], [200, "the old value"]);
    // Nothing recorded the temporaries: none is left.
    for (let i = 0; i < c.volumes.length; i++) {
      const files = await volumeFiles(c.volumes[i]);
      assertEquals(files.filter((f) => f.includes("replace.")), [], c.volumes[i]);
    }
  } finally {
    paused.proc.kill("SIGCONT");
    await paused.stop();
    await c.stop();
  }
});
