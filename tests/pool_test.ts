// lib/pool.ts: the tools' worker pool. A failure must not end the pool
// while other works still run (a tool would report and exit with writes
// in flight), and every failure must reach the caller.
import { pool } from "../lib/pool.ts";
import { assertEquals } from "./assert.ts";

/** A promise and the function that resolves it. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = () => {};
  const wait = new Promise<void>((r) => open = r);
  return { wait, open };
}

Deno.test("pool: a failure waits for the works still running, and takes no new item", async () => {
  const slow = gate();
  const started: number[] = [];
  const finished: number[] = [];
  const run = pool([0, 1, 2, 3, 4], 2, async (i) => {
    started.push(i);
    if (i === 1) throw new Error("item 1 failed");
    await slow.wait;
    finished.push(i);
  });
  let settled = false;
  const outcome = run.then(() => "resolved", (err) => err.message).finally(() => settled = true);
  await new Promise((r) => setTimeout(r, 20));
  assertEquals(settled, false, "not settled while item 0 still runs");
  slow.open();
  assertEquals(await outcome, "item 1 failed");
  assertEquals(finished, [0]);
  assertEquals(started, [0, 1]);
});

Deno.test("pool: every failure of the works running reaches the caller", async () => {
  const go = gate();
  let started = 0;
  const err = await pool([0, 1, 2], 3, async (i) => {
    // Each fails once all three run.
    if (++started === 3) go.open();
    await go.wait;
    throw new Error(`item ${i} failed`);
  }).then(() => null, (e) => e);
  assertEquals(err instanceof AggregateError, true);
  assertEquals((err as AggregateError).errors.map((e) => e.message), [
    "item 0 failed",
    "item 1 failed",
    "item 2 failed",
  ]);
  assertEquals(
    (err as AggregateError).message,
    "3 failures: item 0 failed; item 1 failed; item 2 failed",
  );
});

Deno.test("pool: items that fail to read wait for the works running, then throw", async () => {
  const slow = gate();
  const finished: number[] = [];
  async function* items() {
    yield 0;
    throw new Error("cannot read the next item");
  }
  let settled = false;
  const outcome = pool(items(), 4, async (i) => {
    await slow.wait;
    finished.push(i);
  }).then(() => "resolved", (err) => err.message).finally(() => settled = true);
  await new Promise((r) => setTimeout(r, 20));
  assertEquals(settled, false, "not settled while item 0 still runs");
  slow.open();
  assertEquals(await outcome, "cannot read the next item");
  assertEquals(finished, [0]);
});

Deno.test("pool: every item is worked once when nothing fails", async () => {
  const seen: number[] = [];
  await pool([0, 1, 2, 3, 4, 5, 6], 3, async (i) => {
    await new Promise((r) => setTimeout(r, 7 - i));
    seen.push(i);
  });
  assertEquals(seen.sort(), [0, 1, 2, 3, 4, 5, 6]);
});
