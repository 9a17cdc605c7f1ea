// A KV Connect index (-db https://...): Deno's client sends a commit again
// when its answer is lost (a network error, a 5xx from a proxy in front of
// the server), and the second try's checks fail against what the first
// wrote. These prove such a commit is taken as made, not as lost to
// another writer. The index is a local file behind a Deno.Kv whose
// commits, once armed, are each sent twice and answered by the second try,
// as that client does (an answer is lost now and then: a commit whose
// answer is lost each time is sent again and again). An answer whose
// status came but whose body could not be read is not sent again: the
// client throws, the commit made all the same (`unread`).
import { Index } from "../lib/index_db.ts";
import type { Part } from "../lib/index_db.ts";
import { Membership } from "../lib/membership.ts";
import { LIVE } from "./temp_index.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

const enc = new TextEncoder();

/**
 * How many of the next commits' answers are lost; `unread`: thrown, not
 * sent again; `reads`: how many of the next reads of one key fail (the
 * server unreachable).
 */
interface Lost {
  answers: number;
  unread?: boolean;
  reads?: number;
}

/** The body KV Connect's client could not read: the commit was made, the client throws. */
const UNREAD = "error reading a body from connection: connection reset";

/** A read of KV Connect's that failed. */
const UNREACHED = "error sending request: connection refused";

/** The next `lost.answers` commits' answers are lost, each sent again (KV Connect's client). */
function losingAnswers(kv: Deno.Kv, lost: Lost): Deno.Kv {
  const wrap = (op: Deno.AtomicOperation): Deno.AtomicOperation => {
    const proxy: Deno.AtomicOperation = new Proxy(op, {
      get(target, prop) {
        if (prop === "commit") {
          return async () => {
            const first = await target.commit();
            if (lost.answers === 0) return first;
            lost.answers--;
            if (lost.unread) throw new TypeError(UNREAD);
            return await target.commit();
          };
        }
        const value = Reflect.get(target, prop, target);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          const out = value.apply(target, args);
          return out === target ? proxy : out;
        };
      },
    });
    return proxy;
  };
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") return () => wrap(target.atomic());
      if (prop === "get" && (lost.reads ?? 0) > 0) {
        lost.reads!--;
        return () => Promise.reject(new TypeError(UNREACHED));
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function withLosingIndex(fn: (index: Index, lost: Lost) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "mkv_kv_connect_test_" });
  const lost: Lost = { answers: 0 };
  const index = new Index(losingAnswers(await Deno.openKv(`${dir}/index.kv`), lost), {
    marked: true,
  });
  try {
    await fn(index, lost);
  } finally {
    index.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Three key writes at once (one batch) are each made, with the versionstamp the index holds. */
async function assertThreeMade(index: Index) {
  const keys = ["/a", "/b", "/c"].map((k) => enc.encode(k));
  const made = await Promise.all(keys.map((k) => index.cas(k, null, LIVE)));
  for (const [i, vs] of made.entries()) {
    const stored = await index.kv.get(["k", keys[i]]);
    assert(vs !== null, `write ${i} taken for lost to another writer`);
    assertEquals(vs, stored.versionstamp);
  }
}

Deno.test("a key's write whose commit landed, its answer lost and the commit sent again, is made: not lost to another writer", async () => {
  await withLosingIndex(async (index, lost) => {
    lost.answers = 1;
    // Three at once: one batch, one commit sent twice.
    await assertThreeMade(index);
  });
});

Deno.test("a key's write whose checks really failed is still lost to the other writer", async () => {
  await withLosingIndex(async (index, lost) => {
    const key = enc.encode("/taken");
    assert(await index.cas(key, null, LIVE) !== null);
    lost.answers = 1;
    assertEquals(await index.cas(key, null, { ...LIVE, size: 6 }), null);
    assertEquals((await index.get(key))?.rec.size, 5);
  });
});

Deno.test("an UploadPart's record whose commit landed, its answer lost and sent again, replaces the earlier part, not itself", async () => {
  // Taken for another upload of its number, the part's own file was
  // removed after its 200: CompleteMultipartUpload then lacked it.
  await withLosingIndex(async (index, lost) => {
    const id = crypto.randomUUID();
    await index.createUpload(id, { key: enc.encode("/b/k"), created: Date.now() }, {
      bucket: "b",
    });
    const { versionstamp } = (await index.upload(id))!;
    const part = (path: string): Part => ({
      path,
      volumes: ["a:1"],
      md5: "5d41402abc4b2a76b9719d911017c592",
      size: 5,
      mtime: Date.now(),
    });
    const first = part("/parts/first");
    assertEquals(await index.putPart(id, versionstamp, 1, first), { replaced: null });
    lost.answers = 1;
    const second = part("/parts/second");
    assertEquals(await index.putPart(id, versionstamp, 1, second), { replaced: first });
    assertEquals((await index.parts(id)).get(1), second);
  });
});

Deno.test("key writes whose commit landed but whose answer could not be read are made: not lost to another writer", async () => {
  // The batch's commit threw, so each write was tried alone: its check
  // failed against what the batch had written, and it was answered as lost.
  await withLosingIndex(async (index, lost) => {
    Object.assign(lost, { answers: 1, unread: true });
    await assertThreeMade(index);
  });
});

Deno.test("a lone key write whose commit landed but whose answer could not be read is made, not failed", async () => {
  await withLosingIndex(async (index, lost) => {
    Object.assign(lost, { answers: 1, unread: true });
    const key = enc.encode("/alone");
    const vs = await index.cas(key, null, LIVE);
    assertEquals(vs, (await index.kv.get(["k", key])).versionstamp);
    assertEquals(index.commits.failing, null);
  });
});

Deno.test("a key write whose commit threw and did not land still fails with the error", async () => {
  await withLosingIndex(async (index) => {
    const key = enc.encode("/refused");
    // Too large a record for Deno KV: refused before anything is written.
    const huge = { ...LIVE, meta: { type: "x".repeat(70_000) } };
    await assertRejects(() => index.cas(key, null, huge), TypeError, "Value too large");
    assertEquals((await index.kv.get(["k", key])).versionstamp, null);
  });
});

Deno.test("a bucket's record whose commit landed but whose answer could not be read is made", async () => {
  await withLosingIndex(async (index, lost) => {
    Object.assign(lost, { answers: 1, unread: true });
    assertEquals(await index.createBucket("unread", Date.now()), true);
    assert(await index.bucket("unread") !== null);
  });
});

Deno.test("a sole master's key write that threw, whether it landed unknown (its mark unread), leaves no record cached: the next read is the index's", async () => {
  // The record cached before the write stayed, and GETs answered from it
  // while the index held the write's record.
  await withLosingIndex(async (index, lost) => {
    const m = new Membership(index, "sole", {
      interval: 60_000,
      onSole: (sole) => index.onSole(sole),
    });
    index.membership = m;
    try {
      await m.join();
      const key = enc.encode("/cached");
      const vs = await index.cas(key, null, { ...LIVE, state: "writing", owner: "m", until: 1 });
      assertEquals(index.cached(key)?.rec.state, "writing");
      Object.assign(lost, { answers: 1, unread: true, reads: 1 });
      await assertRejects(() => index.cas(key, vs, LIVE), TypeError, UNREAD);
      assertEquals(index.cached(key), undefined);
      assertEquals((await index.get(key))?.rec, LIVE);
    } finally {
      await m.leave();
    }
  });
});
