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
