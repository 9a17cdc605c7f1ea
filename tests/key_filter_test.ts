// The key filter of a sole master (lib/index_db.ts): made again from the
// index when full, at the size of the keys the index holds, so a master that
// writes and deletes fresh keys for weeks keeps a filter of one size.
import { Membership } from "../lib/membership.ts";
import type { Record } from "../lib/record.ts";
import { withIndex } from "./temp_index.ts";
import { assert, assertEquals } from "./assert.ts";

const enc = new TextEncoder();
const LIVE: Record = {
  state: "live",
  rvolumes: ["a:1", "b:2", "c:3"],
  hash: "5d41402abc4b2a76b9719d911017c592",
  size: 5,
};

Deno.test("a sole master's key filter keeps its size while keys are written and deleted", async () => {
  await withIndex(async (index) => {
    const m = new Membership(index, `m-${crypto.randomUUID()}`, {
      interval: 60_000,
      onSole: (sole) => index.onSole(sole),
    });
    index.membership = m;
    try {
      await m.join();
      await index.filterBuilt();
      const first = index.filterSize;
      assert(first !== null, "a sole master has a filter");
      // Five times the keys it was sized for, each deleted once written:
      // the index never holds more than one. One at a time, each scan
      // awaited, so a scan finds no write of the others under way.
      for (let i = 0; i < 500; i++) {
        const k = enc.encode(`/filter/${crypto.randomUUID()}`);
        const vs = await index.cas(k, null, LIVE);
        assert(vs !== null, "wrote the key");
        assert(await index.cas(k, vs, null) !== null, "deleted the key");
        await index.filterBuilt();
      }
      assertEquals(index.filterSize, first);
    } finally {
      await m.leave();
    }
  }, { filterMin: 100 });
});
