// A master answers from memory (key filter, record and file caches) only
// while it is the index's sole writer. These prove what another master
// writes or deletes is seen at once, and after it leaves.
import { Cluster, randomKey, type SpawnedMaster, status } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";

/**
 * Waits until `key`'s record in the index is claimed, as master `url` (not
 * the writer's) reads it: its RELINK answers 409 (on a live key or none,
 * otherwise 404, changing nothing). The writer's own RELINK answers 409 as
 * soon as its request starts, before its claim is written. Fails once
 * `writing` (the writer's request) has answered.
 */
async function claimedOn(url: string, key: string, writing: Promise<unknown>): Promise<void> {
  let answered = false;
  writing.then(() => answered = true, () => answered = true);
  while (await status(url + key, { method: "RELINK" }) !== 409) {
    if (answered) throw new Error(`${key} was never seen claimed before its writer answered`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function withSecondMaster(
  c: Cluster,
  work: (url: string, other: SpawnedMaster) => Promise<void>,
) {
  const other = await c.spawnMaster();
  try {
    await work(other.url, other);
  } finally {
    await other.stop();
  }
}

Deno.test("a key written through another master is readable here at once, and its delete seen", async () => {
  const c = await Cluster.start();
  try {
    // Warm this master's memory: a miss and a hit before the other arrives.
    const known = randomKey();
    assertEquals(await status(c.url + known, { method: "PUT", body: "known" }), 201);
    assertEquals(await status(c.url + known), 302);
    const k = randomKey();
    assertEquals(await status(c.url + k), 404);
    await withSecondMaster(c, async (other) => {
      assertEquals(await status(other + k, { method: "PUT", body: "from the other" }), 201);
      assertEquals(await status(c.url + k), 302, "written elsewhere, read here");
      assertEquals(await status(other + known, { method: "DELETE" }), 204);
      assertEquals(await status(c.url + known), 404, "deleted elsewhere, gone here");
    });
  } finally {
    await c.stop();
  }
});

Deno.test("after the other master leaves, keys it wrote are still found here", async () => {
  const c = await Cluster.start();
  try {
    const keys = Array.from({ length: 20 }, () => randomKey());
    await withSecondMaster(c, async (other) => {
      for (const k of keys) assertEquals(await status(other + k, { method: "PUT", body: k }), 201);
    });
    // This master becomes the sole writer again and rebuilds its memory.
    await new Promise((r) => setTimeout(r, 2500));
    for (const k of keys) {
      const res = await fetch(c.url + k);
      assertEquals(await res.text(), k, k);
    }
    assertEquals(await status(c.url + randomKey()), 404);
  } finally {
    await c.stop();
  }
});

Deno.test("a REBALANCE in flight holds its key on every master: a DELETE elsewhere waits", async () => {
  const c = await Cluster.start({ volumes: 4, flags: ["-voltimeout", "200ms"] });
  try {
    // Written on three volumes; the fourth then joins, and some keys belong there.
    await c.stopMaster();
    await c.startMaster([], c.volumes.slice(0, 3));
    const keys = Array.from({ length: 16 }, () => randomKey("/move"));
    for (const k of keys) assertEquals(await status(c.url + k, { method: "PUT", body: k }), 201);
    await c.stopMaster();
    await c.startMaster();
    let key = "";
    for (const k of keys) {
      const res = await fetch(c.url + k, { method: "HEAD", redirect: "manual" });
      if (res.headers.get("key-balance") === "unbalanced") key = k;
    }
    assert(key !== "", "some key belongs on the new volume");
    await withSecondMaster(c, async (other) => {
      // The copy to the new volume hangs while it is frozen.
      await c.pauseVolume(3);
      const moving = fetch(c.url + key, { method: "REBALANCE" });
      try {
        await claimedOn(other, key, moving);
        assertEquals(await status(other + key, { method: "DELETE" }), 409);
      } finally {
        await c.resumeVolume(3);
      }
      const moved = await moving;
      await moved.body?.cancel();
      assert(moved.status === 204 || moved.status === 500, `REBALANCE: ${moved.status}`);
      assertEquals(await status(c.url + key, { method: "REBALANCE" }), 204);
      for (const url of [c.url, other]) {
        assertEquals(await (await fetch(url + key)).text(), key, `read through ${url}`);
      }
    });
  } finally {
    await c.stop();
  }
});

const FIRST_PART = "first part of the paused write, ";
const END = "and its end";

/**
 * PUTs `key` on `c`'s master (-lease 2s), its body's first part sent; once
 * master `other` sees the key claimed, SIGSTOPs that master past its lease
 * and heartbeats (2.6 s), runs `whilePaused`, sends the body's end (it waits
 * in the socket for the resume) and resumes it. The PUT's answer.
 */
async function putPausedPastLease(
  c: Cluster,
  other: string,
  key: string,
  whilePaused: () => Promise<void>,
): Promise<Response> {
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (cc) => void (ctl = cc) });
  ctl.enqueue(new TextEncoder().encode(FIRST_PART));
  const paused = fetch(c.url + key, { method: "PUT", body });
  await claimedOn(other, key, paused);
  const pid = c.masterProcess!.pid;
  Deno.kill(pid, "SIGSTOP");
  try {
    await new Promise((r) => setTimeout(r, 2600));
    await whilePaused();
    ctl.enqueue(new TextEncoder().encode(END));
    ctl.close();
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
  return await paused;
}

Deno.test("a master paused past its lease mid-PUT writes nothing over the key's next writer", async () => {
  const c = await Cluster.start({ flags: ["-lease", "2s"] });
  try {
    await withSecondMaster(c, async (other) => {
      const key = randomKey("/paused");
      // Past the lease: the other master may take the key, and does.
      const res = await putPausedPastLease(c, other, key, async () => {
        assertEquals(await status(other + key, { method: "PUT", body: "the next writer's" }), 201);
      });
      assertEquals(res.status, 500);
      assert((await res.text()).startsWith("Lost the claim on the key"));
      // Every replica holds the next writer's value, as the index says.
      const head = await fetch(other + key, { method: "HEAD", redirect: "manual" });
      const path = new URL(head.headers.get("location")!).pathname.replace(/^\/sv[0-9A-F]+/, "");
      for (const rv of head.headers.get("key-volumes")!.split(",")) {
        const replica = await fetch(`http://${rv}${path}`);
        assertEquals(await replica.text(), "the next writer's", rv);
      }
    });
  } finally {
    await c.stop();
  }
});

Deno.test("a master paused past its lease mid-PUT, nobody taking the key meanwhile, stores the value once resumed", async () => {
  const c = await Cluster.start({ flags: ["-lease", "2s"] });
  try {
    await withSecondMaster(c, async (other) => {
      const key = randomKey("/paused");
      // The other master takes this one for gone, and leaves the key alone.
      const res = await putPausedPastLease(c, other, key, () => Promise.resolve());
      assertEquals(res.status, 201, await res.text());
      for (const url of [c.url, other]) {
        assertEquals(
          await (await fetch(url + key)).text(),
          FIRST_PART + END,
          `read through ${url}`,
        );
      }
    });
  } finally {
    await c.stop();
  }
});

Deno.test("a master paused past its heartbeat waits, once resumed, before writing where the other trusts its memory", async () => {
  const c = await Cluster.start();
  try {
    const known = randomKey();
    assertEquals(await status(c.url + known, { method: "PUT", body: "known" }), 201);
    await withSecondMaster(c, async (other, { proc }) => {
      Deno.kill(proc.pid, "SIGSTOP");
      try {
        // Its heartbeat runs out: this master is alone again and answers from memory.
        await new Promise((r) => setTimeout(r, 4500));
        assertEquals(await status(c.url + known), 302);
      } finally {
        Deno.kill(proc.pid, "SIGCONT");
      }
      // Its overdue heartbeat goes first; then it writes.
      await new Promise((r) => setTimeout(r, 100));
      const k = randomKey();
      assertEquals(await status(other + k, { method: "PUT", body: "after the pause" }), 201);
      assertEquals(await status(other + known, { method: "DELETE" }), 204);
      assertEquals(await status(c.url + k), 302, "written elsewhere after its pause, read here");
      assertEquals(
        await status(c.url + known),
        404,
        "deleted elsewhere after its pause, gone here",
      );
    });
  } finally {
    await c.stop();
  }
});

async function sole(url: string): Promise<boolean> {
  const text = await (await fetch(`${url}/?metrics`)).text();
  return /^mkv_index_sole 1$/m.test(text);
}

Deno.test("a master whose clock runs 5 s behind is seen live by an on-time master: never fenced, never unseen", async () => {
  const c = await Cluster.start();
  const behind = await c.spawnMaster([], {}, { skew: -5000 });
  try {
    // Over 4 s: past the 3 s after which a wall clock read its heartbeats as lapsed.
    for (let i = 0; i < 9; i++) {
      const mine = randomKey("/skew");
      const theirs = randomKey("/skew");
      assertEquals(await status(behind.url + theirs, { method: "PUT", body: "behind" }), 201);
      assertEquals(await status(c.url + mine, { method: "PUT", body: "on time" }), 201);
      assertEquals(await status(c.url + theirs), 302, "written by the lagging master, read here");
      assertEquals(await status(behind.url + mine), 302, "written here, read by the lagging one");
      assertEquals(await sole(c.url), false, "the on-time master does not count itself alone");
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await behind.stop();
    await c.stop();
  }
});

/** Ids of the members with a heartbeat record, and of those with a fence, in the cluster's index. */
async function membersOf(c: Cluster): Promise<{ records: string[]; fences: string[] }> {
  const kv = await Deno.openKv(`${c.db}/index.sqlite3`);
  try {
    const ids = async (prefix: string) =>
      (await Array.fromAsync(kv.list({ prefix: [prefix] }))).map((e) => String(e.key[1]));
    return { records: await ids("members"), fences: await ids("fences") };
  } finally {
    kv.close();
  }
}

Deno.test("a master killed beside two live ones has its heartbeat record and fence removed by them", async () => {
  const c = await Cluster.start();
  const live = await c.spawnMaster();
  const killed = await c.spawnMaster();
  try {
    const mine = (id: string) => id.startsWith(`${Deno.hostname()}:${killed.proc.pid}:`);
    const before = await membersOf(c);
    assertEquals(before.records.filter(mine).length, 1, "registered");
    assertEquals(before.fences.filter(mine).length, 1, "fenced");
    await killed.stop("SIGKILL");
    let after = before;
    for (let i = 0; i < 100 && after.records.concat(after.fences).some(mine); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await membersOf(c);
    }
    assertEquals(after.records.filter(mine), [], "its heartbeat record");
    assertEquals(after.fences.filter(mine), [], "its fence");
    assertEquals(after.records.length, 2, "the live masters' records stay");
    assertEquals(after.fences.length, 2, "and their fences");
    const k = randomKey("/killed");
    assertEquals(await status(live.url + k, { method: "PUT", body: "after" }), 201);
    assertEquals(await status(c.url + k), 302);
    assertEquals(await sole(c.url), false, "two masters live");
  } finally {
    await live.stop();
    await killed.stop();
    await c.stop();
  }
});
