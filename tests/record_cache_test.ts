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

/** Reads of a key's record that answer what the index held when sent, once `release` resolves. */
function heldReads(kv: Deno.Kv, held: { release: Promise<void> | null }): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop !== "get" || !held.release) return value?.bind?.(target) ?? value;
      const release = held.release;
      return async (key: Deno.KvKey) => {
        const read = await target.get(key);
        await release;
        return read;
      };
    },
  });
}

Deno.test("a sole master's read answered after its key's record was forgotten (a write lost to another) is not cached", async () => {
  // A read of KV Connect's sent before a write of the key, answered after
  // another write of the key lost (its record forgotten: it may be stale),
  // cached the record from before both: GETs answered from it until the
  // key's next write here.
  const held: { release: Promise<void> | null } = { release: null };
  await withSoleIndex(async (index) => {
    const key = enc.encode(`/forgotten/${crypto.randomUUID()}`);
    const first = await index.cas(key, null, LIVE);
    index.onSole(true); // memory starts over: the next read is the index's
    await index.filterBuilt();
    const release = Promise.withResolvers<void>();
    held.release = release.promise;
    const read = index.get(key);
    held.release = null;
    const replaced = { ...LIVE, size: 6 };
    assert(await index.cas(key, first, replaced) !== null, "the write landed");
    assertEquals(await index.cas(key, first, { ...LIVE, size: 7 }), null);
    release.resolve();
    assertEquals((await read)?.versionstamp, first);
    assertEquals(index.cached(key), undefined);
    assertEquals((await index.get(key))?.rec, replaced);
  }, { wrap: (kv) => heldReads(kv, held) });
});
