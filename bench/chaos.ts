// A chaos run of the write verbs: 3 masters with -lease 1s on one index, 4
// volumes behind proxies that answer some MOVEs late, slowly, never or (with
// "refuse") with 500, 6 clients of REPLACE/PUT/DELETE/GET on 8 shared keys
// (1 KiB to 20 MiB, equal sizes on purpose), masters SIGKILLed at random and
// right as their REPLACE's MOVE goes out, volumes SIGSTOPped for seconds,
// verify -repair and rebalance run meanwhile. Every GET's bytes are checked
// against what clients wrote (foreign bytes, a stale value, an MD5 that
// names another value, a 404 or 410 of a live key, the value of a write
// refused with a 4xx or of a PUT's 500, a 404 from the volume a redirect
// named while no write of the key nor tool ran), and so is every write's
// answer (a PUT's 201 over a live value or its 403 of a removed key, a 404
// of a live key, a RELINK's 404 of an unlinked one, a CopyObject's 404 of a
// live source). A redirect's Content-Md5 must name a value the key may hold
// (as its bytes must), its Location one of its Key-Volumes. Clients also
// HEAD keys: the master's 302 is judged as a GET's, then the volume's HEAD
// of its Location must name no ETag or Last-Modified, and a GET of it
// If-Modified-Since the HEAD's Date must get the whole value, and ask the
// volume for ranges (a 206's bytes must be the slice the range names of a
// value the key may hold, of the size its Content-Range names; a 416 must
// name a size the range is past). With "s3", HeadObject (its ETag a value
// the key may hold, its Content-Length that value's size; a GetObject on
// its ETag must repeat its headers) and GetObject with a Range (the bytes
// the slice of the value its ETag names). Half the acknowledged
// writes are read back at once through another master. At the end
// rebalance, verify -md5 -repair and verify -md5 must leave nothing wrong,
// and every key is read through every master (GetObject too with "s3"),
// whose ?list and ?unlinked must agree with those reads.
// Session 8 found a REPLACE bug with it (tests/faults/replace_refused_kill_test.ts);
// session 9, with "slowdelete", late DELETEs and renames landing on a later
// write's files (tests/faults/replace_cleanup_race_test.ts, linger_test.ts):
// 12 violations in 150 s before those fixes; after them none with "lease3",
// and with the 1 s lease one 150 s run of three saw a call land after it.
// "pause" SIGSTOPs a master for 2-6 s now and then (past its heartbeat: the
// others take it for gone and may trust their memory, its fence evicted);
// "lock" holds SQLite's write lock on the index for 1-5 s now and then (an
// index write waits on it, as tests/faults/fence_test.ts does). With either,
// a master answering 503 to writes for 20 s on end, or not taking a write
// at the end, counts as a violation (stuck: it must recover once healthy).
// "skew" runs master 0's wall clock (Date.now, tests/skewed_clock.ts) a
// tenth of the lease behind and master 1's a tenth ahead: a fifth apart,
// within the quarter README allows, so every violation counts. "bigskew":
// 5 s behind and 2 s ahead, beyond it: leases may be misjudged (README's
// limit: a stale value, a 404 or 410 of a live key are counted as LIMIT_),
// heartbeats must not be (a master stuck on 503 counts with either), and
// no GET may get bytes nobody wrote to its key.
// "rebuild" tries a rebuild every 2-6 s: beside live masters it must exit 1
// (meant with "lock": a lock through its check must not hide them).
// "verbs": clients also UNLINK, RELINK and REBALANCE the shared keys (an
// unlinked key must read 404, a relinked one its value from before). "s3":
// masters run -s3 and clients also PutObject, CopyObject (from another
// shared key: its bytes then carry that key's name), DeleteObject and
// GetObject (streamed through the master: its ETag must be its bytes' MD5)
// with the AWS SDK. "restart": a volume's nginx SIGKILLed now and then and
// started again 0.5-3 s later. "full": a volume answers every PUT 507
// (disk full, as nginx's WebDAV does on ENOSPC) for 2-6 s now and then.
// "term": half the masters' kills are SIGTERMs, which must end them within
// 30 s of their requests in flight (a slower stop, or an exit other than
// 0, is a violation). With "s3", a multipart upload (5 MiB and a part) now
// and then too. "stream": a third of mkv's PUTs and REPLACEs are sent
// chunked (no Content-Length), a third of those broken off by the client
// part-way (no GET may get any of their bytes). "grow": a fifth volume
// joins -volumes a third of the way in (masters restarted with it one by
// one, then a rebalance). Their first runs (17 of 150 s, with the faults
// above) found no wrong bytes, stale value or lost key; they found the
// alias check's markers left on volumes paused at a master's start, and
// that check skipping the volumes after a hung one
// (tests/faults/alias_check_test.ts). A CopyObject whose master was killed
// after its index write may bring back a value the key held before a later
// write: a read of it is the copy's, not stale (one stale_value was a
// read 5 ms after such a copy's master was killed).
//
//   deno run -A bench/chaos.ts [seconds=120] [refuse,slowdelete,lease3,pause,lock,skew|bigskew,rebuild,verbs,s3,restart,full,term,stream,grow]
//
// Ports PORT+1..PORT+25 (PORT defaults to 23100); files under $TMPDIR/mkv-chaos-*,
// with log.txt (every fault and violation) and each master's stderr.
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { key2path } from "../lib/keys.ts";
const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const SECONDS = Number(Deno.args[0] ?? 120);
const OPTS = new Set((Deno.args[1] ?? "").split(",").filter(Boolean));
const BASE = Number(Deno.env.get("PORT") ?? 23100);
const DIR = await Deno.makeTempDir({ prefix: "mkv-chaos-" });
const logFile = await Deno.open(`${DIR}/log.txt`, { create: true, write: true });
const enc = new TextEncoder();
function log(...a: unknown[]) {
  const line = `${(performance.now() / 1000).toFixed(3)} ${
    a.map((x) => typeof x === "string" ? x : JSON.stringify(x)).join(" ")
  }\n`;
  logFile.writeSync(enc.encode(line));
}
const md5hex = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rnd = (n: number) => Math.floor(Math.random() * n);
const pick = <T>(xs: T[]) => xs[rnd(xs.length)];

/** Volumes: a fifth with "grow", added to -volumes a third of the way in. */
const NV = OPTS.has("grow") ? 5 : 4;
const VPORT = (i: number) => BASE + 1 + i;
const PPORT = (i: number) => BASE + 21 + i;
const MPORT = (i: number) => BASE + 11 + i;
const NM = 3;
// Proxies carry slow calls out up to 2.8 s late. With "lease3" the lease
// outlasts that, so every late call falls within a key's lease and any
// violation is a bug; with the default 1 s some land after it, as a volume
// hung longer than -lease would (README: not fenced).
const LEASE = OPTS.has("lease3") ? "3s" : "1s";
const LEASE_MS = OPTS.has("lease3") ? 3000 : 1000;
/** Per master: ms its Date.now is moved by. */
const SKEW = OPTS.has("bigskew")
  ? [-5000, 2000, 0]
  : OPTS.has("skew")
  ? [-LEASE_MS / 10, LEASE_MS / 10, 0]
  : [0, 0, 0];
const SKEWED_CLOCK = `${REPO}/tests/skewed_clock.ts`;

// ---- volumes
const vprocs: Deno.ChildProcess[] = [];
/** Per volume: a fault (SIGSTOP, restart) under way on it; one at a time. */
const volBusy: boolean[] = Array(NV).fill(false);
function spawnVolume(i: number) {
  vprocs[i] = new Deno.Command("deno", {
    args: ["run", "-A", `${REPO}/main.ts`, "volume", `${DIR}/vol${i}`],
    env: { PORT: String(VPORT(i)) },
    stdout: "null",
    stderr: "null",
  }).spawn();
}
/** Waits until volume `i`'s nginx (not one killed before it) has written its pid and answers. */
async function volumeUp(i: number, not = 0) {
  for (let t = 0; t < 200; t++) {
    try {
      const pid = Number((await Deno.readTextFile(`${DIR}/vol${i}/.mkv-nginx/nginx.pid`)).trim());
      if (pid === not) throw new Error("old pid");
      const r = await fetch(`http://127.0.0.1:${VPORT(i)}/`);
      await r.body?.cancel();
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`volume ${i} did not come up`);
}
for (let i = 0; i < NV; i++) {
  await Deno.mkdir(`${DIR}/vol${i}`, { recursive: true });
  await Deno.chmod(`${DIR}/vol${i}`, 0o755);
  spawnVolume(i);
}
for (let i = 0; i < NV; i++) await volumeUp(i);
async function nginxPids(i: number): Promise<number[]> {
  const master = Number((await Deno.readTextFile(`${DIR}/vol${i}/.mkv-nginx/nginx.pid`)).trim());
  const out = await new Deno.Command("pgrep", { args: ["-P", String(master)] }).output();
  return [master, ...new TextDecoder().decode(out.stdout).split("\n").filter(Boolean).map(Number)];
}

// ---- proxies
const stats: { [k: string]: number } = {};
const count = (k: string, n = 1) => stats[k] = (stats[k] ?? 0) + n;
let faulty = true;
/** Per volume: its disk is full ("full"): PUTs answer 507. */
const full: boolean[] = Array(NV).fill(false);
const moveSeen: ((path: string) => void)[] = [];
const proxies: Deno.HttpServer[] = [];
for (let i = 0; i < NV; i++) {
  const target = `127.0.0.1:${VPORT(i)}`;
  proxies.push(Deno.serve({ hostname: "127.0.0.1", port: PPORT(i), onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const to = `http://${target}${url.pathname}${url.search}`;
    const headers = new Headers(req.headers);
    headers.delete("host");
    const fwd = async () => {
      const body = req.method === "PUT" ? req.body : null;
      return await fetch(to, { method: req.method, headers, body });
    };
    if (req.method === "MOVE") {
      const dest = new URL(req.headers.get("destination")!);
      headers.set("destination", `http://${target}${dest.pathname}`);
      for (const f of moveSeen) f(url.pathname);
      if (faulty && Math.random() < 0.25) {
        const mode = pick(
          OPTS.has("refuse") ? ["late", "drop", "slow", "refuse"] : ["late", "drop", "slow"],
        );
        count(`move_${mode}`);
        log("proxy", i, "MOVE", mode, url.pathname);
        if (mode === "refuse") return new Response("no", { status: 500 });
        if (mode === "slow") await sleep(300 + rnd(2500));
        const res = await fwd().catch(() => null);
        if (res === null) return new Response(null, { status: 502 }); // volume down
        await res.body?.cancel();
        if (mode === "drop") {
          await sleep(5000);
          return new Response(null, { status: 502 });
        }
        if (mode === "late") await sleep(300 + rnd(2500));
        return new Response(null, { status: res.status });
      }
    }
    if (req.method === "PUT" && full[i] && faulty) {
      // nginx reads the body into its temporary file, then fails.
      try {
        for await (const _ of req.body ?? []) { /* drained */ }
      } catch {
        return new Response(null, { status: 400 }); // the master hung up
      }
      count("put_507");
      return new Response("<html><body>507 Insufficient Storage</body></html>", { status: 507 });
    }
    if (req.method === "DELETE" && OPTS.has("slowdelete") && faulty && Math.random() < 0.1) {
      count("delete_slow");
      await sleep(300 + rnd(2500));
    }
    try {
      const res = await fwd();
      return new Response(res.body, { status: res.status, headers: res.headers });
    } catch (e) {
      return new Response(String(e), { status: 502 });
    }
  }));
}
/** How many volumes -volumes names (the first ones). */
let inUse = 4;
/** What every master and tool of the run is given. */
function cluster(): string[] {
  const vols = Array.from({ length: inUse }, (_, i) => `127.0.0.1:${PPORT(i)}`).join(",");
  return ["-db", `${DIR}/db`, "-volumes", vols, "-lease", LEASE];
}

// ---- masters
const allProcs: Deno.ChildProcess[] = [];
const masters: (Deno.ChildProcess | null)[] = Array(NM).fill(null);
const mAlive: boolean[] = Array(NM).fill(false);
/** Per master: when the run of writes it answered 503 began (null: none). */
const unavailableSince: (number | null)[] = Array(NM).fill(null);
async function startMaster(i: number) {
  if (masters[i]) return;
  const skew = SKEW[i] === 0 ? [] : ["--preload", SKEWED_CLOCK];
  const p = new Deno.Command("deno", {
    args: [
      "run",
      "-A",
      "--v8-flags=--max-semi-space-size=2",
      ...skew,
      `${REPO}/main.ts`,
      "server",
      "-port",
      String(MPORT(i)),
      ...cluster(),
      ...(OPTS.has("s3") ? ["-s3"] : []),
    ],
    env: { MKV_TEST_CLOCK_SKEW_MS: String(SKEW[i]) },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  (async () => {
    const f = await Deno.open(`${DIR}/master${i}.err`, { create: true, append: true });
    await p.stderr.pipeTo(f.writable).catch(() => {});
  })();
  masters[i] = p;
  unavailableSince[i] = null;
  p.status.then((st) => {
    if (masters[i] === p) {
      // Not killed by us: it crashed (see its masterN.err). Started again.
      masters[i] = null;
      mAlive[i] = false;
      unavailableSince[i] = null;
      log("master exited", i, st);
      violate("master_exited", { master: i, status: st });
      if (running) startMaster(i).catch((e) => log("restart fail", String(e)));
    }
  });
  allProcs.push(p);
  for (let t = 0; t < 200; t++) {
    try {
      const r = await fetch(`http://127.0.0.1:${MPORT(i)}/?list&limit=1`);
      await r.body?.cancel();
      mAlive[i] = true;
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error("master did not come up");
}
async function killMaster(i: number, sig: Deno.Signal = "SIGKILL") {
  const p = masters[i];
  if (!p) return;
  mAlive[i] = false;
  masters[i] = null;
  try {
    p.kill(sig);
  } catch { /**/ }
  if (sig === "SIGTERM") {
    // README: requests in flight get 30 s to finish, then the index is closed.
    const t = performance.now();
    const late = setTimeout(() => {
      violate("slow_stop", { master: i });
      p.kill("SIGKILL");
    }, 40_000);
    const st = await p.status;
    clearTimeout(late);
    count("stops");
    log("stop master", i, Math.round(performance.now() - t), "ms", st);
    // A stopped master closes the index cleanly: exit 0.
    if (st.code !== 0 && st.signal === null) violate("stop_failed", { master: i, status: st });
    return;
  }
  await p.status;
  count("kills");
  log("kill master", i);
}
log("options", [...OPTS], "lease", LEASE, "skew ms per master", SKEW);
for (let i = 0; i < NM; i++) await startMaster(i);

// ---- model
interface W {
  id: number;
  key: string;
  op: string;
  /** The value's MD5 ("" for DELETE and the like, and for a copy until it is answered). */
  md5: string;
  size: number;
  start: number;
  end: number;
  /** 201 for a value made live (S3's 200 too), 204 for a DELETE, UNLINK or RELINK done. */
  status: number;
  master: number;
  client: number;
  /** S3COPY: the key copied from. */
  src?: string;
}
const writes = new Map<string, W[]>();
/** The write that made each value live on a key, by `${md5}|${key}` (a copy shares its source's MD5). */
const values = new Map<string, W>();
const KEYS = Array.from({ length: 8 }, (_, i) => `/chaos/k${i}`);
const keyFolder = new Map<string, string>();
for (const k of KEYS) {
  writes.set(k, []);
  keyFolder.set(key2path(enc.encode(k)).slice(0, 7), k);
}
const big = new Uint8Array(20 << 20);
for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
const SIZES = [1024, 1024, 3000, 3000, 65536, 262144, 262144, 262145, 300000, 300000, 2 << 20];
let wid = 0;
/** How a value was made, to give any range of it again: its first bytes, then big's from `off`. */
interface Made {
  size: number;
  off: number;
  prefix: Uint8Array;
}
/** Every value made, by its MD5 (and a multipart upload's by its ETag too). */
const made = new Map<string, Made>();
const madeOf = new WeakMap<Uint8Array, Made>();
function makeValue(key: string, size: number): Uint8Array<ArrayBuffer> {
  const head = enc.encode(`${key}|w${++wid}|`);
  const v = new Uint8Array(size);
  const off = rnd(big.length - size);
  v.set(big.subarray(off, off + size));
  v.set(head.subarray(0, Math.min(head.length, size)));
  // random bytes right after head, to make each value unique even with same offset
  crypto.getRandomValues(v.subarray(Math.min(head.length, size), Math.min(head.length + 16, size)));
  madeOf.set(v, { size, off, prefix: v.slice(0, Math.min(head.length + 16, size)) });
  return v;
}
/** Whether `bytes` are those of value `v` from `start` on. */
function sliceOf(v: Made, start: number, bytes: Uint8Array): boolean {
  if (start + bytes.length > v.size) return false;
  for (let i = 0; i < bytes.length; i++) {
    const at = start + i;
    if (bytes[i] !== (at < v.prefix.length ? v.prefix[at] : big[v.off + at])) return false;
  }
  return true;
}
/** S3's ETag of a multipart upload of `parts`: the MD5 of their MD5s, then "-" and their count. */
function multipartEtag(parts: Uint8Array[]): string {
  const h = createHash("md5");
  for (const p of parts) h.update(createHash("md5").update(p).digest());
  return `${h.digest("hex")}-${parts.length}`;
}
const violations: unknown[] = [];
/**
 * What a lease misjudged can cause: under "bigskew" (clocks apart by more
 * than a quarter of -lease, README's limit) counted as LIMIT_, not as
 * violations. Wrong bytes, a master stuck or crashed, a final verify that
 * fails still are.
 */
const LEASE_LIMITS = new Set([
  "404_live",
  "410",
  "stale_value",
  "md5_newer_than_bytes",
  "md5_mismatch_QUIET",
  "unlinked_served",
  "put_over_live",
  "put_403_removed",
  "404_live_write",
  "copy_404_live_source",
  "relink_404_unlinked",
  "loc_404_quiet",
]);
function violate(kind: string, info: unknown) {
  // A header's or a range's check ("stale_value_md5") is its read's.
  if (OPTS.has("bigskew") && LEASE_LIMITS.has(kind.replace(/_(md5|head|range)$/, ""))) {
    count(`LIMIT_${kind}`);
    log("LIMIT (clocks apart)", kind, info);
    return;
  }
  count(`VIOLATION_${kind}`);
  violations.push({ kind, info });
  log("VIOLATION", kind, info);
}

/** Writes that remove the key's value (UNLINK hides it). */
const REMOVES = new Set(["DELETE", "S3DEL", "UNLINK"]);
/** Writes that leave the value as it is (UNLINK and RELINK hide and show it). */
const KEEPS = new Set(["UNLINK", "RELINK", "REBALANCE"]);
function acked(w: W): boolean {
  return w.status === 201 || (w.status === 204 && w.op !== "REBALANCE");
}
// Writes of one key overlap (an S3 PutObject waits for the write in flight,
// a multipart upload holds the key only inside its Complete): either may
// have taken effect first. A read contradicts a write only when that write
// was acknowledged before the read began and nothing that could undo it
// began before it ended.

/**
 * An acknowledged write that sets the value (a PUT, REPLACE, S3 write or
 * DELETE; not UNLINK or RELINK), begun after `w` ended and done before
 * `before`: once it is, `w`'s value can no longer be read.
 */
function overwritten(key: string, w: W, before: number): W | undefined {
  const ws = writes.get(key)!;
  return ws.find((x) =>
    x !== w && acked(x) && !KEEPS.has(x.op) && x.start > w.end && x.end < before &&
    // S3's DeleteObject leaves an unlinked key as it is (204 all the
    // same): one that a RELINK followed deleted nothing.
    !(x.op === "S3DEL" && ws.some((r) => relinked(r, x, before)))
  );
}
/** Whether `r` is a RELINK done after `w` and before `before`. */
function relinked(r: W, w: W, before: number): boolean {
  return r.op === "RELINK" && r.status === 204 && r.start > w.end && r.end < before;
}
/**
 * An acknowledged write of `ops` done before `before` that no write of
 * `undoing` (in any outcome, begun before `until`) can have followed.
 */
function standing(
  key: string,
  ops: (w: W) => boolean,
  undoing: (w: W) => boolean,
  before: number,
  until = Infinity,
): W | undefined {
  const ws = writes.get(key)!;
  return ws.find((a) =>
    ops(a) && acked(a) && a.end < before &&
    !ws.some((x) => x !== a && undoing(x) && x.end > a.start && x.start < until)
  );
}
function activeMasters(): number[] {
  return [...Array(NM).keys()].filter((i) => mAlive[i]);
}

/** A write's outcome: its status (201/204 when done) and, for a copy, the MD5 it made live. */
type Sent = { status: number; text: string; md5?: string };

/** Sends one write; the write (status 0: no answer), null when not sent. */
async function doWrite(client: number, key: string, op: string): Promise<W | null> {
  const ms = activeMasters();
  if (ms.length === 0) {
    await sleep(50);
    return null;
  }
  const m = pick(ms);
  let body: Uint8Array<ArrayBuffer> | null = null;
  let size = 0;
  if (op === "S3MPU") {
    // Two parts: the first S3's least (5 MiB), the second small.
    size = (5 << 20) + 1 + rnd(300000);
    body = makeValue(key, size);
  } else if (["PUT", "REPLACE", "S3PUT"].includes(op)) {
    size = Math.random() < 0.01 ? (20 << 20) - rnd(3) : pick(SIZES);
    body = makeValue(key, size);
  }
  const w: W = {
    // A write with a value has the number makeValue wrote into it; others their own.
    id: body ? wid : ++wid,
    key,
    op,
    md5: body ? md5hex(body) : "",
    size,
    start: performance.now(),
    end: Infinity,
    status: -1,
    master: m,
    client,
  };
  if (op === "S3COPY") w.src = pick(KEYS.filter((k) => k !== key));
  writes.get(key)!.push(w);
  if (body) {
    values.set(`${w.md5}|${key}`, w);
    made.set(w.md5, madeOf.get(body)!);
  }
  if (op === "S3MPU") {
    // Its reads name it by its ETag.
    const etag = multipartEtag([body!.subarray(0, MPU_CUT), body!.subarray(MPU_CUT)]);
    values.set(`${etag}|${key}`, w);
    made.set(etag, madeOf.get(body!)!);
  }
  inflight.set(w, m);
  try {
    const sent = op.startsWith("S3") ? await s3Write(m, w, body) : await mkvWrite(m, w, body);
    const { status, text } = sent;
    w.status = status;
    w.end = performance.now();
    if (sent.md5) {
      w.md5 = sent.md5;
      values.set(`${w.md5}|${key}`, w);
    }
    count(`${op}_${status}`);
    checkAnswer(w);
    if (status === 503) {
      if (/lost its registration/.test(text)) count("fenced_503");
      unavailableSince[m] ??= w.start;
    } else if (status !== 0) unavailableSince[m] = null;
    if (status >= 500 || status === 404 && op !== "PUT") {
      log("write", op, key, w.id, status, `m${m}`, w.src ?? "", text.slice(0, 200));
    }
  } catch (e) {
    w.status = 0;
    w.end = performance.now(); // unknown outcome
    count(`${op}_err`);
    log("write", op, key, w.id, "ERR", `m${m}`, w.src ?? "", String(e).slice(0, 100));
  } finally {
    inflight.delete(w);
  }
  return w;
}
const inflight = new Map<W, number>();
/** Where a multipart upload's first part ends (S3's least part size). */
const MPU_CUT = 5 << 20;

/** Whether `x` can make a removed key live again (in any outcome). */
const relives = (x: W) => !REMOVES.has(x.op) && x.op !== "REBALANCE";
/** Verbs whose 404 says the key is not live (RELINK's: not unlinked). */
const NOT_LIVE_404 = new Set(["REPLACE", "DELETE", "UNLINK", "REBALANCE"]);
/**
 * Checks a write's answer against what clients did before it: a PUT's 201
 * over a live value (it never overwrites: that value is lost), its 403 on a
 * key removed, a 404 of a key live throughout, a RELINK's 404 of a key
 * unlinked throughout.
 */
function checkAnswer(w: W) {
  const removes = (x: W) => REMOVES.has(x.op);
  const live = () => standing(w.key, (x) => !removes(x), removes, w.start, w.end);
  if (w.op === "PUT" && w.status === 201) {
    const A = live();
    if (A) violate("put_over_live", { key: w.key, w, A });
  } else if (w.op === "PUT" && w.status === 403) {
    const D = standing(w.key, removes, relives, w.start, w.end);
    if (D) violate("put_403_removed", { key: w.key, w, D });
  } else if (NOT_LIVE_404.has(w.op) && w.status === 404) {
    const A = live();
    if (A) violate("404_live_write", { key: w.key, w, A });
  } else if (w.op === "S3COPY" && w.status === 404) {
    // NoSuchKey of a source live throughout.
    const S = standing(w.src!, (x) => !removes(x), removes, w.start, w.end);
    if (S) violate("copy_404_live_source", { key: w.key, w, S });
  } else if (w.op === "RELINK" && w.status === 404) {
    const U = standing(w.key, (x) => x.op === "UNLINK", relives, w.start, w.end);
    if (U) violate("relink_404_unlinked", { key: w.key, w, U });
  }
}

async function mkvWrite(m: number, w: W, body: Uint8Array<ArrayBuffer> | null): Promise<Sent> {
  const streamed = body !== null && OPTS.has("stream") && Math.random() < 0.3;
  const res = await fetch(`http://127.0.0.1:${MPORT(m)}${w.key}`, {
    method: w.op,
    body: streamed ? chunked(w, body) : body,
    signal: AbortSignal.timeout(60000),
  });
  return { status: res.status, text: await res.text() };
}

/**
 * "stream": `body` sent chunked (no Content-Length), in 64 KiB chunks; a
 * third of the time the client breaks off after a random part of it (its
 * value must never be read, not even in part).
 */
function chunked(w: W, body: Uint8Array<ArrayBuffer>): ReadableStream<Uint8Array> {
  const cut = Math.random() < 1 / 3 ? rnd(body.length) : body.length;
  if (cut < body.length) {
    count("stream_cut");
    values.delete(`${w.md5}|${w.key}`);
  }
  let at = 0;
  return new ReadableStream({
    async pull(c) {
      if (at >= cut) {
        if (cut < body.length) {
          await sleep(rnd(200));
          c.error(new Error("client broke off"));
        } else c.close();
        return;
      }
      const n = Math.min(65536, cut - at);
      c.enqueue(body.slice(at, at + n));
      at += n;
    },
  });
}

// ---- S3 ("s3"): the AWS SDK, one attempt per call (each answer the master's own)
const s3clients = OPTS.has("s3")
  ? Array.from({ length: NM }, (_, i) =>
    new S3Client({
      endpoint: `http://127.0.0.1:${MPORT(i)}`,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "x", secretAccessKey: "y" },
      maxAttempts: 1,
    }))
  : [];
/** "/chaos/k1" as S3's bucket and key. */
function s3Key(key: string): { Bucket: string; Key: string } {
  const [, bucket, ...rest] = key.split("/");
  return { Bucket: bucket, Key: rest.join("/") };
}
/** An SDK error's status (0: no answer) and what it said. */
function s3Failure(e: unknown): Sent {
  const err = e as { $metadata?: { httpStatusCode?: number }; name?: string; message?: string };
  const status = err.$metadata?.httpStatusCode;
  if (status === undefined) throw e; // no answer: the outcome is unknown
  return { status, text: `${err.name}: ${err.message}` };
}
async function s3Write(m: number, w: W, body: Uint8Array<ArrayBuffer> | null): Promise<Sent> {
  const s3 = s3clients[m];
  const abortSignal = AbortSignal.timeout(60000);
  try {
    if (w.op === "S3PUT") {
      await s3.send(new PutObjectCommand({ ...s3Key(w.key), Body: body! }), { abortSignal });
      return { status: 201, text: "" };
    }
    if (w.op === "S3MPU") {
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand(s3Key(w.key)), {
        abortSignal,
      });
      const parts = [];
      for (const [n, bytes] of [body!.subarray(0, MPU_CUT), body!.subarray(MPU_CUT)].entries()) {
        const part = { ...s3Key(w.key), UploadId, PartNumber: n + 1, Body: bytes };
        const { ETag } = await s3.send(new UploadPartCommand(part), { abortSignal });
        parts.push({ ETag, PartNumber: n + 1 });
      }
      // The key is touched by the Complete only: the write begins there.
      w.start = performance.now();
      await s3.send(
        new CompleteMultipartUploadCommand({
          ...s3Key(w.key),
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
        { abortSignal },
      );
      return { status: 201, text: "" };
    }
    if (w.op === "S3COPY") {
      const src = s3Key(w.src!);
      const out = await s3.send(
        new CopyObjectCommand({ ...s3Key(w.key), CopySource: `${src.Bucket}/${src.Key}` }),
        { abortSignal },
      );
      return { status: 201, text: "", md5: out.CopyObjectResult!.ETag!.replaceAll('"', "") };
    }
    await s3.send(new DeleteObjectCommand(s3Key(w.key)), { abortSignal });
    return { status: 204, text: "" };
  } catch (e) {
    return s3Failure(e);
  }
}

/** How a key is read: the whole value, a HEAD, or a range of it. */
type Read = "GET" | "HEAD" | "RANGE";

/**
 * Reads `key` through a live master (`master` when given and live; one other
 * than `avoid` when there is one): GET (or HEAD) and the volume's answer, or
 * GetObject (HeadObject) with `s3`; `read` "RANGE" asks the volume (or
 * GetObject) for a range. Its status (302, 404...; 200 for GetObject; 0 for
 * no answer, -1 not sent).
 */
async function doGet(
  key: string,
  o: { s3?: boolean; master?: number; avoid?: number; read?: Read } = {},
): Promise<number> {
  const ms = activeMasters();
  if (ms.length === 0) {
    await sleep(50);
    return -1;
  }
  const others = ms.filter((i) => i !== o.avoid);
  const m = o.master !== undefined && mAlive[o.master]
    ? o.master
    : pick(others.length ? others : ms);
  const S = performance.now();
  const read = o.read ?? "GET";
  if (o.s3 && read === "HEAD") return await s3Head(key, m, S);
  if (o.s3) return await s3Get(key, m, S, read === "RANGE" ? { range: pickRange() } : {});
  let res: Response;
  try {
    res = await fetch(`http://127.0.0.1:${MPORT(m)}${key}`, {
      method: read === "HEAD" ? "HEAD" : "GET",
      redirect: "manual",
      signal: AbortSignal.timeout(30000),
    });
    await res.body?.cancel();
  } catch {
    count(`${read}_err`);
    return 0;
  }
  count(`${read}_${res.status}`);
  if (res.status === 404) {
    check404(key, S, m);
    return 404;
  }
  if (res.status !== 302) {
    log(read, key, res.status, m);
    if (res.status === 410) violate("410", { key, m });
    return res.status;
  }
  const loc = res.headers.get("location")!;
  const cmd5 = res.headers.get("content-md5");
  checkRedirect(key, res, { S, m, read });
  if (read === "HEAD") await headLoc(key, loc, { S, m, cmd5 });
  else if (read === "RANGE") await rangeLoc(key, loc, { S, m });
  else {
    const r2 = await fromVolume(key, loc, { S, m, read });
    if (r2) await readBytes(r2, (bytes) => checkBytes(key, bytes, { S, m, loc, cmd5 }), read);
  }
  return 302;
}

/**
 * A read of `loc` (a redirect's Location); null when it did not answer 200 or
 * 206 (a 404 of a key quiet since before the redirect is a violation).
 */
async function fromVolume(
  key: string,
  loc: string,
  r: { S: number; m: number; read: Read; method?: string; headers?: HeadersInit },
): Promise<Response | null> {
  let res: Response;
  try {
    res = await fetch(loc, {
      method: r.method ?? "GET",
      headers: r.headers,
      signal: AbortSignal.timeout(30000),
    });
  } catch {
    count(`${r.read}loc_err`);
    return null;
  }
  if (res.status === 200 || res.status === 206) return res;
  await res.body?.cancel();
  count(`${r.read}loc_${res.status}`);
  log(`${r.read} loc`, key, res.status, loc);
  // The replica was HEAD-checked just before the redirect: only a write of
  // the key, or a tool, can have removed its file since.
  if (res.status === 404 && quiet(key, r.S, performance.now())) {
    violate("loc_404_quiet", { key, loc, m: r.m, S: r.S, read: r.read });
  }
  // A volume names no validator, so no condition a client sends can hold a value back.
  if (res.status === 304) violate("loc_304", { key, loc, m: r.m, read: r.read });
  return res.status === 416 ? res : null;
}
/** Hands `res`'s body to `check` once read whole (a volume cut off mid-body is counted). */
async function readBytes(res: Response, check: (bytes: Uint8Array) => void, read: Read) {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await res.arrayBuffer());
  } catch {
    count(`${read}loc_err`);
    return;
  }
  check(bytes);
}

/**
 * A master's 302 (to a GET or a HEAD: the same headers): an empty body's
 * Content-Length, a Location on one of the Key-Volumes, and a Content-Md5
 * (when there is one) that names a value the key may hold.
 */
function checkRedirect(key: string, res: Response, r: { S: number; m: number; read: Read }) {
  const { S, m } = r;
  const loc = res.headers.get("location")!;
  const volumes = (res.headers.get("key-volumes") ?? "").split(",");
  if (res.headers.get("content-length") !== "0") {
    violate("redirect_length", { key, m, read: r.read, got: res.headers.get("content-length") });
  }
  if (!volumes.some((v) => loc.startsWith(`http://${v}/`))) {
    violate("location_not_listed", { key, m, loc, volumes });
  }
  if (!["balanced", "unbalanced"].includes(res.headers.get("key-balance") ?? "")) {
    violate("key_balance", { key, m, got: res.headers.get("key-balance") });
  }
  const cmd5 = res.headers.get("content-md5");
  if (cmd5 && !checkValue(key, cmd5, { S, m, loc, what: "md5" })) {
    violate("foreign_md5", { key, cmd5, m, S, loc });
  }
}

/**
 * A HEAD of the redirect's Location, then a GET of it revalidated as a cache
 * would (If-Modified-Since the HEAD's Date): a volume names no validator
 * (nginx's ETag and Last-Modified are a file's mtime in seconds and size,
 * the same for two values), so the GET answers the whole value (200, never
 * 304: fromVolume), its bytes a value the key may hold.
 */
async function headLoc(key: string, loc: string, r: { S: number; m: number; cmd5: string | null }) {
  const { S, m, cmd5 } = r;
  const h = await fromVolume(key, loc, { S, m, read: "HEAD", method: "HEAD" });
  if (!h || h.status !== 200) return;
  const named = ["etag", "last-modified"].filter((n) => h.headers.has(n));
  if (named.length) return violate("volume_validator", { key, loc, named });
  const since = h.headers.get("date") ?? new Date().toUTCString();
  const g = await fromVolume(key, loc, {
    S,
    m,
    read: "HEAD",
    headers: { "If-Modified-Since": since },
  });
  if (!g) return;
  if (g.status !== 200) {
    // 416 is not asked for; anything but 200 (fromVolume: null) is wrong.
    await g.body?.cancel();
    return violate("head_then_get", { key, loc, status: g.status });
  }
  await readBytes(g, (bytes) => checkBytes(key, bytes, { S, m, loc, cmd5 }), "HEAD");
}

/** A range asked for, as the header says it: "bytes=a-b", "bytes=a-" or "bytes=-n". */
interface Range {
  header: string;
  start: number | null;
  end: number | null;
}
/** A random range: mostly in the first 64 KiB, some at the end, some past the smaller values. */
function pickRange(): Range {
  const r = Math.random();
  if (r < 0.5) {
    const start = rnd(1100);
    const end = start + rnd(65536);
    return { header: `bytes=${start}-${end}`, start, end };
  }
  if (r < 0.7) {
    const n = 1 + rnd(70000);
    return { header: `bytes=-${n}`, start: null, end: n };
  }
  if (r < 0.85) {
    const start = Math.max(0, pick(SIZES) - rnd(3000));
    return { header: `bytes=${start}-`, start, end: null };
  }
  const start = pick(SIZES) + rnd(3 << 20);
  const end = start + rnd(4096);
  return { header: `bytes=${start}-${end}`, start, end };
}
/** The bytes `range` names of a value of `size` bytes (RFC 9110), or null: unsatisfiable. */
function rangeIn(range: Range, size: number): { start: number; end: number } | null {
  if (range.start === null) {
    return size === 0 ? null : { start: Math.max(0, size - range.end!), end: size - 1 };
  }
  if (range.start >= size) return null;
  return { start: range.start, end: range.end === null ? size - 1 : Math.min(range.end, size - 1) };
}
/** A Content-Range, "bytes a-b/size" or (a 416's) "bytes *" and "/size", as numbers. */
function contentRange(
  h: string | null | undefined,
): { start: number; end: number; size: number } | null {
  const m = /^bytes (?:(\d+)-(\d+)|\*)\/(\d+)$/.exec(h ?? "");
  if (!m) return null;
  return { start: Number(m[1] ?? -1), end: Number(m[2] ?? -1), size: Number(m[3]) };
}

/** The values (by MD5 or ETag) of `size` bytes whose bytes from `start` on are `bytes`. */
function valuesWith(size: number, start: number, bytes: Uint8Array): string[] {
  const out: string[] = [];
  for (const [md5, v] of made) if (v.size === size && sliceOf(v, start, bytes)) out.push(md5);
  return out;
}

/**
 * A range of the redirect's Location: a 206 is the slice the range names of
 * a value the key may hold (Content-Range naming that value's size); a 416
 * names a size the range is past.
 */
async function rangeLoc(key: string, loc: string, r: { S: number; m: number }) {
  const { S, m } = r;
  const range = pickRange();
  const res = await fromVolume(key, loc, { S, m, read: "RANGE", headers: { Range: range.header } });
  if (!res) return;
  const cr = contentRange(res.headers.get("content-range"));
  if (res.status === 416) {
    if (!cr || rangeIn(range, cr.size) !== null) {
      violate("range_416_satisfiable", {
        key,
        loc,
        range: range.header,
        cr: res.headers.get("content-range"),
      });
    }
    return;
  }
  if (res.status !== 206) {
    await res.body?.cancel();
    return violate("range_not_206", { key, loc, range: range.header, status: res.status });
  }
  await readBytes(res, (bytes) => {
    count("RANGEloc_206");
    checkRange(key, range, cr, bytes, { S, m, loc, etag: null });
  }, "RANGE");
}

/**
 * The bytes of a range answer (206): those `range` names of a value of the
 * Content-Range's size, a value the key may hold (with `etag`: that value).
 */
function checkRange(
  key: string,
  range: Range,
  cr: { start: number; end: number; size: number } | null,
  bytes: Uint8Array,
  r: { S: number; m: number; loc: string; etag: string | null },
) {
  const { S, m, loc, etag } = r;
  const want = cr && rangeIn(range, cr.size);
  if (!cr || !want || want.start !== cr.start || want.end !== cr.end) {
    return violate("range_wrong_bytes", { key, loc, range: range.header, cr });
  }
  if (bytes.length !== cr.end - cr.start + 1) {
    return violate("range_length", { key, loc, range: range.header, cr, got: bytes.length });
  }
  const candidates = etag !== null ? [etag] : valuesWith(cr.size, cr.start, bytes);
  if (etag !== null) {
    const v = made.get(etag);
    if (!v || v.size !== cr.size || !sliceOf(v, cr.start, bytes)) {
      return violate("range_not_etag", { key, loc, range: range.header, cr, etag, m, S });
    }
  }
  const E = performance.now();
  // Several values may hold these bytes (a short range, or a range past the
  // first bytes of 20 MiB values, which differ only there): one the key may
  // hold, if any.
  const first = candidates.find((c) => writerOf(c, key, E));
  const md5 = candidates.find((c) => mayHold(key, c, S, E)) ?? first ?? candidates[0];
  if (md5 !== first) {
    count("range_of_several_values");
    log("range of several values", { key, first: values.get(`${first}|${key}`)?.id, md5, S });
  }
  if (md5 === undefined || !checkValue(key, md5, { S, m, loc, what: "range" })) {
    violate("range_foreign_bytes", {
      key,
      loc,
      range: range.header,
      cr,
      head: new TextDecoder().decode(bytes.subarray(0, 40)),
      m,
    });
  }
}
/** Whether `key` may hold value `md5` for a read begun at `S` and ended at `E`. */
function mayHold(key: string, md5: string, S: number, E: number): boolean {
  const w = writerOf(md5, key, E);
  return w !== undefined && wrongValue(key, w, S, E).length === 0;
}
/** How long after a write its volume calls may still land: the proxies hold one up to 2.8 s. */
const LANDS_MS = Math.max(LEASE_MS, 3000) + 500;
/** Whether no write of `key` and no tool ran from `S - LANDS_MS` to `E`. */
function quiet(key: string, S: number, E: number): boolean {
  return toolsRunning === 0 && lastToolEnd < S - LANDS_MS &&
    writes.get(key)!.every((x) => x.start >= E || x.end + LANDS_MS <= S);
}

/** An SDK failure as a read's status (0: no answer), counted; a 404 judged. */
function s3ReadFailed(e: unknown, verb: string, key: string, S: number, m: number): number {
  let failed: Sent;
  try {
    failed = s3Failure(e);
  } catch {
    count(`${verb}_err`);
    return 0;
  }
  count(`${verb}_${failed.status}`);
  if (failed.status === 404) check404(key, S, m);
  else if (failed.status !== 416) log(verb, key, failed.status, m, failed.text.slice(0, 200));
  return failed.status;
}

/** The headers a HeadObject and a GetObject of the same value answer alike. */
const HEAD_HEADERS = [
  "ETag",
  "ContentLength",
  "LastModified",
  "ContentType",
  "AcceptRanges",
] as const;
type Head = Pick<HeadObjectCommandOutput, typeof HEAD_HEADERS[number]>;

/**
 * A GetObject through master `m`: its bytes as a GET's, and its ETag must be
 * theirs. With `range`, a range of it (its bytes the slice of the value its
 * ETag names); with `head`, on that HeadObject's ETag (If-Match), whose
 * headers it must repeat when it answers.
 */
async function s3Get(
  key: string,
  m: number,
  S: number,
  o: { range?: Range; head?: Head } = {},
): Promise<number> {
  const verb = o.range ? "S3RANGE" : o.head ? "S3HEADGET" : "S3GET";
  let bytes: Uint8Array;
  let etag: string;
  let length: number;
  let out;
  try {
    out = await s3clients[m].send(
      new GetObjectCommand({
        ...s3Key(key),
        Range: o.range?.header,
        IfMatch: o.head?.ETag,
      }),
      { abortSignal: AbortSignal.timeout(30000) },
    );
    etag = out.ETag!.replaceAll('"', "");
    length = out.ContentLength!;
    bytes = await out.Body!.transformToByteArray();
  } catch (e) {
    return s3ReadFailed(e, verb, key, S, m);
  }
  const status = out.$metadata.httpStatusCode!;
  count(`${verb}_${status}`);
  if (bytes.length !== length) {
    // Cut off: a volume hung (or killed) mid-body (README: the client retries).
    count(`${verb}_short`);
    log(`${verb} short`, key, bytes.length, length, m);
    return status;
  }
  if (o.range) {
    if (status !== 206) violate("s3_range_not_206", { key, m, range: o.range.header, status });
    else {
      const cr = contentRange(out.ContentRange);
      checkRange(key, o.range, cr, bytes, { S, m, loc: "s3", etag });
    }
    return status;
  }
  if (o.head) {
    const head = o.head;
    const differ = HEAD_HEADERS.filter((n) => String(out[n]) !== String(head[n]));
    if (differ.length) {
      violate("s3_head_get_differ", {
        key,
        m,
        head: differ.map((n) => String(head[n])),
        get: differ.map((n) => String(out[n])),
      });
    }
  }
  const got = md5hex(bytes);
  // A multipart upload's ETag is the MD5 of its parts' MD5s, "-" their count.
  const multipart = etag.includes("-");
  if (etag !== got && !multipart) violate("s3_etag_not_bytes", { key, etag, got, m, S });
  if (multipart && made.get(etag) && !sliceOf(made.get(etag)!, 0, bytes)) {
    violate("s3_etag_not_bytes", { key, etag, got, m, S });
  }
  checkBytes(key, bytes, { S, m, loc: "s3", cmd5: multipart ? null : etag });
  return status;
}

/**
 * A HeadObject through master `m`: its ETag names a value the key may hold,
 * its Content-Length that value's size; then a GetObject on that ETag must
 * answer the same headers (or 412: overwritten since).
 */
async function s3Head(key: string, m: number, S: number): Promise<number> {
  let out;
  try {
    out = await s3clients[m].send(new HeadObjectCommand(s3Key(key)), {
      abortSignal: AbortSignal.timeout(30000),
    });
  } catch (e) {
    return s3ReadFailed(e, "S3HEAD", key, S, m);
  }
  count("S3HEAD_200");
  const etag = out.ETag!.replaceAll('"', "");
  const v = made.get(etag);
  if (!checkValue(key, etag, { S, m, loc: "s3", what: "head" })) {
    violate("foreign_etag_head", { key, etag, m, S });
  } else if (v && v.size !== out.ContentLength) {
    violate("s3_head_length_not_etag", { key, etag, m, S, size: v.size, got: out.ContentLength });
  }
  const st = await s3Get(key, m, performance.now(), { head: out });
  if (st === 412) count("S3HEADGET_overwritten");
  return 200;
}

/** A 404 of `key` (read from `S` on, through master `m`): wrong if a value was live throughout. */
function check404(key: string, S: number, m: number) {
  const removes = (w: W) => REMOVES.has(w.op);
  const A = standing(key, (w) => !removes(w), removes, S);
  if (A) violate("404_live", { key, A, m, S });
}

/**
 * The write whose value `md5` is, as `key` may hold it at `E`: its own, or a
 * copy into it not yet answered (or failed: it may have gone live) from a
 * key that held that value, whichever ended last. A copy of unknown outcome
 * may bring a value the key held before back after a later write (a master
 * killed between its index write and its answer): the read is then of the
 * copy, not of the older write.
 */
function writerOf(md5: string, key: string, E: number, depth = 3): W | undefined {
  const own = values.get(`${md5}|${key}`);
  if (depth === 0) return own;
  let latest = own;
  // A copy refused (4xx) explains the value only when nothing else does:
  // another copy of the same source, of unknown outcome, may have made it
  // live (a refused one that ended later was taken for the writer).
  let refused: W | undefined;
  for (const c of writes.get(key)!) {
    if (c.op !== "S3COPY" || c.md5 !== "" || c.start >= E) continue;
    const isRefused = c.status >= 400 && c.status < 500;
    const best = isRefused ? refused : latest;
    if (best && best.end >= c.end) continue;
    if (own && !unknownOutcome(c)) continue;
    if (!writerOf(md5, c.src!, E, depth - 1)) continue;
    if (isRefused) refused = c;
    else latest = c;
  }
  return latest ?? refused;
}
/** A write with no answer, or a 5xx other than 503 (refused before it began): it may have gone live. */
function unknownOutcome(w: W): boolean {
  return w.status <= 0 || w.status >= 500 && w.status !== 503;
}

/**
 * Checks that the value `got` (an MD5, or a multipart upload's ETag) that a
 * read of `key` begun at `S` got (its bytes, or a header naming them) may
 * be the key's now: it was made live (not refused), neither unlinked nor
 * overwritten before the read began. Its writer; undefined when no write of
 * the key (nor a copy into it) made it, for the caller to judge.
 */
function checkValue(
  key: string,
  got: string,
  r: { S: number; m: number; loc: string; what?: string },
): W | undefined {
  const { S, m, loc } = r;
  const what = r.what ? `_${r.what}` : "";
  const E = performance.now();
  const w = writerOf(got, key, E);
  const own = values.get(`${got}|${key}`);
  // Counted when the copy is all that explains the read (its own write overwritten).
  if (own && w !== own && overwritten(key, own, S)) {
    count("read_of_unanswered_copy");
    log("read of a copy of unknown outcome", { key, own: own.id, copy: w, S, E, m, loc });
  }
  if (!w) return undefined;
  for (const [kind, info] of wrongValue(key, w, S, E)) {
    violate(`${kind}${what}`, { key, ...info, got: w, m, S, loc, near: near(key, S, E) });
  }
  return w;
}
/** The writes of `key` from 10 s before `S` to `E`: id, verb, status, size, start, end (ms). */
function near(key: string, S: number, E: number): (string | number)[][] {
  return writes.get(key)!.filter((x) => x.start < E && x.end > S - 10000).map((x) => [
    x.id,
    x.op,
    x.status,
    x.size,
    Math.round(x.start),
    Math.round(x.end), // null: not answered
  ]);
}
/**
 * What is wrong with a read of `key` (begun at `S`, ended at `E`) getting
 * write `w`'s value: each violation's kind and the write that shows it.
 */
function wrongValue(key: string, w: W, S: number, E: number): [string, { A?: W }][] {
  const out: [string, { A?: W }][] = [];
  // A write refused (4xx: answered before anything was written) never goes
  // live, nor does a PUT that failed (500, or 507 for a full disk: its
  // copies are removed).
  if (w.status >= 400 && w.status < 500 || w.op === "PUT" && [500, 507].includes(w.status)) {
    out.push(["refused_value_served", {}]);
  }
  // UNLINKed, with nothing since that could make it live again.
  const U = standing(key, (x) => x.op === "UNLINK", relives, S, E);
  if (U) out.push(["unlinked_served", { A: U }]);
  const V = overwritten(key, w, S);
  if (V) out.push(["stale_value", { A: V }]);
  return out;
}

/** Checks the bytes a read of `key` (begun at `S`) got against what clients wrote. */
function checkBytes(
  key: string,
  bytes: Uint8Array,
  r: { S: number; m: number; loc: string; cmd5: string | null },
) {
  const { S, m, loc, cmd5 } = r;
  const E = performance.now();
  const got = md5hex(bytes);
  const w = checkValue(key, got, { S, m, loc });
  if (!w) {
    violate("foreign_bytes", {
      key,
      size: bytes.length,
      head: new TextDecoder().decode(bytes.subarray(0, 40)),
      loc,
      m,
    });
    return;
  }
  if (cmd5 && cmd5 !== got) {
    const overlapping = writes.get(key)!.filter((x) =>
      ![403, 404, 409, 411].includes(x.status) && x.start < E && x.end > S - 2500
    );
    const wc = values.get(`${cmd5}|${key}`);
    if (wc && w.end < wc.start) {
      violate("md5_newer_than_bytes", { key, cmd5w: wc, got: w, loc, m, S });
      return;
    }
    const kind = overlapping.length ? "md5_mismatch_busy" : "md5_mismatch_QUIET";
    if (!overlapping.length) violate(kind, { key, cmd5, got: w, loc, m, S });
    else {
      count(kind);
      log(kind, {
        key,
        cmd5,
        cmd5w: wc?.id,
        got: w.id,
        loc,
        S,
        E,
        overlapping: overlapping.map((
          x,
        ) => [x.id, x.op, x.status, Math.round(x.start), Math.round(x.end)]),
      });
    }
  }
}

/** The keys of `/chaos/?<view>` through master `m` (null: no answer). */
async function listed(m: number, view: string): Promise<Set<string> | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${MPORT(m)}/chaos/?${view}`);
    if (res.status !== 200) {
      log("final", view, m, res.status, await res.text());
      return null;
    }
    return new Set((await res.json()).keys);
  } catch (e) {
    log("final", view, m, String(e));
    return null;
  }
}
/** Reads every key through master `m` once the run is over; its lists must agree with them. */
async function checkFinal(m: number) {
  const live = await listed(m, "list");
  const unlinked = await listed(m, "unlinked");
  if (!live || !unlinked) return violate("final_list_failed", { m });
  count("final_lists");
  for (const k of KEYS) {
    count("final_reads");
    const st = await doGet(k, { master: m });
    if (OPTS.has("s3")) await doGet(k, { master: m, s3: true });
    if (![302, 404].includes(st)) violate("final_read_failed", { key: k, m, status: st });
    else if ((st === 302) !== live.has(k) || unlinked.has(k) && (st !== 404 || live.has(k))) {
      violate("list_disagrees", {
        key: k,
        m,
        status: st,
        listed: live.has(k),
        unlinked: unlinked.has(k),
      });
    }
  }
}

let running = true;
/** What clients do, by weight (the read verbs: GET, HEAD, RANGE and their S3 ones). */
const MIX: [string, number][] = [
  ["REPLACE", 45],
  ["PUT", 10],
  ["DELETE", 5],
  ["GET", 40],
  ["HEAD", 8],
  ["RANGE", 8],
  ...(OPTS.has("verbs")
    ? [["UNLINK", 4], ["RELINK", 5], ["REBALANCE", 3]] as [string, number][]
    : []),
  ...(OPTS.has("s3")
    ? [["S3PUT", 15], ["S3COPY", 8], ["S3MPU", 1], ["S3DEL", 2], ["S3GET", 15], [
      "S3HEAD",
      6,
    ], ["S3RANGE", 6]] as [
      string,
      number,
    ][]
    : []),
];
const MIX_TOTAL = MIX.reduce((n, [, w]) => n + w, 0);
function pickVerb(): string {
  let r = Math.random() * MIX_TOTAL;
  for (const [verb, w] of MIX) if ((r -= w) < 0) return verb;
  return "GET";
}
async function client(c: number) {
  while (running) {
    const key = pick(KEYS);
    const verb = pickVerb();
    if (["GET", "HEAD", "RANGE"].includes(verb)) await doGet(key, { read: verb as Read });
    else if (["S3GET", "S3HEAD", "S3RANGE"].includes(verb)) {
      await doGet(key, { s3: true, read: verb.slice(2) as Read });
    } else {
      const w = await doWrite(c, key, verb);
      if (w?.status === 204 && verb === "UNLINK" && Math.random() < 0.5) {
        // Most keys are live: a RELINK picked at random finds few unlinked.
        await doGet(key);
        await doWrite(c, key, "RELINK");
      } else if (w && acked(w) && Math.random() < 0.5) {
        // Read-your-write, through another master: its value (a DELETE's
        // 404) unless a later write of the key came between.
        await doGet(key, { s3: verb.startsWith("S3") && Math.random() < 0.5, avoid: w.master });
      }
    }
  }
}

// ---- chaos
async function killer() {
  while (running) {
    await sleep(1500 + rnd(4000));
    if (!running) break;
    const alive = activeMasters();
    if (alive.length < 2) continue;
    const i = pick(alive);
    await killMaster(i, OPTS.has("term") && Math.random() < 0.5 ? "SIGTERM" : "SIGKILL");
    await sleep(200 + rnd(1500));
    await startMaster(i).catch((e) => log("restart fail", String(e)));
  }
}
// kill the master of an in-flight REPLACE when its MOVE is seen
moveSeen.push((path) => {
  if (!running || Math.random() > 0.15) return;
  const key = keyFolder.get(path.replace(/^\/sv\d\d/, "").slice(0, 7));
  if (!key) return;
  for (const [w, m] of inflight) {
    if (w.key === key && w.op === "REPLACE" && mAlive[m] && activeMasters().length >= 2) {
      mAlive[m] = false;
      count("targeted_kills");
      log("targeted kill", m, w.id);
      (async () => {
        if (Math.random() < 0.5) await sleep(rnd(30));
        await killMaster(m);
        await sleep(300 + rnd(1500));
        if (running) await startMaster(m).catch(() => {});
      })();
      return;
    }
  }
});
async function stopper() {
  while (running) {
    await sleep(4000 + rnd(6000));
    if (!running) break;
    const i = rnd(NV);
    if (volBusy[i]) continue;
    volBusy[i] = true;
    const pids = await nginxPids(i);
    for (const p of pids) Deno.kill(p, "SIGSTOP");
    count("sigstops");
    log("SIGSTOP vol", i);
    await sleep(1000 + rnd(3500));
    for (const p of pids) Deno.kill(p, "SIGCONT");
    log("SIGCONT vol", i);
    volBusy[i] = false;
  }
}
// "restart": a volume's nginx SIGKILLed (master and workers: its requests
// cut off mid-way), started again 0.5-3 s later.
async function restarter() {
  while (running) {
    await sleep(5000 + rnd(8000));
    if (!running) break;
    const i = rnd(NV);
    if (volBusy[i]) continue;
    volBusy[i] = true;
    const pids = await nginxPids(i);
    for (const p of pids) {
      try {
        Deno.kill(p, "SIGKILL");
      } catch { /* a worker gone already */ }
    }
    await vprocs[i].status;
    count("volume_kills");
    log("SIGKILL vol", i);
    await sleep(500 + rnd(2500));
    spawnVolume(i);
    await volumeUp(i, pids[0]).catch((e) => log("volume restart fail", String(e)));
    log("restarted vol", i);
    volBusy[i] = false;
  }
}
// "grow": a third of the way in, a fifth volume joins -volumes: each master
// is restarted with it in turn (SIGTERM), as an operator would, while the
// others still place keys on four, and a rebalance follows (the tools' loop
// runs more).
async function grower() {
  await sleep(SECONDS * 1000 / 3);
  inUse = 5;
  log("grow: volumes", inUse);
  for (let i = 0; i < NM && running; i++) {
    await killMaster(i, "SIGTERM");
    await startMaster(i).catch((e) => log("restart fail", String(e)));
    await sleep(1000 + rnd(2000));
  }
  const r = await runTool(["rebalance"]);
  count(`tool_rebalance_${r.code}`);
  log("grow: rebalance", r.code, r.out.slice(-1500), r.err.slice(-500));
}
// "full": a volume's disk full for 2-6 s: its PUTs answer 507.
async function filler() {
  while (running) {
    await sleep(4000 + rnd(8000));
    if (!running) break;
    const i = rnd(NV);
    full[i] = true;
    count("disk_fulls");
    log("disk full vol", i);
    await sleep(2000 + rnd(4000));
    full[i] = false;
    log("disk free vol", i);
  }
}
/** Pauses of masters begun, and whether one is under way. */
let pauses = 0;
let paused = false;
// SIGSTOP masters past their heartbeat (3 s): half the time all but one,
// which is then alone, evicts the others' fences and trusts its memory.
// With "lock", half the pauses begin while the index is locked: writes sent
// before the pause wait on it, and land (or are fenced) after.
async function pauser() {
  while (running) {
    await sleep(3000 + rnd(5000));
    if (!running) break;
    const alive = activeMasters();
    if (alive.length === 0) continue;
    const keep = pick(alive);
    const others = alive.filter((i) => i !== keep);
    const which = Math.random() < 0.5 && others.length > 0 ? others : [keep];
    const ms = 2000 + rnd(4000);
    const locked = OPTS.has("lock") && Math.random() < 0.5 && await lock();
    if (locked) await sleep(100 + rnd(400));
    const procs = which.map((i) => masters[i]).filter((p) => p !== null);
    for (const p of procs) {
      try {
        p.kill("SIGSTOP");
      } catch { /* exited meanwhile */ }
    }
    pauses++;
    paused = true;
    count("master_sigstops", procs.length);
    log("SIGSTOP masters", which, ms, locked ? "locked" : "");
    if (locked) unlock();
    await sleep(ms);
    for (const p of procs) {
      try {
        p.kill("SIGCONT");
      } catch { /* killed meanwhile */ }
    }
    paused = false;
    log("SIGCONT masters", which);
  }
}
// SQLite's write lock on the index, taken from here: every index write waits
// on it. Not with a busy timeout: that would block this process's event loop
// (its proxies carry the volumes' traffic).
let db: DatabaseSync | null = null;
let held = false;
async function lock(): Promise<boolean> {
  if (held) return false;
  db ??= new DatabaseSync(`${DIR}/db/index.sqlite3`);
  for (let t = 0; t < 200; t++) {
    try {
      db.exec("BEGIN IMMEDIATE");
      held = true;
      count("index_locks");
      log("lock index");
      return true;
    } catch {
      await sleep(5);
    }
  }
  log("lock failed");
  return false;
}
function unlock() {
  db!.exec("COMMIT");
  held = false;
  log("unlock index");
}
function closeDb() {
  db?.close();
}
async function locker() {
  while (running) {
    await sleep(4000 + rnd(8000));
    if (!running || !await lock()) continue;
    await sleep(1000 + rnd(4000));
    unlock();
  }
}
// A master answering 503 to every write for 20 s on end is stuck.
async function watchStuck() {
  while (running) {
    await sleep(1000);
    for (let i = 0; i < NM; i++) {
      // Being stopped (it answers 503 meanwhile) or restarted: no client
      // sends it writes that could end the run of 503s.
      if (!mAlive[i]) unavailableSince[i] = null;
      const since = unavailableSince[i];
      if (since !== null && performance.now() - since > 20_000) {
        violate("stuck_503", { master: i, since });
        unavailableSince[i] = null;
      }
    }
  }
}
/** Tools (rebalance, verify, rebuild) running now, and when the last one ended. */
let toolsRunning = 0;
let lastToolEnd = -Infinity;
/** Runs `work` counted as a tool: it may move or remove any key's files meanwhile. */
async function asTool<T>(work: Promise<T>): Promise<T> {
  toolsRunning++;
  try {
    return await work;
  } finally {
    toolsRunning--;
    lastToolEnd = performance.now();
  }
}
async function runTool(args: string[]) {
  const out = await asTool(
    new Deno.Command("deno", {
      args: ["run", "-A", `${REPO}/main.ts`, ...args, ...cluster()],
      stdout: "piped",
      stderr: "piped",
    }).output(),
  );
  const d = new TextDecoder();
  return { code: out.code, out: d.decode(out.stdout), err: d.decode(out.stderr) };
}
async function tools() {
  while (running) {
    await sleep(8000 + rnd(8000));
    if (!running) break;
    const which = Math.random() < 0.6 ? ["verify", "-repair"] : ["rebalance"];
    const r = await runTool(which);
    count(`tool_${which[0]}_${r.code}`);
    log("tool", which.join(" "), r.code, r.out.slice(-1500), r.err.slice(-500));
  }
}
// A rebuild beside live masters must exit 1 (it would empty the index under
// them). Only a pause may hide them all (README's limit): a rebuild that
// runs with no pause begun or under way meanwhile is a violation. With
// "lock", half the rebuilds have the index locked for 3-5 s as soon as they
// have opened it: through their check no heartbeat can land (a lock taken
// before holds up the opening itself).
async function rebuilder() {
  while (running) {
    await sleep(2000 + rnd(4000));
    if (running) await tryRebuild();
  }
}
async function tryRebuild() {
  const before = pauses;
  const p = new Deno.Command("deno", {
    args: ["run", "-A", `${REPO}/main.ts`, "rebuild", ...cluster()],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = asTool(p.output());
  if (OPTS.has("lock") && Math.random() < 0.5 && await opened(p.pid) && await lock()) {
    log("lock index through a rebuild's check");
    await sleep(3000 + rnd(2000));
    unlock();
  }
  const out = await output;
  const d = new TextDecoder();
  const [code, stdout, stderr] = [out.code, d.decode(out.stdout), d.decode(out.stderr)];
  count(`tool_rebuild_${code}`);
  log("tool rebuild", code, stdout.slice(-500), stderr.slice(-500));
  if (code === 0 && !paused && pauses === before) {
    violate("rebuild_beside_masters", { out: stdout.slice(-500), alive: activeMasters() });
  }
}
/** Whether process `pid` has opened the index's SQLite file (false once it has ended). */
async function opened(pid: number): Promise<boolean> {
  const file = `${DIR}/db/index.sqlite3`;
  for (let t = 0; t < 400; t++) {
    try {
      for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
        if (await Deno.readLink(`/proc/${pid}/fd/${fd.name}`).catch(() => "") === file) return true;
      }
    } catch {
      return false; // ended
    }
    await sleep(10);
  }
  return false;
}

const t0 = Date.now();
const jobs = [...Array(6).keys()].map((c) => client(c));
const chaos = [killer(), stopper(), tools()];
if (OPTS.has("pause")) chaos.push(pauser());
if (OPTS.has("lock")) chaos.push(locker());
if (OPTS.has("rebuild")) chaos.push(rebuilder());
if (OPTS.has("restart")) chaos.push(restarter());
if (OPTS.has("full")) chaos.push(filler());
if (OPTS.has("grow")) chaos.push(grower());
if (["pause", "lock", "skew", "bigskew"].some((o) => OPTS.has(o))) chaos.push(watchStuck());
const ticker = setInterval(() => log("stats", stats), 10000);
await sleep(SECONDS * 1000);
running = false;
await Promise.all(jobs);
await Promise.all(chaos);
closeDb();
clearInterval(ticker);
faulty = false;
for (let i = 0; i < NM; i++) if (!mAlive[i]) await startMaster(i);
await sleep(1500);
// Every master takes a write again, within the time a fenced one needs to join.
for (let i = 0; i < NM; i++) {
  const key = `/chaos/probe${i}-${crypto.randomUUID()}`;
  let st = 0;
  for (let t = 0; t < 40 && st !== 201; t++) {
    if (t > 0) await sleep(500);
    const res = await fetch(`http://127.0.0.1:${MPORT(i)}${key}`, { method: "PUT", body: "p" })
      .catch(() => null);
    await res?.body?.cancel();
    st = res?.status ?? 0;
  }
  if (st !== 201) violate("stuck_at_end", { master: i, status: st });
  await fetch(`http://127.0.0.1:${MPORT(i)}${key}`, { method: "DELETE" }).then((r) =>
    r.body?.cancel()
  )
    .catch(() => {});
}
// settle: GET every key through a master
for (const k of KEYS) await doGet(k);
const r0 = await runTool(["rebalance"]);
log("final rebalance", r0.code, r0.out, r0.err.slice(-2000));
// -grace 0s: nothing is in flight now, and the parts a master killed inside
// an UploadPart or a Complete left (README) are orphans to remove, not damage.
const r1 = await runTool(["verify", "-md5", "-repair", "-grace", "0s"]);
log("final repair", r1.code, r1.out);
const r2 = await runTool(["verify", "-md5"]);
log("final verify", r2.code, r2.out);
if (r2.code !== 0) violate("final_verify", r2.out.slice(-3000));
// Final values vs model, through every master (GetObject too with "s3"),
// and each master's ?list and ?unlinked agree with its reads.
for (let i = 0; i < NM; i++) await checkFinal(i);
// Alias-check markers (lib/aliases.ts) left at a volume's root: one whose
// DELETE landed before its late PUT can be; counted, not a violation.
for (let i = 0; i < NV; i++) {
  for await (const f of Deno.readDir(`${DIR}/vol${i}`)) {
    if (f.name.startsWith("mkv-volume-name.")) count("markers_left");
  }
}
// replicas hold recorded bytes: verify -md5 does it. Also check no stray temporaries in index
log("stats", stats);
console.log(
  JSON.stringify(
    { dir: DIR, secs: (Date.now() - t0) / 1000, stats, violations: violations.length },
    null,
    1,
  ),
);
for (const v of violations.slice(0, 20)) console.log(JSON.stringify(v).slice(0, 1500));
// Killed by us: not crashes (log.txt named each "master_exited" after the summary).
masters.fill(null);
for (const p of allProcs) {
  try {
    p.kill("SIGKILL");
  } catch { /**/ }
}
for (const p of proxies) await p.shutdown().catch(() => {});
for (const p of vprocs) {
  try {
    p.kill("SIGTERM");
  } catch { /**/ }
  await p.status;
}
Deno.exit(0);
