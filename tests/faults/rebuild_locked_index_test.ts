// rebuild refuses to start while a master is registered and beating, judged
// by whether its heartbeat record changes over 3 s. Reads of the index go on
// while SQLite's write lock is held (another writer's long commit, or here
// this test), but no heartbeat can land: rebuild watched a live master's
// record stand still through such a lock, took it for stopped, and emptied
// the index under it (the master then answered 503 until the rebuild was
// done). Its watch now starts over when its own heartbeat is held up.
import { Cluster, randomBytes, randomKey, runMain, status } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { lockIndex } from "../lock_index.ts";
import { sleep, SlowListing } from "./rebuild_faults.ts";
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Whether process `pid` has the SQLite file of the index at `db` open. */
async function hasOpen(pid: number, db: string): Promise<boolean> {
  for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
    const target = await Deno.readLink(`/proc/${pid}/fd/${fd.name}`).catch(() => "");
    if (target === `${db}/index.sqlite3`) return true;
  }
  return false;
}

/** A rebuild of `c`'s index, its output piped, once it has the index open and watches its members. */
async function watchingRebuild(c: Cluster): Promise<Deno.ChildProcess> {
  const rebuild = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "rebuild", "-db", c.db, "-volumes", c.volumes.join(",")],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  for (let i = 0; i < 400 && !(await hasOpen(rebuild.pid, c.db)); i++) await sleep(25);
  await sleep(500); // opened, and watching
  return rebuild;
}

Deno.test("rebuild refuses beside a live master whose heartbeats a locked index held up through its check", async () => {
  const c = await Cluster.start();
  const master = c.masterProcess!;
  let unlock: (() => void) | null = null;
  try {
    const key = randomKey("/rebuild-locked");
    assertEquals(await status(c.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    // No heartbeat of the master's lands from before the rebuild's first look
    // until the lock (a pause far shorter than a lapse), then none under it.
    master.kill("SIGSTOP");
    const rebuild = await watchingRebuild(c);
    unlock = lockIndex(`${c.db}/index.sqlite3`);
    master.kill("SIGCONT");
    await sleep(5000); // over a lapse (3 s): the master's record stood still
    unlock();
    unlock = null;
    const out = await rebuild.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(
      [out.code, stderr],
      [
        1,
        "rebuild: 1 master or tool is using this index; stop them first " +
        "(rebuild empties the index before it reads the volumes)\n",
      ],
    );
    assertEquals(await status(c.url + key), 302, "the key is still in the index");
    const after = randomKey("/rebuild-locked");
    assertEquals(await status(c.url + after, { method: "PUT", body: "x" }), 201);
  } finally {
    unlock?.();
    master.kill("SIGCONT");
    await c.stop();
  }
});

Deno.test("of two rebuilds started at once, never both rebuild: one that exits 1 names the other rebuild", async () => {
  const c = await Cluster.start();
  const proxies = c.volumes.map((v) => new SlowListing(v));
  const volumes = proxies.map((p) => p.volume);
  try {
    await c.stopMaster();
    await c.startMaster([], volumes);
    const key = randomKey("/rebuild-two");
    assertEquals(await status(c.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    await c.stopMaster();
    const args = ["rebuild", "-db", c.db, "-volumes", volumes.join(",")];
    const done = await Promise.all([runMain(args), runMain(args)]);
    // One goes on and the other exits 1; at worst, in the narrow race README
    // names (both registered before either looked again: a run held up
    // under load), both exit 1, the index untouched. Never both go on.
    const codes = done.map((d) => d.code).sort();
    assert(
      codes.join() === "0,1" || codes.join() === "1,1",
      done.map((d) => `${d.code}: ${d.stderr}`).join("\n"),
    );
    for (const refused of done.filter((d) => d.code === 1)) {
      assertEquals(
        refused.stderr,
        "rebuild: another rebuild is running on this index; let it finish " +
          "(each empties the index before it reads the volumes)\n",
      );
    }
    await c.startMaster([], volumes);
    assertEquals(await status(c.url + key), 302);
  } finally {
    await c.stop();
    await Promise.all(proxies.map((p) => p.stop()));
  }
});

Deno.test("rebuild on an index locked past its retries as it checks exits 1 saying so, the index unchanged", async () => {
  const c = await Cluster.start();
  let unlock: (() => void) | null = null;
  try {
    const key = randomKey("/rebuild-locked");
    assertEquals(await status(c.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    // Killed: its heartbeat record is watched for 3 s, and the lock comes meanwhile.
    await c.stopMaster("SIGKILL");
    const rebuild = await watchingRebuild(c);
    // Each write waits 5 s on the lock (Deno KV), tried again for 10 s.
    unlock = lockIndex(`${c.db}/index.sqlite3`);
    const out = await rebuild.output();
    unlock();
    unlock = null;
    const done = { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
    assertEquals(
      [done.code, done.stderr],
      [
        1,
        "rebuild: the index stayed locked for over 15 s (another process holds its write lock); " +
        "nothing was changed: run rebuild again once the lock is released\n",
      ],
    );
    await c.startMaster();
    assertEquals(await status(c.url + key), 302);
  } finally {
    unlock?.();
    await c.stop();
  }
});

Deno.test("rebuild on an index locked before it opens it exits 1 saying so, the index unchanged", async () => {
  const c = await Cluster.start();
  let unlock: (() => void) | null = null;
  let safety: ReturnType<typeof setTimeout> | undefined;
  try {
    const key = randomKey("/rebuild-locked");
    assertEquals(await status(c.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    await c.stopMaster();
    unlock = lockIndex(`${c.db}/index.sqlite3`);
    // Released after a minute all the same: a rebuild that waits on it ends.
    safety = setTimeout(() => {
      unlock?.();
      unlock = null;
    }, 60_000);
    const done = await runMain(["rebuild", "-db", c.db, "-volumes", c.volumes.join(",")]);
    assertEquals(unlock !== null, true, "rebuild ended while the index was locked");
    assertEquals(
      [done.code, done.stderr],
      [
        1,
        "rebuild: the index stayed locked for over 15 s (another process holds its write lock); " +
        "nothing was changed: run rebuild again once the lock is released\n",
      ],
    );
    unlock!();
    unlock = null;
    await c.startMaster();
    assertEquals(await status(c.url + key), 302);
  } finally {
    clearTimeout(safety);
    unlock?.();
    await c.stop();
  }
});
