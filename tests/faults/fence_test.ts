// Two masters on one index. A master answers from memory only while it is
// the index's sole writer; the other may have sent an index write before it
// stopped (waiting on a busy index, then paused) that lands once it resumes.
// Each member's writes carry its fence (lib/membership.ts), which the sole
// master removes before trusting its memory: the late write fails, 503, and
// writes nothing, rather than land unseen and leave the other answering
// from a stale memory.
import { Cluster, commitSent, justBeaten, randomKey, status } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { lockIndex } from "../lock_index.ts";
import { assertServes, VolumeProxy } from "./replace_faults.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sole(url: string): Promise<boolean> {
  const text = await (await fetch(`${url}/?metrics`)).text();
  return /^mkv_index_sole 1$/m.test(text);
}

Deno.test("an UNLINK stuck on a locked index, its master paused past its heartbeat, fails 503 and unlinks nothing", async () => {
  const c = await Cluster.start();
  const commitLog = `${c.dir}/commits`;
  const paused = await c.spawnMaster([], {}, { commitLog });
  try {
    const key = randomKey("/fence");
    assertEquals(await status(c.url + key, { method: "PUT", body: "fenced" }), 201);
    // Hold SQLite's write lock: the paused master's UNLINK waits on it.
    // Taken just after a heartbeat of the paused master's: the UNLINK's
    // read goes before the next heartbeat waits on the lock (a read sent
    // after that waits with it, and the write takes its fence only once
    // the master has joined again, after the pause: it unlinks).
    await justBeaten(c.db, paused.proc.pid);
    const unlock = lockIndex(`${c.db}/index.sqlite3`);
    const unlink = fetch(paused.url + key, { method: "UNLINK" });
    // Paused once its commit, its fence in it, is sent: not after a guessed time.
    await commitSent(commitLog, key);
    paused.proc.kill("SIGSTOP");
    unlock();
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

/** Holds the first MOVE (a REPLACE's rename) until `release()`, then sends it on. */
class MoveHolder extends VolumeProxy {
  readonly #moved = Promise.withResolvers<void>();
  #held = false;

  /** Resolves once the first MOVE came in. */
  get moved(): Promise<void> {
    return this.#moved.promise;
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== "MOVE" || this.#held) return await this.forward(req);
    this.#held = true;
    this.#moved.resolve();
    await this.released;
    return await this.forward(req);
  }
}

Deno.test("a REPLACE fenced after its renames (its master paused past its heartbeat) writes its switch once joined again: 201, the new value served", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  const holder = new MoveHolder(c.volumes[2]);
  const flags = ["-volumes", [c.volumes[0], c.volumes[1], holder.volume].join(",")];
  const other = await c.spawnMaster(flags);
  const paused = await c.spawnMaster(flags);
  try {
    const key = randomKey("/fence");
    assertEquals(await status(other.url + key, { method: "PUT", body: "the old value" }), 201);
    const replace = fetch(paused.url + key, { method: "REPLACE", body: "the new value" });
    await holder.moved; // the switch noted, the renames going out
    // The index locked as the held rename ends: the switch's last write waits on it.
    const unlock = lockIndex(`${c.db}/index.sqlite3`);
    holder.release();
    await sleep(300);
    paused.proc.kill("SIGSTOP");
    unlock();
    for (let i = 0; i < 100 && !(await sole(other.url)); i++) await sleep(100);
    assertEquals(await sole(other.url), true, "the other master is alone");
    paused.proc.kill("SIGCONT");
    const res = await replace;
    assertEquals([res.status, await res.text()], [201, ""]);
    const enc = new TextEncoder();
    await assertServes(other.url, key, enc.encode("the new value"));
    await assertServes(paused.url, key, enc.encode("the new value"));
  } finally {
    paused.proc.kill("SIGCONT");
    await paused.stop();
    await other.stop();
    await holder.stop();
    await c.stop();
  }
});
