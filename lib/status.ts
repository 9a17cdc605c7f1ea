// GET /?status: the master's state for people, as an HTML page that reloads
// itself every 5 s (server-rendered, inline SVG charts, no script), or as
// JSON with `Accept: application/json`. It gathers what other modules keep:
// volume health (lib/health.ts), the key counts of the index's cached scan
// (lib/index_db.ts), the request history and recent errors (lib/history.ts).
// The page's icon is inline (empty): a browser would otherwise GET
// /favicon.ico, a key (404, or -fallback's redirect), counted in the
// metrics and charts, and a console error, at each opening.
import { describeSpace, health, nearlyFull, type Space } from "./health.ts";
import { recentErrors, traffic } from "./history.ts";
import type { ErrorEntry, TrafficSnapshot } from "./history.ts";
import type { Store } from "./store.ts";
import { unindexed } from "./unindexed.ts";
import {
  describePlacement,
  memberName,
  type OtherPlacement,
  type Placement,
  placementAdvice,
} from "./membership.ts";
import { type Failing, LOCKED } from "./group_commit.ts";

/** When this process started (this module loads with the master). */
const STARTED = Date.now();

/** Seconds between reloads of the HTML page. */
const REFRESH_S = 5;

export interface VolumeStatus {
  volume: string;
  /** Null until the first probe or call. */
  up: boolean | null;
  /** How long its last probe took to be answered, ms. */
  ms: number | null;
  /** When it was last probed (ISO 8601), null before the first probe ended. */
  checked: string | null;
  /** Since when it is up or down (ISO 8601), null while unknown. */
  since: string | null;
  /** Why it is down; "" when up. */
  reason: string;
  /** Live and unlinked keys whose records name this volume. */
  keys: number;
  /** Its disk's size and free bytes as its last probe read them; null when it does not say. */
  size: number | null;
  free: number | null;
}

/** What the index says of itself. */
export interface IndexStatus {
  /** Why and since when the index is marked incomplete (keys missing), or null. */
  incomplete: { why: string; since: string } | null;
  /** True while a rebuild runs on the index (the master answers 503 meanwhile). */
  rebuilding: boolean;
  /** Since when and why this master's index commits fail (none has succeeded since), or null. */
  failing: { since: string; reason: string } | null;
  /** How this master places keys. */
  placement: Placement | null;
  /** The other live masters of the index that place keys otherwise (lib/membership.ts). */
  placements: OtherPlacement[];
  /**
   * The index held no key at this master's start while these volumes hold
   * keys' files (lib/unindexed.ts), each with one of them; null otherwise.
   */
  unindexed: { since: string; volumes: { volume: string; file: string }[] } | null;
  /**
   * Since when the index has not answered the page's read of it (another
   * process holds its write lock), or null: the figures shown are those
   * last read.
   */
  unanswered: { since: string } | null;
}

export interface Status {
  time: string;
  started: string;
  index: IndexStatus;
  volumes: VolumeStatus[];
  /** `counted`: when the scan that counted them began; null (every count 0) until one has finished. */
  keys: {
    live: number;
    unlinked: number;
    writing: number;
    total: number;
    counted: string | null;
  };
  traffic: TrafficSnapshot;
  errors: ErrorEntry[];
}

/** "master x" to "Master x". */
function capitalized(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function iso(ms: number): string | null {
  return ms > 0 ? new Date(ms).toISOString() : null;
}

/** What the page shows, gathered now. */
export async function gatherStatus(store: Store, now = Date.now()): Promise<Status> {
  const figures = await store.index.views();
  const counts = figures.counts ?? { live: 0, unlinked: 0, writing: 0, volumes: {}, at: 0 };
  const partial = figures.incomplete;
  return {
    time: new Date(now).toISOString(),
    started: new Date(STARTED).toISOString(),
    index: {
      incomplete: partial && { why: partial.why, since: new Date(partial.at).toISOString() },
      rebuilding: store.index.membership?.rebuilding ?? false,
      failing: failingOf(store.index.commits.failing),
      placement: store.index.membership?.placement ?? null,
      placements: store.index.membership?.otherPlacements ?? [],
      unindexed: unindexedOf(),
      unanswered: figures.unanswered === null
        ? null
        : { since: new Date(figures.unanswered).toISOString() },
    },
    volumes: store.opts.volumes.map((volume) => {
      const h = health.get(volume);
      return {
        volume,
        up: h.up,
        ms: h.ms === null ? null : Math.round(h.ms * 10) / 10,
        checked: iso(h.checked),
        since: iso(h.since),
        reason: h.reason,
        keys: counts.volumes[volume] ?? 0,
        size: h.space?.size ?? null,
        free: h.space?.free ?? null,
      };
    }),
    keys: {
      live: counts.live,
      unlinked: counts.unlinked,
      writing: counts.writing,
      total: counts.live + counts.unlinked + counts.writing,
      counted: iso(counts.at),
    },
    traffic: traffic.snapshot(now),
    errors: recentErrors.list(),
  };
}

function unindexedOf(): IndexStatus["unindexed"] {
  const u = unindexed();
  return u && { since: new Date(u.at).toISOString(), volumes: u.volumes };
}

function failingOf(f: Failing | null): IndexStatus["failing"] {
  return f && { since: new Date(f.since).toISOString(), reason: f.reason };
}

/** Answers GET/HEAD /?status (lib/server.ts refuses other methods): HTML, or JSON when asked. */
export async function statusPage(store: Store, req: Request): Promise<Response> {
  const status = await gatherStatus(store);
  const headers = { "Cache-Control": "no-store", "Vary": "Accept" };
  if (wantsJson(req.headers.get("accept") ?? "")) {
    return new Response(JSON.stringify(status), {
      headers: { ...headers, "Content-Type": "application/json" },
    });
  }
  return new Response(renderHtml(status), {
    headers: { ...headers, "Content-Type": "text/html; charset=utf-8" },
  });
}

/** JSON when the client names it and does not name HTML (browsers do). */
function wantsJson(accept: string): boolean {
  return accept.includes("application/json") && !accept.includes("text/html");
}

/** "22:32:07" (UTC) with the full ISO time as a tooltip; "" for null. */
function clock(iso: string | null): string {
  return iso ? `<time datetime="${esc(iso)}" title="${esc(iso)}">${iso.slice(11, 19)}</time>` : "";
}

/** "12 s", "5 min 3 s", "2 h 5 min", "3 d 4 h": how long from `from` to `to` (ISO times). */
export function age(from: string, to: string): string {
  const s = Math.max(0, Math.floor((Date.parse(to) - Date.parse(from)) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor(s / 60) % 60} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor(s / 3600) % 24} h`;
}

/**
 * What is wrong, one line of HTML each, for the top of the page: volumes
 * down (since when, for how long, why), an incomplete index, a rebuild.
 */
export function problems(s: Status): string[] {
  const out: string[] = [];
  for (const v of s.volumes) {
    if (v.up !== false || !v.since) continue;
    out.push(
      `Volume ${esc(v.volume)} down since ${day(v.since)} UTC (for ${age(v.since, s.time)}): ` +
        `<span class="reason">${esc(v.reason)}</span>`,
    );
  }
  for (const v of s.volumes) {
    const space = spaceOf(v);
    if (v.up === false || !nearlyFull(space)) continue;
    out.push(
      `Volume ${esc(v.volume)} nearly full: ${describeSpace(space!)}; writes onto it answer 507 ` +
        `once it is full: free space there, or add volumes`,
    );
  }
  const partial = s.index.incomplete;
  if (partial) {
    out.push(
      `Index incomplete since ${day(partial.since)} UTC: ${esc(partial.why)}; keys on the ` +
        `volumes it could not read are missing: run rebuild again`,
    );
  }
  const lacking = s.index.unindexed;
  if (lacking) {
    out.push(
      `The index held no key at this master's start while volumes hold files: ` +
        `${esc(lacking.volumes.map((v) => v.volume).join(", "))} (e.g. ` +
        `${esc(lacking.volumes[0].file)}); their keys answer 404: run rebuild (master stopped)`,
    );
  }
  const failing = s.index.failing;
  if (failing) {
    out.push(
      `Index writes failing since ${day(failing.since)} UTC (for ${age(failing.since, s.time)}): ` +
        `<span class="reason">${esc(failing.reason)}</span>; writes answer ` +
        `${failing.reason === LOCKED ? 503 : 500} until one succeeds`,
    );
  }
  const unanswered = s.index.unanswered;
  if (unanswered) {
    const counted = s.keys.counted ? `counted at ${day(s.keys.counted)} UTC` : "not counted yet";
    out.push(
      `Index not answering reads since ${day(unanswered.since)} UTC (for ` +
        `${age(unanswered.since, s.time)}): another process may hold its write lock; the figures ` +
        `shown are the last read (keys ${counted})`,
    );
  }
  for (const o of s.index.placements) {
    const mine = s.index.placement ? describePlacement(s.index.placement) : "?";
    out.push(
      `${esc(capitalized(memberName(o.id)))} on this index places keys by <code>${
        esc(describePlacement(o.placement))
      }</code>, this master by <code>${esc(mine)}</code>: ${esc(placementAdvice(o.id))}`,
    );
  }
  if (s.index.rebuilding) {
    out.push(
      "A rebuild of the index is running: requests other than ?status and ?metrics answer 503",
    );
  }
  return out;
}

/** A volume's disk as its status gives it; null when it did not say. */
function spaceOf(v: VolumeStatus): Space | null {
  return v.size === null || v.free === null ? null : { size: v.size, free: v.free };
}

/** The summary at the top: the problems, or that every volume is up. */
function summary(s: Status): string {
  const wrong = problems(s);
  if (wrong.length === 0) {
    const up = s.volumes.filter((v) => v.up === true).length;
    const all = up === s.volumes.length ? `All ${up}` : `${up} of ${s.volumes.length}`;
    return `<p id="problems" class="ok">${all} volumes up</p>`;
  }
  return `<ul id="problems">\n${
    wrong.map((line) => `<li class="problem">${line}</li>`).join("\n")
  }\n</ul>`;
}

/** "2026-11-24 22:32:07" from an ISO time. */
function day(iso: string): string {
  return esc(iso.slice(0, 19).replace("T", " "));
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const METHOD_COLORS: { [m: string]: string } = {
  GET: "#1f77b4",
  HEAD: "#17becf",
  PUT: "#2ca02c",
  REPLACE: "#bcbd22",
  DELETE: "#d62728",
  UNLINK: "#9467bd",
  RELINK: "#8c564b",
  REBALANCE: "#e377c2",
  other: "#7f7f7f",
};

const CLASS_COLORS: { [c: string]: string } = {
  "2xx": "#2ca02c",
  "3xx": "#1f77b4",
  "4xx": "#ff7f0e",
  "5xx": "#d62728",
};

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
.meta { color: #666; margin: 0; }
table { border-collapse: collapse; }
th { white-space: nowrap; }
th, td { text-align: left; padding: .25em .8em .25em 0; border-bottom: 1px solid #eee; }
td.num, th.num { text-align: right; }
.state { font-weight: 600; }
tr.up .state { color: #1a7f37; }
tr.down .state { color: #cf222e; }
tr.unknown .state { color: #888; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: .3em; }
svg text { font: 11px system-ui, sans-serif; fill: #555; }
.legend span { display: inline-block; margin-right: .8em; font-size: 12px; }
.legend i { display: inline-block; width: .8em; height: .8em; margin-right: .3em; }
.reason { color: #555; font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
#problems { margin: .8em 0 0; padding: 0; list-style: none; font-weight: 600; }
#problems.ok { color: #1a7f37; }
#problems .problem { color: #cf222e; margin: .2em 0; }
#problems .reason { font-weight: normal; }
.age { color: #666; }
td.since { white-space: nowrap; }
`;

export function renderHtml(s: Status): string {
  const volumes = s.volumes.map((v) => {
    const state = v.up === null ? "unknown" : v.up ? "up" : "down";
    // The last answered probe's time would read as an answer of a volume now down.
    const ms = v.ms === null || v.up === false ? "" : v.ms.toFixed(1);
    const since = v.since
      ? `${clock(v.since)} <span class="age">(${age(v.since, s.time)})</span>`
      : "";
    const space = spaceOf(v);
    return `<tr class="volume ${state}" data-volume="${esc(v.volume)}">` +
      `<td>${esc(v.volume)}</td><td class="state">${state}</td>` +
      `<td class="num probe">${ms}</td>` +
      `<td class="num keys">${v.keys}</td>` +
      `<td class="free">${space ? esc(describeSpace(space)) : ""}</td>` +
      `<td class="since">${since}</td><td class="reason">${esc(v.reason)}</td></tr>`;
  }).join("\n");
  const errors = s.errors.length === 0
    ? `<tr><td colspan="3">none</td></tr>`
    : s.errors.map((e) =>
      `<tr><td>${clock(e.time)}</td><td>${esc(e.what)}</td><td class="reason">${
        esc(e.reason)
      }</td></tr>`
    ).join("\n");
  const t = s.traffic;
  const minutes = (t.methods.GET.length * t.interval_s) / 60;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="${REFRESH_S}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>mkv status</title>
<style>${STYLE}</style>
</head>
<body>
<h1>mkv status</h1>
<p class="meta">${day(s.time)} UTC · master up since ${
    day(s.started)
  } UTC · reloads every ${REFRESH_S} s</p>
${summary(s)}
<h2>Volumes</h2>
<table id="volumes">
<tr><th>volume</th><th>state</th><th class="num">probe (ms)</th><th class="num">keys</th><th>disk</th><th>since</th><th>reason</th></tr>
${volumes}
</table>
<h2>Keys</h2>
<table id="keys">
<tr><th>live</th><th>unlinked</th><th>writing</th><th>total</th><th>counted at</th></tr>
<tr><td class="num">${s.keys.live}</td><td class="num">${s.keys.unlinked}</td><td class="num">${s.keys.writing}</td><td class="num">${s.keys.total}</td><td>${
    s.keys.counted ? clock(s.keys.counted) : "not yet"
  }</td></tr>
</table>
<h2>Requests per second, last ${minutes} minutes (${t.interval_s} s slots)</h2>
<div class="charts">
${chart("by method", t.methods, METHOD_COLORS, t.interval_s)}
${chart("by status", t.classes, CLASS_COLORS, t.interval_s)}
</div>
<h2>Recent errors (5xx answers, volume failures)</h2>
<table id="errors">
<tr><th>time</th><th>what</th><th>reason</th></tr>
${errors}
</table>
</body>
</html>
`;
}

const W = 480, H = 150, LEFT = 40, RIGHT = 10, TOP = 10, BOTTOM = 20;

/** A line chart of requests per second, one line per series with requests. */
function chart(
  title: string,
  series: { [name: string]: number[] },
  colors: { [name: string]: string },
  intervalS: number,
): string {
  const shown = Object.entries(series).filter(([, counts]) => counts.some((n) => n > 0));
  let max = 0;
  for (const [, counts] of shown) for (const n of counts) max = Math.max(max, n / intervalS);
  const top = niceCeil(max);
  const slots = Object.values(series)[0]?.length ?? 0;
  const x = (i: number) => LEFT + (i * (W - LEFT - RIGHT)) / Math.max(1, slots - 1);
  const y = (v: number) => TOP + (H - TOP - BOTTOM) * (1 - v / top);
  const lines = shown.map(([name, counts]) => {
    const points = counts.map((n, i) => `${x(i).toFixed(1)},${y(n / intervalS).toFixed(1)}`);
    return `<polyline class="series" data-series="${esc(name)}" fill="none" stroke="${
      colors[name] ?? "#333"
    }" stroke-width="1.5" points="${points.join(" ")}"/>`;
  }).join("\n");
  const minutes = (slots * intervalS) / 60;
  const grid = [0, top / 2, top].map((v) =>
    `<line x1="${LEFT}" x2="${W - RIGHT}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>` +
    `<text x="${LEFT - 4}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`
  ).join("\n");
  const axis = `<text x="${LEFT}" y="${H - 4}">-${minutes} min</text>` +
    `<text x="${W - RIGHT}" y="${H - 4}" text-anchor="end">now</text>`;
  const empty = shown.length === 0
    ? `<text x="${(LEFT + W - RIGHT) / 2}" y="${H / 2}" text-anchor="middle">no requests</text>`
    : "";
  const legend = shown.map(([name]) =>
    `<span><i style="background:${colors[name] ?? "#333"}"></i>${esc(name)}</span>`
  ).join("");
  return `<figure>
<figcaption>${esc(title)}</figcaption>
<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="requests per second ${
    esc(title)
  }">
${grid}
${axis}
${lines}
${empty}
</svg>
<div class="legend">${legend}</div>
</figure>`;
}

/** 1, 2 or 5 times a power of ten, at least v (and at least 1). */
function niceCeil(v: number): number {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}
