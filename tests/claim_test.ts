// Claims (lib/claim.ts) against a real Deno KV on a temporary file: a lease
// is renewed for as long as the work goes on, a claim taken over is lost and
// then writes nothing, and the one renewal timer stops once no claim is held.
import { Claim, isClaimed, renewing } from "../lib/claim.ts";
import type { Record } from "../lib/record.ts";
import { Store } from "../lib/store.ts";
import { FLAGS, storeOptions } from "../lib/config.ts";
import { parseFlags } from "../lib/flags.ts";
import { Fenced, IndexGone } from "../lib/group_commit.ts";
import { Membership } from "../lib/membership.ts";
import type { Index } from "../lib/index_db.ts";
import { LIVE, withIndex } from "./temp_index.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

const enc = new TextEncoder();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const key = () => enc.encode(`/claim/${crypto.randomUUID()}`);

Deno.test("a claim held for several leases is renewed throughout, then finishes", async () => {
  await withIndex(async (index) => {
    const k = key();
    const claim = await Claim.take(index, k, null, LIVE.rvolumes, { owner: "me", lease: 90 });
    assert(claim !== null, "took the claim");
    for (let i = 0; i < 5; i++) {
      await sleep(60);
      const e = await index.get(k);
      assertEquals(e?.rec.state, "writing");
      assert(isClaimed(e!.rec), `lease lapsed after ${60 * (i + 1)} ms`);
    }
    assertEquals(await claim.finish(LIVE), true);
    assertEquals((await index.get(k))?.rec, LIVE);
  });
});

Deno.test("a claim taken over by another writer is lost: its signal aborts, finish writes nothing", async () => {
  await withIndex(async (index) => {
    const k = key();
    const claim = await Claim.take(index, k, null, LIVE.rvolumes, { owner: "me", lease: 60 });
    assert(claim !== null, "took the claim");
    // Another master, after the lease ran out, say.
    const theirs: Record = { ...LIVE, hash: "00000000000000000000000000000000" };
    const e = await index.get(k);
    assert((await index.cas(k, e!.versionstamp, theirs)) !== null, "took over");
    for (let i = 0; i < 20 && !claim.signal.aborted; i++) await sleep(20);
    assert(claim.signal.aborted, "the renewal found the claim gone");
    assertEquals(await claim.finish(LIVE), false);
    assertEquals((await index.get(k))?.rec, theirs);
  });
});

/** Runs `fn` with a claim on a fresh key, taken as a member of the index (lib/membership.ts). */
async function withMemberClaim(
  fn: (index: Index, m: Membership, claim: Claim, k: Uint8Array) => Promise<void>,
) {
  await withIndex(async (index) => {
    const m = new Membership(index, `m-${crypto.randomUUID()}`, { interval: 400 });
    index.membership = m;
    try {
      await m.join();
      const k = key();
      const claim = await Claim.take(index, k, null, LIVE.rvolumes, { owner: "me", lease: 60_000 });
      assert(claim !== null, "took the claim");
      await fn(index, m, claim, k);
    } finally {
      await m.leave();
    }
  });
}

Deno.test("a claim whose renewal is fenced (its member taken for gone) renews once the member has joined again, and finishes", async () => {
  await withMemberClaim(async (index, m, claim, k) => {
    // Another member evicts this one's fence (as it does a lapsed member's).
    await index.kv.delete(["fences", m.id]);
    claim.renew();
    assertEquals(await claim.finish(LIVE), true);
    assertEquals(claim.signal.aborted, false);
    assertEquals((await index.get(k))?.rec, LIVE);
  });
});

Deno.test("a claim whose renewal is fenced twice fails Fenced: finish writes nothing", async () => {
  await withMemberClaim(async (index, m, claim, k) => {
    const taken = await index.get(k);
    const old = (await index.kv.get(["fences", m.id])).versionstamp;
    await index.kv.delete(["fences", m.id]);
    claim.renew();
    // Evicted again as it joins again: the new fence goes too (the renewal
    // waits 2.5 heartbeat intervals, 1 s, after making it).
    let fence = null;
    while (fence === null || fence === old) {
      await sleep(5);
      fence = (await index.kv.get(["fences", m.id])).versionstamp;
    }
    await index.kv.delete(["fences", m.id]);
    await assertRejects(() => claim.finish(LIVE), Fenced);
    assert(claim.signal.reason instanceof Fenced, String(claim.signal.reason));
    assertEquals(await index.get(k), taken, "the record as taken");
  });
});

Deno.test("a claim whose note failed (an index error, told to its caller) renews on and finishes: no renewal rejects unhandled", async () => {
  await withIndex(async (index) => {
    const k = key();
    const claim = await Claim.take(index, k, null, LIVE.rvolumes, { owner: "me", lease: 60_000 });
    assert(claim !== null, "took the claim");
    const cas = index.cas.bind(index);
    index.cas = () => Promise.reject(new Error("database is locked"));
    await assertRejects(() => claim.note(LIVE), Error, "database is locked");
    index.cas = cas;
    claim.renew();
    assertEquals(await claim.finish(LIVE), true);
    assertEquals((await index.get(k))?.rec, LIVE);
  });
});

Deno.test("a claim whose renewal found the index file removed fails IndexGone, not as lost to another writer", async () => {
  // Taken for lost, the request answered 500 "Lost the claim" where every
  // other write answers 503 saying the master is to be restarted.
  await withIndex(async (index, path) => {
    index.watchFile(path);
    const claim = await Claim.take(index, key(), null, LIVE.rvolumes, {
      owner: "me",
      lease: 60_000,
    });
    assert(claim !== null, "took the claim");
    await Deno.remove(path);
    claim.renew();
    await assertRejects(() => claim.finish(LIVE), IndexGone);
    assert(claim.signal.reason instanceof IndexGone, String(claim.signal.reason));
  });
});

Deno.test("50 claims at once each finish, and no renewal timer is left", async () => {
  await withIndex(async (index) => {
    const keys = Array.from({ length: 50 }, key);
    const claims = await Promise.all(
      keys.map((k) => Claim.take(index, k, null, LIVE.rvolumes, { owner: "me", lease: 60 })),
    );
    await sleep(50);
    assert(renewing(), "claims held, the renewal timer runs");
    const done = await Promise.all(claims.map((c) => c!.finish(null)));
    assertEquals(renewing(), false);
    assertEquals(done, Array(50).fill(true));
    for (const k of keys) assertEquals(await index.get(k), null);
  });
});

Deno.test("a PUT whose lease ran short while its master's thread was held, the key untouched, renews it and goes on to the volumes", async () => {
  await withIndex(async (index) => {
    // No volume answers: the write goes as far as they, then gives the key up.
    const args = ["-volumes", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "-lease", "400ms"];
    const store = new Store(index, storeOptions(parseFlags(args, FLAGS).flags));
    const k = key();
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (sent) return ctl.close();
        sent = true;
        await sleep(50); // the claim is taken meanwhile
        // The master's thread held (a pause, a long GC) for most of the lease,
        // and nobody takes the key meanwhile.
        const until = Date.now() + 350;
        while (Date.now() < until) { /* busy */ }
        ctl.enqueue(enc.encode("hello"));
      },
    });
    const out = await store.put(k, body, { contentLength: 5 });
    assertEquals(out.status, 500, out.message);
    assert(out.message?.startsWith('Cannot PUT "http://127.0.0.1:'), out.message);
    assertEquals(renewing(), false, "a claim no write holds is still renewed");
    assertEquals(await index.get(k), null, "the failed write's claim is removed");
  });
});

Deno.test("a claim waiting for its member to join the index again is dropped at its signal's abort, before the join ends: nothing written", async () => {
  await withIndex(async (index) => {
    const m = new Membership(index, `m-${crypto.randomUUID()}`, { interval: 100 });
    index.membership = m;
    try {
      await m.join();
      // Taken for gone: the next write joins again, then waits 2.5 intervals.
      m.lapsed();
      const k = key();
      const cut = new AbortController();
      const opts = { owner: "me", lease: 60_000, signal: cut.signal };
      const taking = Claim.take(index, k, null, LIVE.rvolumes, opts);
      const reason = new Error("Cut off");
      cut.abort(reason);
      const first = await Promise.race([
        taking.then(() => "taken", (err) => err === reason ? "dropped" : `failed: ${err}`),
        m.ready().then(() => "joined"),
      ]);
      assertEquals(first, "dropped");
      await m.ready();
      assertEquals(await index.get(k), null);
    } finally {
      await m.leave();
    }
  });
});
