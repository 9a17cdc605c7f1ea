// The flags every subcommand shares (mkv's names and defaults), and turning
// them into the store's options.
import { FlagError, type FlagSpec, type FlagValues } from "./flags.ts";
import type { StoreOptions } from "./store.ts";
import type { Credentials } from "./s3_auth.ts";
import { LOG_FORMATS, type LogFormat } from "./log.ts";

export const FLAGS: { [name: string]: FlagSpec } = {
  port: { type: "int", default: 3000, usage: "Port for the server to listen on" },
  db: {
    type: "string",
    default: "",
    usage: "Path to the index (a Deno KV file or folder, or a KV Connect https:// URL)",
    required: true,
  },
  volumes: {
    type: "string",
    default: "",
    usage: "Volumes to use for storage, comma separated host:port",
    required: true,
  },
  replicas: { type: "int", default: 3, usage: "Amount of replicas to make of the data" },
  subvolumes: { type: "int", default: 10, usage: "Amount of subvolumes, disks per machine" },
  protect: { type: "bool", default: false, usage: "Force UNLINK before DELETE" },
  fallback: { type: "string", default: "", usage: "Fallback server for missing keys (host:port)" },
  md5sum: {
    type: "bool",
    default: true,
    usage: "Calculate and store MD5 checksum of values (S3 writes always do: it is their ETag)",
  },
  voltimeout: {
    type: "duration",
    default: 1000,
    usage: "Volume servers must answer HEAD/listing in this time or are considered down " +
      "(value transfers, deletes and renames: 10x, at least 2s)",
  },
  colocate: {
    type: "bool",
    default: false,
    usage:
      "Place keys sharing a folder (up to their last /) on the same volumes; changing it is a rebalance",
  },
  lease: {
    type: "duration",
    default: 30_000,
    usage: "How long a dead master's claim on a key blocks it",
  },
  drain: {
    type: "duration",
    default: 30_000,
    usage: "How long a stopping master (SIGTERM) lets requests in flight finish before it " +
      "cuts them off (503)",
  },
  v: {
    type: "bool",
    default: false,
    usage: "server: verbose output, one log line per request (rebuild, rebalance and verify " +
      "take it, as mkv's one binary takes every flag, and write nothing more for it)",
  },
  s3: {
    type: "bool",
    default: false,
    usage: "Serve the S3 gateway with no keys set (signatures unchecked, as mkv); keys turn it on",
  },
  "s3-access-key": {
    type: "string",
    default: "",
    usage: "S3 access key every S3 request must be signed with (or $MKV_S3_ACCESS_KEY)",
  },
  "s3-secret-key": {
    type: "string",
    default: "",
    usage: "S3 secret key (or $MKV_S3_SECRET_KEY); set both keys or neither " +
      "(neither: S3 signatures are not checked)",
  },
  "s3-domain": {
    type: "string",
    default: "",
    usage: "The S3 gateway's domain: a request to <bucket>.<domain> names its bucket in its " +
      "Host (virtual-hosted style); others stay path-style",
  },
  log: {
    type: "string",
    default: "text",
    usage: "Format of every line a command writes (-v requests, volume failures, messages, " +
      "errors): text or json",
  },
};

export function logFormat(flags: FlagValues): LogFormat {
  const f = String(flags.log);
  if (!(LOG_FORMATS as readonly string[]).includes(f)) {
    throw new FlagError(`Bad -log "${f}": expected text or json`);
  }
  return f as LogFormat;
}

/**
 * A volume or -fallback: host:port (a name, IPv4 or [IPv6]); without a
 * port, port 80 (as mkv, whose Go client takes "host" so).
 */
const HOST_PORT = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::(\d{1,5}))?$/;

/** Whether `v` is a host:port (or host) with a port from 1 to 65535. */
function isHostPort(v: string): boolean {
  const m = HOST_PORT.exec(v);
  return m !== null && (m[1] === undefined || (Number(m[1]) >= 1 && Number(m[1]) <= 65535));
}

/**
 * One spelling of a host:port: the host lowercased (host names ignore case),
 * the port a number, 80 when none. Placement hashes the name as written.
 */
function canonicalVolume(v: string): string {
  const port = HOST_PORT.exec(v)![1];
  const host = port === undefined ? v : v.slice(0, v.lastIndexOf(":"));
  return `${host.toLowerCase()}:${port === undefined ? 80 : Number(port)}`;
}

/** The longest -voltimeout and -lease, ms (24h). */
const MAX_DURATION = 86_400_000;

export function storeOptions(flags: FlagValues): StoreOptions {
  const volumes = String(flags.volumes).split(",").map((v) => v.trim()).filter((v) => v !== "");
  const replicas = flags.replicas as number;
  const subvolumes = flags.subvolumes as number;
  if (volumes.length === 0) {
    throw new FlagError("-volumes is required (e.g. -volumes localhost:3001,localhost:3002)");
  }
  for (const v of volumes) {
    if (!isHostPort(v)) {
      throw new FlagError(`Bad volume "${v}": expected host:port (port 1 to 65535)`);
    }
  }
  const seen = new Map<string, string>();
  for (const v of volumes) {
    const first = seen.get(canonicalVolume(v));
    if (first !== undefined) {
      throw new FlagError(`-volumes names one volume twice: "${first}" and "${v}"`);
    }
    seen.set(canonicalVolume(v), v);
  }
  const fallback = String(flags.fallback);
  // Misses are redirected to http://<fallback><path>: anything else breaks the URL.
  if (fallback && !isHostPort(fallback)) {
    throw new FlagError(`Bad -fallback "${fallback}": expected host:port (port 1 to 65535)`);
  }
  if (replicas < 1) throw new FlagError("-replicas must be at least 1");
  if (subvolumes < 1 || subvolumes > 256) throw new FlagError("-subvolumes must be from 1 to 256");
  if (volumes.length < replicas) {
    throw new FlagError(
      `The number of volumes (${volumes.length}) must be at least the number of replicas (${replicas})`,
    );
  }
  const voltimeout = flags.voltimeout as number;
  if (voltimeout <= 0) throw new FlagError("-voltimeout must be positive");
  // A timer longer than 2^31-1 ms (about 24 days) fires at once: the stall
  // (10x -voltimeout) and the lease waits must stay well below that.
  if (voltimeout > MAX_DURATION) throw new FlagError("-voltimeout must be at most 24h");
  const lease = flags.lease as number;
  // A lease that has run out before the write starts loses every claim.
  if (lease <= 0) throw new FlagError("-lease must be positive");
  if (lease > MAX_DURATION) throw new FlagError("-lease must be at most 24h");
  return {
    volumes,
    replicas,
    subvolumes,
    protect: flags.protect as boolean,
    colocate: flags.colocate as boolean,
    md5sum: flags.md5sum as boolean,
    voltimeout,
    // Long enough for nginx to rename a large temp file into place.
    stall: Math.max(10 * voltimeout, 2_000),
    fallback,
    lease,
    owner: `${Deno.hostname()}:${Deno.pid}:${crypto.randomUUID().slice(0, 8)}`,
  };
}

/**
 * The S3 gateway's options: on with keys (flags or environment), or with
 * -s3 and no keys (any signature accepted); null when off.
 */
export function s3Options(
  flags: FlagValues,
): { creds: Credentials | null; domain: string } | null {
  const creds = s3Credentials(flags);
  const domain = s3Domain(flags);
  if (creds || flags.s3) return { creds, domain };
  if (domain) {
    throw new FlagError("-s3-domain is the S3 gateway's: turn the gateway on (-s3 or S3 keys)");
  }
  return null;
}

/** A host name: labels of letters, digits and "-", joined by dots. */
const HOST_NAME = /^[a-z0-9-]+(\.[a-z0-9-]+)*$/;

/** -s3-domain, lowercased (host names are case-insensitive), "" when unset. */
function s3Domain(flags: FlagValues): string {
  const raw = String(flags["s3-domain"]);
  // A fully qualified name's final dot names the same host.
  const domain = raw.trim().toLowerCase().replace(/\.$/, "");
  if (domain !== "" && !HOST_NAME.test(domain)) {
    throw new FlagError(
      `Bad -s3-domain "${raw}": expected a host name such as s3.example.com (no scheme, no port)`,
    );
  }
  return domain;
}

/** The S3 gateway's keys from the flags or the environment; null when unset. */
function s3Credentials(flags: FlagValues): Credentials | null {
  const access = s3Key(flags, "access");
  const secret = s3Key(flags, "secret");
  if (!access.key && !secret.key) return null;
  if (!access.key || !secret.key) {
    // Named where the one set came from: a unit's Environment= is no flag.
    const [set, unset] = access.key ? [access, secret] : [secret, access];
    throw new FlagError(
      `An S3 ${set.kind} key is set (${set.from}) but no ${unset.kind} key ` +
        `(-s3-${unset.kind}-key or $MKV_S3_${unset.kind.toUpperCase()}_KEY): set both or neither`,
    );
  }
  return { accessKey: access.key, secretKey: secret.key };
}

/** One S3 key, from its flag or else its environment variable, and which of them set it. */
function s3Key(
  flags: FlagValues,
  kind: "access" | "secret",
): { kind: string; key: string; from: string } {
  const flag = String(flags[`s3-${kind}-key`]);
  if (flag) return { kind, key: flag, from: `-s3-${kind}-key` };
  const name = `MKV_S3_${kind.toUpperCase()}_KEY`;
  return { kind, key: Deno.env.get(name) ?? "", from: `$${name}` };
}

/** -drain, checked, ms: 0 (cut off at once) to 24h. */
export function drainDeadline(flags: FlagValues): number {
  const ms = flags.drain as number;
  if (ms < 0) throw new FlagError("-drain must not be negative");
  if (ms > MAX_DURATION) throw new FlagError("-drain must be at most 24h");
  return ms;
}

/** -port, checked: 0 (any free port) to 65535. */
export function listenPort(flags: FlagValues): number {
  const port = flags.port as number;
  if (port < 0 || port > 65535) throw new FlagError("-port must be from 0 to 65535");
  return port;
}

/**
 * Refuses a -volumes entry that is this master itself (a local name or
 * address, on its -port): each replica it wrote there would come back to it
 * as the PUT of a new key, and so on without end.
 */
export function refuseSelf(volumes: readonly string[], port: number): void {
  if (port === 0) return;
  const local = localNames();
  for (const v of volumes) {
    const canonical = canonicalVolume(v);
    const at = canonical.lastIndexOf(":");
    const host = canonical.slice(0, at);
    if (Number(canonical.slice(at + 1)) !== port) continue;
    if (local.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host)) {
      throw new FlagError(
        `-volumes names this master itself (${v}: -port is ${port}): ` +
          `-volumes names nginx volumes (deno task volume DIR)`,
      );
    }
  }
}

/** Names and addresses of this machine, lowercased (IPv6 ones also in brackets). */
function localNames(): Set<string> {
  const names = new Set(["localhost", "0.0.0.0", "[::1]", "[::]"]);
  try {
    names.add(Deno.hostname().toLowerCase());
    for (const i of Deno.networkInterfaces()) {
      names.add(i.address.toLowerCase());
      names.add(`[${i.address.toLowerCase()}]`);
    }
  } catch {
    // No permission to list them: the names above only.
  }
  return names;
}

/** What a master runs with, from its flags. */
export interface ServerSettings {
  port: number;
  opts: StoreOptions;
  /** -drain, ms. */
  deadline: number;
  db: string;
  s3: { creds: Credentials | null; domain: string } | null;
}

/**
 * Every flag a master takes, checked (a FlagError for the first wrong one),
 * before it touches a volume or the index; `deno task up` checks its
 * master's so before it starts a volume.
 */
export function serverSettings(flags: FlagValues): ServerSettings {
  const port = listenPort(flags);
  const opts = storeOptions(flags);
  const deadline = drainDeadline(flags);
  const db = requireDb(flags);
  const s3 = s3Options(flags);
  refuseSelf(opts.volumes, port);
  return { port, opts, deadline, db, s3 };
}

export function requireDb(flags: FlagValues): string {
  const db = String(flags.db);
  if (!db) throw new FlagError("-db is required: the path of the index");
  return db;
}

/**
 * A port from the environment (`PORT` of volume and up): decimal digits
 * only, from 1 to `max`; null when it is anything else (Number() would take
 * "0x10", "1e3" or " 3001" for ports).
 */
export function envPort(raw: string, max = 65535): number | null {
  if (!/^\d{1,5}$/.test(raw)) return null;
  const port = Number(raw);
  return port >= 1 && port <= max ? port : null;
}
