// rebuild runs with the masters stopped, and refuses to start while one is
// registered. A master paused (SIGSTOP) past its heartbeat looks stopped:
// rebuild empties the index and refills it from the volumes, and the master,
// resumed meanwhile, answered from that half-filled index (404 for acknowledged
// keys, found by a helper). It answers 503 until the rebuild is done. Resumed
// after the rebuild registered but before it emptied anything, it is seen,
// and the rebuild exits 1.
import { Cluster, freePort, randomBytes, randomKey, runMain, status } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { REBUILD_RUNNING, servedAgain, sleep, slowCluster } from "./rebuild_faults.ts";
import { lockIndex } from "../lock_index.ts";

/** Waits until a member whose id starts with `prefix` has a heartbeat record in the index. */
async function registered(db: string, prefix: string): Promise<void> {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  try {
    for (let i = 0; i < 200; i++) {
      for await (const e of kv.list({ prefix: ["members"] })) {
        if (String(e.key[1]).startsWith(prefix)) return;
      }
      await sleep(50);
    }
    throw new Error(`No member "${prefix}..." registered within 10 s`);
  } finally {
    kv.close();
  }
}

/**
 * Waits until a rebuild has marked the index at `db` incomplete: it has made
 * its checks (a master resumed before that is seen, and the rebuild exits)
 * and is emptying it.
 */
async function emptying(db: string): Promise<void> {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  try {
    for (let i = 0; i < 300; i++) {
      if ((await kv.get(["rebuild"])).versionstamp !== null) return;
      await sleep(50);
    }
    throw new Error("No rebuild marked the index within 15 s");
  } finally {
    kv.close();
  }
}

Deno.test("a master resumed while a rebuild runs answers 503 until it is done", async () => {
  const slow = await slowCluster();
  const { c, volumes, m } = slow;
  try {
    const key = randomKey("/rebuild-paused");
    assertEquals(await status(m.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    m.proc.kill("SIGSTOP");
    // The rebuild watches the master's heartbeat record lapse (3 s), then
    // registers, and once no member has beaten meanwhile, empties the index.
    const rebuild = runMain(["rebuild", "-db", c.db, "-volumes", volumes]);
    await emptying(c.db);
    m.proc.kill("SIGCONT");
    await sleep(1500); // a heartbeat: it sees the rebuild
    const res = await fetch(m.url + key, { redirect: "manual" });
    assertEquals([res.status, await res.text()], [503, REBUILD_RUNNING]);
    assertEquals(await status(`${m.url}/?status`), 200, "the status page still answers");
    const done = await rebuild;
    assertEquals(done.code, 0, done.stdout + done.stderr);
    // Served again once a heartbeat has seen the rebuild gone (not after a guessed time).
    assertEquals(await servedAgain(m.url + key), 302);
  } finally {
    await slow.stop();
  }
});

Deno.test("a master resumed after a rebuild registered, before it emptied the index, makes it exit 1 with the index untouched", async () => {
  const c = await Cluster.start();
  const m = c.masterProcess!;
  try {
    const key = randomKey("/rebuild-paused");
    assertEquals(await status(c.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    m.kill("SIGSTOP");
    const rebuild = runMain(["rebuild", "-db", c.db, "-volumes", c.volumes.join(",")]);
    await registered(c.db, "rebuild:");
    // It waits 2.5 heartbeats after registering: the master beats meanwhile.
    m.kill("SIGCONT");
    const done = await rebuild;
    assertEquals(
      [done.code, done.stderr],
      [
        1,
        "rebuild: 1 master or tool is using this index; stop them first " +
        "(rebuild empties the index before it reads the volumes)\n",
      ],
    );
    // Served again once a heartbeat has seen the rebuild (seen as it beat) gone.
    assertEquals(await servedAgain(c.url + key), 302, "the key is still in the index");
  } finally {
    m.kill("SIGCONT");
    await c.stop();
  }
});

Deno.test("a rebuild refused for an unreadable volume root leaves a paused master's registration: its write held up meanwhile lands", async () => {
  const c = await Cluster.start();
  const m = c.masterProcess!;
  try {
    const key = randomKey("/rebuild-refused");
    assertEquals(await status(c.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    // Held by SQLite's write lock: the PUT's first commit (its claim, which
    // carries the master's fence) waits on it, and is tried again once the
    // master is resumed.
    const unlock = lockIndex(`${c.db}/index.sqlite3`);
    const fresh = randomKey("/rebuild-refused");
    const put = fetch(c.url + fresh, { method: "PUT", body: "held up" });
    await sleep(300);
    m.kill("SIGSTOP");
    unlock();
    // Paused: a rebuild that went on would take it for stopped and remove
    // its fence. This one is refused: one -volumes entry answers nothing.
    const down = `127.0.0.1:${freePort()}`;
    const args = ["rebuild", "-db", c.db, "-volumes", [...c.volumes, down].join(",")];
    const rebuild = await runMain(args);
    assertEquals(rebuild.code, 1, rebuild.stdout + rebuild.stderr);
    assert(
      rebuild.stdout.startsWith("rebuild: 1 volume's root could not be read; the index was not "),
      rebuild.stdout,
    );
    m.kill("SIGCONT");
    const res = await put;
    assertEquals([res.status, await res.text()], [201, ""]);
    assertEquals(await (await fetch(c.url + fresh)).text(), "held up");
    assertEquals(await status(c.url + key), 302, "the key is still in the index");
  } finally {
    m.kill("SIGCONT");
    await c.stop();
  }
});
