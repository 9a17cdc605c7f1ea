// Unit tests of lib/membership.ts against a real Deno KV on a temporary file:
// joining again after a failure, leaving.
import { Membership } from "../lib/membership.ts";
import type { Index } from "../lib/index_db.ts";
import { withIndex } from "./temp_index.ts";
import { assertEquals, assertRejects } from "./assert.ts";

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
      assertEquals(m.sole, false);
      assertEquals((await index.kv.get(fence.key)).versionstamp, fence.versionstamp);
    } finally {
      await m.leave();
    }
  });
});
