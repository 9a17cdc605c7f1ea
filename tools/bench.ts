// `deno task bench`: the speed and memory figures, each next to its
// floor measured in the same run on the same machine (absolute numbers drift
// between runs and machines; ratios hold better). Brings up its own cluster
// (three nginx volumes and a master, on free ports, in a temp folder) and
// takes it down at the end, also on error or Ctrl-C.
//
//   deno task bench                  # wrk 5 s per figure, 256 MiB PUT
//   deno task bench -seconds 3 -skip-large
//   TMPDIR=/dev/shm deno task bench  # volumes and index on tmpfs
//
// The table goes to stdout, progress to stderr. It exits 0 even when a
// target is missed: the "meets target" column says.
import { FlagError, flagExit, type FlagSpec, parseFlags } from "../lib/flags.ts";
import { MASTER_V8_FLAGS } from "../lib/runtime.ts";
import { freePort, waitUp } from "../tests/cluster.ts";
import { ensureNginx } from "./volume.ts";
import { randomBytes, thrash, type ThrashResult } from "./thrash.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** Children run here, so they pick up deno.json (unstable KV). */
const ROOT = new URL("..", import.meta.url).pathname;
const MIB = 1024 * 1024;
const WRK_ARGS = ["-t2", "-c64"];
const THRASH = { clients: 16, size: 1024 };
/** Linux's USER_HZ, the unit of /proc's CPU times (100 on every common build). */
const CLK_TCK = 100;

// ---- processes ----

/** Every child this run started, so teardown can stop each one. */
class Children {
  #all = new Set<Deno.ChildProcess>();

  /** `deno run -A <args>`: output dropped, errors shown. */
  deno(args: string[], env: Record<string, string> = {}): Deno.ChildProcess {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...args],
      cwd: ROOT,
      env,
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    this.#all.add(child);
    return child;
  }

  /** SIGTERM, then SIGKILL if it has not exited within 10 s. */
  async stop(child: Deno.ChildProcess): Promise<void> {
    if (!this.#all.delete(child)) return;
    const kill = (sig: Deno.Signal) => {
      try {
        child.kill(sig);
      } catch { /* already gone */ }
    };
    kill("SIGTERM");
    const timer = setTimeout(() => kill("SIGKILL"), 10_000);
    await child.status;
    clearTimeout(timer);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#all].map((c) => this.stop(c)));
  }
}

interface Cluster {
  url: string;
  volumes: string[];
  master: Deno.ChildProcess;
}

async function startCluster(dir: string, children: Children): Promise<Cluster> {
  const ports = [freePort(), freePort(), freePort()];
  const volumes = ports.map((p) => `127.0.0.1:${p}`);
  ports.forEach((port, i) =>
    children.deno([MAIN, "volume", `${dir}/volume${i}`], { PORT: String(port) })
  );
  await Promise.all(volumes.map((v) => waitUp(`http://${v}/`)));
  const port = freePort();
  const master = children.deno([
    MASTER_V8_FLAGS,
    MAIN,
    "server",
    "-port",
    String(port),
    "-db",
    `${dir}/indexdb`,
    "-volumes",
    volumes.join(","),
  ]);
  const url = `http://127.0.0.1:${port}`;
  await waitUp(`${url}/?list&limit=1`);
  return { url, volumes, master };
}

/** A bare Deno.serve answering 404 to everything: the floor of a GET. */
async function startBare(dir: string, children: Children) {
  const script = `${dir}/bare.ts`;
  await Deno.writeTextFile(
    script,
    `Deno.serve({ port: Number(Deno.args[0]), onListen() {} }, () =>
  new Response(null, { status: 404 }));\n`,
  );
  const port = freePort();
  const child = children.deno([script, String(port)]);
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url);
  return { url, child };
}

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  const o = await new Deno.Command(cmd, { args, stdin: "null" }).output();
  const d = new TextDecoder();
  return { ok: o.success, out: d.decode(o.stdout) + d.decode(o.stderr) };
}

// ---- wrk ----

interface Wrk {
  rps: number;
  requests: number;
  socketErrors: number;
  /** Answers that were neither 2xx nor 3xx. */
  non2xx3xx: number;
}

function parseWrk(out: string): Wrk {
  const num = (re: RegExp) => Number(out.match(re)?.[1] ?? 0);
  const socket = out.match(/Socket errors:(.*)/)?.[1] ?? "";
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in/),
    socketErrors: [...socket.matchAll(/\d+/g)].reduce((n, m) => n + Number(m[0]), 0),
    non2xx3xx: num(/Non-2xx or 3xx responses: (\d+)/),
  };
}

/** A 1 s warm-up (JIT, connections), then the measured run. */
async function wrk(url: string, seconds: number, extra: string[] = []): Promise<Wrk> {
  await run("wrk", [...WRK_ARGS, ...extra, "-d1s", url]);
  const { ok, out } = await run("wrk", [...WRK_ARGS, ...extra, `-d${seconds}s`, url]);
  if (!ok) throw new Error(`wrk failed:\n${out}`);
  const w = parseWrk(out);
  if (w.requests === 0) throw new Error(`wrk made no requests:\n${out}`);
  return w;
}

// ---- the table ----

interface Row {
  test: string;
  figure: string;
  floor: string;
  /** figure / floor, or the figure itself for memory. */
  ratio: number;
  unit: "x" | " MiB";
  /** Target: ratio >= min or ratio <= max; neither for a reference figure. */
  min?: number;
  max?: number;
  /** Wrong answers and socket errors during the measurement. */
  errors: number;
  mkv: string;
}

function meets(r: Row): "yes" | "no" | "—" {
  if (r.errors > 0) return "no";
  if (r.min !== undefined) return r.ratio >= r.min ? "yes" : "no";
  if (r.max !== undefined) return r.ratio <= r.max ? "yes" : "no";
  return "—";
}

function table(rows: Row[]): string {
  const lines = [
    "| test | master | floor (same run) | ratio | target | errors | meets target | mkv |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    const target = r.min !== undefined
      ? `≥ ${r.min}${r.unit}`
      : r.max !== undefined
      ? `≤ ${r.max}${r.unit}`
      : "— (reference)";
    const ratio = r.unit === "x" ? `${r.ratio.toFixed(2)}x` : `${r.ratio.toFixed(1)} MiB`;
    lines.push(
      `| ${r.test} | ${r.figure} | ${r.floor} | ${ratio} | ${target} | ${r.errors} | ` +
        `${meets(r)} | ${r.mkv} |`,
    );
  }
  return lines.join("\n");
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

// ---- the measurements ----

/** GET of a missing key and of an existing one (302), against the bare floor. */
async function getRows(
  dir: string,
  children: Children,
  c: Cluster,
  seconds: number,
): Promise<Row[]> {
  progress(`wrk ${seconds}s: bare Deno.serve 404`);
  const bare = await startBare(dir, children);
  const floor = await wrk(`${bare.url}/bench/missing`, seconds);
  await children.stop(bare.child);

  const missing = `${c.url}/bench/missing`;
  await expectStatus(missing, 404);
  progress(`wrk ${seconds}s: master, missing key`);
  const miss = await wrk(missing, seconds);

  const present = `${c.url}/bench/present`;
  const put = await fetch(present, { method: "PUT", body: randomBytes(THRASH.size) });
  await put.body?.cancel();
  if (put.status !== 201) throw new Error(`PUT ${present}: status ${put.status}`);
  await expectStatus(present, 302);
  progress(`wrk ${seconds}s: master, existing key (302)`);
  const hit = await wrk(present, seconds);

  // Many keys: concurrent GETs of one hot key share a HEAD in flight, so
  // the hot-key row flatters; this one pays a HEAD per request.
  const spread = await spreadKeys(dir, c, 1000);
  progress(`wrk ${seconds}s: master, 1,000 distinct existing keys (302)`);
  const many = await wrk(c.url, seconds, ["-s", spread]);

  const floorText = `${fmt(floor.rps)} req/s (bare Deno.serve 404)`;
  const wrkCmd = `wrk ${WRK_ARGS.join(" ")} -d${seconds}s`;
  return [{
    test: `GET missing key (${wrkCmd})`,
    figure: `${fmt(miss.rps)} req/s`,
    floor: floorText,
    ratio: miss.rps / floor.rps,
    unit: "x",
    min: 0.8,
    // A 404 is the right answer here: only socket errors are wrong.
    errors: miss.socketErrors + floor.socketErrors,
    mkv: "0.64x",
  }, {
    test: `GET existing key, 302 (${wrkCmd})`,
    figure: `${fmt(hit.rps)} req/s`,
    floor: floorText,
    ratio: hit.rps / floor.rps,
    unit: "x",
    min: 0.25,
    errors: hit.socketErrors + hit.non2xx3xx + floor.socketErrors,
    mkv: "0.19x",
  }, {
    test: `GET 1,000 distinct existing keys, 302 (${wrkCmd})`,
    figure: `${fmt(many.rps)} req/s`,
    floor: floorText,
    ratio: many.rps / floor.rps,
    unit: "x",
    min: 0.25,
    errors: many.socketErrors + many.non2xx3xx + floor.socketErrors,
    mkv: "—",
  }];
}

/** PUTs n keys /bench/spread/<i> and writes a wrk script that GETs them in turn. */
async function spreadKeys(dir: string, c: Cluster, n: number): Promise<string> {
  const ids = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < n; i += 32) {
    await Promise.all(
      ids.slice(i, i + 32).map(async (id) => {
        const res = await fetch(`${c.url}/bench/spread/${id}`, { method: "PUT", body: `v${id}` });
        await res.body?.cancel();
        if (res.status !== 201) throw new Error(`PUT /bench/spread/${id}: status ${res.status}`);
      }),
    );
  }
  await expectStatus(`${c.url}/bench/spread/0`, 302);
  const script = `${dir}/spread.lua`;
  await Deno.writeTextFile(
    script,
    `counter = 0\nrequest = function()\n  counter = counter + 1\n` +
      `  return wrk.format("GET", "/bench/spread/" .. ((counter * 7919) % ${n}))\nend\n`,
  );
  return script;
}

/** wrk cannot tell a 404 from a 500: check the answer once beforehand. */
async function expectStatus(url: string, status: number) {
  const res = await fetch(url, { redirect: "manual" });
  await res.body?.cancel();
  if (res.status !== status) throw new Error(`GET ${url}: status ${res.status}, want ${status}`);
}

/** CPU seconds (user + system) a process has used, from /proc; 0 when gone. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
  // Fields after the ")" that ends the command name; utime and stime are the 12th and 13th.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11] ?? 0) + Number(f[12] ?? 0)) / CLK_TCK;
}

/** CPU seconds of every nginx worker on the machine (the bench's three volumes' own). */
async function nginxSeconds(): Promise<number> {
  let sum = 0;
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
    if (cmd.startsWith("nginx: worker")) sum += await cpuSeconds(Number(e.name));
  }
  return sum;
}

/**
 * The thrash cycle three ways: straight to nginx (the floor), through a
 * master that only forwards (bench/forward_master.ts: the ceiling of any
 * master with one hop and a HEAD check, no index), and through ours. The
 * machine's speed drifts over minutes, so the three take turns, twice, and
 * each rate is over both turns. Beside each rate, the CPU the master, nginx
 * and the clients spent per cycle: steadier than the rates from run to run.
 */
async function thrashRows(
  children: Children,
  c: Cluster,
  seconds: number,
): Promise<{ rows: Row[]; reasons: string[] }> {
  const forwarder = await startForwarder(children, c.volumes);
  const kinds = [
    { label: "straight to nginx", opts: { direct: c.volumes }, pid: 0 },
    { label: "forwarding-only master", opts: { url: forwarder.url }, pid: forwarder.child.pid },
    { label: "master", opts: { url: c.url }, pid: c.master.pid },
  ];
  const totals = kinds.map(() => ({
    cycles: 0,
    seconds: 0,
    failures: 0,
    reasons: [] as string[],
    masterCpu: 0,
    nginxCpu: 0,
    clientCpu: 0,
  }));
  for (const k of kinds) await thrash({ ...k.opts, ...THRASH, cycles: 100 }); // warm-up
  for (let turn = 1; turn <= 2; turn++) {
    for (const [i, k] of kinds.entries()) {
      progress(`thrash ${seconds}s, turn ${turn} of 2: ${k.label}`);
      // The clients run in this process.
      const [m0, n0, c0] = [
        k.pid ? await cpuSeconds(k.pid) : 0,
        await nginxSeconds(),
        await cpuSeconds(Deno.pid),
      ];
      const r = await thrash({ ...k.opts, ...THRASH, seconds });
      const t = totals[i];
      t.masterCpu += (k.pid ? await cpuSeconds(k.pid) : 0) - m0;
      t.nginxCpu += await nginxSeconds() - n0;
      t.clientCpu += await cpuSeconds(Deno.pid) - c0;
      t.cycles += r.cycles;
      t.seconds += r.seconds;
      t.failures += r.failures;
      t.reasons.push(...r.reasons);
    }
  }
  await children.stop(forwarder.child);
  const [direct, forward, master] = totals;
  const rate = (r: ThrashResult) => r.cycles / r.seconds;
  const ms = (cpu: number, r: ThrashResult) => fmt((1000 * cpu) / Math.max(r.cycles, 1), 2);
  const cpu = (t: typeof master) =>
    `; CPU per cycle: master ${ms(t.masterCpu, t)} ms, nginx ${ms(t.nginxCpu, t)} ms, ` +
    `client ${ms(t.clientCpu, t)} ms`;
  const floor = `${fmt(rate(direct))} cycles/s (3 PUT + GET + 3 DELETE to nginx; CPU per ` +
    `cycle: nginx ${ms(direct.nginxCpu, direct)} ms, client ${ms(direct.clientCpu, direct)} ms)`;
  const test = `${THRASH.clients} clients, ${THRASH.size} B values, 3 replicas`;
  return {
    rows: [{
      test: `thrash: ${test}`,
      figure: `${fmt(rate(master))} cycles/s${cpu(master)}`,
      floor,
      ratio: rate(master) / rate(direct),
      unit: "x",
      min: 0.8,
      errors: master.failures + direct.failures,
      mkv: "0.49x",
    }, {
      test: `thrash, forwarding-only master (no index; reference): ${test}`,
      figure: `${fmt(rate(forward))} cycles/s${cpu(forward)}`,
      floor,
      ratio: rate(forward) / rate(direct),
      unit: "x",
      errors: forward.failures,
      mkv: "—",
    }],
    reasons: totals.flatMap((t) => t.reasons),
  };
}

/** bench/forward_master.ts on the cluster's volumes. */
async function startForwarder(children: Children, volumes: string[]) {
  const port = freePort();
  const script = new URL("../bench/forward_master.ts", import.meta.url).pathname;
  const child = children.deno([script, "-port", String(port), "-volumes", volumes.join(",")]);
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url);
  return { url, child };
}

/** One PUT through the master: its time, status, and the master's memory around it. */
interface MasterPut {
  seconds: number;
  value: number;
  before: { rss: number; hwm: number };
  after: { rss: number; hwm: number };
}

/** Runs `put` after a sync, timed, the master's peak RSS reset before it when Linux can. */
async function masterPut(pid: number, put: () => Promise<number>): Promise<MasterPut> {
  await run("sync", []);
  await resetPeak(pid);
  const before = await memory(pid);
  const { seconds, value } = await timed(put);
  const after = await memory(pid);
  return { seconds, value, before, after };
}

/** Peak RSS during a PUT less RSS before it, MiB. */
function growth(put: MasterPut): number {
  return (put.after.hwm - put.before.rss) / 1024;
}

/**
 * A large PUT through the master vs three parallel PUTs straight to nginx;
 * then the same value chunked from a pipe (`cat | curl -T -`), which Deno's
 * HTTP/1.1 server reads its own way (lib/request_body.ts).
 */
async function largeRows(dir: string, c: Cluster, mb: number): Promise<Row[]> {
  const file = `${dir}/large.bin`;
  progress(`writing ${mb} MiB of random bytes`);
  await writeRandomFile(file, mb);

  // Turns alternate, each after a sync: how fast the disk takes writes
  // depends on what is still being written back (0.35 s to 1.5 s for the
  // same direct PUT here, session 6), and always measuring one side first
  // would hand it the idle disk. The median of each side is reported.
  const directUrls = c.volumes.map((v) => `http://${v}/bench/large`);
  const url = `${c.url}/bench/large`;
  const pid = c.master.pid;
  const directs: { seconds: number; value: number[] }[] = [];
  const masters: MasterPut[] = [];
  const pipes: MasterPut[] = [];
  const peakReset = await resetPeak(pid);
  for (let turn = 1; turn <= LARGE_TURNS; turn++) {
    await run("sync", []);
    progress(`PUT ${mb} MiB, turn ${turn} of ${LARGE_TURNS}: three parallel curl -T to nginx`);
    directs.push(await timed(() => Promise.all(directUrls.map((u) => curlPut(file, u)))));
    await Promise.all(directUrls.map((u) => fetch(u, { method: "DELETE" }).then(drain)));
    progress(`PUT ${mb} MiB, turn ${turn} of ${LARGE_TURNS}: curl -T to the master (3 replicas)`);
    masters.push(await masterPut(pid, () => curlPut(file, url)));
    await fetch(url, { method: "DELETE" }).then(drain);
    progress(`PUT ${mb} MiB, turn ${turn} of ${LARGE_TURNS}: cat into curl -T - to the master`);
    pipes.push(await masterPut(pid, () => curlPipe(file, url)));
    await fetch(url, { method: "DELETE" }).then(drain);
  }
  const direct = median(directs);
  const rate = (s: number) => `${fmt(s, 2)} s, ${fmt(mb / s)} MiB/s`;
  const floor = `${rate(direct.seconds)} (3 parallel curl -T to nginx)`;
  const errors = (puts: { value: number }[]) => puts.filter((p) => p.value !== 201).length;
  const growthRow = (what: string, puts: MasterPut[], mkv: string): Row => {
    const top = puts.reduce((a, b) => growth(b) > growth(a) ? b : a);
    return {
      test: `master memory growth during the ${mb} MiB PUT${what} (largest of the turns)`,
      figure: `RSS ${fmt(top.before.rss / 1024)} MiB → peak ${fmt(top.after.hwm / 1024)} MiB`,
      floor: peakReset ? "— (VmHWM reset before the PUT)" : "— (VmHWM since start: no reset)",
      ratio: growth(top),
      unit: " MiB",
      max: 64,
      errors: 0,
      mkv,
    };
  };
  return [
    {
      test: `PUT ${mb} MiB (curl -T), 3 replicas, median of ${LARGE_TURNS} alternating turns`,
      figure: rate(median(masters).seconds),
      floor,
      ratio: median(masters).seconds / direct.seconds,
      unit: "x",
      max: 1.5,
      errors: errors(masters) + directs.flatMap((d) => d.value).filter((s) => s !== 201).length,
      mkv: "2.1x",
    },
    growthRow("", masters, "+517 MiB"),
    {
      test:
        `PUT ${mb} MiB chunked from a pipe (cat into curl -T -), median of ${LARGE_TURNS} turns`,
      figure: rate(median(pipes).seconds),
      floor,
      ratio: median(pipes).seconds / direct.seconds,
      unit: "x",
      errors: errors(pipes),
      mkv: "—",
    },
    growthRow(" from a pipe", pipes, "—"),
  ];
}

const LARGE_TURNS = 3;

/** The run of median time (of an odd number). */
function median<T extends { seconds: number }>(runs: T[]): T {
  return [...runs].sort((a, b) => a.seconds - b.seconds)[Math.floor(runs.length / 2)];
}

async function writeRandomFile(path: string, mb: number) {
  using f = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let i = 0; i < mb; i++) {
    const chunk = randomBytes(MIB);
    for (let n = 0; n < chunk.length;) n += await f.write(chunk.subarray(n));
  }
}

/** curl -T, as a user would upload; returns the HTTP status. */
async function curlPut(file: string, url: string): Promise<number> {
  const { out } = await run("curl", [
    "-sS",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    "-T",
    file,
    url,
  ]);
  return Number(out.trim().slice(-3));
}

/** `cat file | curl -T -`: sent chunked, as from any pipe; returns the HTTP status. */
async function curlPipe(file: string, url: string): Promise<number> {
  const { out } = await run("sh", [
    "-c",
    `cat '${file}' | curl -sS -o /dev/null -w '%{http_code}' -T - '${url}'`,
  ]);
  return Number(out.trim().slice(-3));
}

async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const started = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - started) / 1000, value };
}

async function drain(res: Response) {
  await res.body?.cancel();
}

/** VmRSS and VmHWM (peak RSS) of a process, in KiB. */
export async function memory(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kib = (name: string) =>
    Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"))?.[1]);
  return { rss: kib("VmRSS"), hwm: kib("VmHWM") };
}

/**
 * Resets the process's VmHWM to its current RSS (Linux >= 4.0), so the peak
 * read after the PUT is the PUT's, not the wrk runs' before it.
 */
export async function resetPeak(pid: number): Promise<boolean> {
  try {
    await Deno.writeTextFile(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

// ---- main ----

async function machine(dir: string): Promise<string> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const cpu = cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "unknown";
  const nproc = (await run("nproc", [])).out.trim();
  const nginx = (await run(await ensureNginx(), ["-v"])).out.trim().replace(/^nginx version: /, "");
  const wrkVersion = (await run("wrk", ["-v"])).out.split(" Copyright")[0].trim();
  // The volumes' filesystem weighs on the direct floors (create, rename, unlink).
  const fs = (await run("findmnt", ["-no", "FSTYPE", "-T", dir])).out.trim() || "unknown";
  // Anything else running on the machine skews every figure: show it.
  const load = (await Deno.readTextFile("/proc/loadavg")).split(" ")[0];
  return [
    `Machine: ${nproc} CPUs, ${cpu}; load average ${load} at start`,
    `Deno ${Deno.version.deno}, ${nginx}, ${wrkVersion}`,
    `Volumes and index in ${dir} (${fs}; TMPDIR moves it)`,
  ].join("\n");
}

function progress(what: string) {
  console.error(`== ${what}`);
}

const FLAGS: { [name: string]: FlagSpec } = {
  seconds: { type: "int", default: 5, usage: "Seconds per measurement (wrk -d, thrash)" },
  "large-mb": { type: "int", default: 256, usage: "Size of the large PUT, in MiB" },
  "skip-large": { type: "bool", default: false, usage: "Skip the large PUT (a quick run)" },
};

function parse(args: string[]) {
  const { flags, positionals } = parseFlags(args, FLAGS);
  if (positionals.length > 0) throw new FlagError(`Unexpected argument "${positionals[0]}"`);
  if ((flags.seconds as number) < 1) throw new FlagError("-seconds must be at least 1");
  if ((flags["large-mb"] as number) < 1) throw new FlagError("-large-mb must be at least 1");
  return {
    seconds: flags.seconds as number,
    largeMb: flags["large-mb"] as number,
    skipLarge: flags["skip-large"] as boolean,
  };
}

async function bench(opts: ReturnType<typeof parse>, dir: string, children: Children) {
  const header = await machine(dir);
  const c = await startCluster(dir, children);
  const rows = await getRows(dir, children, c, opts.seconds);
  const t = await thrashRows(children, c, opts.seconds);
  rows.push(...t.rows);
  if (!opts.skipLarge) rows.push(...await largeRows(dir, c, opts.largeMb));
  console.log(`${header}\n\n${table(rows)}`);
  if (t.reasons.length > 0) console.log(`\nthrash failures:\n  ${t.reasons.join("\n  ")}`);
}

async function main(args: string[]): Promise<number> {
  let opts;
  try {
    opts = parse(args);
  } catch (err) {
    return flagExit(err, "deno task bench [flags]", FLAGS);
  }
  const dir = await Deno.makeTempDir({ prefix: "mkv-bench-" });
  // As a volume folder usually is: reachable by nginx's workers.
  await Deno.chmod(dir, 0o755);
  const children = new Children();
  const teardown = async () => {
    await children.stopAll();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const interrupted = () => teardown().finally(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  try {
    await bench(opts, dir, children);
    return 0;
  } catch (err) {
    console.error(`bench failed: ${err instanceof Error ? err.stack : err}`);
    return 1;
  } finally {
    await teardown();
    Deno.removeSignalListener("SIGINT", interrupted);
    Deno.removeSignalListener("SIGTERM", interrupted);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
