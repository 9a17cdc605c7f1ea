// A master draining on SIGTERM (lib/server.ts Drain): new requests are
// refused; those still in flight at the -drain deadline are cut off (503).
import {
  createHandler,
  Drain,
  type Drained,
  drainedLine,
  nothingDrained,
  ShuttingDown,
} from "../lib/server.ts";
import type { Store } from "../lib/store.ts";
import { metrics } from "../lib/metrics.ts";
import { assert, assertEquals } from "./assert.ts";
import {
  Cluster,
  type ClusterOptions,
  randomBytes,
  randomKey,
  recordOf,
  type SpawnedMaster,
  status,
  volumeFiles,
} from "./cluster.ts";
import { HeldVolume, HungVolume } from "./hung_volume.ts";
import type { VolumeProxy } from "./faults/replace_faults.ts";
import { lockIndex, lockIndexElsewhere } from "./lock_index.ts";
import { withIndex } from "./temp_index.ts";
import { errorXml, md5Header } from "./s3_answers.ts";
import { key2path, key2volume, md5, toHex } from "../lib/keys.ts";
import { fromRecord, type Record, toRecord } from "../lib/record.ts";

/**
 * The handler of a master with `opts` whose drain has begun (and ended,
 * nothing in flight): it refuses every request before its store (none here)
 * is looked at.
 */
async function drainedHandler(opts: Parameters<typeof createHandler>[1]) {
  const drain = new Drain();
  await drain.drain({ deadline: 0, grace: 0 });
  return createHandler({} as Store, opts, drain);
}

/** The lines `run` writes with console.log or console.error (`stream`), instead of printing them. */
async function linesWritten(stream: "log" | "error", run: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const write = console[stream];
  console[stream] = (line: string) => lines.push(line);
  try {
    await run();
  } finally {
    console[stream] = write;
  }
  return lines;
}

Deno.test("a draining master answers 503 in text/plain, as its other errors, and closes", async () => {
  const handler = await drainedHandler({ verbose: false });
  const res = await handler(new Request("http://localhost/k", { method: "PUT", body: "x" }));
  assertEquals(res.status, 503);
  assertEquals(res.headers.get("content-type"), "text/plain; charset=utf-8");
  assertEquals(res.headers.get("connection"), "close");
  assertEquals(await res.text(), "Shutting down\n");
});

Deno.test("a draining master answers an S3 call 503 ServiceUnavailable in S3's XML, and closes", async () => {
  const s3 = { creds: null, domain: "" };
  const handler = await drainedHandler({ verbose: false, s3 });
  const res = await handler(new Request("http://localhost/media/k?uploads", { method: "POST" }));
  const id = res.headers.get("x-amz-request-id");
  assertEquals(
    [
      res.status,
      res.headers.get("content-type"),
      res.headers.get("connection"),
      (await res.text()).replace(`<RequestId>${id}</RequestId>`, "<RequestId>ID</RequestId>"),
    ],
    [
      503,
      "application/xml",
      "close",
      errorXml(
        "ServiceUnavailable",
        "The master is shutting down: retry (on another master)",
        "",
        "/media/k",
      ),
    ],
  );
});

Deno.test("a draining master's 503 is counted in mkv_requests_total, its body in the bytes sent", async () => {
  const handler = await drainedHandler({ verbose: false });
  const before = metrics.requests.get("DELETE")?.get(503) ?? 0;
  const bytesBefore = metrics.bytesOut;
  const res = await handler(new Request("http://localhost/k", { method: "DELETE" }));
  assertEquals(res.status, 503);
  await res.body?.cancel();
  assertEquals((metrics.requests.get("DELETE")?.get(503) ?? 0) - before, 1);
  assertEquals(metrics.bytesOut - bytesBefore, "Shutting down\n".length);
});

Deno.test("-v: a draining master's 503 is logged as one request line", async () => {
  const handler = await drainedHandler({ verbose: true });
  const lines = await linesWritten("log", async () => {
    const res = await handler(new Request("http://localhost/a%20b", { method: "PUT", body: "x" }));
    await res.body?.cancel();
  });
  assertEquals(lines.map((l) => l.replace(/ [0-9.]+ms /, " _ms ")), ["PUT /a%20b 503 _ms 14B"]);
});

Deno.test("a draining master's 503 is logged as one line saying why, -v or not", async () => {
  const handler = await drainedHandler({ verbose: false });
  const lines = await linesWritten("error", async () => {
    const res = await handler(new Request("http://localhost/a%20b", { method: "PUT", body: "x" }));
    await res.body?.cancel();
  });
  assertEquals(lines, ["PUT /a%20b 503: Shutting down"]);
});

/**
 * Begins `drain` with a deadline of 0 (and a minute's grace) and waits for
 * its cut (its signal aborted); `drained` is what it counts once its
 * requests have left.
 */
async function cutAtOnce(drain: Drain): Promise<{ drained: Promise<Drained> }> {
  const drained = drain.drain({ deadline: 0, grace: 60_000 });
  await new Promise((r) => drain.signal.addEventListener("abort", r, { once: true }));
  return { drained };
}

Deno.test("a drain cuts off what is still in flight at its deadline: the signal aborts with ShuttingDown", async () => {
  const drain = new Drain();
  drain.enter();
  const { drained } = await cutAtOnce(drain);
  assert(drain.signal.reason instanceof ShuttingDown);
  assertEquals(drain.signal.reason.status, 503);
  drain.answered(503, { cutOff: true });
  drain.leave(true);
  assertEquals(await drained, { ...nothingDrained(), inflight: 1, cut: 1 });
});

Deno.test("a drain counts a request cut off that has not answered by the end of its grace", async () => {
  const drain = new Drain();
  drain.enter();
  assertEquals(await drain.drain({ deadline: 0, grace: 0 }), {
    ...nothingDrained(),
    inflight: 1,
    working: 1,
    unanswered: 1,
  });
});

Deno.test("a drain counts the requests that answered other than by the cut's 503 after its cut by their status, not as cut off", async () => {
  const drain = new Drain();
  for (let i = 0; i < 4; i++) drain.enter();
  const { drained } = await cutAtOnce(drain);
  for (const status of [200, 503, 204, 200]) {
    drain.answered(status, { cutOff: status === 503 });
    drain.leave(true);
  }
  assertEquals(await drained, {
    ...nothingDrained(),
    inflight: 4,
    cut: 1,
    finished: { 200: 2, 204: 1 },
  });
});

Deno.test("a drain counts a 503 answered after its cut for a reason of its own (a volume down) by its status, not as cut off", async () => {
  const drain = new Drain();
  for (let i = 0; i < 2; i++) drain.enter();
  const { drained } = await cutAtOnce(drain);
  drain.answered(503, { cutOff: true });
  drain.leave(true);
  drain.answered(503);
  drain.leave(true);
  assertEquals(await drained, { ...nothingDrained(), inflight: 2, cut: 1, finished: { 503: 1 } });
});

Deno.test("a drain tells the answers being sent at its deadline apart: cut short, or left to finish", async () => {
  const drain = new Drain();
  for (let i = 0; i < 3; i++) drain.enter();
  drain.answered(200);
  drain.answered(200);
  const { drained } = await cutAtOnce(drain);
  drain.endedShort();
  drain.leave(true);
  drain.leave(true);
  drain.answered(503, { cutOff: true });
  drain.leave(true);
  assertEquals(await drained, {
    ...nothingDrained(),
    inflight: 3,
    cut: 1,
    cutShort: 1,
    leftToFinish: 1,
  });
});

Deno.test("a drain counts an answer being sent at its deadline whose body then ends with the cut's error as cut off mid-answer, not left to finish", async () => {
  const drain = new Drain();
  for (let i = 0; i < 2; i++) drain.enter();
  drain.answered(200);
  drain.answered(200);
  const { drained } = await cutAtOnce(drain);
  drain.endedCutOff();
  drain.leave(true);
  drain.leave(true);
  assertEquals(await drained, {
    ...nothingDrained(),
    inflight: 2,
    cutMidAnswer: 1,
    leftToFinish: 1,
  });
});

Deno.test("the stop's line says an answer whose body ended with the cut's error was cut off mid-answer", () => {
  const drained = { ...nothingDrained(), inflight: 2, cut: 1, cutMidAnswer: 1 };
  assertEquals(
    drainedLine(drained, { deadline: 1000, grace: 5000 }),
    "Stopping: 2 request(s) still in flight after 1000 ms (-drain): 1 cut off (answered 503), " +
      "1 cut off mid-answer (an S3 CompleteMultipartUpload: its 200 ended with ServiceUnavailable)",
  );
});

Deno.test("cutOff() (a second SIGTERM) ends the wait for the deadline at once", async () => {
  const drain = new Drain();
  drain.enter();
  const drained = drain.drain({ deadline: 3_600_000, grace: 3_600_000 });
  drain.cutOff();
  assert(drain.signal.aborted);
  drain.answered(503, { cutOff: true });
  drain.leave(true);
  assertEquals(await drained, { ...nothingDrained(), inflight: 1, cut: 1 });
});

Deno.test("a drain with nothing in flight cuts nothing off", async () => {
  const drain = new Drain();
  assertEquals(await drain.drain({ deadline: 0, grace: 0 }), {
    inflight: 0,
    cut: 0,
    finished: {},
    working: 0,
    cutShort: 0,
    cutMidAnswer: 0,
    leftToFinish: 0,
    unanswered: 0,
  });
  assertEquals(drain.signal.aborted, false);
});

Deno.test("the stop's line counts the requests the cut did not stop by the status each answered", () => {
  const drained = {
    ...nothingDrained(),
    inflight: 5,
    cut: 1,
    finished: { 204: 1, 200: 2 },
    working: 1,
    unanswered: 1,
  };
  assertEquals(
    drainedLine(drained, { deadline: 1000, grace: 5000 }),
    "Stopping: 5 request(s) still in flight after 1000 ms (-drain): 1 cut off (answered 503), " +
      "3 not stopped by the cut (2 answered 200, 1 answered 204), 1 cut off with no answer yet; " +
      "1 not answered in full within 5000 ms",
  );
});

/**
 * A body that sends a byte every 100 ms until stop() (then ends): an upload
 * that would outlast any -drain.
 */
function slowBody(): { body: ReadableStream<Uint8Array>; stop(): void } {
  let timer: ReturnType<typeof setInterval> | undefined;
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      ctl = c;
      c.enqueue(new TextEncoder().encode("x"));
      timer = setInterval(() => c.enqueue(new TextEncoder().encode("x")), 100);
    },
    cancel: () => clearInterval(timer),
  });
  return {
    body,
    stop() {
      clearInterval(timer);
      try {
        ctl.close();
      } catch { /* cancelled */ }
    },
  };
}

/**
 * Waits until a write of `key` is under way on the master: a RELINK (or
 * `probe`) then answers 409 (and otherwise 404, changing nothing on a live
 * key; UNLINK changes nothing on an unlinked one).
 */
async function writingNow(c: Cluster, key: string, probe = "RELINK"): Promise<void> {
  while (await status(c.url + key, { method: probe }) !== 409) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** SIGTERMs the master with `request` in flight on `key`; returns its answer and the exit code. */
async function stopDuring(
  c: Cluster,
  key: string,
  request: (body: ReadableStream<Uint8Array>) => Promise<Response>,
): Promise<{ status: number; headers: Headers; body: string; code: number }> {
  const slow = slowBody();
  const answer = request(slow.body);
  try {
    await writingNow(c, key);
    const master = c.masterProcess!;
    master.kill("SIGTERM");
    const res = await answer;
    const body = await res.text();
    // As curl does on an answer before its body's end: the connection is done.
    slow.stop();
    return { status: res.status, headers: res.headers, body, code: (await master.status).code };
  } finally {
    slow.stop();
  }
}

/** What a test starts and stops however it ends: a cluster, a volume proxy, a master, a marker. */
type Stoppable = { stop(): unknown };

/** Hands what a test has just started to withStops, to be stopped after; returns it. */
type Stops = <T extends Stoppable>(started: T) => T;

/**
 * Runs `test`, then stops what it handed to `stops`, however it ended, the
 * last started first: a cut marker, then a master, then the volume proxy
 * it reaches, then the cluster. What `test` returns.
 */
async function withStops<T>(test: (stops: Stops) => Promise<T>): Promise<T> {
  const started: Stoppable[] = [];
  try {
    return await test((x) => {
      started.push(x);
      return x;
    });
  } finally {
    for (const x of started.reverse()) await x.stop();
  }
}

/**
 * A cluster started with `opts`, its first volume behind the proxy that
 * `proxy` makes of it, and a master in place of the cluster's own on its
 * volumes (`volumes`: the first through the proxy), its stderr `spawn`'s:
 * each handed to `stops`.
 */
async function proxiedMaster<P extends VolumeProxy>(
  stops: Stops,
  opts: ClusterOptions,
  proxy: (volume: string) => P,
  spawn: { stderr?: "piped" } = {},
): Promise<{ c: Cluster; proxy: P; volumes: string[]; m: SpawnedMaster }> {
  const c = stops(await Cluster.start(opts));
  const p = stops(proxy(c.volumes[0]));
  const volumes = [p.volume, ...c.volumes.slice(1)];
  await c.stopMaster();
  const m = stops(await c.spawnMaster([], {}, { ...spawn, volumes }));
  return { c, proxy: p, volumes, m };
}

const CUT_OFF = "The master is shutting down and cut this request off: retry (on another master)\n";

/** A stopped master's answer to an S3 request its cut stopped: S3's 503, the cut's reason, exit 0. */
function assertS3CutOff(out: { status: number; body: string; code: number }) {
  const code = out.body.match(/<Code>(\w+)<\/Code>/)?.[1];
  const message = out.body.match(/<Message>([^<]*)<\/Message>/)?.[1];
  assertEquals(
    [out.status, code, message, out.code],
    [503, "ServiceUnavailable", CUT_OFF.trim(), 0],
    out.body,
  );
}

Deno.test("SIGTERM: a PUT still uploading at the -drain deadline answers 503, leaves nothing, and the master exits 0", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 2, flags: ["-replicas", "2", "-drain", "1s"] }));
    const k = randomKey();
    // Larger than a write read whole first: it streams to both volumes.
    const put = (body: ReadableStream<Uint8Array>) =>
      fetch(c.url + k, { method: "PUT", body, headers: { "Content-Length": "1000000" } });
    const out = await stopDuring(c, k, put);
    assertEquals(out.status, 503);
    assertEquals(out.body, CUT_OFF);
    assertEquals(out.headers.get("connection"), "close");
    assertEquals(out.code, 0);
    await c.startMaster();
    assertEquals(await status(c.url + k), 404);
    assertEquals(await (await fetch(`${c.url}/?writing`)).json(), { next: "", keys: [] });
    for (const v of c.volumes) assertEquals(await volumeFiles(v), []);
  }));

Deno.test("SIGTERM: a REPLACE still uploading at the -drain deadline answers 503 and the old value stays", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "old" }), 201);
    const files = await volumeFiles(c.volumes[0]);
    const replace = (body: ReadableStream<Uint8Array>) =>
      fetch(c.url + k, { method: "REPLACE", body });
    const out = await stopDuring(c, k, replace);
    assertEquals(out.status, 503);
    assertEquals(out.body, CUT_OFF);
    assertEquals(out.code, 0);
    await c.startMaster();
    assertEquals(await (await fetch(c.url + k)).text(), "old");
    assertEquals(await volumeFiles(c.volumes[0]), files);
  }));

Deno.test("SIGTERM: a PUT over an unlinked key cut off at the -drain deadline leaves it unlinked", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "unlinked" }), 201);
    assertEquals(await status(c.url + k, { method: "UNLINK" }), 204);
    const put = (body: ReadableStream<Uint8Array>) => fetch(c.url + k, { method: "PUT", body });
    const out = await stopDuring(c, k, put);
    assertEquals(out.status, 503);
    assertEquals(out.code, 0);
    await c.startMaster();
    assertEquals(await status(c.url + k, { method: "RELINK" }), 204);
    assertEquals(await (await fetch(c.url + k)).text(), "unlinked");
  }));

/**
 * A one-volume cluster (-replicas 1, -s3, -drain 1s) whose master reaches
 * its volume through a HungVolume; -voltimeout 30s: a hung call outlasts
 * the drain and its grace by far. Both handed to `stops`.
 */
async function hungCluster(stops: Stops): Promise<{ c: Cluster; hung: HungVolume }> {
  const c = stops(
    await Cluster.start({
      volumes: 1,
      flags: ["-replicas", "1", "-s3", "-drain", "1s", "-voltimeout", "30s"],
    }),
  );
  const hung = stops(new HungVolume(c.volumes[0]));
  await c.stopMaster();
  await c.startMaster([], [hung.volume]);
  return { c, hung };
}

/** S3's V2 signature headers: the cluster runs -s3, so any key passes. */
function s3Signed(): HeadersInit {
  return { Authorization: "AWS anyone:c2lnbmF0dXJl", Date: new Date().toUTCString() };
}

/**
 * SIGTERMs the master (a cluster's own, or one spawned) once `hung` holds a
 * call; its answer to `request` and its exit code.
 */
async function stopWhileHung(
  on: Cluster | SpawnedMaster,
  hung: HungVolume,
  request: Promise<Response>,
): Promise<{ status: number; body: string; code: number }> {
  // An answer before the hang (a failure) ends the wait too, to be asserted on.
  await Promise.race([hung.arrived, request]);
  const master = "proc" in on ? on.proc : on.masterProcess!;
  master.kill("SIGTERM");
  const res = await request;
  const body = await res.text();
  return { status: res.status, body, code: (await master.status).code };
}

Deno.test("SIGTERM: a GET waiting on a hung volume's HEAD at the -drain deadline answers 503 and the master exits 0", () =>
  withStops(async (stops) => {
    const { c, hung } = await hungCluster(stops);
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "value" }), 201);
    hung.hangOn("HEAD", k);
    const out = await stopWhileHung(c, hung, fetch(c.url + k, { redirect: "manual" }));
    assertEquals(out.status, 503);
    assertEquals(out.body, CUT_OFF);
    assertEquals(out.code, 0);
  }));

Deno.test("SIGTERM: an S3 GetObject waiting on a hung volume at the -drain deadline answers 503 ServiceUnavailable and the master exits 0", () =>
  withStops(async (stops) => {
    const { c, hung } = await hungCluster(stops);
    const k = randomKey("/bucket");
    assertEquals(await status(c.url + k, { method: "PUT", body: "value" }), 201);
    hung.hangOn("GET", k);
    const out = await stopWhileHung(c, hung, fetch(c.url + k, { headers: s3Signed() }));
    assertS3CutOff(out);
  }));

Deno.test("SIGTERM: an S3 HeadObject waiting on a hung volume at the -drain deadline answers 503 and the master exits 0", () =>
  withStops(async (stops) => {
    const { c, hung } = await hungCluster(stops);
    const k = randomKey("/bucket");
    assertEquals(await status(c.url + k, { method: "PUT", body: "value" }), 201);
    hung.hangOn("HEAD", k);
    const head = fetch(c.url + k, { method: "HEAD", headers: s3Signed() });
    const out = await stopWhileHung(c, hung, head);
    assertEquals(out.status, 503);
    assertEquals(out.code, 0);
  }));

Deno.test("SIGTERM: an S3 GetObject still streaming at the -drain deadline is cut off short and the master exits 0", () =>
  withStops(async (stops) => {
    const { c, hung } = await hungCluster(stops);
    const k = randomKey("/bucket");
    const value = randomBytes(1 << 20);
    assertEquals(await status(c.url + k, { method: "PUT", body: value }), 201);
    hung.hangOn("GET", k);
    hung.midBody = true;
    const res = await fetch(c.url + k, { headers: s3Signed() });
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("content-length"), String(value.length));
    const reader = res.body!.getReader();
    const first = await reader.read();
    assertEquals(first.value, value.subarray(0, 1024));
    await hung.arrived;
    const master = c.masterProcess!;
    master.kill("SIGTERM");
    assertEquals((await master.status).code, 0);
    // The rest never comes: the answer ends short (as at a volume's stall).
    let rest = 0;
    const ended = await (async () => {
      try {
        while (true) {
          const { value, done } = await reader.read();
          if (done) return "done";
          rest += value.length;
        }
      } catch {
        return "error";
      }
    })();
    assertEquals({ ended, rest }, { ended: "error", rest: 0 });
  }));

Deno.test("SIGTERM with the index's write lock held elsewhere: the master exits without waiting on it to leave, and says so", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    await c.stopMaster();
    const m = stops(await c.spawnMaster([], {}, { stderr: "piped" }));
    stops({ stop: lockIndex(`${c.db}/index.sqlite3`) });
    m.proc.kill("SIGTERM");
    const [status, stderr] = await Promise.all([
      m.proc.status,
      new Response(m.proc.stderr).text(),
    ]);
    assertEquals(status.code, 0, stderr);
    assert(
      stderr.includes(
        "Stopping: the index took no write for 5000 ms (another process holds its write lock): " +
          "exiting without removing this master's heartbeat record (it lapses in 3 s)",
      ),
      stderr,
    );
  }));

/**
 * A master with `flags` on a hungCluster's index, reaching its volume
 * through `hung`, its stderr the test's; the cluster's own master stopped.
 */
async function hungMaster(c: Cluster, hung: HungVolume, flags: string[] = []) {
  await c.stopMaster();
  return await c.spawnMaster(flags, {}, { stderr: "piped", volumes: [hung.volume] });
}

/**
 * SIGTERMs `master` once an S3 GetObject of a 1 MiB value on a `midBody`
 * HungVolume has streamed its first KiB and waits on the rest; returns the
 * master's stderr once it has exited.
 */
async function stopWhileStreaming(master: SpawnedMaster, hung: HungVolume): Promise<string[]> {
  const k = randomKey("/bucket");
  assertEquals(await status(master.url + k, { method: "PUT", body: randomBytes(1 << 20) }), 201);
  hung.hangOn("GET", k);
  hung.midBody = true;
  const res = await fetch(master.url + k, { headers: s3Signed() });
  assertEquals(res.status, 200);
  const reader = res.body!.getReader();
  await reader.read();
  await hung.arrived;
  const stderr = new Response(master.proc.stderr).text();
  master.proc.kill("SIGTERM");
  assertEquals((await master.proc.status).code, 0);
  await reader.read().then(() => reader.cancel(), () => {});
  return (await stderr).split("\n").filter((l) => l !== "");
}

Deno.test("-log json: an S3 GetObject cut short at the -drain deadline leaves only JSON lines on stderr, none an error with a stack", () =>
  withStops(async (stops) => {
    const { c, hung } = await hungCluster(stops);
    const master = stops(await hungMaster(c, hung, ["-log", "json"]));
    const lines = await stopWhileStreaming(master, hung);
    const parsed = lines.map((l) => JSON.parse(l));
    assertEquals(parsed.filter((l) => l.level === "error" || "stack" in l), []);
  }));

Deno.test("SIGTERM: the stop's line says an S3 GetObject streaming at the -drain deadline was cut short, not answered 503", () =>
  withStops(async (stops) => {
    const { c, hung } = await hungCluster(stops);
    const master = stops(await hungMaster(c, hung));
    assertEquals(await stopWhileStreaming(master, hung), [
      "Stopping: 1 request(s) still in flight after 1000 ms (-drain): 1 cut short (an S3 " +
      "GetObject streaming from a volume: its body ended before its Content-Length)",
    ]);
  }));

Deno.test("SIGTERM: the stop's line says a PUT still uploading at the -drain deadline was cut off and answered 503", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    await c.stopMaster();
    const m = stops(await c.spawnMaster([], {}, { stderr: "piped" }));
    const slow = stops(slowBody());
    const k = randomKey();
    const answer = fetch(m.url + k, { method: "PUT", body: slow.body });
    while (await status(m.url + k, { method: "RELINK" }) !== 409) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const stderr = new Response(m.proc.stderr).text();
    m.proc.kill("SIGTERM");
    assertEquals((await answer).status, 503);
    slow.stop();
    assertEquals((await m.proc.status).code, 0);
    assertEquals((await stderr).split("\n").filter((l) => l.startsWith("Stopping")), [
      "Stopping: 1 request(s) still in flight after 1000 ms (-drain): 1 cut off (answered 503)",
    ]);
  }));

/**
 * A PUT of a fresh key on `m` whose body comes slowly, until the answer:
 * the cut's 503 says the cut has come (`cut` resolves to it).
 */
function cutMarker(m: SpawnedMaster): { cut: Promise<number>; stop(): void } {
  const slow = slowBody();
  const k = randomKey();
  const put = fetch(m.url + k, { method: "PUT", body: slow.body });
  const cut = (async () => {
    while (await status(m.url + k, { method: "RELINK" }) !== 409) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return 0;
  })();
  return {
    // Resolves once the PUT is under way; then to its answer's status.
    cut: cut.then(async () => {
      const res = await put;
      await res.body?.cancel();
      slow.stop();
      return res.status;
    }),
    stop: () => slow.stop(),
  };
}

Deno.test("SIGTERM: the stop's line counts a REBALANCE past its record at the -drain deadline by the 204 it answered, not as cut off", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 2, flags: ["-replicas", "1", "-drain", "1s"] }));
    const held = stops(new HeldVolume(c.volumes[0]));
    const both = [held.volume, c.volumes[1]];
    // Written on the held volume alone, a key the hash puts on the other once both are listed.
    let moved = randomKey();
    while (
      !key2volume(new TextEncoder().encode(moved), both, 1, 10)[0].startsWith(`${c.volumes[1]}/`)
    ) {
      moved = randomKey();
    }
    await c.stopMaster();
    const first = stops(await c.spawnMaster([], {}, { volumes: [held.volume] }));
    assertEquals(await status(first.url + moved, { method: "PUT", body: "moved" }), 201);
    await first.stop();
    const m = stops(await c.spawnMaster([], {}, { stderr: "piped", volumes: both }));
    const marker = stops(cutMarker(m));
    // Copied and recorded where the hash puts it now: the old copy's
    // removal, held, is given up at the cut; the key moved all the same.
    held.holdOn("DELETE", moved);
    const rebalance = fetch(m.url + moved, { method: "REBALANCE" });
    await held.arrived;
    const stderr = new Response(m.proc.stderr).text();
    m.proc.kill("SIGTERM");
    // Not stopped at the cut, it waits for the DELETE held, past the master's exit.
    const rebalanced = await Promise.race([rebalance, m.proc.status.then(() => null)]);
    assert(rebalanced !== null, "the master exited before the REBALANCE answered");
    await rebalanced.body?.cancel();
    assertEquals([await marker.cut, rebalanced.status, (await m.proc.status).code], [503, 204, 0]);
    assertEquals((await stderr).split("\n").filter((l) => l.startsWith("Stopping")), [
      "Stopping: 2 request(s) still in flight after 1000 ms (-drain): 1 cut off (answered 503), " +
      "1 not stopped by the cut (answered 204)",
    ]);
    held.letGo();
    await c.startMaster([], both);
    const res = await fetch(c.url + moved, { redirect: "manual" });
    await res.body?.cancel();
    assert(res.headers.get("location")!.startsWith(`http://${c.volumes[1]}/`));
  }));

Deno.test("SIGTERM: a REBALANCE copying the key at the -drain deadline answers 503, the key stays as it was, unheld, and the master exits 0", () =>
  withStops(async (stops) => {
    const { c, proxy: held, m } = await proxiedMaster(stops, {
      volumes: 2,
      flags: ["-replicas", "2", "-drain", "1s"],
    }, (v) => new HeldVolume(v));
    const marker = stops(cutMarker(m));
    const k = randomKey();
    assertEquals(await status(m.url + k, { method: "PUT", body: "kept" }), 201);
    // A replica lost: REBALANCE claims the key, then copies it back from
    // the held volume; the cut stops the copy before the index names it.
    const [file] = await volumeFiles(c.volumes[1]);
    assertEquals(await status(`http://${c.volumes[1]}${file}`, { method: "DELETE" }), 204);
    held.holdOn("GET", k);
    const rebalance = fetch(m.url + k, { method: "REBALANCE" });
    await held.arrived;
    m.proc.kill("SIGTERM");
    assertEquals(await marker.cut, 503);
    held.letGo();
    const res = await rebalance;
    assertEquals([res.status, await res.text(), (await m.proc.status).code], [503, CUT_OFF, 0]);
    await c.startMaster([], [held.volume, c.volumes[1]]);
    assertEquals(await (await fetch(c.url + k)).text(), "kept");
    // Its claim was given back: the key is anyone's to write.
    assertEquals(await status(c.url + k, { method: "REBALANCE" }), 204);
  }));

Deno.test("SIGTERM: a REBALANCE reading a rebuilt key's replicas to compare them at the -drain deadline answers the cut's 503, the key stays as it was, unheld, and the master exits 0", () =>
  withStops(async (stops) => {
    const first = await proxiedMaster(
      stops,
      { volumes: 3, flags: ["-replicas", "3", "-drain", "1s"] },
      (v) => new HeldVolume(v),
    );
    const { c, proxy: held, volumes } = first;
    let m = first.m;
    const k = randomKey();
    assertEquals(await status(m.url + k, { method: "PUT", body: "kept" }), 201);
    await m.stop();
    // Rebuilt: no MD5 recorded.
    const kv = await Deno.openKv(`${c.db}/index.sqlite3`);
    const key = ["k", new TextEncoder().encode(k)];
    const rebuilt: Record = { ...toRecord((await kv.get(key)).value)!, hash: "" };
    await kv.set(key, fromRecord(rebuilt));
    kv.close();
    m = stops(await c.spawnMaster([], {}, { volumes }));
    stops({ stop: () => held.letGo() });
    // A replica lost: REBALANCE claims the key, then reads the two others
    // in full to compare them before it copies one; the held one's read
    // waits past the cut.
    const [file] = await volumeFiles(c.volumes[2]);
    assertEquals(await status(`http://${c.volumes[2]}${file}`, { method: "DELETE" }), 204);
    held.holdOn("GET", k);
    const rebalance = fetch(m.url + k, { method: "REBALANCE" });
    await held.arrived;
    m.proc.kill("SIGTERM");
    const res = await Promise.race([rebalance, m.proc.status.then(() => null)]);
    assert(res !== null, "the master exited before the REBALANCE answered");
    assertEquals([res.status, await res.text(), (await m.proc.status).code], [503, CUT_OFF, 0]);
    held.letGo();
    assertEquals(await recordOf(c, k), rebuilt);
    assertEquals(await volumeFiles(c.volumes[2]), []);
  }));

/**
 * Waits until the index holds a writer's claim on `key`: a record with a
 * lease (a PUT's "writing" one, or a REPLACE's hold on the live one).
 */
async function claimCommitted(c: Cluster, key: string): Promise<void> {
  const kv = await Deno.openKv(`${c.db}/index.sqlite3`);
  try {
    while (
      (await kv.get<{ u?: number }>(["k", new TextEncoder().encode(key)])).value?.u === undefined
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    kv.close();
  }
}

/** The versionstamp of `key`'s record in `c`'s index (null: none): changed by every write of it. */
async function recordStamp(c: Cluster, key: string): Promise<string | null> {
  const kv = await Deno.openKv(`${c.db}/index.sqlite3`);
  try {
    return (await kv.get(["k", new TextEncoder().encode(key)])).versionstamp;
  } finally {
    kv.close();
  }
}

/**
 * SIGTERMs the master with a PUT (or `method`) of `key` in flight whose
 * index writes wait on a lock another process holds on the index: taken
 * while the body still comes in (`ended` false: the cut finds it
 * uploading), or once the body has ended and its file is on the volume
 * (`ended` true: the cut finds it waiting on the commit that would make it
 * live). Returns the answer and the exit code; the lock is released after
 * the master has exited, or with `unlockAtAnswer` as soon as the answer
 * has come (what the master still does then, it does on a free index).
 */
async function stopWhileLocked(
  c: Cluster,
  key: string,
  opts: { ended: boolean; method?: string; unlockAtAnswer?: boolean },
): Promise<{ status: number; body: string; code: number }> {
  const slow = slowBody();
  const answer = fetch(c.url + key, { method: opts.method ?? "PUT", body: slow.body });
  let unlock: (() => void) | null = null;
  try {
    await writingNow(c, key);
    // RELINK's 409 comes as the PUT starts, maybe before its claim's commit:
    // locked first, that commit would be what the cut finds.
    await claimCommitted(c, key);
    unlock = lockIndex(`${c.db}/index.sqlite3`);
    if (opts.ended) {
      slow.stop();
      while ((await volumeFiles(c.volumes[0])).length === 0) {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const master = c.masterProcess!;
    master.kill("SIGTERM");
    const res = await answer;
    if (opts.unlockAtAnswer) {
      unlock();
      unlock = null;
    }
    const body = await res.text();
    slow.stop();
    return { status: res.status, body, code: (await master.status).code };
  } finally {
    slow.stop();
    unlock?.();
  }
}

// The cut finds the PUT uploading (ended false), or waiting on the commit that makes it live.
for (
  const [at, ended] of [
    ["uploading at the -drain deadline on a locked index", false],
    ["waiting on a locked index's commit at the -drain deadline", true],
  ] as const
) {
  Deno.test(`SIGTERM: a PUT ${at} answers 503 in time, leaves nothing, and the master exits 0`, () =>
    withStops(async (stops) => {
      const c = stops(
        await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }),
      );
      const k = randomKey();
      assertEquals(await stopWhileLocked(c, k, { ended }), {
        status: 503,
        body: CUT_OFF,
        code: 0,
      });
      await c.startMaster();
      assertEquals(await status(c.url + k), 404);
      assertEquals(await volumeFiles(c.volumes[0]), []);
    }));
}

Deno.test("SIGTERM: a REPLACE uploading at the -drain deadline on a locked index answers 503 before its clean-up, which the master still makes: the old value stays, unheld, its temporary removed", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "old" }), 201);
    const files = await volumeFiles(c.volumes[0]);
    // Unlocked at the answer: its claim's release, sent after it, lands.
    // Answered after it, the release had failed on the lock (the key held
    // for -lease), or come past the grace (exit 1).
    const out = await stopWhileLocked(c, k, {
      ended: false,
      method: "REPLACE",
      unlockAtAnswer: true,
    });
    assertEquals(out, { status: 503, body: CUT_OFF, code: 0 });
    await c.startMaster();
    assertEquals(await (await fetch(c.url + k)).text(), "old");
    assertEquals(await volumeFiles(c.volumes[0]), files);
    assertEquals(await status(c.url + k, { method: "REPLACE", body: "new" }), 201);
  }));

/**
 * SIGTERMs the master with `init` of `key` in flight on an index whose
 * write lock another process has held past two of the master's heartbeats:
 * the request's write then waits for the master to join the index again
 * (lib/membership.ts ready). The lock goes right after the SIGTERM: the
 * master's heartbeat then lands, and its writes wait 2.5 heartbeat
 * intervals more (as a member's that rejoins), past the -drain of 1 s: a
 * write that does not take the cut-off's signal lands after it (as
 * stopS3WhileRejoining's). Returns its answer (status 0: none came, the
 * connection closed) and the exit code. `probe`: writingNow's.
 */
async function stopWhileRejoining(
  c: Cluster,
  key: string,
  init: RequestInit,
  probe?: string,
): Promise<{ status: number; body: string; code: number }> {
  let unlock: (() => void) | null = lockIndex(`${c.db}/index.sqlite3`);
  try {
    // Time is the event here: two heartbeat intervals (1 s) with none landing.
    await new Promise((r) => setTimeout(r, 2_500));
    const answer = fetch(c.url + key, init).catch(() => null);
    await writingNow(c, key, probe);
    const master = c.masterProcess!;
    master.kill("SIGTERM");
    unlock();
    unlock = null;
    const res = await answer;
    const body = res ? await res.text() : "(no answer)";
    return { status: res?.status ?? 0, body, code: (await master.status).code };
  } finally {
    unlock?.();
  }
}

Deno.test("SIGTERM: a REPLACE waiting for its master to rejoin the index at the -drain deadline answers 503 with nothing written to the index, the old value stays, and the master exits 0", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "old" }), 201);
    const files = await volumeFiles(c.volumes[0]);
    const stamp = await recordStamp(c, k);
    assertEquals(await stopWhileRejoining(c, k, { method: "REPLACE", body: "new" }), {
      status: 503,
      body: CUT_OFF,
      code: 0,
    });
    // Not its claim taken after the cut, then given back: its value's
    // write is cut off too, the same 503 and old value after.
    assertEquals(await recordStamp(c, k), stamp);
    await c.startMaster();
    assertEquals(await (await fetch(c.url + k)).text(), "old");
    assertEquals(await volumeFiles(c.volumes[0]), files);
  }));

// Either would hide the key: cut off before its write reached the index, it stays live.
for (const [article, method] of [["a", "DELETE"], ["an", "UNLINK"]]) {
  Deno.test(`SIGTERM: ${article} ${method} waiting for its master to rejoin the index at the -drain deadline answers 503, the key stays live, and the master exits 0`, () =>
    withStops(async (stops) => {
      const c = stops(
        await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }),
      );
      const k = randomKey();
      assertEquals(await status(c.url + k, { method: "PUT", body: "kept" }), 201);
      assertEquals(await stopWhileRejoining(c, k, { method }), {
        status: 503,
        body: CUT_OFF,
        code: 0,
      });
      await c.startMaster();
      assertEquals(await (await fetch(c.url + k)).text(), "kept");
    }));
}

Deno.test("SIGTERM: a RELINK waiting for its master to rejoin the index at the -drain deadline answers 503, the key stays unlinked, and the master exits 0", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "unlinked" }), 201);
    assertEquals(await status(c.url + k, { method: "UNLINK" }), 204);
    // Not RELINK's probe: it would relink the key itself.
    assertEquals(await stopWhileRejoining(c, k, { method: "RELINK" }, "UNLINK"), {
      status: 503,
      body: CUT_OFF,
      code: 0,
    });
    await c.startMaster();
    assertEquals(await status(c.url + k), 404);
    assertEquals(await status(c.url + k, { method: "RELINK" }), 204);
  }));

Deno.test("SIGTERM: a REBALANCE waiting for its master to rejoin the index at the -drain deadline answers 503, the key stays as it was, and the master exits 0", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 2, flags: ["-replicas", "2", "-drain", "1s"] }));
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "kept" }), 201);
    // A replica lost: REBALANCE copies it back, under a claim on the key.
    const [file] = await volumeFiles(c.volumes[0]);
    assertEquals(await status(`http://${c.volumes[0]}${file}`, { method: "DELETE" }), 204);
    assertEquals(await stopWhileRejoining(c, k, { method: "REBALANCE" }), {
      status: 503,
      body: CUT_OFF,
      code: 0,
    });
    await c.startMaster();
    assertEquals(await (await fetch(c.url + k)).text(), "kept");
    assertEquals(await volumeFiles(c.volumes[0]), []);
  }));

/**
 * The keys of `c`'s index in the "writing" state, through a master on the
 * volumes themselves (the hung proxy stopped), and what a GET and a DELETE
 * of `key` answer there.
 */
async function afterHungDelete(c: Cluster, key: string) {
  await c.startMaster();
  const writing = await (await fetch(`${c.url}/?writing`)).json();
  return {
    writing,
    get: await status(c.url + key),
    delete: await status(c.url + key, { method: "DELETE" }),
  };
}

Deno.test('SIGTERM: a DELETE waiting on a hung volume at the -drain deadline answers 503, leaves the key non-live ("writing", held for -lease), and the master exits 0', () =>
  withStops(async (stops) => {
    const { c, hung } = await hungCluster(stops);
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "value" }), 201);
    hung.hangOn("DELETE", k);
    const out = await stopWhileHung(c, hung, fetch(c.url + k, { method: "DELETE" }));
    assertEquals(out, { status: 503, body: CUT_OFF, code: 0 });
    await hung.stop();
    // The DELETE sent may land yet: writers wait out the lease (409).
    assertEquals(await afterHungDelete(c, k), {
      writing: { next: "", keys: [k] },
      get: 404,
      delete: 409,
    });
  }));

Deno.test("SIGTERM: an S3 DeleteObject waiting on a hung volume at the -drain deadline answers 503 ServiceUnavailable and the master exits 0", () =>
  withStops(async (stops) => {
    const { c, hung } = await hungCluster(stops);
    const k = randomKey("/bucket");
    assertEquals(await status(c.url + k, { method: "PUT", body: "value" }), 201);
    hung.hangOn("DELETE", k);
    const del = fetch(c.url + k, { method: "DELETE", headers: s3Signed() });
    const out = await stopWhileHung(c, hung, del);
    assertS3CutOff(out);
  }));

/**
 * Sends `method path` with `body` on a connection of its own, as a client
 * sending `Expect: 100-continue` does: the body goes once the master's
 * "100 Continue" says the call has begun reading it (`reading` resolves
 * then). `answer`: the final answer's status (0: the connection closed with
 * none) and what came after its status line.
 */
function sendOnContinue(
  c: Cluster,
  call: { method: string; path: string; body: string },
): { reading: Promise<void>; answer: Promise<{ status: number; text: string }> } {
  const reading = Promise.withResolvers<void>();
  const answer = (async () => {
    const port = Number(new URL(c.url).port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const enc = new TextEncoder();
    const body = enc.encode(call.body);
    // A Content-MD5, which DeleteObjects needs (and any call checks).
    const headers = new Headers({ ...s3Signed(), ...md5Header(body) });
    let head = `${call.method} ${call.path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      `Expect: 100-continue\r\nContent-Length: ${body.length}\r\n`;
    headers.forEach((v, k) => head += `${k}: ${v}\r\n`);
    try {
      await conn.write(enc.encode(head + "\r\n"));
      let text = "";
      const buf = new Uint8Array(65536);
      while (true) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
        if (text.startsWith("HTTP/1.1 100") && text.includes("\r\n\r\n")) {
          text = text.slice(text.indexOf("\r\n\r\n") + 4);
          await conn.write(body);
          reading.resolve();
        }
      }
      const status = text.startsWith("HTTP/1.1 ") ? Number(text.slice(9, 12)) : 0;
      return { status, text };
    } finally {
      reading.resolve();
      conn.close();
    }
  })();
  return { reading: reading.promise, answer };
}

/**
 * SIGTERMs the master once an S3 `call` has begun reading its body on an
 * index whose write lock another process has held past two heartbeats: the
 * call's index write then waits for the master to join the index again.
 * Returns its answer and the exit code; the lock goes once the master has
 * exited, or with `unlockAtStop` right after the SIGTERM: the master's
 * heartbeat then lands, and its writes wait 2.5 heartbeat intervals more
 * (as a member's that rejoins: lib/membership.ts), past the -drain of 1 s.
 */
async function stopS3WhileRejoining(
  c: Cluster,
  call: { method: string; path: string; body: string },
  opts: { unlockAtStop?: boolean } = {},
): Promise<{ status: number; text: string; code: number }> {
  let unlock: (() => void) | null = lockIndex(`${c.db}/index.sqlite3`);
  try {
    // Time is the event here: two heartbeat intervals (1 s) with none landing.
    await new Promise((r) => setTimeout(r, 2_500));
    const sent = sendOnContinue(c, call);
    await sent.reading;
    const master = c.masterProcess!;
    master.kill("SIGTERM");
    if (opts.unlockAtStop) {
      unlock();
      unlock = null;
    }
    const answer = await sent.answer;
    return { ...answer, code: (await master.status).code };
  } finally {
    unlock?.();
  }
}

/** Whether `out` is the cut-off's 503 in S3's words (ServiceUnavailable), the master exiting 0. */
function cutOffInS3(out: { status: number; text: string; code: number }): boolean {
  return out.status === 503 && out.text.includes("<Code>ServiceUnavailable</Code>") &&
    out.text.includes(CUT_OFF.trim()) && out.code === 0;
}

Deno.test("SIGTERM: an S3 DeleteObjects recording a bucket known only through its keys while its master rejoins the index at the -drain deadline answers 503, the keys stay, and the master exits 0", () =>
  withStops(async (stops) => {
    const c = stops(
      await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-s3", "-drain", "1s"] }),
    );
    const bucket = `b-${crypto.randomUUID().slice(0, 8)}`;
    assertEquals(await status(`${c.url}/${bucket}/k`, { method: "PUT", body: "kept" }), 201);
    const body = "<Delete><Object><Key>k</Key></Object></Delete>";
    // The lock released at the SIGTERM: the bucket's record, sent after the
    // cut, would land and the keys go (200).
    const call = { method: "POST", path: `/${bucket}?delete`, body };
    const out = await stopS3WhileRejoining(c, call, { unlockAtStop: true });
    assert(cutOffInS3(out), JSON.stringify(out));
    await c.startMaster();
    assertEquals(await (await fetch(`${c.url}/${bucket}/k`)).text(), "kept");
  }));

Deno.test("SIGTERM: an S3 CreateBucket waiting for its master to rejoin the index at the -drain deadline answers 503, makes no bucket, and the master exits 0", () =>
  withStops(async (stops) => {
    const c = stops(
      await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-s3", "-drain", "1s"] }),
    );
    const bucket = `b-${crypto.randomUUID().slice(0, 8)}`;
    const body = "<CreateBucketConfiguration><LocationConstraint>eu-west-1" +
      "</LocationConstraint></CreateBucketConfiguration>";
    // The lock released at the SIGTERM: the bucket's record, sent after the cut, would land (200).
    const call = { method: "PUT", path: `/${bucket}`, body };
    const out = await stopS3WhileRejoining(c, call, { unlockAtStop: true });
    assert(cutOffInS3(out), JSON.stringify(out));
    await c.startMaster();
    assertEquals(await status(`${c.url}/${bucket}`, { method: "HEAD", headers: s3Signed() }), 404);
  }));

Deno.test("SIGTERM: an S3 UploadPart waiting for its master to rejoin the index at the -drain deadline answers 503, records no part, removes its file, and the master exits 0", () =>
  withStops(async (stops) => {
    const c = stops(
      await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-s3", "-drain", "1s"] }),
    );
    const k = randomKey("/bucket");
    const created = await fetch(`${c.url}${k}?uploads`, { method: "POST", headers: s3Signed() });
    const id = (await created.text()).match(/<UploadId>(\w+)<\/UploadId>/)![1];
    const path = `${k}?partNumber=1&uploadId=${id}`;
    // The lock released at the SIGTERM: the part's record, sent after the
    // cut, would land (200), the 503 of the write dropped or none at all.
    const call = { method: "PUT", path, body: "part" };
    const out = await stopS3WhileRejoining(c, call, { unlockAtStop: true });
    assert(cutOffInS3(out), JSON.stringify(out));
    await c.startMaster();
    const parts = await (await fetch(`${c.url}${k}?uploadId=${id}`, { headers: s3Signed() }))
      .text();
    assert(parts.includes("<ListPartsResult") && !parts.includes("<Part>"), parts);
    assertEquals(await volumeFiles(c.volumes[0]), []);
  }));

Deno.test("an S3 bucket record's commit on a locked index is not tried again past a stopping master's cut-off: it fails with the cut-off's reason, nothing written", async () => {
  await withIndex(async (index, path) => {
    const cut = new AbortController();
    index.commits.stopRetrying(cut.signal);
    const unlock = await lockIndexElsewhere(path);
    try {
      // Its first try waits on the lock (up to 5 s); the cut comes meanwhile.
      const made = index.createBucket("media", Date.now()).then(() => null, (err) => err);
      cut.abort(new Error("Cut off"));
      assertEquals(String(await made), "Error: Cut off");
    } finally {
      await unlock();
    }
    assertEquals(await index.bucket("media"), null);
  });
});

Deno.test("SIGTERM: a RELINK waiting on its HEAD checks of the replicas at the -drain deadline answers the cut's 503, the key stays unlinked, and the master exits 0", () =>
  withStops(async (stops) => {
    const { c, hung } = await hungCluster(stops);
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "value" }), 201);
    assertEquals(await status(c.url + k, { method: "UNLINK" }), 204);
    const stamp = await recordStamp(c, k);
    // A HEAD unanswered for -voltimeout (30 s).
    hung.hangOn("HEAD", k);
    const out = await stopWhileHung(c, hung, fetch(c.url + k, { method: "RELINK" }));
    assertEquals(out, { status: 503, body: CUT_OFF, code: 0 });
    assertEquals(await recordStamp(c, k), stamp);
  }));

Deno.test("SIGTERM: a REBALANCE waiting on its HEAD checks of the replicas at the -drain deadline answers the cut's 503, the key's record untouched, and the master exits 0", () =>
  withStops(async (stops) => {
    const { c, hung } = await hungCluster(stops);
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "value" }), 201);
    const stamp = await recordStamp(c, k);
    // Checked before its claim: a HEAD unanswered for -voltimeout (30 s).
    hung.hangOn("HEAD", k);
    const out = await stopWhileHung(c, hung, fetch(c.url + k, { method: "REBALANCE" }));
    assertEquals(out, { status: 503, body: CUT_OFF, code: 0 });
    assertEquals(await recordStamp(c, k), stamp);
  }));

Deno.test("SIGTERM: a REPLACE waiting on its HEAD of the old value's copy off the key's volumes at the -drain deadline answers the cut's 503, the old value stays, unheld, its temporary removed, and the master exits 0", () =>
  withStops(async (stops) => {
    const c = stops(
      await Cluster.start({
        volumes: 2,
        flags: ["-replicas", "1", "-drain", "1s", "-voltimeout", "30s"],
      }),
    );
    const hung = stops(new HungVolume(c.volumes[0]));
    // Written with the hung volume alone; now hashed to volume 1, its old
    // copy left on the hung volume, which REPLACE asks about before the switch.
    const volumes = [hung.volume, c.volumes[1]];
    let k = randomKey("/moving");
    const enc = new TextEncoder();
    while (!key2volume(enc.encode(k), volumes, 1, 10)[0].startsWith(`${c.volumes[1]}/`)) {
      k = randomKey("/moving");
    }
    await c.stopMaster();
    await c.startMaster([], [hung.volume]);
    assertEquals(await status(c.url + k, { method: "PUT", body: "old value" }), 201);
    await c.stopMaster();
    await c.startMaster([], volumes);
    const files = await volumeFiles(c.volumes[1]);
    hung.hangOn("HEAD", k);
    const replace = fetch(c.url + k, { method: "REPLACE", body: "new value" });
    const out = await stopWhileHung(c, hung, replace);
    assertEquals(out, { status: 503, body: CUT_OFF, code: 0 });
    hung.holds = null;
    await c.startMaster([], volumes);
    assertEquals(await (await fetch(c.url + k)).text(), "old value");
    assertEquals(await volumeFiles(c.volumes[1]), files, "the temporary is removed");
    assertEquals(await status(c.url + k, { method: "REPLACE", body: "new value" }), 201);
  }));

/**
 * hungCluster's, its index marked incomplete (as a rebuild that died leaves
 * it): a PUT of a key with no record asks every volume first whether it
 * holds a value; `records` are written into the index first.
 */
async function incompleteHungCluster(
  stops: Stops,
  records: [string, Record][] = [],
): Promise<{ c: Cluster; hung: HungVolume }> {
  const { c, hung } = await hungCluster(stops);
  await c.stopMaster();
  const kv = await Deno.openKv(`${c.db}/index.sqlite3`);
  await kv.set(["rebuild"], { at: Date.now(), why: "a rebuild began and has not finished" });
  for (const [key, rec] of records) {
    await kv.set(["k", new TextEncoder().encode(key)], fromRecord(rec));
  }
  kv.close();
  await c.startMaster([], [hung.volume]);
  return { c, hung };
}

Deno.test("SIGTERM: a PUT on an incomplete index waiting on a volume to say whether it holds the key at the -drain deadline answers the cut's 503, leaves no record, and the master exits 0", () =>
  withStops(async (stops) => {
    const { c, hung } = await incompleteHungCluster(stops);
    const k = randomKey();
    // Asked with the PUT's claim in: a HEAD unanswered for -voltimeout (30 s).
    hung.hangOn("HEAD", k);
    const out = await stopWhileHung(c, hung, fetch(c.url + k, { method: "PUT", body: "value" }));
    assertEquals(out, { status: 503, body: CUT_OFF, code: 0 });
    assertEquals(await recordOf(c, k), null);
  }));

Deno.test("SIGTERM: a DELETE of a dead master's write on an incomplete index waiting on a volume to say whether it holds the key at the -drain deadline answers the cut's 503, the record as it was, and the master exits 0", () =>
  withStops(async (stops) => {
    const k = randomKey();
    const dead: Record = {
      state: "writing",
      rvolumes: [],
      hash: "",
      size: -1,
      owner: "dead-master",
      until: Date.now() - 1000,
    };
    const { c, hung } = await incompleteHungCluster(stops, [[k, dead]]);
    hung.hangOn("HEAD", k);
    const out = await stopWhileHung(c, hung, fetch(c.url + k, { method: "DELETE" }));
    assertEquals(out, { status: 503, body: CUT_OFF, code: 0 });
    assertEquals(await recordOf(c, k), dead);
  }));

Deno.test("SIGTERM: an S3 DeleteObject on an incomplete index waiting on a volume to say whether it holds the key at the -drain deadline answers 503 ServiceUnavailable, the cut's, and the master exits 0", () =>
  withStops(async (stops) => {
    const { c, hung } = await incompleteHungCluster(stops);
    // The bucket known through a key of its own.
    assertEquals(
      await status(`${c.url}${randomKey("/bucket")}`, { method: "PUT", body: "v" }),
      201,
    );
    const k = randomKey("/bucket");
    hung.hangOn("HEAD", k);
    const del = fetch(c.url + k, { method: "DELETE", headers: s3Signed() });
    const out = await stopWhileHung(c, hung, del);
    assertS3CutOff(out);
  }));

// Every volume call of a request now stops at the cut, so none on a real
// master answers a 503 of its own after it: a store stands in for one.
Deno.test("the stop's line counts a 503 a request answered after the cut for a reason of its own as not stopped by the cut, not as cut off", async () => {
  const own = "Volume localhost:1 did not say whether it holds the key's file";
  const store = {
    index: {},
    relink: async (_key: Uint8Array, opts: { stop?: AbortSignal }) => {
      await new Promise((r) => opts.stop!.addEventListener("abort", r, { once: true }));
      return { status: 503, message: own };
    },
  } as unknown as Store;
  const drain = new Drain();
  const handler = createHandler(store, { verbose: false }, drain);
  // The 503's own line (console.error) is not printed.
  await linesWritten("error", async () => {
    const answer = handler(new Request("http://localhost/k", { method: "RELINK" }));
    const opts = { deadline: 0, grace: 60_000 };
    const drained = drain.drain(opts);
    const res = await answer;
    assertEquals([res.status, await res.text()], [503, `${own}\n`]);
    assertEquals(
      drainedLine(await drained, opts),
      "Stopping: 1 request(s) still in flight after 0 ms (-drain): " +
        "1 not stopped by the cut (answered 503)",
    );
  });
});

Deno.test("SIGTERM: a REPLACE past its upload waiting for its master to rejoin the index at the -drain deadline answers 503 with no switch recorded: the old value stays, unheld, its temporary removed", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    let unlock: (() => void) | null = null;
    stops({ stop: () => unlock?.() });
    const slow = stops(slowBody());
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "old" }), 201);
    const files = await volumeFiles(c.volumes[0]);
    const answer = fetch(c.url + k, { method: "REPLACE", body: slow.body });
    await writingNow(c, k);
    await claimCommitted(c, k);
    unlock = lockIndex(`${c.db}/index.sqlite3`);
    // Time is the event here: two heartbeat intervals (1 s) with none landing.
    await new Promise((r) => setTimeout(r, 2_500));
    slow.stop();
    // Its value whole beside the old (the temporary): its switch waits to be recorded.
    while ((await volumeFiles(c.volumes[0])).length === files.length) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const master = c.masterProcess!;
    master.kill("SIGTERM");
    // The master joins the index again past the cut: a switch sent after it would land.
    unlock();
    unlock = null;
    const res = await answer;
    assertEquals([res.status, await res.text(), (await master.status).code], [503, CUT_OFF, 0]);
    await c.startMaster();
    assertEquals(await (await fetch(c.url + k)).text(), "old");
    assertEquals(await volumeFiles(c.volumes[0]), files);
    assertEquals(await status(c.url + k, { method: "REPLACE", body: "new" }), 201);
  }));

const SWITCH_RECORDED = "The master is shutting down and cut this REPLACE off after the index " +
  "recorded its switch to the new value: once -lease has passed, the key's next request " +
  "finishes it\n";

/** Waits until `key`'s writes are no longer held (its lease run out): a RELINK then answers, not 409. */
async function unheld(url: string, key: string): Promise<number> {
  while (true) {
    const got = await status(url + key, { method: "RELINK" });
    if (got !== 409) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test("SIGTERM: a REPLACE renaming at the -drain deadline answers 503 saying its switch is recorded, and the key's next request once -lease has passed finishes it", () =>
  withStops(async (stops) => {
    const { c, proxy: held, m } = await proxiedMaster(stops, {
      volumes: 1,
      flags: ["-replicas", "1", "-drain", "1s", "-lease", "2s"],
    }, (v) => new HeldVolume(v));
    const marker = stops(cutMarker(m));
    const k = randomKey();
    assertEquals(await status(m.url + k, { method: "PUT", body: "old" }), 201);
    held.holdWhen((req) => req.method === "MOVE");
    const replace = fetch(m.url + k, { method: "REPLACE", body: "new" });
    await held.arrived;
    m.proc.kill("SIGTERM");
    assertEquals(await marker.cut, 503);
    // Renamed after the cut: the index names the new value only once the
    // switch is finished, which the cut leaves to the key's next request.
    held.letGo();
    const res = await replace;
    assertEquals([res.status, await res.text(), (await m.proc.status).code], [
      503,
      SWITCH_RECORDED,
      0,
    ]);
    await c.startMaster([], [held.volume]);
    assertEquals(await unheld(c.url, k), 404);
    assertEquals(await (await fetch(c.url + k)).text(), "new");
  }));

Deno.test("SIGTERM: a REPLACE whose rename a volume holds at the -drain deadline answers 503 saying its switch is recorded by the cut, the switch left recorded, and the key's next request once -lease has passed finishes it after the rename lands late", () =>
  withStops(async (stops) => {
    // -voltimeout 30s: the rename's stall bound (10x) outlasts the drain and its grace by far.
    const { c, proxy: held, m } = await proxiedMaster(stops, {
      volumes: 1,
      flags: ["-replicas", "1", "-drain", "1s", "-lease", "2s", "-voltimeout", "30s"],
    }, (v) => new HeldVolume(v));
    const k = randomKey();
    assertEquals(await status(m.url + k, { method: "PUT", body: "old" }), 201);
    held.holdWhen((req) => req.method === "MOVE");
    const replace = fetch(m.url + k, { method: "REPLACE", body: "new" });
    await held.arrived;
    m.proc.kill("SIGTERM");
    // Answered with the rename still held: the cut gave it up.
    const res = await replace;
    assertEquals([res.status, await res.text(), (await m.proc.status).code], [
      503,
      SWITCH_RECORDED,
      0,
    ]);
    assert(await switchPending(c, k), "the switch is left recorded");
    // The rename given up lands after all, as a dead master's may.
    held.letGo();
    await fileHolds(c.volumes[0], k, "new");
    assert(await switchPending(c, k), "the switch is left recorded");
    await c.startMaster([], [held.volume]);
    assertEquals(await unheld(c.url, k), 404);
    assertEquals(await (await fetch(c.url + k)).text(), "new");
  }));

/** Waits until `key`'s file on `volume` (a one-volume cluster's, -replicas 1) is `value`. */
async function fileHolds(volume: string, key: string, value: string): Promise<void> {
  const path = key2path(new TextEncoder().encode(key));
  while (true) {
    const files = await volumeFiles(volume);
    const file = files.find((f) => f.endsWith(path));
    if (file && await (await fetch(`http://${volume}${file}`)).text() === value) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("SIGTERM: an S3 CompleteMultipartUpload joining its parts at the -drain deadline ends its 200 with the cut's ServiceUnavailable, counted as cut off mid-answer, makes nothing live, and leaves the upload to complete again", () =>
  withStops(async (stops) => {
    const { c, proxy: held, m } = await proxiedMaster(
      stops,
      { volumes: 1, flags: ["-replicas", "1", "-s3", "-drain", "1s"] },
      (v) => new HeldVolume(v),
      { stderr: "piped" },
    );
    const marker = stops(cutMarker(m));
    const k = randomKey("/bucket");
    const created = await fetch(`${m.url}${k}?uploads`, { method: "POST", headers: s3Signed() });
    const id = (await created.text()).match(/<UploadId>(\w+)<\/UploadId>/)![1];
    const part = await fetch(`${m.url}${k}?partNumber=1&uploadId=${id}`, {
      method: "PUT",
      headers: s3Signed(),
      body: "part",
    });
    await part.body?.cancel();
    const etag = part.headers.get("etag")!;
    const body = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${etag}` +
      `</ETag></Part></CompleteMultipartUpload>`;
    const complete = () =>
      fetch(`${c.url}${k}?uploadId=${id}`, { method: "POST", headers: s3Signed(), body });
    // The part's read held: the join is under way at the cut.
    held.holdWhen((req) => req.method === "GET" && new URL(req.url).pathname.includes("/mpu."));
    const joining = fetch(`${m.url}${k}?uploadId=${id}`, {
      method: "POST",
      headers: s3Signed(),
      body,
    });
    await held.arrived;
    const stderr = new Response(m.proc.stderr).text();
    m.proc.kill("SIGTERM");
    assertEquals(await marker.cut, 503);
    held.letGo();
    const res = await joining;
    // Its RequestId is the <Error>'s own (the 200's headers went before it).
    const text = (await res.text()).replace(
      /<RequestId>\w+<\/RequestId>/,
      "<RequestId>ID</RequestId>",
    );
    assertEquals([res.status, (await m.proc.status).code], [200, 0]);
    // One well-formed XML document: the prolog sent at once, then the <Error>.
    assertEquals(text, errorXml("ServiceUnavailable", CUT_OFF.trim(), "", k));
    assertEquals((await stderr).split("\n").filter((l) => l.startsWith("Stopping")), [
      "Stopping: 2 request(s) still in flight after 1000 ms (-drain): 1 cut off (answered 503), " +
      "1 cut off mid-answer (an S3 CompleteMultipartUpload: its 200 ended with ServiceUnavailable)",
    ]);
    await c.startMaster([], [held.volume]);
    assertEquals(await status(c.url + k, { headers: s3Signed() }), 404);
    const again = await (await complete()).text();
    assert(again.includes("<CompleteMultipartUploadResult"), again);
    assertEquals(await (await fetch(c.url + k, { headers: s3Signed() })).text(), "part");
  }));

/**
 * What a master killed before the first rename of a REPLACE leaves: `key`
 * live as "old" on `held` (a one-volume cluster's volume behind it), its
 * record naming a switch to "new", which waits there under a temporary
 * name, and a lease that has run out: the key's next request finishes the
 * switch (Store's #settle). Written through a master on `held`, then
 * straight into the volume and the index, with no master on it. `etag`:
 * the old value's, as S3 names it. `renamed`: the temporary is renamed
 * over the key's file too, as by a master killed after its rename.
 */
async function strandedSwitch(
  c: Cluster,
  held: { volume: string },
  key: string,
  opts: { renamed?: boolean } = {},
): Promise<{ etag: string }> {
  await c.stopMaster();
  const m = await c.spawnMaster([], {}, { volumes: [held.volume] });
  assertEquals(await status(m.url + key, { method: "PUT", body: "old" }), 201);
  await m.stop();
  const k = new TextEncoder().encode(key);
  const kv = await Deno.openKv(`${c.db}/index.sqlite3`);
  try {
    const rec = toRecord((await kv.get(["k", k])).value)!;
    const tmp = `${key2path(k).slice(0, 7)}replace.${crypto.randomUUID()}`;
    assertEquals(
      await status(`http://${rec.rvolumes[0]}${tmp}`, { method: "PUT", body: "new" }),
      201,
    );
    if (opts.renamed) {
      // The dead master's rename landed before it died.
      const moved = await fetch(`http://${rec.rvolumes[0]}${tmp}`, {
        method: "MOVE",
        headers: { Destination: `http://${rec.rvolumes[0]}${key2path(k)}`, Overwrite: "T" },
      });
      await moved.body?.cancel();
      assertEquals(moved.status, 204);
    }
    const next = {
      rec: { ...rec, hash: toHex(md5("new")), size: 3, mtime: Date.now() },
      tmp,
    };
    await kv.set(["k", k], fromRecord({ ...rec, owner: "dead", until: Date.now() - 1, next }));
    return { etag: `"${rec.hash}"` };
  } finally {
    kv.close();
  }
}

/** Whether `key`'s record in `c`'s index names a switch (a REPLACE's) yet to be finished. */
async function switchPending(c: Cluster, key: string): Promise<boolean> {
  const kv = await Deno.openKv(`${c.db}/index.sqlite3`);
  try {
    const rec = toRecord((await kv.get(["k", new TextEncoder().encode(key)])).value);
    return rec?.next !== undefined;
  } finally {
    kv.close();
  }
}

/**
 * A master on `held` (-s3, -drain 1s, -lease 2s), `held` holding the
 * renames (MOVE) of the switch a request of it finishes, and its cut marker,
 * both handed to `stops`.
 */
async function settlingMaster(stops: Stops, c: Cluster, held: { volume: string }) {
  const m = stops(await c.spawnMaster(["-s3", "-lease", "2s"], {}, { volumes: [held.volume] }));
  return { m, marker: stops(cutMarker(m)) };
}

/**
 * SIGTERMs `m` once the request it answers with `answer` is finishing a
 * dead master's switch, its rename held; lets the rename go after the cut.
 */
async function stopWhileSettling(
  m: SpawnedMaster,
  held: HeldVolume,
  marker: { cut: Promise<number> },
  answer: Promise<Response>,
): Promise<{ status: number; body: string; code: number }> {
  await held.arrived;
  m.proc.kill("SIGTERM");
  assertEquals(await marker.cut, 503);
  held.letGo();
  const res = await answer;
  return { status: res.status, body: await res.text(), code: (await m.proc.status).code };
}

Deno.test("SIGTERM: a GET finishing a dead master's REPLACE at the -drain deadline answers 503, the switch left for the key's next request", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    const held = stops(new HeldVolume(c.volumes[0]));
    const k = randomKey();
    await strandedSwitch(c, held, k);
    held.holdWhen((req) => req.method === "MOVE");
    const { m, marker } = await settlingMaster(stops, c, held);
    const get = fetch(m.url + k, { redirect: "manual" });
    assertEquals(await stopWhileSettling(m, held, marker, get), {
      status: 503,
      body: CUT_OFF,
      code: 0,
    });
    // Renamed, the index not yet told: its next request, once -lease has passed, finishes it.
    assert(await switchPending(c, k), "the switch was finished past the cut");
    await c.startMaster([], [held.volume]);
    assertEquals(await unheld(c.url, k), 404);
    assertEquals(await (await fetch(c.url + k)).text(), "new");
  }));

/** Hung's master from settlingMaster (its cluster -voltimeout 30s); its answer to the GET of `key`, its exit code, as stopWhileHung. */
function getWhileSettlingHung(c: Cluster, hung: HungVolume, key: string) {
  return withStops(async (stops) => {
    const { m } = await settlingMaster(stops, c, hung);
    return await stopWhileHung(m, hung, fetch(m.url + key, { redirect: "manual" }));
  });
}

Deno.test("SIGTERM: a GET finishing a dead master's REPLACE whose rename a volume hangs on at the -drain deadline answers the cut's 503 by it, the switch left for the key's next request", () =>
  withStops(async (stops) => {
    const c = stops(
      await Cluster.start({
        volumes: 1,
        flags: ["-replicas", "1", "-drain", "1s", "-voltimeout", "30s"],
      }),
    );
    const hung = stops(new HungVolume(c.volumes[0]));
    const k = randomKey();
    await strandedSwitch(c, hung, k);
    hung.holds = (req) => req.method === "MOVE";
    assertEquals(await getWhileSettlingHung(c, hung, k), { status: 503, body: CUT_OFF, code: 0 });
    assert(await switchPending(c, k), "the switch is left recorded");
    hung.holds = null;
    await c.startMaster([], [hung.volume]);
    assertEquals(await unheld(c.url, k), 404);
    assertEquals(await (await fetch(c.url + k)).text(), "new");
  }));

Deno.test("SIGTERM: a GET finishing a dead master's REPLACE whose volume hangs on saying whether its rename landed at the -drain deadline answers the cut's 503 by it, the switch left for the key's next request", () =>
  withStops(async (stops) => {
    const c = stops(
      await Cluster.start({
        volumes: 1,
        flags: ["-replicas", "1", "-drain", "1s", "-voltimeout", "30s"],
      }),
    );
    const hung = stops(new HungVolume(c.volumes[0]));
    const k = randomKey();
    // The temporary gone: the GET's rename finds none and HEADs the key's
    // file, its size telling whether it is the new value.
    await strandedSwitch(c, hung, k, { renamed: true });
    hung.hangOn("HEAD", k);
    assertEquals(await getWhileSettlingHung(c, hung, k), { status: 503, body: CUT_OFF, code: 0 });
    assert(await switchPending(c, k), "the switch is left recorded");
    hung.holds = null;
    await c.startMaster([], [hung.volume]);
    assertEquals(await unheld(c.url, k), 404);
    assertEquals(await (await fetch(c.url + k)).text(), "new");
  }));

Deno.test("SIGTERM: an S3 CompleteMultipartUpload with If-Match checking a key whose dead master's REPLACE it finishes at the -drain deadline answers 503 ServiceUnavailable, the switch left for the key's next request and the upload to complete again", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    const held = stops(new HeldVolume(c.volumes[0]));
    const k = randomKey("/bucket");
    const { etag } = await strandedSwitch(c, held, k);
    const { m, marker } = await settlingMaster(stops, c, held);
    const created = await fetch(`${m.url}${k}?uploads`, { method: "POST", headers: s3Signed() });
    const id = (await created.text()).match(/<UploadId>(\w+)<\/UploadId>/)![1];
    const part = await fetch(`${m.url}${k}?partNumber=1&uploadId=${id}`, {
      method: "PUT",
      headers: s3Signed(),
      body: "part",
    });
    await part.body?.cancel();
    const body = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>` +
      `${part.headers.get("etag")}</ETag></Part></CompleteMultipartUpload>`;
    held.holdWhen((req) => req.method === "MOVE");
    const complete = fetch(`${m.url}${k}?uploadId=${id}`, {
      method: "POST",
      headers: { ...s3Signed(), "If-Match": etag },
      body,
    });
    const out = await stopWhileSettling(m, held, marker, complete);
    assertS3CutOff(out);
    assert(await switchPending(c, k), "the switch was finished past the cut");
    await c.startMaster(["-s3"], [held.volume]);
    assertEquals(await unheld(c.url, k), 404);
    assertEquals(await (await fetch(c.url + k)).text(), "new");
    const again = await fetch(`${c.url}${k}?uploadId=${id}`, {
      method: "POST",
      headers: s3Signed(),
      body,
    });
    assertEquals(again.status, 200);
    assert((await again.text()).includes("<CompleteMultipartUploadResult"));
  }));

Deno.test("SIGTERM: an S3 CopyObject with If-Match onto a key whose dead master's REPLACE it finishes at the -drain deadline answers 503 ServiceUnavailable, the switch left for the key's next request", () =>
  withStops(async (stops) => {
    const c = stops(await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-drain", "1s"] }));
    const held = stops(new HeldVolume(c.volumes[0]));
    const k = randomKey("/bucket");
    const { etag } = await strandedSwitch(c, held, k);
    const { m, marker } = await settlingMaster(stops, c, held);
    const source = randomKey("/bucket");
    assertEquals(await status(m.url + source, { method: "PUT", body: "copied" }), 201);
    held.holdWhen((req) => req.method === "MOVE");
    const copy = fetch(m.url + k, {
      method: "PUT",
      headers: { ...s3Signed(), "x-amz-copy-source": source, "If-Match": etag },
    });
    const out = await stopWhileSettling(m, held, marker, copy);
    assertS3CutOff(out);
    assert(await switchPending(c, k), "the switch was finished past the cut");
    await c.startMaster([], [held.volume]);
    assertEquals(await unheld(c.url, k), 404);
    assertEquals(await (await fetch(c.url + k)).text(), "new");
  }));

/**
 * A HungVolume that also refuses the requests `refuses` picks (none until
 * set) at once, with a 500, passing none of them on: a rename the volume
 * says it did not make. `refused` resolves to the first one refused (its
 * URL and Destination).
 */
class RefusingVolume extends HungVolume {
  refuses: ((req: Request) => boolean) | null = null;
  readonly #refused = Promise.withResolvers<{ url: string; destination: string | null }>();

  get refused(): Promise<{ url: string; destination: string | null }> {
    return this.#refused.promise;
  }

  protected override handle(req: Request): Promise<Response> {
    if (!this.refuses?.(req)) return super.handle(req);
    this.#refused.resolve({ url: req.url, destination: req.headers.get("destination") });
    return Promise.resolve(new Response(null, { status: 500 }));
  }
}

/**
 * proxiedMaster's on `n` volumes (-replicas `n`, -drain 1s, -lease 2s), a
 * fresh key `k` written `old` through its master: a REPLACE's switch to
 * cut. -voltimeout 30s: a hung HEAD's bound, and a hung rename's or
 * DELETE's stall bound (10x), outlast the drain and its grace by far.
 */
async function replacing<P extends VolumeProxy>(
  stops: Stops,
  n: number,
  proxy: (volume: string) => P,
  old: string,
) {
  const flags = ["-replicas", `${n}`, "-drain", "1s", "-lease", "2s", "-voltimeout", "30s"];
  const started = await proxiedMaster(stops, { volumes: n, flags }, proxy);
  const k = randomKey();
  assertEquals(await status(started.m.url + k, { method: "PUT", body: old }), 201);
  return { ...started, k };
}

/** Whether `req` is one of a REPLACE's temporary (`/ab/cd/replace.<uuid>`). */
function ofTemporary(req: Request): boolean {
  return new URL(req.url).pathname.includes("/replace.");
}

Deno.test("SIGTERM: a REPLACE whose rename a volume refused, hanging on saying whether the temporary is still there at the -drain deadline, answers 503 saying its switch is recorded by the cut, and the key's next request once -lease has passed finishes it", () =>
  withStops(async (stops) => {
    const { c, proxy: vol, m, k } = await replacing(stops, 1, (v) => new RefusingVolume(v), "old");
    // Refused: whether a dead master's rename landed is then asked of the
    // temporary (#holds), a HEAD the volume hangs on.
    vol.refuses = (req) => req.method === "MOVE";
    vol.holds = (req) => req.method === "HEAD" && ofTemporary(req);
    const replace = fetch(m.url + k, { method: "REPLACE", body: "new" });
    assertEquals(await stopWhileHung(m, vol, replace), {
      status: 503,
      body: SWITCH_RECORDED,
      code: 0,
    });
    assert(await switchPending(c, k), "the switch is left recorded");
    vol.refuses = null;
    vol.holds = null;
    await c.startMaster([], [vol.volume]);
    assertEquals(await unheld(c.url, k), 404);
    assertEquals(await (await fetch(c.url + k)).text(), "new");
  }));

Deno.test("SIGTERM: a REPLACE whose rename one replica refused, removing that replica's temporary from a hung volume at the -drain deadline, answers its 500 saying on how many replicas the new value is live, which it is, and the files the cut left, and REBALANCE copies it back once -lease has passed", () =>
  withStops(async (stops) => {
    const started = await replacing(stops, 2, (v) => new RefusingVolume(v), "old value");
    const { c, proxy: vol, volumes, m, k } = started;
    // The temporary still there says the refused rename was not made: the
    // new value is live on the other replica, and this one's temporary is
    // removed (#unswitch), a DELETE the volume hangs on.
    vol.refuses = (req) => req.method === "MOVE";
    vol.holds = (req) => req.method === "DELETE" && ofTemporary(req);
    const replace = fetch(m.url + k, { method: "REPLACE", body: "new value" });
    const out = await stopWhileHung(m, vol, replace);
    const move = await vol.refused;
    const refusal = `Cannot MOVE "${move.url}" to "${move.destination}": status 500`;
    // The removals given up at the cut, said: the files may be left there.
    const givenUp = "its DELETE was given up as the master stopped (one sent may be carried " +
      "out yet)";
    assertEquals(out, {
      status: 500,
      body: `${refusal} (the new value is live on 1 of 2 replicas: REBALANCE the key to copy ` +
        `it back); Temporary of the new value on ${vol.volume} not deleted, an orphan that ` +
        `verify -repair removes once older than -grace: ${givenUp}; Old copy on ${vol.volume} ` +
        `not deleted, an orphan that verify -repair removes (a rebuild before then brings the ` +
        `old value back): ${givenUp}\n`,
      code: 0,
    });
    const live = (await recordOf(c, k))!;
    assertEquals(
      [live.state, live.hash, live.next, live.rvolumes.map((v) => v.split("/")[0])],
      ["live", toHex(md5("new value")), undefined, [c.volumes[1]]],
    );
    vol.refuses = null;
    vol.holds = null;
    await c.startMaster([], volumes);
    assertEquals(await served(c.url, k), {
      status: 302,
      md5: toHex(md5("new value")),
      value: "new value",
    });
    assertEquals(await unheld(c.url, k), 404);
    assertEquals(await status(c.url + k, { method: "REBALANCE" }), 204);
    assertEquals((await recordOf(c, k))!.rvolumes.length, 2);
    assertEquals(await Promise.all(c.volumes.map((v) => fileOn(v, k))), ["new value", "new value"]);
  }));

Deno.test("SIGTERM: a REPLACE cut off with one replica renamed and another's rename hung leaves the key reading as the old value or the new, never a mix or a 404, and the key's next request once -lease has passed finishes the switch", () =>
  withStops(async (stops) => {
    const started = await replacing(stops, 2, (v) => new HungVolume(v), "old value");
    const { c, proxy: hung, volumes, m, k } = started;
    hung.holds = (req) => req.method === "MOVE";
    const replace = fetch(m.url + k, { method: "REPLACE", body: "new value" });
    await Promise.race([hung.arrived, replace]);
    // The other replica's rename landed before the cut.
    await fileHolds(c.volumes[1], k, "new value");
    assertEquals(await stopWhileHung(m, hung, replace), {
      status: 503,
      body: SWITCH_RECORDED,
      code: 0,
    });
    assert(await switchPending(c, k), "the switch is left recorded");
    assertEquals(await Promise.all(c.volumes.map((v) => fileOn(v, k))), ["old value", "new value"]);
    hung.holds = null;
    await c.startMaster([], volumes);
    // Within -lease or past it: either value, whole, with its own MD5 if any.
    const { status: got, md5: sum, value } = await served(c.url, k);
    assertEquals(got, 302);
    assert(["old value", "new value"].includes(value), value);
    assert(sum === null || sum === toHex(md5(value)), `${sum} is not the MD5 of ${value}`);
    assertEquals(await unheld(c.url, k), 404);
    assertEquals(await served(c.url, k), {
      status: 302,
      md5: toHex(md5("new value")),
      value: "new value",
    });
    assertEquals(await switchPending(c, k), false);
    assertEquals(await Promise.all(c.volumes.map((v) => fileOn(v, k))), ["new value", "new value"]);
  }));

/** `key`'s file on `volume` (a cluster's, the key on one of its subvolumes), null when none. */
async function fileOn(volume: string, key: string): Promise<string | null> {
  const path = key2path(new TextEncoder().encode(key));
  const file = (await volumeFiles(volume)).find((f) => f.endsWith(path));
  return file ? await (await fetch(`http://${volume}${file}`)).text() : null;
}

/**
 * What a GET of `key` through the master at `url` answers: its status and
 * Content-Md5, and the value at the replica it redirects to.
 */
async function served(url: string, key: string) {
  const res = await fetch(url + key, { redirect: "manual" });
  await res.body?.cancel();
  const location = res.headers.get("location");
  const value = location ? await (await fetch(location)).text() : "";
  return { status: res.status, md5: res.headers.get("content-md5"), value };
}
