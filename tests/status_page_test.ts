// The status page's summary of what is wrong, rendered from a known state:
// which volumes are down, since when and for how long, an incomplete index,
// a rebuild running (lib/status.ts).
import { age, problems, renderHtml, type Status, type VolumeStatus } from "../lib/status.ts";
import { assert, assertEquals } from "./assert.ts";

const NOW = "2026-11-24T22:32:40.000Z";

function volume(
  name: string,
  up: boolean | null,
  since: string | null,
  reason = "",
  space: { size: number; free: number } | null = null,
): VolumeStatus {
  const ms = up === null ? null : 0.7;
  const disk = { size: space?.size ?? null, free: space?.free ?? null };
  return { volume: name, up, ms, checked: NOW, since, reason, keys: 3, ...disk };
}

/** A status; what `index` leaves out is as WHOLE's. */
function status(volumes: VolumeStatus[], index: Partial<Status["index"]>): Status {
  const empty = Array.from({ length: 60 }, () => 0);
  return {
    time: NOW,
    started: "2026-11-24T20:00:00.000Z",
    index: { ...WHOLE, ...index },
    volumes,
    keys: { live: 3, unlinked: 0, writing: 0, total: 3, counted: NOW },
    traffic: {
      interval_s: 10,
      end: NOW,
      methods: { GET: empty, PUT: empty },
      classes: { "2xx": empty, "5xx": empty },
    },
    errors: [],
  };
}

const WHOLE: Status["index"] = {
  incomplete: null,
  rebuilding: false,
  failing: null,
  placement: null,
  placements: [],
  unindexed: null,
  unanswered: null,
};

Deno.test("status page: how long, in the largest two units", () => {
  assertEquals(age("2026-11-24T22:32:28.500Z", NOW), "11 s");
  assertEquals(age("2026-11-24T22:27:37.000Z", NOW), "5 min 3 s");
  assertEquals(age("2026-11-24T20:27:00.000Z", NOW), "2 h 5 min");
  assertEquals(age("2026-11-21T18:00:00.000Z", NOW), "3 d 4 h");
  // A clock that stepped back is no negative age.
  assertEquals(age("2026-11-24T22:33:00.000Z", NOW), "0 s");
});

Deno.test("status page: a volume down is said at the top, since when, for how long and why", () => {
  const s = status([
    volume("10.0.0.1:3001", true, "2026-11-24T20:00:00.000Z"),
    volume(
      "10.0.0.2:3001",
      false,
      "2026-11-24T22:27:37.000Z",
      "HEAD / failed: timed out after 1000ms",
    ),
    volume("10.0.0.3:3001", null, null),
  ], WHOLE);
  assertEquals(problems(s), [
    "Volume 10.0.0.2:3001 down since 2026-11-24 22:27:37 UTC (for 5 min 3 s): " +
    '<span class="reason">HEAD / failed: timed out after 1000ms</span>',
  ]);
  const html = renderHtml(s);
  assert(
    html.includes(`<ul id="problems">\n<li class="problem">Volume 10.0.0.2:3001 down since`),
    html,
  );
  // Its row: no probe time (the last answered probe's would read as an answer), its age.
  const row = html.split("\n").find((l) => l.includes('data-volume="10.0.0.2:3001"'))!;
  assert(row.includes('<td class="num probe"></td>'), row);
  assert(row.includes('<span class="age">(5 min 3 s)</span>'), row);
  const up = html.split("\n").find((l) => l.includes('data-volume="10.0.0.1:3001"'))!;
  assert(up.includes('<td class="num probe">0.7</td>'), up);
});

Deno.test("status page: every volume up says so; one not yet probed is not counted up", () => {
  const up = (name: string) => volume(name, true, "2026-11-24T20:00:00.000Z");
  assertEquals(problems(status([up("a:1"), up("b:1")], WHOLE)), []);
  assert(
    renderHtml(status([up("a:1"), up("b:1")], WHOLE))
      .includes('<p id="problems" class="ok">All 2 volumes up</p>'),
  );
  assert(
    renderHtml(status([up("a:1"), volume("b:1", null, null)], WHOLE))
      .includes('<p id="problems" class="ok">1 of 2 volumes up</p>'),
  );
});

Deno.test("status page: an incomplete index and a rebuild running are said at the top", () => {
  const s = status([volume("a:1", true, NOW)], {
    incomplete: { why: "a rebuild could not read 1 folder", since: "2026-11-23T08:00:00.000Z" },
    rebuilding: true,
    failing: null,
    unanswered: null,
  });
  assertEquals(problems(s), [
    "Index incomplete since 2026-11-23 08:00:00 UTC: a rebuild could not read 1 folder; keys on " +
    "the volumes it could not read are missing: run rebuild again",
    "A rebuild of the index is running: requests other than ?status and ?metrics answer 503",
  ]);
});

Deno.test("status page: index writes failing are said at the top, since when, for how long and why", () => {
  const s = status([volume("a:1", true, NOW)], {
    incomplete: null,
    rebuilding: false,
    failing: {
      since: "2026-11-24T22:32:10.000Z",
      reason: "the index stayed locked (another process holds its write lock) past 10 s of retries",
    },
    unanswered: null,
  });
  assertEquals(problems(s), [
    "Index writes failing since 2026-11-24 22:32:10 UTC (for 30 s): " +
    '<span class="reason">the index stayed locked (another process holds its write lock) past ' +
    "10 s of retries</span>; writes answer 503 until one succeeds",
  ]);
});

Deno.test("status page: an index not answering reads is said at the top, since when, and when the keys shown were counted", () => {
  const s = status([volume("a:1", true, NOW)], {
    ...WHOLE,
    unanswered: { since: "2026-11-24T22:32:25.000Z" },
  });
  s.keys.counted = "2026-11-24T22:32:20.000Z";
  assertEquals(problems(s), [
    "Index not answering reads since 2026-11-24 22:32:25 UTC (for 15 s): another process may " +
    "hold its write lock; the figures shown are the last read (keys counted at 2026-11-24 " +
    "22:32:20 UTC)",
  ]);
  s.keys.counted = null;
  assertEquals(problems(s), [
    "Index not answering reads since 2026-11-24 22:32:25 UTC (for 15 s): another process may " +
    "hold its write lock; the figures shown are the last read (keys not counted yet)",
  ]);
});

Deno.test("status page: a live master placing keys otherwise is said at the top, with both flags", () => {
  const mine = { volumes: ["a:1", "b:1"], replicas: 2, subvolumes: 10, colocate: false };
  const other = { ...mine, volumes: ["a:1", "b:1", "c:1"] };
  const s = status([volume("a:1", true, NOW)], {
    placement: mine,
    placements: [{ id: "host2:81:ab12cd34", placement: other }],
  });
  assertEquals(problems(s), [
    "Master host2:81:ab12cd34 on this index places keys by <code>-volumes a:1,b:1,c:1 " +
    "-replicas 2 -subvolumes 10 -colocate=false</code>, this master by <code>-volumes a:1,b:1 " +
    "-replicas 2 -subvolumes 10 -colocate=false</code>: give every master the same flags, then " +
    "run rebalance",
  ]);
});

Deno.test("status page: an index that held no key at start beside volumes holding files is said at the top", () => {
  const s = status([volume("a:1", true, NOW)], {
    unindexed: {
      since: NOW,
      volumes: [{ volume: "a:1", file: "a:1/sv03/5d/41/aGVsbG8=" }, {
        volume: "b:1",
        file: "b:1/x",
      }],
    },
  });
  assertEquals(problems(s), [
    "The index held no key at this master's start while volumes hold files: a:1, b:1 (e.g. " +
    "a:1/sv03/5d/41/aGVsbG8=); their keys answer 404: run rebuild (master stopped)",
  ]);
});

Deno.test("status page: a volume nearly full (under 5% free) is said at the top; each row says its disk's free space", () => {
  const since = "2026-11-24T20:00:00.000Z";
  const s = status([
    volume("a:1", true, since, "", { size: 8_000_000_000_000, free: 2_500_000_000_000 }),
    volume("b:1", true, since, "", { size: 8_000_000_000_000, free: 390_000_000_000 }),
    volume("c:1", true, since),
  ], WHOLE);
  assertEquals(problems(s), [
    "Volume b:1 nearly full: 390.0 GB free of 8.0 TB (4%); writes onto it answer 507 once it " +
    "is full: free space there, or add volumes",
  ]);
  const html = renderHtml(s);
  const row = (v: string) => html.split("\n").find((l) => l.includes(`data-volume="${v}"`))!;
  assert(row("a:1").includes('<td class="free">2.5 TB free of 8.0 TB (31%)</td>'), row("a:1"));
  // A volume that does not say (stock nginx): nothing.
  assert(row("c:1").includes('<td class="free"></td>'), row("c:1"));
});
