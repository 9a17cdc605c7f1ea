// Log lines: -v writes one line per request (text, or JSON with -log json);
// volume failures are always written to stderr, throttled per volume and call.
import {
  Cluster,
  freePort,
  keyMovingOffVolume0,
  randomBytes,
  randomKey,
  runMain,
  status,
  waitUp,
} from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import {
  logOtherSize,
  logRequest,
  logUnexpected,
  logVolumeFailure,
  logVolumeState,
  setLogFormat,
  Throttle,
  type VolumeFailureLine,
} from "../lib/log.ts";

import { lockIndex, whileLocked } from "./lock_index.ts";
import { HungVolume } from "./hung_volume.ts";
import { key2path } from "../lib/keys.ts";
import { s3Client, unsignedHeaders, uploadParts } from "./s3_client.ts";
import { VolumeProxy } from "./faults/replace_faults.ts";
import { md5Header } from "./s3_answers.ts";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/**
 * A master on the cluster's index with `flags`, its stdout and stderr
 * captured; `stop()` ends it (SIGTERM) and returns what it wrote.
 */
async function capturedMaster(c: Cluster, flags: string[], opts: { volumes?: string[] } = {}) {
  await c.stopMaster();
  const port = freePort();
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "server",
      "-port",
      String(port),
      "-db",
      c.db,
      "-volumes",
      (opts.volumes ?? c.volumes).join(","),
      ...c.flags,
      ...flags,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = proc.output();
  const url = `http://127.0.0.1:${port}`;
  await waitUp(`${url}/?list&limit=1`, { proc });
  let stopped: Promise<{ stdout: string[]; stderr: string[] }> | null = null;
  return {
    url,
    /** Stops it once (called again, the same answer). */
    stop(): Promise<{ stdout: string[]; stderr: string[] }> {
      stopped ??= (async () => {
        proc.kill("SIGTERM");
        const o = await out;
        const lines = (b: Uint8Array) => new TextDecoder().decode(b).split("\n").filter(Boolean);
        return { stdout: lines(o.stdout), stderr: lines(o.stderr) };
      })();
      return stopped;
    },
  };
}

Deno.test("-v -log json: one JSON line per request with exactly time, level, msg, method, key, status, ms, bytes", async () => {
  const c = await Cluster.start();
  const m = await capturedMaster(c, ["-v", "-log", "json"]);
  let out;
  try {
    const key = randomKey() + "/a%20b";
    assertEquals(await status(m.url + key, { method: "PUT", body: "hello" }), 201);
    assertEquals(await status(m.url + key), 302);
    assertEquals(await status(m.url + key, { method: "PUT", body: "again" }), 403);
    assertEquals(await status(m.url + key, { method: "DELETE" }), 204);
    assertEquals(await status(m.url + key), 404);
  } finally {
    out = await m.stop();
    await c.stop();
  }
  // The first stdout line is the master's banner (a JSON line too); then the
  // requests, the readiness check (GET /?list) first.
  const [banner, ...lines] = out.stdout.map((l) => JSON.parse(l));
  assertEquals([banner.level, banner.port], ["info", Number(new URL(m.url).port)]);
  assertEquals(lines.length, 6, out.stdout.join("\n"));
  for (const l of lines) {
    assertEquals(
      Object.keys(l),
      ["time", "level", "msg", "method", "key", "status", "ms", "bytes"],
    );
    assertEquals(new Date(l.time).toISOString(), l.time);
    assert(typeof l.ms === "number" && l.ms >= 0, String(l.ms));
    // The line -v alone writes.
    const text = `${l.method} ${l.key} ${l.status} ${l.ms.toFixed(1)}ms ${l.bytes}B`;
    assertEquals([l.level, l.msg], ["info", text]);
  }
  const key = lines[1].key;
  assert(key.endsWith("/a%20b"), key);
  assertEquals(
    lines.map((l) => [l.method, l.key, l.status, l.bytes]),
    [
      ["GET", "/?list&limit=1", 200, lines[0].bytes],
      ["PUT", key, 201, 5],
      ["GET", key, 302, 0],
      ["PUT", key, 403, "Key exists (PUT never overwrites)\n".length],
      ["DELETE", key, 204, 0],
      ["GET", key, 404, 0],
    ],
  );
});

Deno.test("-v alone: one plain line per request, method key status ms bytes", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const m = await capturedMaster(c, ["-v"]);
  let out;
  const key = randomKey();
  try {
    assertEquals(await status(m.url + key, { method: "PUT", body: "hello" }), 201);
    assertEquals(await status(m.url + key), 302);
  } finally {
    out = await m.stop();
    await c.stop();
  }
  const lines = out.stdout.filter((l) => l.includes(key));
  assertEquals(lines.length, 2, out.stdout.join("\n"));
  assert(new RegExp(`^PUT ${key} 201 \\d+\\.\\dms 5B$`).test(lines[0]), lines[0]);
  assert(new RegExp(`^GET ${key} 302 \\d+\\.\\dms 0B$`).test(lines[1]), lines[1]);
});

Deno.test("-v: a request refused for a broken percent-escape is logged with its path as sent", async () => {
  // Its line named no key ("GET  400 ..."): the path was only read once decoded.
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const m = await capturedMaster(c, ["-v"]);
  let out;
  const path = randomKey() + "/bad%zz";
  try {
    assertEquals(await status(m.url + path), 400);
  } finally {
    out = await m.stop();
    await c.stop();
  }
  const lines = out.stdout.filter((l) => l.startsWith("GET /") && l.includes(" 400 "));
  assertEquals(lines.length, 1, out.stdout.join("\n"));
  const body = `Broken percent-escape at byte ${path.length - 3} of "${path}"\n`;
  assert(
    new RegExp(`^GET ${path} 400 \\d+\\.\\dms ${body.length}B$`).test(lines[0]),
    lines[0],
  );
});

Deno.test("a failing volume is logged on stderr (JSON with -log json), each failure counted once", async () => {
  const c = await Cluster.start();
  // No -v: volume failures are logged anyway.
  const m = await capturedMaster(c, ["-log", "json"]);
  let out;
  const dead = c.volumes[1];
  const failures = 5;
  try {
    await c.stopVolume(1);
    // Three replicas: every PUT calls the stopped volume once, and fails.
    for (let i = 0; i < failures; i++) {
      assertEquals(await status(m.url + randomKey(), { method: "PUT", body: "x" }), 500);
    }
  } finally {
    out = await m.stop();
    await c.stop();
  }
  // The banner only: no request lines without -v.
  assertEquals(out.stdout.map((l) => JSON.parse(l).msg.startsWith("mkv master on :")), [true]);
  const lines = out.stderr.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  const puts = lines.filter((l) => l.call === "put");
  assert(puts.length >= 1, out.stderr.join("\n"));
  for (const l of puts) {
    assertEquals(
      Object.keys(l),
      ["time", "level", "msg", "volume", "call", "outcome", "reason", "suppressed"],
    );
    assertEquals([l.level, l.volume, l.outcome], ["warn", dead, "error"]);
    const more = l.suppressed > 0 ? ` (+${l.suppressed} suppressed)` : "";
    assertEquals(l.msg, `volume ${dead} put error: ${l.reason}${more}`);
    assert(l.reason.startsWith(`Cannot PUT "http://${dead}/`), l.reason);
    assert(l.reason.includes("Connection refused"), l.reason);
  }
  // Written or counted as suppressed (the rest is flushed at shutdown): never lost.
  assertEquals(puts.reduce((n, l) => n + 1 + l.suppressed, 0), failures);
  // The volume going down is a line of its own.
  const down = lines.filter((l) => l.state === "down");
  assertEquals(down.map((l) => [l.volume, l.level, l.msg, Object.keys(l)]), [
    [dead, "error", `volume ${dead} down: ${down[0].reason}`, [
      "time",
      "level",
      "msg",
      "volume",
      "state",
      "reason",
    ]],
  ]);
});

Deno.test("the throttle writes the first failure per volume and call per window, then a count", () => {
  const written: VolumeFailureLine[] = [];
  const t = new Throttle(1000, (f) => written.push(f));
  const f = (volume: string, call: string, reason: string) => ({
    volume,
    call,
    outcome: "error",
    reason,
  });
  t.failure(f("a:1", "put", "r1"), 10_000);
  t.failure(f("a:1", "put", "r2"), 10_100);
  t.failure(f("a:1", "put", "r3"), 10_200);
  t.failure(f("a:1", "head", "h1"), 10_300);
  t.failure(f("b:1", "put", "b1"), 10_400);
  assertEquals(written.map((w) => [w.volume, w.call, w.reason, w.suppressed]), [
    ["a:1", "put", "r1", 0],
    ["a:1", "head", "h1", 0],
    ["b:1", "put", "b1", 0],
  ]);
  // The window's end (here: shutdown) writes the last held back, counting the other.
  t.flush();
  assertEquals(written.slice(3).map((w) => [w.volume, w.call, w.reason, w.suppressed]), [
    ["a:1", "put", "r3", 1],
  ]);
  // A failure after the window is written at once.
  t.failure(f("b:1", "put", "b2"), 11_500);
  assertEquals(written.length, 5);
  assertEquals(written[4].reason, "b2");
});

Deno.test("a replica passed over for its size is one warn line naming the volume, the key and the sizes; as JSON with each a field", () => {
  const lines: string[] = [];
  const error = console.error;
  console.error = (line: string) => lines.push(line);
  const now = Date.parse("2026-11-24T22:32:38.411Z");
  const line = { volume: "v:1", key: "/a b", size: 5, recorded: "11 or 20", suppressed: 2 };
  try {
    logOtherSize({ ...line, size: null, suppressed: 0 }, now);
    for (const format of ["text", "json"] as const) {
      setLogFormat(format);
      logOtherSize(line, now);
    }
  } finally {
    setLogFormat("text");
    console.error = error;
  }
  const msg = 'volume v:1 holds "/a b" of another size: 5 bytes, recorded 11 or 20 ' +
    "(passed over; verify -repair copies the value over it) (+2 suppressed)";
  assertEquals(lines, [
    'volume v:1 holds "/a b" of another size: fewer bytes, recorded 11 or 20 ' +
    "(passed over; verify -repair copies the value over it)",
    msg,
    JSON.stringify({ time: "2026-11-24T22:32:38.411Z", level: "warn", msg, ...line }),
  ]);
});

Deno.test("-log takes text or json, anything else is refused with the reason", async () => {
  const r = await runMain(["server", "-log", "xml", "-db", "/tmp/unused", "-volumes", "a:1"]);
  assertEquals(r.code, 2);
  assert(r.stderr.startsWith(`Bad -log "xml": expected text or json\n`), r.stderr);
});

/** Every line of `text` parsed as a JSON log line with time, level and msg first. */
// deno-lint-ignore no-explicit-any
function jsonLines(text: string): any[] {
  return text.split("\n").filter(Boolean).map((l) => {
    let o;
    try {
      o = JSON.parse(l);
    } catch {
      throw new Error(`Not a JSON line: ${l}`);
    }
    assert(typeof o === "object" && o !== null && !Array.isArray(o), l);
    assertEquals(Object.keys(o).slice(0, 3), ["time", "level", "msg"], l);
    return o;
  });
}

Deno.test("-log json: every line a tool and a master write is a JSON object, warnings and banner included", async () => {
  const c = await Cluster.start();
  try {
    assertEquals(await status(c.url + randomKey(), { method: "PUT", body: "v" }), 201);
    await c.stopMaster();
    await c.stopVolume(1);
    const partial = `${c.dir}/partial`;
    const volumes = c.volumes.join(",");
    const r = await runMain([
      "rebuild",
      "-log",
      "json",
      "-volumes",
      volumes,
      "-db",
      partial,
      "-skip-unreadable",
    ]);
    assertEquals(r.code, 1, r.stderr);
    const tool = [...jsonLines(r.stdout), ...jsonLines(r.stderr)];
    const said = (level: string, start: string) =>
      tool.some((l) => l.level === level && l.msg.startsWith(start));
    assert(said("info", "rebuild: keys "), r.stderr); // the progress summary
    assert(said("info", "rebuild: 1 key recorded from "), r.stdout);
    assert(said("error", "rebuild: skipped 1 volume whose root could not be read"), r.stderr);
    assert(said("error", `Cannot list "http://${c.volumes[1]}/": `), r.stderr); // named, unindented
    await c.startVolume(1);
    const m = await capturedMaster(c, ["-log", "json", "-db", partial]);
    const out = await m.stop();
    const [banner, ...rest] = jsonLines(out.stdout.join("\n"));
    assertEquals(
      banner.msg,
      `mkv master on :${new URL(m.url).port}, volumes ${volumes}, replicas 3`,
    );
    assertEquals(
      [banner.level, banner.port, banner.volumes, banner.replicas],
      ["info", Number(new URL(m.url).port), c.volumes, 3],
    );
    assertEquals(rest, []);
    const [warning, ...others] = jsonLines(out.stderr.join("\n"));
    assertEquals(warning.level, "warn");
    const why = `a rebuild skipped 1 volume it could not read (${c.volumes[1]})`;
    assertEquals(warning.incomplete, why);
    assert(warning.msg.startsWith(`Warning: the index is incomplete: ${why}`), warning.msg);
    assertEquals(others, []);
  } finally {
    await c.stop();
  }
});

Deno.test("-log json: a command's error is one JSON line, a wrong flag's too", async () => {
  const bad = await runMain(["server", "-log", "json", "-replicas", "two", "-db", "/tmp/x"]);
  assertEquals(bad.code, 2);
  assertEquals(bad.stdout, "");
  const [flag, ...more] = jsonLines(bad.stderr);
  assertEquals(more, []);
  assertEquals(flag.level, "error");
  assert(flag.msg.endsWith(" (mkv help lists the commands and flags)"), flag.msg);
  const missing = await runMain(["server", "-log=json", "-volumes", "a:1"]);
  assertEquals(missing.code, 2);
  assertEquals(jsonLines(missing.stderr).map((l) => l.level), ["error"]);
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  try {
    const none = await runMain([
      "verify",
      "-log",
      "json",
      "-replicas",
      "1",
      "-volumes",
      "a:1",
      "-db",
      `${dir}/none`,
    ]);
    assertEquals(none.code, 1);
    const [err, ...rest] = jsonLines(none.stderr);
    assertEquals([err.level, rest], ["error", []]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("-log json: a word after the command is refused as one JSON line, not the text usage", async () => {
  const r = await runMain(["server", "-log", "json", "-protect", "false"]);
  assertEquals(r.code, 2);
  assertEquals(r.stdout, "");
  const [line, ...more] = jsonLines(r.stderr);
  assertEquals(more, []);
  assertEquals(line.level, "error");
  assertEquals(
    line.msg,
    `Unexpected argument "false" after "server" (a bool flag takes its value with "=": ` +
      `-protect=false) (mkv help lists the commands and flags)`,
  );
});

Deno.test("-log json: an unexpected error is one JSON line, its stack a field of it", () => {
  const written: string[] = [];
  const error = console.error;
  console.error = (line: string) => written.push(line);
  setLogFormat("json");
  try {
    const err = new Error("boom");
    logUnexpected("PUT /k", err);
    assertEquals(written.length, 1);
    const line = JSON.parse(written[0]);
    assertEquals(
      [Object.keys(line), line.level, line.msg, line.stack],
      [["time", "level", "msg", "stack"], "error", "PUT /k: boom", err.stack],
    );
  } finally {
    setLogFormat("text");
    console.error = error;
  }
});

Deno.test("an unexpected error in text names what failed on its first line, as the JSON msg, then its stack", () => {
  const written: string[] = [];
  const error = console.error;
  console.error = (line: string) => written.push(line);
  try {
    const err = new Error("boom");
    logUnexpected("PUT /k", err);
    assertEquals(written, [`PUT /k: boom\n${err.stack}`]);
    logUnexpected("Looking for files the index lacks", "not an Error");
    assertEquals(written[1], "Looking for files the index lacks: not an Error");
  } finally {
    console.error = error;
  }
});

Deno.test("-log json: request, volume failure and volume up and down lines carry level and msg (the text line) first", () => {
  const lines: [string, string][] = [];
  const [log, error] = [console.log, console.error];
  console.log = (line: string) => lines.push(["stdout", line]);
  console.error = (line: string) => lines.push(["stderr", line]);
  const now = Date.parse("2026-11-24T22:32:38.411Z");
  try {
    for (const format of ["text", "json"] as const) {
      setLogFormat(format);
      logRequest({ method: "PUT", key: "/a%20b", status: 201, ms: 12.34, bytes: 5 }, now);
      const failure = { volume: "v:1", call: "put", outcome: "error", reason: "refused" };
      logVolumeFailure({ ...failure, suppressed: 2 }, now);
      logVolumeState({ volume: "v:1", up: false, reason: "refused" }, now);
      logVolumeState({ volume: "v:1", up: true, reason: "" }, now);
    }
  } finally {
    setLogFormat("text");
    [console.log, console.error] = [log, error];
  }
  const time = "2026-11-24T22:32:38.411Z";
  const json = (o: object) => JSON.stringify({ time, ...o });
  assertEquals(lines, [
    ["stdout", "PUT /a%20b 201 12.3ms 5B"],
    ["stderr", "volume v:1 put error: refused (+2 suppressed)"],
    ["stderr", "volume v:1 down: refused"],
    ["stderr", "volume v:1 up"],
    [
      "stdout",
      json({
        level: "info",
        msg: "PUT /a%20b 201 12.3ms 5B",
        method: "PUT",
        key: "/a%20b",
        status: 201,
        ms: 12.3,
        bytes: 5,
      }),
    ],
    [
      "stderr",
      json({
        level: "warn",
        msg: "volume v:1 put error: refused (+2 suppressed)",
        volume: "v:1",
        call: "put",
        outcome: "error",
        reason: "refused",
        suppressed: 2,
      }),
    ],
    [
      "stderr",
      json({
        level: "error",
        msg: "volume v:1 down: refused",
        volume: "v:1",
        state: "down",
        reason: "refused",
      }),
    ],
    [
      "stderr",
      json({ level: "info", msg: "volume v:1 up", volume: "v:1", state: "up", reason: "" }),
    ],
  ]);
});

const LOCKED = "The index stayed locked (another process holds its write lock) past 10 s of " +
  "retries: retry once it is released";

Deno.test("a write refused by a locked index is logged as one line saying so, no stack", async () => {
  const c = await Cluster.start();
  const m = await capturedMaster(c, []);
  try {
    const key = randomKey("/locked-log");
    assertEquals(await status(m.url + key, { method: "PUT", body: "kept" }), 201);
    await whileLocked(c.db, async () => {
      assertEquals(await status(m.url + key, { method: "DELETE" }), 503);
    });
    const out = await m.stop();
    assertEquals(out.stderr, [`DELETE ${key} 503: ${LOCKED}`]);
  } finally {
    await m.stop();
    await c.stop();
  }
});

Deno.test("-log json: an S3 write refused by a locked index is one warn line saying so, no stack", async () => {
  const c = await Cluster.start();
  const m = await capturedMaster(c, ["-s3", "-log", "json"]);
  const s3 = s3Client(m.url);
  try {
    const Bucket = `locked${crypto.randomUUID().slice(0, 8)}`;
    await whileLocked(c.db, async () => {
      const err = await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "v" })).then(
        () => null,
        (err) => err,
      );
      assertEquals(err?.$metadata?.httpStatusCode, 503, String(err));
    });
    const out = await m.stop();
    const lines = jsonLines(out.stderr.join("\n"));
    assertEquals(lines.map(({ time: _, ...l }) => l), [{
      level: "warn",
      msg: `S3 PUT /${Bucket}/k 503: ${LOCKED}`,
      status: 503,
      reason: LOCKED,
    }]);
  } finally {
    s3.destroy();
    await m.stop();
    await c.stop();
  }
});

Deno.test("a PUT whose claim a locked index could not renew is logged as one line saying so, no stack", async () => {
  const c = await Cluster.start({ flags: ["-lease", "3s"] });
  const m = await capturedMaster(c, []);
  let unlock: (() => void) | null = null;
  const rest = Promise.withResolvers<void>();
  try {
    const key = randomKey("/locked-renew-log");
    // A chunk every 200 ms (no body timeout), until the answer has come.
    let ended = false;
    rest.promise.then(() => ended = true);
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        await Promise.race([rest.promise, new Promise((r) => setTimeout(r, 200))]);
        if (ended) ctl.close();
        else ctl.enqueue(new Uint8Array(100));
      },
    });
    const put = fetch(m.url + key, { method: "PUT", body });
    for (let tries = 0; !(await listedWriting(m.url, key)); tries++) {
      if (tries === 100) throw new Error("Gave up waiting: the key claimed");
      await new Promise((r) => setTimeout(r, 100));
    }
    unlock = lockIndex(`${c.db}/index.sqlite3`);
    const res = await put;
    assertEquals([res.status, await res.text()], [503, LOCKED + "\n"]);
    rest.resolve();
    unlock();
    unlock = null;
    const out = await m.stop();
    assertEquals(out.stderr, [`PUT ${key} 503: ${LOCKED}`]);
  } finally {
    rest.resolve();
    unlock?.();
    await m.stop();
    await c.stop();
  }
});

/** Whether `key` is listed as being written. */
async function listedWriting(url: string, key: string): Promise<boolean> {
  const res = await fetch(`${url}${key}?writing`);
  return ((await res.json()).keys as string[]).includes(key);
}

const UNREACHED = "Some replicas of the key did not answer (within -voltimeout) and none that " +
  "did has its file: retry once its volumes answer";

Deno.test("a GET whose replicas cannot be reached answers 503 saying so, logged as one line", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const m = await capturedMaster(c, []);
  try {
    const key = randomKey("/unreached-log");
    assertEquals(await status(m.url + key, { method: "PUT", body: "kept" }), 201);
    await c.stopVolume(0);
    const res = await fetch(m.url + key, { redirect: "manual" });
    assertEquals([res.status, await res.text()], [503, UNREACHED + "\n"]);
    const out = await m.stop();
    // The volume's own failure and its going down are lines of their own.
    assertEquals(out.stderr.filter((l) => !l.startsWith("volume ")), [
      `GET ${key} 503: ${UNREACHED}`,
    ]);
  } finally {
    await m.stop();
    await c.stop();
  }
});

Deno.test("an S3 GetObject whose replicas cannot be reached is logged as one line saying so", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-s3"] });
  const m = await capturedMaster(c, []);
  const s3 = s3Client(m.url);
  try {
    const Bucket = `unreached${crypto.randomUUID().slice(0, 8)}`;
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "v" }));
    await c.stopVolume(0);
    const err = await s3.send(new GetObjectCommand({ Bucket, Key: "k" })).then(
      () => null,
      (err) => err,
    );
    assertEquals([err?.$metadata?.httpStatusCode, err?.name], [503, "ServiceUnavailable"]);
    assert(err.message.startsWith("No replica of the key answers: Cannot GET "), err.message);
    const out = await m.stop();
    assertEquals(out.stderr.filter((l) => !l.startsWith("volume ")), [
      `S3 GET /${Bucket}/k 503: ${err.message}`,
    ]);
  } finally {
    s3.destroy();
    await m.stop();
    await c.stop();
  }
});

Deno.test("a presigned URL's signature is hidden in the -v line and the status page's recent errors", async () => {
  // It is a bearer credential for up to 7 days: both named it whole.
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-s3"] });
  const m = await capturedMaster(c, ["-v"]);
  const s3 = s3Client(m.url);
  let out;
  try {
    const Bucket = `presigned${crypto.randomUUID().slice(0, 8)}`;
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "v" }));
    const url = new URL(await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "k" })));
    const signature = url.searchParams.get("X-Amz-Signature")!;
    assertEquals(signature.length, 64);
    await c.stopVolume(0);
    const res = await fetch(url);
    assertEquals(res.status, 503);
    await res.body?.cancel();
    const shown = `/${Bucket}/k${url.search.replace(signature, "(hidden)")}`;
    const status = await fetch(`${m.url}/?status`, { headers: { Accept: "application/json" } });
    const errors: { what: string }[] = (await status.json()).errors;
    assertEquals(errors.filter((e) => e.what.startsWith("GET /")).map((e) => e.what), [
      `GET ${shown} 503`,
    ]);
    out = await m.stop();
    const lines = out.stdout.filter((l) => l.startsWith(`GET /${Bucket}/k?`));
    assertEquals(lines.length, 1, out.stdout.join("\n"));
    assert(lines[0].startsWith(`GET ${shown} 503 `), lines[0]);
    assertEquals([...out.stdout, ...out.stderr].filter((l) => l.includes(signature)), []);
  } finally {
    s3.destroy();
    await m.stop();
    await c.stop();
  }
});

/** An S3 DeleteObjects of `keys` in the bucket at `bucketUrl` while the index is locked: its 200. */
async function deleteWhileLocked(c: Cluster, bucketUrl: string, keys: string[]) {
  await whileLocked(c.db, async () => {
    const objects = keys.map((k) => `<Object><Key>${k}</Key></Object>`).join("");
    const body = `<Delete>${objects}</Delete>`;
    const res = await fetch(`${bucketUrl}?delete`, {
      method: "POST",
      headers: md5Header(body),
      body,
    });
    assertEquals(res.status, 200);
    await res.body?.cancel();
  });
}

Deno.test("an S3 DeleteObjects whose keys a locked index refused is logged as one line for the request, no stack", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const m = await capturedMaster(c, ["-s3"]);
  const s3 = s3Client(m.url);
  try {
    const bucket = `locked${crypto.randomUUID().slice(0, 8)}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    for (const k of ["a", "b"]) {
      assertEquals(await status(`${m.url}/${bucket}/${k}`, { method: "PUT", body: k }), 201);
    }
    await deleteWhileLocked(c, `${m.url}/${bucket}`, ["a", "b"]);
    const out = await m.stop();
    assertEquals(out.stderr, [`S3 POST /${bucket}?delete 503: 2 of 2 keys: ${LOCKED}`]);
  } finally {
    s3.destroy();
    await m.stop();
    await c.stop();
  }
});

Deno.test("an S3 DeleteObjects whose keys a locked index refused is listed among the status page's errors as a 5xx", async () => {
  // It was logged, but the status page's errors had none: the edge lists
  // 5xx answers, and this one's status was 200.
  const c = await Cluster.start({ flags: ["-s3"] });
  const m = await capturedMaster(c, ["-s3"]);
  try {
    const bucket = `locked${crypto.randomUUID().slice(0, 8)}`;
    assertEquals(
      await status(`${m.url}/${bucket}`, { method: "PUT", headers: unsignedHeaders() }),
      200,
    );
    assertEquals(await status(`${m.url}/${bucket}/a`, { method: "PUT", body: "a" }), 201);
    await deleteWhileLocked(c, `${m.url}/${bucket}`, ["a"]);
    const page =
      await (await fetch(`${m.url}/?status`, { headers: { Accept: "application/json" } }))
        .json();
    const errors = (page.errors as { what: string; reason: string }[])
      .filter((e) => !e.what.startsWith("volume "));
    assertEquals(errors.map((e) => [e.what, e.reason]), [
      [`POST /${bucket}?delete 503`, `1 of 1 key: ${LOCKED}`],
    ]);
  } finally {
    await m.stop();
    await c.stop();
  }
});

Deno.test("a PUT whose replica write failed answers 500 with the reason, logged as one line beside the volume's own", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const m = await capturedMaster(c, []);
  try {
    const key = randomKey("/failed-put-log");
    await c.stopVolume(0);
    const res = await fetch(m.url + key, { method: "PUT", body: "lost" });
    const reason = (await res.text()).trimEnd();
    assertEquals(res.status, 500);
    assert(reason.startsWith(`Cannot PUT "http://${c.volumes[0]}/`), reason);
    const out = await m.stop();
    assertEquals(out.stderr.filter((l) => !l.startsWith("volume ")), [
      `PUT ${key} 500: ${reason}`,
    ]);
  } finally {
    await m.stop();
    await c.stop();
  }
});

/**
 * Makes volume `i`'s nginx refuse every write: a file stands where each
 * subvolume's folder would be (the default 10), so a PUT's rename into
 * place fails (ENOTDIR) and nginx answers 500, root or not.
 */
async function refuseWrites(c: Cluster, i: number): Promise<void> {
  for (let sv = 0; sv < 10; sv++) {
    await Deno.writeTextFile(`${c.volumeDir(i)}/sv0${sv}`, "not a folder", { createNew: true });
  }
}

Deno.test("an S3 UploadPart whose replica write a volume refused answers the volume and its status, logged as one line, no stack", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const m = await capturedMaster(c, ["-s3"]);
  try {
    const key = randomKey("/refused-part");
    const bucket = key.split("/")[1];
    assertEquals(await status(`${m.url}/${bucket}?x-id=CreateBucket`, { method: "PUT" }), 200);
    const started = await fetch(`${m.url}${key}?uploads`, { method: "POST" });
    const id = (await started.text()).match(/<UploadId>([^<]+)</)![1];
    await refuseWrites(c, 0);
    const res = await fetch(`${m.url}${key}?partNumber=1&uploadId=${id}`, {
      method: "PUT",
      body: "part",
    });
    const body = await res.text();
    assertEquals(res.status, 500);
    const reason = body.match(/<Message>([^<]+)</)![1].replaceAll("&#34;", '"');
    const part = `http://${
      c.volumes[0]
    }/sv0\\d/[0-9a-f]{2}/[0-9a-f]{2}/mpu\\.${id}\\.1\\.[0-9a-f]{8}`;
    assert(new RegExp(`^Cannot PUT "${part}": status 500$`).test(reason), reason);
    assert(body.includes("<Code>InternalError</Code>"), body);
    const out = await m.stop();
    assertEquals(out.stderr.filter((l) => !l.startsWith("volume ")), [
      `S3 PUT ${key} 500: ${reason}`,
    ]);
  } finally {
    await m.stop();
    await c.stop();
  }
});

Deno.test("a request refused because the index file was removed is logged as one line saying so", async () => {
  const c = await Cluster.start();
  const m = await capturedMaster(c, []);
  try {
    const key = randomKey("/gone-log");
    assertEquals(await status(m.url + key, { method: "PUT", body: "kept" }), 201);
    for await (const f of Deno.readDir(c.db)) await Deno.remove(`${c.db}/${f.name}`);
    // Until a heartbeat (or a commit) finds the file gone, reads still answer from it.
    const gone = `The index file "${c.db}/index.sqlite3" was removed while this master had it ` +
      `open: nothing more is written to it; restart the master (and rebuild the index if it is ` +
      `missing keys)`;
    // A GET in flight when a heartbeat finds it gone says so too, not that the master stalled.
    let refused = 0;
    while (refused < 2) {
      const res = await fetch(m.url + key, { redirect: "manual" });
      const body = await res.text();
      if (res.status !== 503) continue;
      assertEquals(body, gone + "\n");
      refused++;
    }
    const out = await m.stop();
    assertEquals(out.stderr, [`GET ${key} 503: ${gone}`, `GET ${key} 503: ${gone}`]);
  } finally {
    await m.stop();
    await c.stop();
  }
});

Deno.test("an S3 GetObject cut short by its volume's stall is logged by the volume's lines alone, no stack", async () => {
  // -voltimeout 200ms: a transfer stalls after 2 s without a byte.
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-s3"] });
  const hung = new HungVolume(c.volumes[0]);
  await c.stopMaster();
  const m = await c.spawnMaster(["-voltimeout", "200ms"], {}, {
    stderr: "piped",
    volumes: [hung.volume],
  });
  try {
    const k = randomKey("/bucket");
    assertEquals(await status(m.url + k, { method: "PUT", body: randomBytes(1 << 20) }), 201);
    hung.hangOn("GET", k);
    hung.midBody = true;
    const auth = { Authorization: "AWS anyone:c2lnbmF0dXJl", Date: new Date().toUTCString() };
    const res = await fetch(m.url + k, { headers: auth });
    assertEquals(res.status, 200);
    const ended = await res.arrayBuffer().then(() => "done", () => "error");
    assertEquals(ended, "error");
    const stderr = new Response(m.proc.stderr).text();
    await m.stop();
    // The file's URL, its subvolume aside; the probes may find the volume up again meanwhile.
    const path = key2path(new TextEncoder().encode(k));
    const lines = (await stderr).split("\n")
      .filter((l) => l !== "" && l !== `volume ${hung.volume} up`)
      .map((l) => l.replace(`http://${hung.volume}/sv${/\/sv(\d+)\//.exec(l)?.[1]}${path}`, "URL"));
    const why = `Stalled: no progress from "URL" in 2000ms`;
    assertEquals(lines, [
      `volume ${hung.volume} get timeout: ${why}`,
      `volume ${hung.volume} down: ${why}`,
    ]);
  } finally {
    await m.stop();
    await hung.stop();
    await c.stop();
  }
});

/**
 * A REBALANCE of a key whose old copy's volume (volume 0) is down: 204,
 * the copy left; the master's stderr and its status page's errors after.
 */
async function rebalancedLeavingCopy(flags: string[]) {
  const { c, key } = await keyMovingOffVolume0({ volumes: 3, replicas: 2, prefix: "/left-log" });
  const m = await capturedMaster(c, flags);
  try {
    await c.stopVolume(0);
    const res = await fetch(m.url + key, { method: "REBALANCE" });
    assertEquals([res.status, await res.text()], [204, ""]);
    const page =
      await (await fetch(`${m.url}/?status`, { headers: { Accept: "application/json" } }))
        .json();
    const errors = (page.errors as { what: string; reason: string }[])
      .filter((e) => !e.what.startsWith("volume "));
    return { c, key, errors, out: await m.stop() };
  } finally {
    await m.stop();
    await c.stop();
  }
}

/** What a REBALANCE that could not delete the old copy on `volume` (for `why`) left undone. */
function leftCopy(volume: string, why: string): string {
  return `Old copy on ${volume} not deleted, kept in the key's record (a DELETE of the key ` +
    `removes it, the next REBALANCE tries again): ${why}`;
}

Deno.test("a REBALANCE that could not delete an old copy answers 204 and logs what it left as one line, listed among the status page's errors", async () => {
  const { c, key, errors, out } = await rebalancedLeavingCopy([]);
  // The DELETE's failure, as the volume's own line says it.
  const failure = `volume ${c.volumes[0]} delete error: `;
  const why = out.stderr.find((l) => l.startsWith(failure))?.slice(failure.length);
  assert(why, out.stderr.join("\n"));
  assertEquals(out.stderr.filter((l) => !l.startsWith("volume ")), [
    `REBALANCE ${key} 204: ${leftCopy(c.volumes[0], why)}`,
  ]);
  assertEquals(errors.map((e) => [e.what, e.reason]), [
    [`REBALANCE ${key} 204`, leftCopy(c.volumes[0], why)],
  ]);
});

Deno.test("-log json: a REBALANCE that could not delete an old copy logs what it left as one warn line with its status and reason", async () => {
  const { c, key, out } = await rebalancedLeavingCopy(["-log", "json"]);
  const lines = jsonLines(out.stderr.join("\n"));
  const why = lines.find((l) => l.volume === c.volumes[0] && l.call === "delete")?.reason;
  assert(why, out.stderr.join("\n"));
  const left = leftCopy(c.volumes[0], why);
  assertEquals(lines.filter((l) => l.volume === undefined).map(({ time: _, ...l }) => l), [{
    level: "warn",
    msg: `REBALANCE ${key} 204: ${left}`,
    status: 204,
    reason: left,
  }]);
});

/** Refuses every MOVE (a REPLACE's rename of its temporary over the key's file) with a 403. */
class RenameRefuser extends VolumeProxy {
  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "MOVE") return new Response("refused", { status: 403 });
    return await this.forward(req);
  }
}

/** The reason of a REPLACE whose rename failed on one replica of three, as it ends. */
const LIVE_ON_TWO =
  " (the new value is live on 2 of 3 replicas: REBALANCE the key to copy it back)";

/**
 * Overwrites /<bucket>/k (live already) through a master (-s3) whose first
 * volume refuses renames, with `write` (an S3 call answered 200): the
 * master's stderr and its status page's errors after.
 */
async function overwrittenRenameRefused(
  write: (s3: S3Client, Bucket: string) => Promise<unknown>,
) {
  const c = await Cluster.start({ flags: ["-s3"] });
  const refuser = new RenameRefuser(c.volumes[0]);
  const volumes = [refuser.volume, ...c.volumes.slice(1)];
  const m = await capturedMaster(c, [], { volumes });
  const s3 = s3Client(m.url);
  try {
    const Bucket = `undone${crypto.randomUUID().slice(0, 8)}`;
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "old value" }));
    await s3.send(new PutObjectCommand({ Bucket, Key: "src", Body: "copied value" }));
    await write(s3, Bucket);
    const page =
      await (await fetch(`${m.url}/?status`, { headers: { Accept: "application/json" } }))
        .json();
    const errors = (page.errors as { what: string; reason: string }[])
      .filter((e) => !e.what.startsWith("volume "));
    return { Bucket, errors, out: await m.stop() };
  } finally {
    s3.destroy();
    await m.stop();
    await refuser.stop();
    await c.stop();
  }
}

/**
 * Asserts that the one line on `stderr` beside the volumes' own is
 * `<what> 200: <reason>`, the reason a refused rename's, the same as the
 * status page's one error (`<method> <key> 200`).
 */
function assertUndoneLogged(
  got: { errors: { what: string; reason: string }[]; out: { stderr: string[] } },
  logged: { what: string; listed: string },
) {
  const lines = got.out.stderr.filter((l) => !l.startsWith("volume "));
  assertEquals(lines.length, 1, got.out.stderr.join("\n"));
  const prefix = `${logged.what} 200: Cannot MOVE `;
  assert(lines[0].startsWith(prefix) && lines[0].endsWith(LIVE_ON_TWO), lines[0]);
  const reason = lines[0].slice(`${logged.what} 200: `.length);
  assertEquals(got.errors.map((e) => [e.what, e.reason]), [[`${logged.listed} 200`, reason]]);
}

Deno.test("an S3 PutObject whose overwrite is live on fewer replicas answers 200 and logs what it left undone as one line, listed among the status page's errors", async () => {
  const got = await overwrittenRenameRefused(async (s3, Bucket) => {
    const put = await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "new value" }));
    assertEquals(put.$metadata.httpStatusCode, 200);
  });
  const k = `/${got.Bucket}/k`;
  assertUndoneLogged(got, { what: `S3 PUT ${k}`, listed: `PUT ${k}?x-id=PutObject` });
});

Deno.test("an S3 CopyObject whose overwrite is live on fewer replicas answers 200 and logs what it left undone as one line, listed among the status page's errors", async () => {
  const got = await overwrittenRenameRefused(async (s3, Bucket) => {
    const copy = await s3.send(
      new CopyObjectCommand({ Bucket, Key: "k", CopySource: `${Bucket}/src` }),
    );
    assertEquals(copy.$metadata.httpStatusCode, 200);
  });
  const k = `/${got.Bucket}/k`;
  assertUndoneLogged(got, { what: `S3 PUT ${k}`, listed: `PUT ${k}?x-id=CopyObject` });
});

Deno.test("an S3 CompleteMultipartUpload whose overwrite is live on fewer replicas answers 200 and logs what it left undone as one line, listed among the status page's errors", async () => {
  let id = "";
  const got = await overwrittenRenameRefused(async (s3, Bucket) => {
    const { UploadId, Parts } = await uploadParts(s3, Bucket, "k", [randomBytes(100)]);
    id = UploadId;
    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket,
        Key: "k",
        UploadId,
        MultipartUpload: { Parts },
      }),
    );
    assertEquals(done.$metadata.httpStatusCode, 200);
  });
  const k = `/${got.Bucket}/k`;
  assertUndoneLogged(got, { what: `S3 POST ${k}`, listed: `POST ${k}?uploadId=${id}` });
});

Deno.test("-log json: an S3 PutObject whose overwrite is live on fewer replicas logs what it left undone as one warn line with its status and reason", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const refuser = new RenameRefuser(c.volumes[0]);
  const m = await capturedMaster(c, ["-log", "json"], {
    volumes: [refuser.volume, ...c.volumes.slice(1)],
  });
  const s3 = s3Client(m.url);
  try {
    const Bucket = `undone${crypto.randomUUID().slice(0, 8)}`;
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "old value" }));
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "new value" }));
    const lines = jsonLines((await m.stop()).stderr.join("\n"))
      .filter((l) => l.volume === undefined)
      .map(({ time: _, ...l }) => l);
    assertEquals(lines.length, 1, JSON.stringify(lines));
    const reason: string = lines[0].reason;
    assert(reason.startsWith("Cannot MOVE ") && reason.endsWith(LIVE_ON_TWO), reason);
    assertEquals(lines, [{
      level: "warn",
      msg: `S3 PUT /${Bucket}/k 200: ${reason}`,
      status: 200,
      reason,
    }]);
  } finally {
    s3.destroy();
    await m.stop();
    await refuser.stop();
    await c.stop();
  }
});

/** Once `refusing`, answers every PUT 500 (its body read), as nginx one it could not store. */
class PutRefuser extends VolumeProxy {
  refusing = false;

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== "PUT" || !this.refusing) return await this.forward(req);
    await req.arrayBuffer();
    return new Response("refused", { status: 500 });
  }
}

Deno.test("an S3 CompleteMultipartUpload whose failure comes inside its 200 is logged as one line and listed among the status page's errors as a 5xx", async () => {
  // It was logged, but the status page's errors had none: the edge lists
  // 5xx answers, and this one's status was 200.
  const c = await Cluster.start({ flags: ["-s3"] });
  const refuser = new PutRefuser(c.volumes[0]);
  const m = await capturedMaster(c, [], { volumes: [refuser.volume, ...c.volumes.slice(1)] });
  const s3 = s3Client(m.url);
  try {
    const Bucket = `complete${crypto.randomUUID().slice(0, 8)}`;
    await s3.send(new CreateBucketCommand({ Bucket }));
    const { UploadId, Parts } = await uploadParts(s3, Bucket, "k", [randomBytes(100)]);
    refuser.refusing = true;
    const body = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${
      Parts[0].ETag
    }</ETag></Part></CompleteMultipartUpload>`;
    const target = `/${Bucket}/k?uploadId=${UploadId}`;
    const res = await fetch(m.url + target, { method: "POST", headers: unsignedHeaders(), body });
    const xml = await res.text();
    assertEquals(res.status, 200);
    assert(xml.includes("<Code>InternalError</Code>"), xml);
    const page =
      await (await fetch(`${m.url}/?status`, { headers: { Accept: "application/json" } }))
        .json();
    const errors = (page.errors as { what: string; reason: string }[])
      .filter((e) => !e.what.startsWith("volume "));
    const lines = (await m.stop()).stderr.filter((l) => !l.startsWith("volume "));
    const prefix = `S3 POST /${Bucket}/k 500: `;
    assertEquals(lines.length, 1, lines.join("\n"));
    assert(lines[0].startsWith(`${prefix}Cannot PUT `), lines[0]);
    const reason = lines[0].slice(prefix.length);
    assertEquals(errors.map((e) => [e.what, e.reason]), [[`POST ${target} 500`, reason]]);
  } finally {
    s3.destroy();
    await m.stop();
    await refuser.stop();
    await c.stop();
  }
});
