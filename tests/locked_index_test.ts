// A master's index whose SQLite write lock another process holds (a stuck
// writer, a backup tool): Deno KV runs reads after the writes it holds up,
// each waiting 5 s on the lock, and the master's heartbeat writes every
// second. What the master answers then, and what it leaves behind.
import { assert, assertEquals } from "./assert.ts";
import { Cluster, randomKey, status } from "./cluster.ts";
import { lockIndex } from "./lock_index.ts";
import { withIndex } from "./temp_index.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

async function statusJson(c: Cluster): Promise<Json> {
  const res = await fetch(`${c.url}/?status`, { headers: { Accept: "application/json" } });
  assertEquals(res.status, 200);
  return await res.json();
}

/** Polls `check` until it returns a value (not undefined), or fails naming `what`. */
async function until<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  for (let tries = 0; tries < 100; tries++) {
    const v = await check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Gave up waiting: ${what}`);
}

const LIVE = { state: "live" as const, rvolumes: ["a:1"], hash: "", size: 1 };

Deno.test("the views' figures of a locked index fall back to those last read, and say since when it has not answered", async () => {
  await withIndex(async (index, path) => {
    await index.set(new TextEncoder().encode("/k"), LIVE);
    const before = await index.views();
    assertEquals([before.counts?.live, before.incomplete, before.unanswered], [1, null, null]);
    const unlock = lockIndex(path);
    // A write held up by the lock (a heartbeat): reads queue behind it.
    const held = index.kv.set(["held"], 1).then(() => "written", (err) => String(err));
    let during;
    try {
      during = await index.views();
    } finally {
      unlock();
    }
    assertEquals([during.counts, during.incomplete], [before.counts, null]);
    assert(during.unanswered !== null, "the views say the index has not answered");
    await held;
    const after = await index.views();
    assertEquals([after.counts?.live, after.unanswered], [1, null]);
  }, { recount: 0 });
});

Deno.test("?status and ?metrics answer on a locked index, with the figures last read and since when it has not answered", async () => {
  const c = await Cluster.start();
  let unlock: (() => void) | null = null;
  try {
    assertEquals(await status(c.url + randomKey("/locked"), { method: "PUT", body: "x" }), 201);
    const before = await statusJson(c);
    assertEquals([before.keys.live, before.index.unanswered], [1, null]);
    unlock = lockIndex(`${c.db}/index.sqlite3`);
    // Once a heartbeat waits on the lock, the page's read waits behind it.
    const during = await until("?status says the index does not answer", async () => {
      const s = await statusJson(c);
      return s.index.unanswered ? s : undefined;
    });
    assertEquals(Object.keys(during.index.unanswered), ["since"]);
    assertEquals(during.keys, before.keys);
    assertEquals(during.index.incomplete, null);
    const page = await fetch(`${c.url}/?status`);
    assertEquals(page.status, 200);
    const html = await page.text();
    const since = html.match(/Index not answering reads since ([0-9: -]+) UTC/);
    assert(since, html);
    assert(html.includes("another process may hold its write lock"), html);
    const res = await fetch(`${c.url}/?metrics`);
    assertEquals(res.status, 200);
    const text = await res.text();
    assert(/^mkv_index_reads_unanswered 1$/m.test(text), text);
    assert(/^mkv_keys\{state="live"\} 1$/m.test(text), text);
    unlock();
    unlock = null;
    await until("?status says the index answers again", async () => {
      const s = await statusJson(c);
      return s.index.unanswered === null ? s : undefined;
    });
    const after = await (await fetch(`${c.url}/?metrics`)).text();
    assert(/^mkv_index_reads_unanswered 0$/m.test(after), after);
  } finally {
    unlock?.();
    await c.stop();
  }
});
