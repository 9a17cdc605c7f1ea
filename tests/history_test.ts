// The status page's memory: requests per time slot in a ring, and the last
// errors in a bounded ring.
import { RecentErrors, Traffic } from "../lib/history.ts";
import { assertEquals } from "./assert.ts";

Deno.test("traffic counts each request in its slot, by method and by status class", () => {
  const t = new Traffic({ slotMs: 10_000, slots: 6 });
  t.request("PUT", 201, 1_000);
  t.request("GET", 302, 2_000);
  t.request("GET", 404, 12_000);
  t.request("PATCH", 405, 12_500);
  t.request("DELETE", 500, 25_000);
  const s = t.snapshot(29_999);
  assertEquals(s.interval_s, 10);
  assertEquals(s.end, new Date(30_000).toISOString());
  // Oldest slot first; slots before the first request are empty.
  assertEquals(s.methods.PUT, [0, 0, 0, 1, 0, 0]);
  assertEquals(s.methods.GET, [0, 0, 0, 1, 1, 0]);
  assertEquals(s.methods.other, [0, 0, 0, 0, 1, 0]);
  assertEquals(s.methods.DELETE, [0, 0, 0, 0, 0, 1]);
  assertEquals(s.classes["2xx"], [0, 0, 0, 1, 0, 0]);
  assertEquals(s.classes["3xx"], [0, 0, 0, 1, 0, 0]);
  assertEquals(s.classes["4xx"], [0, 0, 0, 0, 2, 0]);
  assertEquals(s.classes["5xx"], [0, 0, 0, 0, 0, 1]);
});

Deno.test("traffic forgets slots older than the ring, even after a long quiet time", () => {
  const t = new Traffic({ slotMs: 10_000, slots: 3 });
  t.request("PUT", 201, 0);
  t.request("PUT", 201, 10_000);
  t.request("PUT", 201, 30_000);
  assertEquals(t.snapshot(30_000).methods.PUT, [1, 0, 1]);
  // Quiet for longer than the whole ring: everything has gone.
  assertEquals(t.snapshot(1_000_000).methods.PUT, [0, 0, 0]);
  t.request("PUT", 201, 1_000_000);
  assertEquals(t.snapshot(1_000_000).methods.PUT, [0, 0, 1]);
  // A clock stepping back counts into the newest slot.
  t.request("PUT", 201, 500_000);
  assertEquals(t.snapshot(1_000_000).methods.PUT, [0, 0, 2]);
});

Deno.test("recent errors keep the newest, newest first, up to their size", () => {
  const e = new RecentErrors(3);
  assertEquals(e.list(), []);
  for (let i = 1; i <= 5; i++) e.add(`what ${i}`, `reason ${i}`, i * 1000);
  assertEquals(e.list(), [
    { time: new Date(5000).toISOString(), what: "what 5", reason: "reason 5" },
    { time: new Date(4000).toISOString(), what: "what 4", reason: "reason 4" },
    { time: new Date(3000).toISOString(), what: "what 3", reason: "reason 3" },
  ]);
});
