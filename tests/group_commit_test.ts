// Unit tests of lib/group_commit.ts and lib/index_db.ts against a real Deno KV
// on a temporary file: batching, compare-and-set semantics, batch limits,
// prefix listing and the key size arithmetic.
import {
  type Cas,
  type Fence,
  Fenced,
  GroupCommit,
  LIMITS,
  retryBusy,
  takeBatch,
} from "../lib/group_commit.ts";
import { encodedKeySize, Index, keyFits } from "../lib/index_db.ts";
import type { Record, State } from "../lib/record.ts";
import { withIndex } from "./temp_index.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

const enc = new TextEncoder();
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function rec(state: State = "live", rvolumes = ["a:1", "b:2", "c:3"]): Record {
  return state === "writing"
    ? { state, rvolumes, hash: "", size: -1, owner: "test", until: Date.now() + 30_000 }
    : { state, rvolumes, hash: "5d41402abc4b2a76b9719d911017c592", size: 5 };
}

// ---- group commit ----

Deno.test("300 concurrent creates of distinct keys all succeed in a few commits", async () => {
  await withIndex(async (index) => {
    const keys = Array.from({ length: 300 }, (_, i) => enc.encode(`/gc/${i}`));
    const stamps = await Promise.all(keys.map((k) => index.cas(k, null, rec())));
    assert(stamps.every((s) => typeof s === "string" && s.length > 0), "all got a versionstamp");
    const { commits, writes, maxBatch } = index.commits.stats;
    assertEquals(writes, 300);
    assert(commits <= 10, `${commits} commits for 300 writes`);
    assert(maxBatch <= LIMITS.checks, `batch of ${maxBatch} checked writes`);
    assert(maxBatch >= 50, `largest batch ${maxBatch}`);
    for (const k of keys) assertEquals((await index.get(k))?.rec, rec());
  });
});

Deno.test("two concurrent creates of one key: exactly one wins, and its record is stored", async () => {
  await withIndex(async (index) => {
    const key = enc.encode("/race");
    const a = rec("live", ["a:1"]);
    const b = rec("live", ["b:2"]);
    const [sa, sb] = await Promise.all([index.cas(key, null, a), index.cas(key, null, b)]);
    assertEquals([sa, sb].filter((s) => s !== null).length, 1, `${sa} ${sb}`);
    const got = await index.get(key);
    assertEquals(got?.rec, sa !== null ? a : b);
    assertEquals(got?.versionstamp, sa ?? sb);
  });
});

Deno.test("two creates of one key queued together are split across batches; one wins", async () => {
  await withIndex(async (index) => {
    const key = enc.encode("/race2");
    // The first write commits alone; the next three wait together in the queue.
    const all = await Promise.all([
      index.cas(enc.encode("/other"), null, rec()),
      index.cas(key, null, rec("live", ["a:1"])),
      index.cas(key, null, rec("live", ["b:2"])),
      index.cas(enc.encode("/other2"), null, rec()),
    ]);
    assert(all[0] !== null && all[3] !== null);
    assertEquals([all[1], all[2]].filter((s) => s !== null).length, 1);
    assertEquals((await index.get(key))?.rec.rvolumes, ["a:1"], "first in line wins");
  });
});

Deno.test("a cas with a stale versionstamp returns null and leaves the record", async () => {
  await withIndex(async (index) => {
    const key = enc.encode("/stale");
    const v1 = await index.cas(key, null, rec("writing"));
    assert(v1);
    const v2 = await index.cas(key, v1, rec("live"));
    assert(v2 && v2 !== v1);
    assertEquals(await index.cas(key, v1, rec("unlinked")), null);
    assertEquals(await index.cas(key, null, rec("unlinked")), null, "create of an existing key");
    assertEquals(await index.get(key), { rec: rec("live"), versionstamp: v2 });
  });
});

Deno.test("a failed check in a batch fails only that write; the others are retried and commit", async () => {
  await withIndex(async (index) => {
    const key = enc.encode("/stale2");
    const v1 = await index.cas(key, null, rec("live"));
    assert(v1);
    const stale = "0".repeat(20);
    const results = await Promise.all([
      index.cas(enc.encode("/x0"), null, rec()),
      index.cas(key, stale, rec("unlinked")),
      index.cas(enc.encode("/x1"), null, rec()),
      index.cas(enc.encode("/x2"), null, rec()),
    ]);
    assertEquals(results[1], null);
    assert(results[0] && results[2] && results[3], JSON.stringify(results));
    assertEquals((await index.get(key))?.versionstamp, v1);
    assertEquals((await index.get(enc.encode("/x2")))?.rec, rec());
  });
});

Deno.test("cas with rec=null deletes the key, and only at the expected versionstamp", async () => {
  await withIndex(async (index) => {
    const key = enc.encode("/del");
    const v1 = await index.cas(key, null, rec());
    assert(v1);
    assertEquals(await index.cas(key, "0".repeat(20), null), null, "stale delete");
    assert(await index.get(key));
    const v2 = await index.cas(key, v1, null);
    assert(typeof v2 === "string");
    assertEquals(await index.get(key), null);
    assert(await index.cas(key, null, rec()), "the key can be created again");
  });
});

Deno.test("set writes unconditionally, many in one atomic (1,500 concurrent)", async () => {
  await withIndex(async (index) => {
    const keys = Array.from({ length: 1500 }, (_, i) => enc.encode(`/set/${i}`));
    await index.cas(keys[0], null, rec("writing"));
    await Promise.all(keys.map((k) => index.set(k, rec("unlinked"))));
    assert(index.commits.stats.maxBatch <= LIMITS.mutations);
    assertEquals((await index.get(keys[0]))?.rec, rec("unlinked"));
    assertEquals((await index.get(keys[1499]))?.rec, rec("unlinked"));
  });
});

Deno.test("concurrent creates of the longest keys stay within Deno KV's key byte limit", async () => {
  await withIndex(async (index) => {
    const keys = Array.from({ length: 100 }, (_, i) => {
      const k = new Uint8Array(2043).fill(0x41);
      k.set(enc.encode(String(i).padStart(3, "0")));
      return k;
    });
    const stamps = await Promise.all(keys.map((k) => index.cas(k, null, rec())));
    assert(stamps.every((s) => s !== null));
    assert(index.commits.stats.commits >= 3, "split by key bytes");
  });
});

Deno.test("concurrent records of REPLACEs (each holding the record it switches to) share commits within Deno KV's 800 KiB", async () => {
  // The record switched to went uncounted: 60 with 7 KB of metadata each
  // made one batch of twice the size Deno KV takes, refused whole, then
  // committed one by one (60 commits).
  await withIndex(async (index) => {
    const meta = { type: `a/${"b".repeat(7000)}` };
    const next = { rec: { ...rec(), meta }, tmp: "/ab/cd/tmp.0123456789abcdef" };
    const replacing: Record = { ...rec(), meta, owner: "test", until: Date.now() + 30_000, next };
    const keys = Array.from({ length: 60 }, (_, i) => enc.encode(`/replacing/${i}`));
    const stamps = await Promise.all(keys.map((k) => index.cas(k, null, replacing)));
    assert(stamps.every((s) => s !== null));
    const { commits, writes } = index.commits.stats;
    assertEquals(writes, 60);
    assert(commits <= 3, `${commits} commits for 60 writes`);
    assertEquals((await index.get(keys[59]))?.rec, replacing);
  });
});

Deno.test("a record Deno KV refuses (over 64 KiB) in a batch of small ones fails alone: the others commit", async () => {
  await withIndex(async (index) => {
    const keys = Array.from({ length: 20 }, (_, i) => enc.encode(`/mixed/${i}`));
    const huge: Record = { ...rec(), meta: { type: "x".repeat(70_000) } };
    const writes = keys.map((k, i) => index.cas(k, null, i === 7 ? huge : rec()));
    await assertRejects(() => writes[7], TypeError, "Value too large");
    for (const [i, w] of writes.entries()) {
      if (i === 7) continue;
      assertEquals(await w, (await index.kv.get(["k", keys[i]])).versionstamp);
    }
    assertEquals((await index.kv.get(["k", keys[7]])).versionstamp, null);
  });
});

Deno.test("records with tags of characters past U+00FF are counted at their stored size: no batch over Deno KV's 800 KiB", async () => {
  // Each tag string past U+00FF is stored at two bytes a UTF-16 unit: ~8 KB
  // a record. Counted at one byte a unit, ~190 went in one batch (of
  // unchecked writes, as rebuild's), which Deno KV refused as too large,
  // and each was then committed alone.
  await withIndex(async (index) => {
    const tags = Array.from({ length: 10 }, (_, i): [string, string] => [
      "ж".repeat(127) + i,
      "ж".repeat(256),
    ]);
    const tagged: Record = { ...rec(), meta: { tags } };
    const keys = Array.from({ length: 200 }, (_, i) => enc.encode(`/tagged/${i}`));
    await Promise.all(keys.map((k) => index.set(k, tagged)));
    assertEquals((await index.get(keys[199]))?.rec, tagged);
    const { commits, maxBatch } = index.commits.stats;
    assert(commits <= 3 && maxBatch < 110, `${commits} commits, ${maxBatch} at most in one`);
  });
});

Deno.test("concurrent creates of the longest keys share commits by 40: a check's key is not counted toward Deno KV's 80 KiB", async () => {
  // Counted twice, they went 20 to a commit; 40 is the most Deno KV takes
  // (41 are refused as "Total key size too large", then tried one by one).
  await withIndex(async (index) => {
    const keys = Array.from({ length: 80 }, (_, i) => {
      const k = new Uint8Array(2043).fill(0x42);
      k.set(enc.encode(String(i).padStart(3, "0")));
      return k;
    });
    const stamps = await Promise.all(keys.map((k) => index.cas(k, null, rec())));
    assert(stamps.every((s) => s !== null));
    assertEquals([index.commits.stats.commits, index.commits.stats.maxBatch], [2, 40]);
  });
});

// ---- fences (lib/membership.ts) ----

/** A write of `key` as member `fence`'s, straight to the group commit. */
function fencedWrite(index: Index, key: string, fence: Fence | null): Promise<string | null> {
  return index.commits.write({
    key: ["k", enc.encode(key)],
    expect: null,
    value: rec(),
    size: 100,
    keySize: 10,
    fence,
  });
}

/** Member `id`'s heartbeat record as it is now. */
async function recordOf(index: Index, id: string): Promise<{ id: string; versionstamp: string }> {
  const e = await index.kv.get(["members", id]);
  assert(e.versionstamp !== null, `${id} has a heartbeat record`);
  return { id, versionstamp: e.versionstamp };
}

Deno.test("writes carrying an evicted member's fence all fail with Fenced and write nothing", async () => {
  await withIndex(async (index) => {
    await index.heartbeat("m1", 1);
    const fence = await index.fence("m1", null);
    assert(await fencedWrite(index, "/f/before", fence), "a standing fence lets writes through");
    assertEquals(await index.evict([await recordOf(index, "m1")]), true);
    const keys = ["/f/a", "/f/b", "/f/c"];
    const results = await Promise.allSettled(keys.map((k) => fencedWrite(index, k, fence)));
    for (const r of results) {
      assert(r.status === "rejected" && r.reason instanceof Fenced, String(r.status));
    }
    for (const k of keys) assertEquals(await index.get(enc.encode(k)), null, k);
    assertEquals((await index.kv.get(["members", "m1"])).versionstamp, null, "record tidied");
  });
});

Deno.test("a member's fence made anew after eviction lets its writes through again", async () => {
  await withIndex(async (index) => {
    await index.heartbeat("m1", 1);
    const old = await index.fence("m1", null);
    assertEquals(await index.fence("m1", old.versionstamp), old, "a standing fence is kept");
    assert(await index.evict([await recordOf(index, "m1")]));
    const fresh = await index.fence("m1", old.versionstamp);
    assert(fresh.versionstamp !== old.versionstamp);
    assert(await fencedWrite(index, "/f/after", fresh));
  });
});

Deno.test("evict keeps the record and fence of a member that beat since it was judged lapsed", async () => {
  await withIndex(async (index) => {
    await index.heartbeat("m1", 1);
    const fence = await index.fence("m1", null);
    const judged = await recordOf(index, "m1");
    await index.heartbeat("m1", 1); // it beats after all
    assertEquals(await index.evict([judged]), false);
    assert(await fencedWrite(index, "/f/m1", fence), "not evicted");
    assert((await index.kv.get(["members", "m1"])).versionstamp !== null, "record kept");
  });
});

Deno.test("evict removes a fence whose member has no heartbeat record, unless one is written meanwhile", async () => {
  await withIndex(async (index) => {
    const orphan = await index.fence("m1", null);
    const kept = await index.fence("m2", null);
    await index.heartbeat("m2", 1); // registers between the look and the eviction
    assertEquals(
      await index.evict([{ id: "m1", versionstamp: null }, { id: "m2", versionstamp: null }]),
      false,
    );
    await assertRejects(() => fencedWrite(index, "/f/m1", orphan), Fenced);
    assert(await fencedWrite(index, "/f/m2", kept), "m2's fence stands");
  });
});

Deno.test("a member that leaves takes its fence along", async () => {
  await withIndex(async (index) => {
    const fence = await index.fence("m1", null);
    await index.heartbeat("m1", 0);
    await assertRejects(() => fencedWrite(index, "/f/left", fence), Fenced);
  });
});

// ---- takeBatch ----

type Pending = Parameters<typeof takeBatch>[0][number];

function pending(cas: Partial<Cas> & { key: Deno.KvKey }, log?: unknown[]): Pending {
  return {
    cas: { expect: null, value: 1, size: 10, keySize: 10, fence: null, ...cas },
    resolve: () => log?.push("resolve"),
    reject: () => log?.push("reject"),
    until: Infinity,
  };
}

Deno.test("takeBatch defers a second write of the same key to a later batch", () => {
  const k = (s: string) => ["k", enc.encode(s)];
  const q = [
    pending({ key: k("a") }),
    pending({ key: k("b") }),
    pending({ key: k("a"), value: 2 }),
    pending({ key: k("c") }),
    pending({ key: k("a"), value: 3 }),
  ];
  const names = (b: Pending[]) =>
    b.map((p) => `${dec(p.cas.key[1] as Uint8Array)}${p.cas.value}`).join(",");
  assertEquals(names(takeBatch(q)), "a1,b1,c1");
  assertEquals(names(takeBatch(q)), "a2");
  assertEquals(names(takeBatch(q)), "a3");
  assertEquals(q.length, 0);
  assertEquals(takeBatch(q), []);
});

Deno.test("takeBatch never mixes fences, and keeps each key's order across them", () => {
  const f = (v: string): Fence => ({ key: ["fences", "m"], versionstamp: v });
  const q = [
    pending({ key: ["k", "a"], value: 1, fence: f("1") }),
    pending({ key: ["k", "b"], value: 1, fence: f("2") }),
    pending({ key: ["k", "b"], value: 2, fence: f("1") }),
    pending({ key: ["k", "c"], value: 1, fence: f("1") }),
  ];
  const names = (b: Pending[]) =>
    b.map((p) => `${String(p.cas.key[1])}${p.cas.value}@${p.cas.fence?.versionstamp}`).join(",");
  assertEquals(names(takeBatch(q)), "a1@1,c1@1", "b2 waits behind b1");
  assertEquals(names(takeBatch(q)), "b1@2");
  assertEquals(names(takeBatch(q)), "b2@1");
});

Deno.test("takeBatch tells apart keys that only look alike", () => {
  const q = [
    pending({ key: ["k", enc.encode("1")] }),
    pending({ key: ["k", "1"] }),
    pending({ key: ["k", 1] }),
    pending({ key: ["k", 1n] }),
    pending({ key: ["k", new Uint8Array([0x01])] }),
    pending({ key: ["k\u0000", "x"] }),
    pending({ key: ["k", "\u0000x"] }),
  ];
  assertEquals(takeBatch(q).length, 7);
});

Deno.test("takeBatch takes at most 100 checked writes", () => {
  const q = Array.from({ length: 250 }, (_, i) => pending({ key: ["k", i] }));
  assertEquals(takeBatch(q).length, 100);
  assertEquals(takeBatch(q).length, 100);
  assertEquals(takeBatch(q).length, 50);
});

Deno.test("takeBatch takes up to 1000 unchecked writes", () => {
  const q = Array.from({ length: 2500 }, (_, i) => pending({ key: ["k", i], expect: undefined }));
  assertEquals(takeBatch(q).length, 1000);
  assertEquals(q.length, 1500);
});

Deno.test("takeBatch of a marked index (KV Connect) leaves room for the commit's mark: 999 unchecked writes", () => {
  // 1,001 mutations: Deno KV refuses the atomic ("Too many mutations").
  const q = Array.from({ length: 1500 }, (_, i) => pending({ key: ["k", i], expect: undefined }));
  assertEquals(takeBatch(q, { marked: true }).length, LIMITS.mutations - 1);
});

Deno.test("takeBatch always takes at least one write, however big", () => {
  const q = [pending({ key: ["k", 1], size: 10_000_000, keySize: 100_000 })];
  assertEquals(takeBatch(q).length, 1);
});

Deno.test("takeBatch respects every LIMIT over 100 random queues, keeping each key's order", () => {
  for (let round = 0; round < 100; round++) {
    const n = Math.floor(Math.random() * 1500);
    const pool = 1 + Math.floor(Math.random() * 400);
    const queue: Pending[] = [];
    const order = new Map<number, number[]>();
    for (let i = 0; i < n; i++) {
      const k = Math.floor(Math.random() * pool);
      const r = Math.random();
      queue.push(pending({
        key: ["k", k],
        expect: r < 0.3 ? undefined : r < 0.6 ? null : "00000000000000010000",
        value: i,
        size: Math.floor(Math.random() * (Math.random() < 0.1 ? 60_000 : 500)),
        keySize: 3 + Math.floor(Math.random() * (Math.random() < 0.2 ? 2045 : 50)),
      }));
      order.set(k, [...(order.get(k) ?? []), i]);
    }
    const seen = new Map<number, number[]>();
    let taken = 0;
    while (queue.length > 0) {
      const before = queue.length;
      const batch = takeBatch(queue);
      assert(batch.length > 0, "progress");
      assertEquals(queue.length, before - batch.length);
      taken += batch.length;
      const keys = batch.map((p) => p.cas.key[1] as number);
      assertEquals(new Set(keys).size, keys.length, "a key twice in one batch");
      const checks = batch.filter((p) => p.cas.expect !== undefined).length;
      assert(checks <= LIMITS.checks, `${checks} checks`);
      assert(batch.length <= LIMITS.mutations, `${batch.length} mutations`);
      const keyBytes = batch.reduce((s, p) => s + p.cas.keySize, 0);
      const total = batch.reduce((s, p) => s + p.cas.keySize + p.cas.size, 0);
      if (batch.length > 1) {
        assert(keyBytes <= LIMITS.keyBytes, `${keyBytes} key bytes`);
        assert(total <= LIMITS.totalBytes, `${total} bytes`);
      }
      for (const p of batch) {
        const k = p.cas.key[1] as number;
        seen.set(k, [...(seen.get(k) ?? []), p.cas.value as number]);
      }
    }
    assertEquals(taken, n);
    for (const [k, ids] of order) assertEquals(seen.get(k), ids, `order of key ${k}`);
  }
});

// ---- Index.list ----

async function fill(index: Index, entries: [string | Uint8Array, State][]) {
  const stamps = await Promise.all(
    entries.map(([k, s]) => index.cas(typeof k === "string" ? enc.encode(k) : k, null, rec(s))),
  );
  assert(stamps.every((s) => s !== null));
}

const opts = (o: Partial<Parameters<Index["list"]>[1]> = {}) => ({
  state: "live" as State,
  limit: 0,
  cap: 1_000_000,
  ...o,
});

Deno.test("list gives a prefix's keys in byte order, and only that prefix", async () => {
  await withIndex(async (index) => {
    await fill(index, [
      ["/p/b", "live"],
      ["/p/a", "live"],
      ["/p/\u00e9", "live"],
      ["/p/Z", "live"],
      ["/p", "live"],
      ["/p/a/b", "live"],
      ["/o", "live"],
      ["/q", "live"],
      ["/p0", "live"],
    ]);
    const got = await index.list(enc.encode("/p/"), opts());
    assertEquals(got.keys.map(dec), ["/p/Z", "/p/a", "/p/a/b", "/p/b", "/p/\u00e9"]);
    assertEquals(got.next, null);
    assertEquals(got.tooMany, false);
    assertEquals(
      (await index.list(enc.encode("/p"), opts())).keys.map(dec),
      ["/p", "/p/Z", "/p/a", "/p/a/b", "/p/b", "/p/\u00e9", "/p0"],
    );
    assertEquals((await index.list(new Uint8Array(), opts())).keys.length, 9, "empty prefix");
  });
});

Deno.test("list orders binary keys bytewise, zero bytes included", async () => {
  await withIndex(async (index) => {
    const keys = [[1], [1, 0], [1, 0, 0], [1, 0, 1], [1, 1], [1, 0xff], [2]].map((b) =>
      new Uint8Array(b)
    );
    await fill(index, [...keys].reverse().map((k) => [k, "live"]));
    assertEquals((await index.list(new Uint8Array([1]), opts())).keys, keys.slice(0, 6));
    assertEquals((await index.list(new Uint8Array([1, 0]), opts())).keys, keys.slice(1, 4));
  });
});

Deno.test("list returns only keys in the asked state", async () => {
  await withIndex(async (index) => {
    await fill(index, [["/s/a", "live"], ["/s/b", "unlinked"], ["/s/c", "writing"], [
      "/s/d",
      "live",
    ]]);
    const p = enc.encode("/s/");
    assertEquals((await index.list(p, opts())).keys.map(dec), ["/s/a", "/s/d"]);
    assertEquals((await index.list(p, opts({ state: "unlinked" }))).keys.map(dec), ["/s/b"]);
    assertEquals((await index.list(p, opts({ state: "writing" }))).keys.map(dec), ["/s/c"]);
  });
});

Deno.test("list pages by limit, next and start", async () => {
  await withIndex(async (index) => {
    const names = ["a", "b", "c", "d", "e"].map((n) => `/pg/${n}`);
    await fill(index, [...names.map((n): [string, State] => [n, "live"]), ["/pg/bb", "unlinked"]]);
    const p = enc.encode("/pg/");
    const p1 = await index.list(p, opts({ limit: 2 }));
    assertEquals(p1.keys.map(dec), names.slice(0, 2));
    assertEquals(dec(p1.next!), "/pg/c", "next skips keys in other states");
    const p2 = await index.list(p, opts({ limit: 2, start: p1.next! }));
    assertEquals(p2.keys.map(dec), names.slice(2, 4));
    const p3 = await index.list(p, opts({ limit: 2, start: p2.next! }));
    assertEquals(p3.keys.map(dec), names.slice(4));
    assertEquals(p3.next, null);
    const exact = await index.list(p, opts({ limit: 5 }));
    assertEquals(exact.keys.length, 5);
    assertEquals(exact.next, null, "no next page when the limit is exactly met");
    const mid = await index.list(p, opts({ start: enc.encode("/pg/bz") }));
    assertEquals(mid.keys.map(dec), names.slice(2), "start between keys");
  });
});

Deno.test("list clamps a start below the prefix to the prefix", async () => {
  await withIndex(async (index) => {
    await fill(index, [["/a", "live"], ["/c/1", "live"], ["/c/2", "live"]]);
    const got = await index.list(enc.encode("/c/"), opts({ start: enc.encode("/a") }));
    assertEquals(got.keys.map(dec), ["/c/1", "/c/2"]);
    const empty = await index.list(enc.encode("/c/"), opts({ start: new Uint8Array() }));
    assertEquals(empty.keys.map(dec), ["/c/1", "/c/2"]);
  });
});

Deno.test("list with a start past the prefix's range answers no keys", async () => {
  await withIndex(async (index) => {
    await fill(index, [["/a/1", "live"], ["/b", "live"]]);
    const got = await index.list(enc.encode("/a/"), opts({ start: enc.encode("/b") }));
    assertEquals(got, { keys: [], next: null, tooMany: false });
  });
});

Deno.test("list with a start longer than any key lists the keys after it", async () => {
  await withIndex(async (index) => {
    const head = "/a/" + "x".repeat(2040);
    await fill(index, [["/a/1", "live"], [head, "live"], ["/a/y", "live"]]);
    const start = enc.encode("/a/" + "x".repeat(3000));
    const got = await index.list(enc.encode("/a/"), opts({ start }));
    assertEquals(got.keys.map(dec), ["/a/y"]);
  });
});

Deno.test("list works for a prefix of 0xff bytes (no successor)", async () => {
  await withIndex(async (index) => {
    const ff = new Uint8Array([0xff]);
    const keys = [[0xfe], [0xff], [0xff, 0], [0xff, 0xff], [0xff, 0xff, 0xff, 1]].map((b) =>
      new Uint8Array(b)
    );
    await fill(index, keys.map((k) => [k, "live"]));
    assertEquals((await index.list(ff, opts())).keys, keys.slice(1));
    assertEquals((await index.list(new Uint8Array([0xff, 0xff]), opts())).keys, keys.slice(3));
    const paged = await index.list(ff, opts({ limit: 2, start: new Uint8Array([0xff, 0]) }));
    assertEquals(paged.keys, keys.slice(2, 4));
    assertEquals(paged.next, keys[4]);
  });
});

Deno.test("list reports tooMany past the cap", async () => {
  await withIndex(async (index) => {
    await fill(index, Array.from({ length: 5 }, (_, i): [string, State] => [`/cap/${i}`, "live"]));
    const p = enc.encode("/cap/");
    const over = await index.list(p, opts({ cap: 3 }));
    assertEquals(over.tooMany, true);
    assertEquals((await index.list(p, opts({ cap: 5 }))).tooMany, false);
  });
});

// ---- key sizes ----

Deno.test("encodedKeySize: a 2043-byte key fits, 2044 does not; zero bytes count twice", () => {
  const a = (n: number) => new Uint8Array(n).fill(0x41);
  assertEquals(encodedKeySize(a(2043)), 2048);
  assertEquals(keyFits(a(2043)), true);
  assertEquals(keyFits(a(2044)), false);
  assertEquals(encodedKeySize(new Uint8Array([0, 1, 0])), 5 + 3 + 2);
  assertEquals(keyFits(new Uint8Array(1021)), true);
  assertEquals(keyFits(new Uint8Array(1022)), false);
  assertEquals(encodedKeySize(new Uint8Array()), 5);
});

Deno.test("keyFits agrees with what Deno KV really accepts", async () => {
  await withIndex(async (index) => {
    const cases = [
      new Uint8Array(2043).fill(0x41),
      new Uint8Array(2044).fill(0x41),
      new Uint8Array(1021),
      new Uint8Array(1022),
      (() => {
        const k = new Uint8Array(1500).fill(0x41);
        k.fill(0, 0, 543); // 1500 + 543 + 5 = 2048
        return k;
      })(),
    ];
    for (const key of cases) {
      if (keyFits(key)) {
        assert(await index.cas(key, null, rec()), `${key.length}-byte key should commit`);
      } else {
        await assertRejects(() => index.cas(key, null, rec()), TypeError);
      }
    }
    assertEquals(keyFits(cases[4]), true);
  });
});

/**
 * A Deno KV whose commits fail with `message` while `fail.on`, and succeed
 * after; `fail.commits` counts the commits tried.
 */
function failingKv(message: string, fail: { on: boolean; commits?: number }): Deno.Kv {
  const atomic = {
    check: () => atomic,
    set: () => atomic,
    delete: () => atomic,
    commit: () => {
      fail.commits = (fail.commits ?? 0) + 1;
      return fail.on
        ? Promise.reject(new Error(message))
        : Promise.resolve({ ok: true, versionstamp: "00000000000000010000" });
    },
  };
  return { atomic: () => atomic } as unknown as Deno.Kv;
}

function cas(key: string): Cas {
  return { key: ["k", key], expect: undefined, value: 1, size: 1, keySize: 8, fence: null };
}

Deno.test("a commit the index refuses is counted, and said failing since then until one succeeds", async () => {
  const fail = { on: true };
  const gc = new GroupCommit(failingKv("disk I/O error", fail));
  const before = Date.now();
  await assertRejects(() => gc.write(cas("a")), Error, "disk I/O error");
  await assertRejects(() => gc.write(cas("b")), Error, "disk I/O error");
  assertEquals(gc.stats.failures, 2);
  assertEquals(gc.stats.commits, 0);
  assertEquals(gc.failing?.reason, "disk I/O error");
  assert(gc.failing!.since >= before, "since the first failure");
  fail.on = false;
  assertEquals(await gc.write(cas("c")), "00000000000000010000");
  assertEquals(gc.failing, null);
  assertEquals([gc.stats.failures, gc.stats.commits], [2, 1]);
});

Deno.test("a commit refused for a lock held past retrying says the index stayed locked", () => {
  const gc = new GroupCommit(failingKv("database is locked", { on: true }));
  gc.failed(new Error("database is locked"));
  assertEquals(
    gc.failing?.reason,
    "the index stayed locked (another process holds its write lock) past 10 s of retries",
  );
  assertEquals(gc.stats.failures, 1);
});

Deno.test("a batch whose commit a lock refused past retrying fails whole, not tried again write by write", async () => {
  // Each write alone would wait out the lock's retries again: a batch of N
  // took N times as long to fail.
  const fail = { on: true, commits: 0 };
  const gc = new GroupCommit(failingKv("database is locked", fail), { busyMs: 200 });
  const writes = ["a", "b", "c"].map((k) => gc.write(cas(k)));
  for (const w of writes) await assertRejects(() => w, Error, "database is locked");
  assertEquals(gc.stats.failures, 1, `one failed commit (${fail.commits} tries)`);
});

const LOCKED_ERROR = () => new Error("database is locked");

Deno.test("writes that waited out their retries behind a commit a lock refused fail with it, untried", async () => {
  // Queued behind a commit the lock holds (each try waits up to 5 s on it),
  // a write used to begin its own 10 s of retries only once that commit
  // failed: with writes coming in, each waited 15 to 25 s or more, and some
  // until the lock was released. Its retries count from when it was queued.
  // The first try is held until refused below; any later one is refused at once.
  const tries: PromiseWithResolvers<Deno.KvCommitResult>[] = [];
  const atomic = {
    check: () => atomic,
    set: () => atomic,
    delete: () => atomic,
    commit: () => {
      tries.push(Promise.withResolvers());
      if (tries.length > 1) tries.at(-1)!.reject(LOCKED_ERROR());
      return tries.at(-1)!.promise;
    },
  };
  const gc = new GroupCommit({ atomic: () => atomic } as unknown as Deno.Kv, { busyMs: 50 });
  const first = rejection(gc.write(cas("a")));
  await new Promise((r) => setTimeout(r, 10));
  assertEquals(tries.length, 1, "the first commit is being tried");
  const queued = rejection(gc.write(cas("b")));
  await new Promise((r) => setTimeout(r, 100)); // past both writes' 50 ms
  tries[0].reject(LOCKED_ERROR());
  assertEquals(((await first) as Error).message, "database is locked");
  assertEquals(((await queued) as Error).message, "database is locked");
  assertEquals(tries.length, 1, "the queued write was not tried: the lock held all its time");
  assertEquals(gc.stats.failures, 1);
});

/** What `p` rejects with (null: it resolved). */
function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => null, (err) => err);
}

Deno.test("retryBusy tries a locked write again, but not once its stop signal has aborted: it fails with the reason", async () => {
  const stop = new AbortController();
  let tries = 0;
  const reason = new Error("stopping");
  const work = () => {
    if (++tries === 2) stop.abort(reason);
    return Promise.reject(LOCKED_ERROR());
  };
  assertEquals(await rejection(retryBusy(work, 60_000, stop.signal)), reason);
  assertEquals(tries, 2);
});

Deno.test("GroupCommit.stopRetrying: past the abort a commit refused as locked fails with the reason, and later writes at once", async () => {
  let commits = 0;
  const stop = new AbortController();
  const reason = new Error("stopping");
  const atomic = {
    check: () => atomic,
    set: () => atomic,
    delete: () => atomic,
    commit: () => {
      commits++;
      stop.abort(reason);
      return Promise.reject(LOCKED_ERROR());
    },
  };
  const commit = new GroupCommit({ atomic: () => atomic } as unknown as Deno.Kv);
  commit.stopRetrying(stop.signal);
  const cas = (k: string): Cas => ({
    key: ["k", k],
    expect: null,
    value: 1,
    size: 8,
    keySize: 8,
    fence: null,
  });
  assertEquals(await rejection(commit.write(cas("a"))), reason);
  assertEquals(await rejection(commit.write(cas("b"))), reason);
  assertEquals(commits, 1);
});

/**
 * A Deno KV whose commits wait for `gate.open()`; `sets` lists the keys
 * (their last part) each commit wrote.
 */
function gatedKv(): { kv: Deno.Kv; sets: string[][]; open(): void } {
  const gate = Promise.withResolvers<void>();
  const sets: string[][] = [];
  let batch: string[] = [];
  const atomic = {
    check: () => atomic,
    set: (key: Deno.KvKey) => (batch.push(String(key[1])), atomic),
    delete: () => atomic,
    commit: async () => {
      sets.push(batch);
      batch = [];
      await gate.promise;
      return { ok: true, versionstamp: "00000000000000010000" };
    },
  };
  return { kv: { atomic: () => atomic } as unknown as Deno.Kv, sets, open: gate.resolve };
}

Deno.test("a write still queued behind a commit under way fails at its signal's abort, with the reason, and is never written", async () => {
  // A PUT's claim queued behind a heartbeat's commit that a locked index
  // holds for 5 s: cut off by a stopping master, it answers at once.
  const { kv, sets, open } = gatedKv();
  const gc = new GroupCommit(kv);
  const first = gc.write(cas("a"));
  while (sets.length === 0) await new Promise((r) => setTimeout(r, 1));
  const cut = new AbortController();
  const reason = new Error("cut off");
  const queued = rejection(gc.write(cas("b"), { signal: cut.signal }));
  cut.abort(reason);
  assertEquals(await queued, reason);
  open();
  assertEquals(await first, "00000000000000010000");
  assertEquals(sets, [["a"]]);
});

Deno.test("a write whose signal has aborted already fails at once, and one in a commit under way at the abort is waited for", async () => {
  const { kv, sets, open } = gatedKv();
  const gc = new GroupCommit(kv);
  const reason = new Error("cut off");
  assertEquals(await rejection(gc.write(cas("a"), { signal: AbortSignal.abort(reason) })), reason);
  const cut = new AbortController();
  const trying = gc.write(cas("b"), { signal: cut.signal });
  while (sets.length === 0) await new Promise((r) => setTimeout(r, 1));
  cut.abort(reason);
  open();
  // It may land (the index may have taken it): its outcome is the commit's.
  assertEquals(await trying, "00000000000000010000");
  assertEquals(sets, [["b"]]);
});

Deno.test("a lone write dropped at its signal's abort before its commit began leaves the committer working: the next write lands", async () => {
  const { kv, sets, open } = gatedKv();
  open();
  const gc = new GroupCommit(kv);
  const cut = new AbortController();
  const reason = new Error("cut off");
  // Queued, then dropped in the same turn: the committer wakes to an empty queue.
  const dropped = rejection(gc.write(cas("a"), { signal: cut.signal }));
  cut.abort(reason);
  assertEquals(await dropped, reason);
  await new Promise((r) => setTimeout(r, 10));
  assertEquals(await gc.write(cas("b")), "00000000000000010000");
  assertEquals(sets, [["b"]]);
});
