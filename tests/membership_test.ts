// Unit tests of lib/membership.ts against a real Deno KV on a temporary file:
// joining again after a failure, leaving, judging other members' lapses.
import { liveMembers, Membership, type OtherPlacement, type Placement } from "../lib/membership.ts";
import { Index } from "../lib/index_db.ts";
import { withIndex } from "./temp_index.ts";
import { assertEquals, assertRejects } from "./assert.ts";
import { lockIndex, lockIndexElsewhere } from "./lock_index.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Beats for member `id` every `every` ms as a process whose wall clock runs
 * a minute behind would: each heartbeat says it lapsed long ago. Returns
 * the function that stops it.
 */
function beatBehind(index: Index, id: string, every: number): () => void {
  const timer = setInterval(() => index.heartbeat(id, Date.now() - 60_000).catch(() => {}), every);
  return () => clearInterval(timer);
}

/** Makes the index's heartbeat writes fail (database locked) while `failing()`. */
function failHeartbeats(index: Index, failing: () => boolean) {
  const heartbeat = index.heartbeat.bind(index);
  index.heartbeat = (id, until) =>
    failing() ? Promise.reject(new Error("database is locked")) : heartbeat(id, until);
}

// (The same holds for a join again after a fenced write: the first join is
// the one whose timing a test controls, no heartbeat timer running yet.)
Deno.test("a join that failed (its heartbeat write refused) is made anew by the next write, not failed at once", async () => {
  await withIndex(async (index) => {
    const m = new Membership(index, `m-${crypto.randomUUID()}`, { interval: 20 });
    index.membership = m;
    let failing = true;
    failHeartbeats(index, () => failing);
    try {
      await assertRejects(() => m.ready(), Error, "database is locked");
      failing = false;
      const fence = await m.ready();
      assertEquals(fence.key, ["fences", m.id]);
      assertEquals((await index.kv.get(fence.key)).versionstamp, fence.versionstamp);
    } finally {
      await m.leave();
    }
  });
});

Deno.test("a member that leaves while its heartbeat is in flight leaves no record of it behind", async () => {
  await withIndex(async (index) => {
    const m = new Membership(index, `m-${crypto.randomUUID()}`, { interval: 20 });
    index.membership = m;
    await m.join();
    // Hold the timer's next heartbeat until leave() has been called.
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    let beating!: () => void;
    const held = new Promise<void>((r) => beating = r);
    let beaten!: () => void;
    const landed = new Promise<void>((r) => beaten = r);
    const heartbeat = index.heartbeat.bind(index);
    index.heartbeat = async (id, until) => {
      if (until === 0) return await heartbeat(id, until);
      beating();
      await gate;
      await heartbeat(id, until).finally(beaten);
    };
    await held;
    const left = m.leave();
    release();
    await left;
    await landed;
    assertEquals((await index.kv.get(["members", m.id])).versionstamp, null, "heartbeat record");
    assertEquals((await index.kv.get(["fences", m.id])).versionstamp, null, "fence");
  });
});

Deno.test("a heartbeat held up past the time it could make its member sole evicts no lapsed member's fence", async () => {
  await withIndex(async (index) => {
    // Another member, lapsed (its heartbeat held up as well, say), with its fence.
    const other = `m-${crypto.randomUUID()}`;
    await index.heartbeat(other, Date.now() - 1);
    const fence = await index.fence(other, null);
    const m = new Membership(index, `m-${crypto.randomUUID()}`, { interval: 20 });
    index.membership = m;
    // Every heartbeat of this member's takes 5 intervals (a locked index).
    const heartbeat = index.heartbeat.bind(index);
    index.heartbeat = async (id, until) => {
      if (until > 0) await new Promise((r) => setTimeout(r, 100));
      return await heartbeat(id, until);
    };
    try {
      await m.join();
      await sleep(400); // its record unchanged for over six lapses
      assertEquals(m.sole, false);
      assertEquals((await index.kv.get(fence.key)).versionstamp, fence.versionstamp);
    } finally {
      await m.leave();
    }
  });
});

Deno.test("a member whose heartbeats carry a wall-clock time long past is live while they go on, evicted once they stop", async () => {
  await withIndex(async (index) => {
    const other = `m-${crypto.randomUUID()}`;
    await index.heartbeat(other, Date.now() - 60_000);
    const fence = await index.fence(other, null);
    const stop = beatBehind(index, other, 50);
    const m = new Membership(index, `m-${crypto.randomUUID()}`, { interval: 100 });
    index.membership = m;
    try {
      await m.join();
      await sleep(1000); // over three lapses of 300 ms
      assertEquals(m.sole, false, "not alone while the other beats");
      assertEquals((await index.kv.get(fence.key)).versionstamp, fence.versionstamp, "fence kept");
      stop();
      for (let i = 0; i < 100 && !m.sole; i++) await sleep(50);
      assertEquals(m.sole, true, "alone once its heartbeats stopped");
      assertEquals((await index.kv.get(fence.key)).versionstamp, null, "its fence evicted");
    } finally {
      stop();
      await m.leave();
    }
  });
});

Deno.test("liveMembers names a member whose heartbeats carry a wall-clock time long past, not one whose heartbeats stopped", async () => {
  await withIndex(async (index) => {
    const dead = `m-${crypto.randomUUID()}`;
    await index.heartbeat(dead, Date.now() + 60_000);
    assertEquals(
      (await liveMembers(index, "me", 100)).live,
      [],
      "its record unchanged for a lapse",
    );
    const behind = `m-${crypto.randomUUID()}`;
    const stop = beatBehind(index, behind, 50);
    try {
      assertEquals((await liveMembers(index, "me", 100)).live, [behind]);
    } finally {
      stop();
    }
  });
});

Deno.test("liveMembers names a member whose heartbeats a locked index held up through the watch, and leaves no record of its own", async () => {
  await withIndex(async (index, path) => {
    // The other member's own connection, as another process's: its held-up
    // writes do not hold up this one's reads.
    const theirs = new Index(await Deno.openKv(path));
    const other = `m-${crypto.randomUUID()}`;
    let timer: ReturnType<typeof setInterval> | undefined;
    try {
      await theirs.heartbeat(other, Date.now());
      const found = liveMembers(index, "me", 300);
      await sleep(100); // it has seen the record
      // Locked for over two lapses of 900 ms; the other beats on, held up.
      const unlock = lockIndex(path);
      timer = setInterval(() => theirs.heartbeat(other, Date.now()).catch(() => {}), 100);
      await sleep(2000);
      unlock();
      assertEquals((await found).live, [other]);
      assertEquals((await index.kv.get(["members", "me"])).versionstamp, null, "its own record");
    } finally {
      clearInterval(timer);
      theirs.close();
    }
  });
});

Deno.test("lapsed members' records and fences are removed while another member stays live, the live one's kept", async () => {
  await withIndex(async (index) => {
    const live = `live-${crypto.randomUUID()}`;
    await index.heartbeat(live, Date.now());
    const liveFence = await index.fence(live, null);
    const stop = beatBehind(index, live, 50);
    // Dead: with a fence; without one (it died between its heartbeat and its
    // fence); a fence whose record went (evicted, then it fenced anew).
    const dead = `dead-${crypto.randomUUID()}`;
    await index.heartbeat(dead, Date.now() + 60_000);
    const deadFence = await index.fence(dead, null);
    const unfenced = `unfenced-${crypto.randomUUID()}`;
    await index.heartbeat(unfenced, Date.now() + 60_000);
    const stray = await index.fence(`stray-${crypto.randomUUID()}`, null);
    const m = new Membership(index, `m-${crypto.randomUUID()}`, { interval: 100 });
    index.membership = m;
    const present = async (key: Deno.KvKey) => (await index.kv.get(key)).versionstamp !== null;
    const left = async () =>
      await present(["members", dead]) || await present(deadFence.key) ||
      await present(["members", unfenced]) || await present(stray.key);
    try {
      await m.join();
      for (let i = 0; i < 100 && await left(); i++) await sleep(50);
      assertEquals(await present(["members", dead]), false, "dead member's record");
      assertEquals(await present(deadFence.key), false, "dead member's fence");
      assertEquals(await present(["members", unfenced]), false, "unfenced member's record");
      assertEquals(await present(stray.key), false, "fence without a record");
      assertEquals(await present(["members", live]), true, "live member's record");
      assertEquals((await index.kv.get(liveFence.key)).versionstamp, liveFence.versionstamp);
      assertEquals(m.sole, false, "not alone beside a live member");
    } finally {
      stop();
      await m.leave();
    }
  });
});

Deno.test("a member whose heartbeats the index refuses (a full disk) keeps its reads answerable, and its writes fail", async () => {
  await withIndex(async (index) => {
    const m = new Membership(index, `m-${crypto.randomUUID()}`, { interval: 20 });
    index.membership = m;
    try {
      await m.join();
      let failing = false;
      const heartbeat = index.heartbeat.bind(index);
      index.heartbeat = (id, until) =>
        failing && until > 0
          ? Promise.reject(new TypeError("database or disk is full"))
          : heartbeat(id, until);
      failing = true;
      await sleep(100); // five beats, every one refused
      assertEquals(await m.settle(), true);
      assertEquals(m.answerable(performance.now()), true);
      await assertRejects(() => m.ready(), TypeError, "database or disk is full");
    } finally {
      await m.leave();
    }
  });
});

Deno.test("a member whose heartbeats the index refuses still sees a rebuild register, and answers nothing from the index", async () => {
  await withIndex(async (index) => {
    const m = new Membership(index, `m-${crypto.randomUUID()}`, { interval: 20 });
    index.membership = m;
    try {
      await m.join();
      const heartbeat = index.heartbeat.bind(index);
      index.heartbeat = (id, until) =>
        id === m.id && until > 0
          ? Promise.reject(new TypeError("database or disk is full"))
          : heartbeat(id, until);
      const rebuild = `rebuild:${crypto.randomUUID()}`;
      const beat = setInterval(() => heartbeat(rebuild, Date.now() + 60_000), 10);
      try {
        // Seen at the first beat that reads the rebuild's record (its write
        // fsynced first: on a loaded disk, longer than a few beats).
        for (let i = 0; i < 500 && !m.rebuilding; i++) await sleep(10);
        assertEquals(m.rebuilding, true);
        assertEquals(m.answerable(performance.now()), false);
      } finally {
        clearInterval(beat);
        await heartbeat(rebuild, 0);
      }
    } finally {
      await m.leave();
    }
  });
});

const PLACED = { volumes: ["a:1", "b:1", "c:1"], replicas: 2, subvolumes: 10, colocate: false };
const GROWN = { ...PLACED, volumes: ["a:1", "b:1", "c:1", "d:1"] };

/** A member with `placement`, beating every 20 ms; its reports of others' placements in `told`. */
async function placed(index: Index, placement: Placement, told: OtherPlacement[][] = []) {
  const m = new Membership(index, `m-${crypto.randomUUID()}`, {
    interval: 20,
    placement,
    onPlacements: (others) => told.push(others),
  });
  await m.join();
  return m;
}

/** Resolves once `told` holds a report `ok` accepts (the members beat every 20 ms). */
async function toldOf(told: OtherPlacement[][], ok: (o: OtherPlacement[]) => boolean) {
  while (!told.some(ok)) await sleep(10);
}

Deno.test("members placing keys otherwise each tell the other's placement, and that it left", async () => {
  await withIndex(async (index) => {
    const toldA: OtherPlacement[][] = [];
    const toldB: OtherPlacement[][] = [];
    const a = await placed(index, PLACED, toldA);
    const b = await placed(index, GROWN, toldB);
    try {
      await toldOf(toldA, (o) => o.length === 1);
      await toldOf(toldB, (o) => o.length === 1);
      assertEquals(a.otherPlacements, [{ id: b.id, placement: GROWN }]);
      assertEquals(b.otherPlacements, [{ id: a.id, placement: PLACED }]);
      await b.leave();
      await toldOf(toldA, (o) => o.length === 0 && toldA.indexOf(o) > 0);
      assertEquals(a.otherPlacements, []);
    } finally {
      await a.leave();
      await b.leave();
    }
  });
});

Deno.test("a member placing keys alike (its -volumes in another order) is not told", async () => {
  await withIndex(async (index) => {
    const told: OtherPlacement[][] = [];
    const a = await placed(index, PLACED, told);
    const same = await placed(index, { ...PLACED, volumes: [...PLACED.volumes].reverse() });
    const other = await placed(index, GROWN);
    try {
      await toldOf(told, (o) => o.some((p) => p.id === other.id));
      assertEquals(told.flat().filter((p) => p.id === same.id), []);
    } finally {
      for (const m of [a, same, other]) await m.leave();
    }
  });
});

Deno.test("a heartbeat record that never changes (a killed master's) is never told for another placement", async () => {
  await withIndex(async (index) => {
    await index.heartbeat("killed", Date.now() + 60_000, GROWN);
    const told: OtherPlacement[][] = [];
    const a = await placed(index, PLACED, told);
    const other = await placed(index, GROWN);
    try {
      await toldOf(told, (o) => o.some((p) => p.id === other.id));
      assertEquals(told.flat().filter((p) => p.id === "killed"), []);
    } finally {
      await a.leave();
      await other.leave();
    }
  });
});

Deno.test("a member's heartbeats do not pile up on a locked index: a read sent once the lock has been held for 30 beats answers while it is still held", async () => {
  await withIndex(async (index, path) => {
    const m = new Membership(index, `m-${crypto.randomUUID()}`, { interval: 100 });
    index.membership = m;
    await m.join();
    const unlock = lockIndex(path);
    // Each write waits 5 s on the lock, and Deno KV runs reads after the
    // writes it holds: a beat sent every 100 ms regardless, 30 of them
    // waited on before this read (minutes). One at a time: one beat's wait.
    let answered = false;
    let unlocked = false;
    const release = setTimeout(() => {
      unlocked = true;
      unlock();
    }, 30_000);
    try {
      await sleep(3000);
      await index.kv.get(["members", m.id]);
      answered = !unlocked;
    } finally {
      clearTimeout(release);
      if (!unlocked) unlock();
      await m.leave();
    }
    assertEquals(answered, true, "the read answered while the index was locked");
  });
});

Deno.test("a heartbeat on a locked index is not tried again once a stopping master cut off its requests: it fails with the cut-off's reason", async () => {
  await withIndex(async (index, path) => {
    const cut = new AbortController();
    index.commits.stopRetrying(cut.signal);
    const unlock = await lockIndexElsewhere(path);
    try {
      // Its first try waits on the lock (up to 5 s); the cut comes meanwhile.
      const beat = index.heartbeat("master", Date.now() + 3_000).then(() => null, (err) => err);
      cut.abort(new Error("Cut off"));
      assertEquals(String(await beat), "Error: Cut off");
    } finally {
      await unlock();
    }
  });
});
