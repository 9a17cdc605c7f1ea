// The record cache of a sole master (lib/record_cache.ts): bounded by the
// memory its records hold, so long keys cannot make it grow past the bound.
import { RECORD_COST, RecordCache } from "../lib/record_cache.ts";
import { LIVE, withSoleIndex } from "./temp_index.ts";
import { assert, assertEquals } from "./assert.ts";

Deno.test("the record cache holds fewer long keys than short ones within its bound", () => {
  const max = 10 * (100 + RECORD_COST);
  const short = new RecordCache<number>(max);
  const long = new RecordCache<number>(max);
  for (let i = 0; i < 50; i++) {
    short.remember(`k${i}`.padEnd(100, "-"), i, String(i).padStart(4, "0"));
    long.remember(`k${i}`.padEnd(2043, "-"), i, String(i).padStart(4, "0"));
  }
  assertEquals(short.size, 10);
  assertEquals(short.bytes, 10 * (100 + RECORD_COST));
  const fit = Math.floor(max / (2043 + RECORD_COST));
  assert(fit < 10, "a long key counts for more than a short one");
  assertEquals(long.size, fit);
  assertEquals(long.bytes, fit * (2043 + RECORD_COST));
});

Deno.test("the record cache lets the longest remembered go first", () => {
  const cache = new RecordCache<string>(3 * (1 + RECORD_COST));
  for (const id of ["a", "b", "c", "d"]) cache.remember(id, id.toUpperCase(), "0001");
  assertEquals(cache.get("a"), undefined);
  assertEquals(cache.get("b"), { value: "B", versionstamp: "0001" });
  assertEquals(cache.get("d"), { value: "D", versionstamp: "0001" });
});

Deno.test("the record cache keeps the newer of two records of a key, counted once", () => {
  const cache = new RecordCache<string>();
  cache.remember("k", "new", "0002");
  cache.remember("k", "old", "0001");
  assertEquals(cache.get("k"), { value: "new", versionstamp: "0002" });
  cache.remember("k", "newer", "0003");
  assertEquals(cache.get("k"), { value: "newer", versionstamp: "0003" });
  assertEquals(cache.size, 1);
  assertEquals(cache.bytes, 1 + RECORD_COST);
  cache.delete("k");
  cache.delete("k");
  assertEquals(cache.bytes, 0);
});

const enc = new TextEncoder();

Deno.test("a sole master's index caches records only within its byte bound", async () => {
  const keyBytes = 1000;
  await withSoleIndex(async (index) => {
    const keys: Uint8Array[] = [];
    for (let i = 0; i < 5; i++) {
      const k = enc.encode(`/cache/${i}/${crypto.randomUUID()}/`.padEnd(keyBytes, "x"));
      assert(await index.cas(k, null, LIVE) !== null, "wrote the key");
      keys.push(k);
    }
    // Room for three: the first two written are read from the index again.
    assertEquals(index.cached(keys[0]), undefined);
    assertEquals(index.cached(keys[1]), undefined);
    for (const k of keys.slice(2)) assertEquals(index.cached(k)?.rec, LIVE);
    assertEquals((await index.get(keys[0]))?.rec, LIVE);
  }, { cacheBytes: 3 * (keyBytes + RECORD_COST) });
});
