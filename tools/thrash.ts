// `deno task thrash`: mkv's thrasher. Clients run write/read/delete cycles
// against a running master and check every answer:
//   PUT a fresh key (201), GET it through the redirect (200, the same bytes),
//   DELETE it (204).
// Once the time is up, every deleted key is read again (404), outside the
// timed run: the issue's cycle is PUT, GET, DELETE, and the check is not.
// With `-direct vol1,vol2,vol3` the same clients run the cycle straight
// against nginx instead (3 PUTs, 1 GET, 3 DELETEs) on the files a master
// would write for the same key (mkv's /svNN/ab/cd/<base64> paths): the
// floor a master's cycle is measured against (tools/bench.ts). `-flat` puts
// them in one folder of each volume instead, which nginx does faster (no
// folders to create or walk).
import { key2path, key2volume } from "../lib/keys.ts";
import { FlagError, flagExit, type FlagSpec, parseFlags } from "../lib/flags.ts";
import { plural } from "../lib/progress.ts";

export interface ThrashOptions {
  /** The master, e.g. http://127.0.0.1:3000; ignored when `direct` is set. */
  url?: string;
  /** host:port of nginx volumes: run the direct cycle against them. */
  direct?: string[];
  /** Direct cycle: files in one folder, not at mkv's paths. */
  flat?: boolean;
  clients: number;
  /** Total cycles to run; ignored when `seconds` is set. */
  cycles?: number;
  /** Run for this long instead of a number of cycles. */
  seconds?: number;
  /** Bytes per value. */
  size: number;
}

export interface ThrashResult {
  /** Cycles run, failed ones included. */
  cycles: number;
  seconds: number;
  failures: number;
  /** The first few failures, one line each. */
  reasons: string[];
}

/**
 * One cycle on a fresh random value: what went wrong (null when every answer
 * was right), and the URL that must answer 404 now.
 */
type Cycle = (value: Uint8Array<ArrayBuffer>) => Promise<{ reason: string | null; gone: string }>;

const MAX_REASONS = 5;

export async function thrash(opts: ThrashOptions): Promise<ThrashResult> {
  const cycle = opts.direct
    ? directCycle(opts.direct, opts.flat ?? false)
    : masterCycle(opts.url ?? "");
  const deadline = opts.seconds ? performance.now() + opts.seconds * 1000 : Infinity;
  const limit = opts.seconds ? Infinity : opts.cycles ?? 2000;
  const result: ThrashResult = { cycles: 0, seconds: 0, failures: 0, reasons: [] };
  const fail = (reason: string) => {
    result.failures++;
    if (result.reasons.length < MAX_REASONS) result.reasons.push(reason);
  };
  const gone: string[] = [];
  const started = performance.now();
  // Clients share one counter, so `cycles` is a total, as in mkv's thrasher.
  const client = async () => {
    while (result.cycles < limit && performance.now() < deadline) {
      result.cycles++;
      const { reason, gone: url } = await cycle(randomBytes(opts.size));
      if (reason === null) gone.push(url);
      else fail(reason);
    }
  };
  await Promise.all(Array.from({ length: opts.clients }, client));
  result.seconds = (performance.now() - started) / 1000;
  // Every key deleted must read as gone.
  let next = 0;
  const checker = async () => {
    while (next < gone.length) {
      const reason = await expect("GET after DELETE", gone[next++], {}, 404);
      if (reason !== null) fail(reason);
    }
  };
  await Promise.all(Array.from({ length: opts.clients }, checker));
  return result;
}

function masterCycle(master: string): Cycle {
  const base = master.replace(/\/+$/, "");
  return async (value) => {
    const url = `${base}/thrash/${crypto.randomUUID()}`;
    // fetch follows the 302 to the volume, so the GET checks the bytes there.
    const reason = await expect("PUT", url, { method: "PUT", body: value }, 201) ??
      await expect("GET", url, {}, 200, value) ??
      await expect("DELETE", url, { method: "DELETE" }, 204);
    if (reason !== null) await cleanup([url]);
    return { reason, gone: url };
  };
}

function directCycle(volumes: string[], flat: boolean): Cycle {
  const encoder = new TextEncoder();
  return async (value) => {
    const key = `/thrash/${crypto.randomUUID()}`;
    const bytes = encoder.encode(key);
    // As a master with the default -subvolumes 10 places the key.
    const urls = flat
      ? volumes.map((v) => `http://${v}${key}`)
      : key2volume(bytes, volumes, volumes.length, 10).map((v) => `http://${v}${key2path(bytes)}`);
    const one = urls[Math.floor(Math.random() * urls.length)];
    // The replicas in parallel, as the master writes and deletes them.
    const reason = firstOf(
      await Promise.all(urls.map((u) => expect("PUT", u, { method: "PUT", body: value }, 201))),
    ) ??
      await expect("GET", one, {}, 200, value) ??
      firstOf(await Promise.all(urls.map((u) => expect("DELETE", u, { method: "DELETE" }, 204))));
    if (reason !== null) await cleanup(urls);
    return { reason, gone: one };
  };
}

/**
 * One request; null when it answers `status` (and, given `same`, exactly
 * those bytes), else what went wrong. The body is always read, so the
 * connection goes back to fetch's pool.
 */
async function expect(
  what: string,
  url: string,
  init: RequestInit,
  status: number,
  same?: Uint8Array,
): Promise<string | null> {
  try {
    const res = await fetch(url, init);
    const body = await res.bytes();
    if (res.status !== status) {
      // An error's text says why; a value's bytes would say nothing.
      const said = res.status >= 400 ? new TextDecoder().decode(body.subarray(0, 200)).trim() : "";
      return `${what} ${url}: status ${res.status}, want ${status}${said ? `: ${said}` : ""}`;
    }
    if (same && !equalBytes(body, same)) {
      return `${what} ${url}: ${body.length} bytes differ from the ${same.length} written`;
    }
    return null;
  } catch (err) {
    return `${what} ${url}: ${err instanceof Error ? err.message : err}`;
  }
}

function firstOf(reasons: (string | null)[]): string | null {
  return reasons.find((r) => r !== null) ?? null;
}

/** After a failed cycle: best effort, so a run leaves no stray keys. */
async function cleanup(urls: string[]) {
  await Promise.all(
    urls.map((u) => fetch(u, { method: "DELETE" }).then((r) => r.body?.cancel(), () => {})),
  );
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** n random bytes (getRandomValues fills at most 64 KiB per call). */
export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

const FLAGS: { [name: string]: FlagSpec } = {
  master: {
    type: "string",
    default: "http://127.0.0.1:3000",
    usage: "The master to thrash (a URL, or host:port)",
  },
  direct: {
    type: "string",
    default: "",
    usage: "Comma separated nginx volumes (host:port): run the cycle straight against them",
  },
  clients: { type: "int", default: 16, usage: "Concurrent clients" },
  cycles: { type: "int", default: 2000, usage: "Total cycles (write, read, delete)" },
  seconds: { type: "int", default: 0, usage: "Run this many seconds instead of -cycles" },
  size: { type: "int", default: 1024, usage: "Bytes per value" },
  flat: {
    type: "bool",
    default: false,
    usage: "With -direct: files in one folder instead of at mkv's paths",
  },
};

const USAGE = "deno task thrash [flags]";

/**
 * -master as a URL: host:port (as -volumes and -direct are written) is
 * http://host:port. Taken as is, every request failed "Url scheme
 * 'localhost' not supported", and the run counted them as the master's failures.
 */
function masterUrl(master: string): string {
  return master.includes("://") ? master : `http://${master}`;
}

async function main(args: string[]): Promise<number> {
  let flags;
  try {
    const parsed = parseFlags(args, FLAGS);
    if (parsed.positionals.length > 0) {
      throw new FlagError(`Unexpected argument "${parsed.positionals[0]}"`);
    }
    flags = parsed.flags;
    if ((flags.clients as number) < 1) throw new FlagError("-clients must be at least 1");
    if ((flags.size as number) < 1) throw new FlagError("-size must be at least 1");
    // Either would run no cycle at all and report success.
    if ((flags.seconds as number) < 0) throw new FlagError("-seconds must not be negative");
    if ((flags.cycles as number) < 1) throw new FlagError("-cycles must be at least 1");
  } catch (err) {
    return flagExit(err, USAGE, FLAGS);
  }
  const direct = String(flags.direct).split(",").filter((v) => v !== "");
  const r = await thrash({
    url: masterUrl(String(flags.master)),
    direct: direct.length > 0 ? direct : undefined,
    clients: flags.clients as number,
    cycles: flags.cycles as number,
    seconds: flags.seconds as number,
    size: flags.size as number,
    flat: flags.flat as boolean,
  });
  const target = direct.length > 0 ? `nginx ${direct.join(",")} (direct)` : flags.master;
  console.log(
    `${plural(r.cycles, "cycle")} against ${target} in ${r.seconds.toFixed(2)}s: ` +
      `${(r.cycles / r.seconds).toFixed(1)} cycles/s, ${plural(r.failures, "failure")}`,
  );
  for (const reason of r.reasons) console.log(`  ${reason}`);
  return r.failures > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
