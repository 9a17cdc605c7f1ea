// The key filter of a sole master (lib/index_db.ts): made again from the
// index when full, at the size of the keys the index holds, so a master that
// writes and deletes fresh keys for weeks keeps a filter of one size.
import { LIVE, withSoleIndex } from "./temp_index.ts";
import { assert, assertEquals } from "./assert.ts";

const enc = new TextEncoder();

Deno.test("a sole master's key filter keeps its size while keys are written and deleted", async () => {
  await withSoleIndex(async (index) => {
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
  }, { filterMin: 100 });
});
