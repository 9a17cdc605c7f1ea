// Starts a real cluster for integration tests: nginx volumes through
// `main.ts volume` and a master process through `main.ts server`, on free
// ports, in a fresh temp folder. No mocks.
import { MASTER_V8_FLAGS } from "../lib/runtime.ts";
import { key2volume } from "../lib/keys.ts";
import { type Record, toRecord } from "../lib/record.ts";
import { assertEquals } from "./assert.ts";
export const MAIN = new URL("../main.ts", import.meta.url).pathname;
const DENO = Deno.execPath();

export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

/**
 * A port held by the local end of a connection, as every outgoing
 * connection holds one from the system's range for them (Linux:
 * ip_local_port_range), with no listener on it; free again once released.
 */
export async function heldByConnection(): Promise<{ port: number; release: () => void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  const release = () => {
    conn.close();
    listener.close();
  };
  return { port: (conn.localAddr as Deno.NetAddr).port, release };
}

/** The system's range for outgoing connections' local ports, as Linux has it set. */
export function outgoingPorts(): string {
  return Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().replace(/\s+/, "-");
}

export interface WaitUpOptions {
  /** How long to wait in all, ms. */
  ms?: number;
  /** The process that should answer: its exit ends the wait at once. */
  proc?: Deno.ChildProcess;
  /** Also wait for this: true once the answer is known to be the process's own. */
  ready?: () => Promise<boolean>;
}

/**
 * Waits until `url` answers. With `proc`, throws as soon as the process
 * exits (a port taken by another test, a bad flag) instead of timing out.
 */
export async function waitUp(url: string, opts: WaitUpOptions = {}): Promise<void> {
  const ms = opts.ms ?? 15_000;
  const until = Date.now() + ms;
  let exited: Deno.CommandStatus | null = null;
  opts.proc?.status.then((s) => void (exited = s));
  while (Date.now() < until) {
    if (exited) throw new Error(`${url} exited before answering: ${describe(exited)}`);
    try {
      // A listener that accepts and never answers must not eat the budget.
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (!opts.ready || await opts.ready()) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} did not come up within ${ms}ms`);
}

function describe(s: Deno.CommandStatus): string {
  return s.signal ? `signal ${s.signal}` : `exit code ${s.code}`;
}

/**
 * The port a master started with `-port 0` listens on, from its first line
 * on stdout ("mkv master on :PORT, ...", or with -log json that line's
 * "port"); the rest of stdout is drained.
 * Letting the master bind port 0 itself leaves no window in which another
 * test could take the port (tests run in parallel processes).
 */
export async function listenPort(
  proc: Deno.ChildProcess,
  opts: { lines?: string[] } = {},
): Promise<number> {
  const lines = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`The master exited before listening: ${describe(await proc.status)}`);
    text += value;
  }
  const m = text.match(/^mkv master on :(\d+)/) ?? text.match(/^\{.*"port":(\d+)[,}]/);
  if (!m) throw new Error(`Unexpected first line from the master: ${JSON.stringify(text)}`);
  // Keep reading so a chatty master never blocks on a full pipe; the
  // lines after the first go to `opts.lines` when given.
  let rest = text.slice(text.indexOf("\n") + 1);
  const keep = (more: string) => {
    if (!opts.lines) return;
    const whole = (rest + more).split("\n");
    rest = whole.pop()!;
    opts.lines.push(...whole);
  };
  keep("");
  (async () => {
    while (true) {
      const { value, done } = await lines.read();
      if (done) break;
      keep(value);
    }
  })().catch(() => {});
  return Number(m[1]);
}

/** Test-only: preloaded into a master, it moves its wall clock (see spawnMaster's `skew`). */
const SKEWED_CLOCK = new URL("./skewed_clock.ts", import.meta.url).pathname;

/** Test-only: preloaded into a master, it logs the keys its index commits write (`commitLog`). */
const COMMIT_LOG = new URL("./commit_log.ts", import.meta.url).pathname;

/** Test-only: preloaded into a master, it orders a bucket read after a heartbeat (`holdBucketRead`). */
const HELD_BUCKET_READ = new URL("./held_bucket_read.ts", import.meta.url).pathname;

/**
 * Waits until the master spawned with `commitLog: log` has handed Deno KV a
 * commit writing `key`'s record: the request's index write is under way,
 * its fence taken (on a locked index, waiting on the lock). Fails after `ms`.
 */
export async function commitSent(log: string, key: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await Deno.readTextFile(log).catch(() => "")).split("\n").includes(key)) {
    if (Date.now() > until) throw new Error(`No commit writing ${key} was sent within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Waits until master process `pid` on the index at `db` has just written
 * its heartbeat record (it changed): its next comes an interval (1 s) on.
 * A test that locks the index then has that long before a heartbeat waits
 * on the lock (and every read of the master's waits behind it).
 */
export async function justBeaten(db: string, pid: number): Promise<void> {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  const mine = `${Deno.hostname()}:${pid}:`;
  const stamp = async () => {
    for await (const e of kv.list({ prefix: ["members"] })) {
      if (String(e.key[1]).startsWith(mine)) return e.versionstamp;
    }
    return null;
  };
  try {
    const first = await stamp();
    while (await stamp() === first) await new Promise((r) => setTimeout(r, 10));
  } finally {
    kv.close();
  }
}

export interface SpawnOptions {
  /** Ms to move the master's wall clock (Date.now) by: a machine whose clock is off. */
  skew?: number;
  /** "piped": its stderr is the test's to read (proc.stderr); otherwise discarded. */
  stderr?: "piped";
  /** Gets the lines it writes on stdout after its first (-v's request lines), as they come. */
  stdout?: string[];
  /** Its -volumes (a proxy in front of one: tests/hung_volume.ts); the cluster's by default. */
  volumes?: string[];
  /** A file it logs the keys of its index commits to, as each is sent (see commitSent). */
  commitLog?: string;
  /**
   * A file whose making orders its next S3 bucket read after its next
   * heartbeat's look at the index (see tests/held_bucket_read.ts).
   */
  holdBucketRead?: string;
  /**
   * With `commitLog`: a file whose lines hold back, while it exists, the
   * commits that log one of them, and ("read <key>") the answers of reads
   * of a key's record (tests/commit_log.ts).
   */
  commitHold?: string;
}

export interface SpawnedMaster {
  url: string;
  proc: Deno.ChildProcess;
  stop(signal?: Deno.Signal): Promise<void>;
}

/** The status of a request, its body discarded; redirects not followed. */
export async function status(url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, { redirect: "manual", ...init });
  await res.body?.cancel();
  return res.status;
}

export interface ClusterOptions {
  volumes?: number;
  /** Extra master flags, e.g. ["-replicas", "2", "-protect"]. */
  flags?: string[];
}

export class Cluster {
  readonly dir: string;
  readonly volumes: string[];
  readonly volumePorts: number[];
  #volumeProcs: (Deno.ChildProcess | null)[];
  #master: Deno.ChildProcess | null = null;
  masterPort = 0;
  flags: string[];

  private constructor(dir: string, ports: number[], flags: string[]) {
    this.dir = dir;
    this.volumePorts = ports;
    this.volumes = ports.map((p) => `127.0.0.1:${p}`);
    this.#volumeProcs = ports.map(() => null);
    this.flags = flags;
  }

  static async start(opts: ClusterOptions = {}): Promise<Cluster> {
    const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
    // As a volume folder usually is: reachable by nginx's workers.
    await Deno.chmod(dir, 0o755);
    const ports = Array.from({ length: opts.volumes ?? 3 }, () => freePort());
    const c = new Cluster(dir, ports, opts.flags ?? []);
    await Promise.all(ports.map((_, i) => c.startVolume(i, { newPortIfTaken: true })));
    await c.startMaster();
    return c;
  }

  get db(): string {
    return `${this.dir}/indexdb`;
  }

  get url(): string {
    return `http://127.0.0.1:${this.masterPort}`;
  }

  volumeDir(i: number): string {
    return `${this.dir}/volume${i}`;
  }

  /**
   * Starts volume i on its port. At the cluster's start a port taken meanwhile
   * (freePort leaves a window) gets a new one; a restart keeps its port.
   */
  async startVolume(i: number, opts: { newPortIfTaken?: boolean } = {}): Promise<void> {
    for (let tries = 1;; tries++) {
      const proc = new Deno.Command(DENO, {
        args: ["run", "-A", MAIN, "volume", this.volumeDir(i)],
        env: { PORT: String(this.volumePorts[i]) },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      this.#volumeProcs[i] = proc;
      // Another test's nginx may answer on the port; ours has bound it once
      // it wrote its pid file.
      const pidFile = `${this.volumeDir(i)}/.mkv-nginx/nginx.pid`;
      const ready = () => Deno.stat(pidFile).then(() => true, () => false);
      let exited = false;
      proc.status.then(() => void (exited = true));
      try {
        await waitUp(`http://${this.volumes[i]}/`, { proc, ready });
        return;
      } catch (err) {
        if (!opts.newPortIfTaken || !exited || tries === 3) throw err;
        this.volumePorts[i] = freePort();
        this.volumes[i] = `127.0.0.1:${this.volumePorts[i]}`;
      }
    }
  }

  async stopVolume(i: number): Promise<void> {
    const p = this.#volumeProcs[i];
    if (!p) return;
    this.#volumeProcs[i] = null;
    p.kill("SIGTERM");
    await p.status;
    // nginx's workers may linger a moment after the master process.
    for (let n = 0; n < 100; n++) {
      try {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: this.volumePorts[i] });
        c.close();
        await new Promise((r) => setTimeout(r, 50));
      } catch {
        return;
      }
    }
  }

  /** Starts the master; `volumes` overrides the volume list (rebalance tests). */
  /** nginx's master and worker pids of volume i. */
  async nginxPids(i: number): Promise<number[]> {
    const master = Number(
      (await Deno.readTextFile(`${this.volumeDir(i)}/.mkv-nginx/nginx.pid`)).trim(),
    );
    const out = await new Deno.Command("pgrep", { args: ["-P", String(master)] }).output();
    const workers = new TextDecoder().decode(out.stdout).split("\n").filter(Boolean).map(Number);
    return [master, ...workers];
  }

  /** Freezes volume i (SIGSTOP): it accepts connections and never answers. */
  async pauseVolume(i: number): Promise<void> {
    for (const pid of await this.nginxPids(i)) Deno.kill(pid, "SIGSTOP");
  }

  async resumeVolume(i: number): Promise<void> {
    for (const pid of await this.nginxPids(i)) Deno.kill(pid, "SIGCONT");
  }

  /**
   * Another master on this cluster's index (several masters, one index),
   * up and answering; `stop()` ends it with `signal`.
   */
  async spawnMaster(
    extra: string[] = [],
    env: { [name: string]: string } = {},
    opts: SpawnOptions = {},
  ): Promise<SpawnedMaster> {
    const volumes = opts.volumes ?? this.volumes;
    const proc = this.#spawn(extra, volumes, opts.stderr ?? "null", env, opts);
    const url = `http://127.0.0.1:${await listenPort(proc, { lines: opts.stdout })}`;
    await waitUp(`${url}/?list`, { proc });
    return {
      url,
      proc,
      async stop(signal: Deno.Signal = "SIGTERM") {
        try {
          proc.kill(signal);
        } catch { /* already gone */ }
        await proc.status;
      },
    };
  }

  /** A master process on this cluster's index; `extra` flags come last and win. */
  #spawn(
    extra: string[],
    volumes: string[],
    stderr: "null" | "inherit" | "piped",
    env: { [name: string]: string } = {},
    opts: SpawnOptions = {},
  ): Deno.ChildProcess {
    // Port 0: the master binds a free port itself and prints it (listenPort).
    const args = ["-port", "0", "-db", this.db, "-volumes", volumes.join(",")];
    const skew = opts.skew === undefined ? [] : ["--preload", SKEWED_CLOCK];
    if (opts.skew !== undefined) env = { ...env, MKV_TEST_CLOCK_SKEW_MS: String(opts.skew) };
    const commits = opts.commitLog === undefined ? [] : ["--preload", COMMIT_LOG];
    if (opts.commitLog !== undefined) env = { ...env, MKV_TEST_COMMIT_LOG: opts.commitLog };
    const held = opts.holdBucketRead === undefined ? [] : ["--preload", HELD_BUCKET_READ];
    if (opts.holdBucketRead !== undefined) {
      env = { ...env, MKV_TEST_HOLD_BUCKET_READ: opts.holdBucketRead };
    }
    if (opts.commitHold !== undefined) env = { ...env, MKV_TEST_COMMIT_HOLD: opts.commitHold };
    return new Deno.Command(DENO, {
      args: [
        "run",
        "-A",
        MASTER_V8_FLAGS,
        ...skew,
        ...commits,
        ...held,
        MAIN,
        "server",
        ...args,
        ...this.flags,
        ...extra,
      ],
      env,
      stdin: "null",
      stdout: "piped",
      stderr,
    }).spawn();
  }

  /** The master process, for signals and /proc. */
  get masterProcess(): Deno.ChildProcess | null {
    return this.#master;
  }

  async startMaster(extra: string[] = [], volumes = this.volumes): Promise<void> {
    const proc = this.#spawn(extra, volumes, "inherit");
    this.#master = proc;
    this.masterPort = await listenPort(proc);
    await waitUp(`${this.url}/?list&limit=1`, { proc });
  }

  async stopMaster(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    const m = this.#master;
    if (!m) return;
    this.#master = null;
    try {
      m.kill(signal);
    } catch { /* it already exited (a test sent its own signal) */ }
    await m.status;
  }

  async stop(): Promise<void> {
    await this.stopMaster();
    await Promise.all(this.#volumeProcs.map((_, i) => this.stopVolume(i)));
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** `key`'s record in `c`'s index, read straight from Deno KV (null: none). */
export async function recordOf(c: Cluster, key: string): Promise<Record | null> {
  const kv = await Deno.openKv(`${c.db}/index.sqlite3`);
  try {
    return toRecord((await kv.get(["k", new TextEncoder().encode(key)])).value);
  } finally {
    kv.close();
  }
}

/** Every file (not folder) under a volume, through its autoindex. */
export async function volumeFiles(volume: string, path = "/"): Promise<string[]> {
  const entries = await fetch(`http://${volume}${path}`).then((r) => r.json()) as {
    name: string;
    type: string;
  }[];
  const out: string[] = [];
  for (const e of entries) {
    if (e.type === "directory") out.push(...await volumeFiles(volume, `${path}${e.name}/`));
    else out.push(path + e.name);
  }
  return out;
}

/** A fresh key no other test uses. */
export function randomKey(prefix = "/test"): string {
  return `${prefix}/${crypto.randomUUID()}`;
}

export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/**
 * Runs main.ts with args (and `env` added to the environment); returns exit
 * code and output. `signal`: kills it at its abort (a master that should
 * not have started runs on).
 */
export async function runMain(
  args: string[],
  opts: { env?: { [name: string]: string }; signal?: AbortSignal } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(DENO, {
    args: ["run", "-A", MAIN, ...args],
    env: opts.env,
    stdin: "null",
    signal: opts.signal,
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/**
 * Sends one HTTP/1.1 request over a raw socket, path as given (fetch would
 * fold "." and ".." segments), and returns the status, headers and body (a
 * chunked one put together). `host`: the
 * Host header sent (fetch sends its URL's), 127.0.0.1 by default.
 */
export async function rawRequest(
  port: number,
  method: string,
  path: string,
  body = "",
  opts: { host?: string; headers?: { [name: string]: string } } = {},
): Promise<{ status: number; headers: Headers; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const host = opts.host ?? "127.0.0.1";
  const extra = Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const head = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n` +
    `${extra}Content-Length: ${new TextEncoder().encode(body).length}\r\n\r\n`;
  await conn.write(new TextEncoder().encode(head + body));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  while (true) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  conn.close();
  const bytes = chunks.reduce((a, b) => new Uint8Array([...a, ...b]), new Uint8Array());
  const end = bytes.findIndex((_, i) =>
    bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10
  );
  const lines = new TextDecoder().decode(bytes.subarray(0, end)).split("\r\n");
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const sent = bytes.subarray(end + 4);
  const chunked = headers.get("transfer-encoding")?.toLowerCase() === "chunked";
  const text = new TextDecoder().decode(chunked ? unchunk(sent) : sent);
  return { status: Number(lines[0].slice(9, 12)), headers, body: text };
}

/** A chunked body's bytes, its framing undone (chunk extensions and trailers dropped). */
function unchunk(framed: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  while (at < framed.length) {
    const eol = framed.indexOf(10, at);
    const size = parseInt(new TextDecoder().decode(framed.subarray(at, eol)), 16);
    if (!(size > 0)) break;
    parts.push(framed.subarray(eol + 1, eol + 1 + size));
    at = eol + 1 + size + 2;
  }
  return parts.reduce((a, b) => new Uint8Array([...a, ...b]), new Uint8Array());
}

/** A request for `key` to the cluster's master, redirects not followed: its status, body and headers. */
export async function call(c: Cluster, key: string, method: string, body?: BodyInit) {
  const res = await fetch(c.url + key, { method, body, redirect: "manual" });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

export interface KeyMovingOptions {
  volumes: number;
  /** The master's -replicas: the key is written by the first `replicas` volumes. */
  replicas: number;
  /** The fresh key's prefix ("/moving" by default). */
  prefix?: string;
}

/**
 * A cluster of `volumes` volumes whose master (-replicas `replicas`) wrote
 * `key` (its value "old value") with only the first `replicas` volumes in
 * -volumes, and now has them all, the hash putting the key on none of
 * volume 0: its copy there is left until the key is moved.
 */
export async function keyMovingOffVolume0(
  opts: KeyMovingOptions,
): Promise<{ c: Cluster; key: string }> {
  const { volumes, replicas } = opts;
  const prefix = opts.prefix ?? "/moving";
  const c = await Cluster.start({ volumes, flags: ["-replicas", String(replicas)] });
  try {
    const offVolume0 = (k: string) =>
      key2volume(new TextEncoder().encode(k), c.volumes, replicas, 10)
        .every((v) => !v.startsWith(`${c.volumes[0]}/`));
    let key = randomKey(prefix);
    while (!offVolume0(key)) key = randomKey(prefix);
    await c.stopMaster();
    await c.startMaster([], c.volumes.slice(0, replicas));
    assertEquals(await status(c.url + key, { method: "PUT", body: "old value" }), 201);
    await c.stopMaster();
    await c.startMaster();
    return { c, key };
  } catch (err) {
    await c.stop();
    throw err;
  }
}

/**
 * DELETEs `key` (204), rebuilds the index from every volume with its master
 * stopped (exit 0), and answers the key's GET status from the restarted master.
 */
export async function statusAfterDeleteAndRebuild(c: Cluster, key: string, replicas: number) {
  assertEquals((await call(c, key, "DELETE")).status, 204);
  await c.stopMaster();
  const r = await runMain([
    "rebuild",
    "-replicas",
    String(replicas),
    "-volumes",
    c.volumes.join(","),
    "-db",
    c.db,
  ]);
  assertEquals(r.code, 0, r.stderr);
  await c.startMaster();
  return (await call(c, key, "GET")).status;
}

/** `parts` one after another, in one array. */
export function concatBytes(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Holds this thread for `ms`, as a pause, a long GC or a long op would. */
export function holdThread(ms: number) {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* held */ }
}

/** A stand-in for a volume whose held requests wait until it is released. */
export interface HeldServer {
  /** Its "host:port". */
  name: string;
  /** Resolves once a request has been held. */
  asked: Promise<void>;
  /** Lets every held request (and every one held from now on) go on. */
  release(): void;
  /** Releases, then stops the server. */
  close(): Promise<void>;
}

/**
 * A stand-in for a volume on a free port, answering each request with
 * `answer`; a request whose answer awaits `hold()` waits there until the
 * server is released.
 */
export function heldServer(
  answer: (req: Request, hold: () => Promise<void>) => Response | Promise<Response>,
): HeldServer {
  const { promise: asked, resolve: reached } = Promise.withResolvers<void>();
  const { promise: released, resolve: release } = Promise.withResolvers<void>();
  const hold = () => {
    reached();
    return released;
  };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => answer(req, hold),
  );
  return {
    name: `127.0.0.1:${server.addr.port}`,
    asked,
    release,
    async close() {
      release();
      await server.shutdown();
    },
  };
}

/** Begins a multipart upload of `path` ("/bucket/key") on `c`'s master (-s3, unsigned): its id. */
export async function uploadBegun(c: Cluster, path: string): Promise<string> {
  const created = await (await fetch(`${c.url}${path}?uploads`, { method: "POST" })).text();
  return /<UploadId>([0-9a-f]{32})<\/UploadId>/.exec(created)![1];
}

/**
 * A multipart upload of a fresh bucket's key begun on `c`'s master (-s3,
 * unsigned), its part 1 (5000 random bytes) uploaded (200): the upload's id.
 */
export async function uploadWithPart(c: Cluster): Promise<string> {
  const path = `/${crypto.randomUUID().slice(0, 8)}/big`;
  const id = await uploadBegun(c, path);
  const part = await fetch(`${c.url}${path}?partNumber=1&uploadId=${id}`, {
    method: "PUT",
    body: randomBytes(5000),
  });
  await part.body?.cancel();
  assertEquals(part.status, 200);
  return id;
}

/**
 * Restarts `c`'s master on an index a rebuild left incomplete: with the
 * master and volume 1 stopped, a rebuild with -skip-unreadable of an index
 * of its own (exit 1); volume 1 started again.
 */
export async function masterOnSkippedIndex(c: Cluster): Promise<void> {
  await c.stopMaster();
  await c.stopVolume(1);
  const partial = `${c.dir}/partial`;
  const args = ["-volumes", c.volumes.join(","), "-db", partial, "-skip-unreadable"];
  const r = await runMain(["rebuild", ...args]);
  assertEquals(r.code, 1, r.stderr);
  await c.startVolume(1);
  await c.startMaster(["-db", partial]);
}
