// What the index holds for a key, and how it is stored in Deno KV.
//
// States: "live" (readable), "unlinked" (virtually deleted; files kept, mkv's
// SOFT), "writing" (a PUT, DELETE or REBALANCE of this key is in progress or
// died midway; never readable). A key with no record does not exist (mkv's
// HARD). A "writing" record is also the per-key claim shared by every master
// on the index: it names its owner and the time its lease runs out.

import type { Checksum } from "./s3_checksum.ts";

export type State = "live" | "unlinked" | "writing";

export interface Record {
  state: State;
  /** Where the index says the key is (mkv's rvolumes), "host:port[/svNN]". */
  rvolumes: string[];
  /** Lowercase hex MD5 of the whole value, "" when unknown. */
  hash: string;
  /** Size of the value in bytes, -1 when unknown (e.g. rebuilt from mkv). */
  size: number;
  /**
   * Lease of a claim: owner id and expiry (ms since epoch). Always there on
   * "writing"; on a live record while a REPLACE of it is in progress.
   */
  owner?: string;
  until?: number;
  /** When the value was written (ms since epoch); S3's Last-Modified. */
  mtime?: number;
  /** What S3 clients said of the value (mkv's own API keeps none of it). */
  meta?: Meta;
  /**
   * A REPLACE (or a PUT over an unlinked key) about to rename its new value
   * over this one: the record it switches to and the temporary name the
   * value waits under on each of next.rec.rvolumes. Found with its lease
   * run out (its master died amid the renames), the switch is finished by
   * whoever reads it (lib/store.ts).
   */
  next?: Next;
}

export interface Next {
  rec: Record;
  tmp: string;
  /**
   * A PUT's switch over an unlinked value: finished, the key is live.
   * Without it an unlinked record stays unlinked once switched (an UNLINK
   * of an older version came after the REPLACE recorded its switch).
   */
  put?: boolean;
}

/** An S3 object's own metadata, kept from its upload. */
export interface Meta {
  /** Content-Type (also Content-Encoding etc. could go here later). */
  type?: string;
  /** S3's ETag when it is not the MD5 (multipart: "<md5 of md5s>-<parts>"). */
  etag?: string;
  /**
   * A multipart object's part sizes in order, as runs of [size, count]
   * (parts are mostly of one size): what GetObject's partNumber reads.
   */
  parts?: [number, number][];
  /** x-amz-meta-* headers, names lowercased without the prefix. */
  amz?: [string, string][];
  /** Standard headers kept as uploaded (Cache-Control, Content-Disposition, ...). */
  std?: [string, string][];
  /**
   * The x-amz-checksum-* the value was uploaded with (checked then), or its
   * parts' composite one: what GetObject answers with x-amz-checksum-mode.
   */
  checksum?: Checksum;
  /**
   * The object's tags (S3's object tagging), in key order: kept here alone,
   * as the rest of this metadata is (a rebuild, which reads the volumes,
   * cannot bring them back).
   */
  tags?: [string, string][];
}

/**
 * Whether a file of `length` bytes (-1: not said) can hold the value `rec`
 * names: one of its recorded size or, while a REPLACE switches it (`next`),
 * of the new value's, as a replica may hold either then. Any length fits a
 * size not known (a rebuilt record). One of another size is no copy of the
 * value: cut short (a disk's fault, a copy that died midway) or longer.
 */
export function fitsRecord(rec: Record, length: number): boolean {
  if (length < 0 || rec.size < 0 || length === rec.size) return true;
  const next = rec.next?.rec;
  return next !== undefined && (next.size < 0 || length === next.size);
}

/** The stored form: a plain object, so Deno KV's serializer keeps it small. */
interface Stored {
  s: 0 | 1 | 2;
  v: string[];
  h?: string;
  z?: number;
  o?: string;
  u?: number;
  m?: number;
  t?: string;
  e?: string;
  p?: [number, number][];
  x?: [string, string][];
  y?: [string, string][];
  c?: [string, string];
  /** Tags, added after the fields above: a record stored before them has none. */
  g?: [string, string][];
  /** The switch: its record, its temporary, and 1 for a PUT's (Next.put). */
  n?: [Stored, string] | [Stored, string, 1];
}

const STATES: State[] = ["live", "unlinked", "writing"];

export function fromRecord(rec: Record): Stored {
  const out: Stored = { s: STATES.indexOf(rec.state) as 0 | 1 | 2, v: rec.rvolumes };
  if (rec.hash) out.h = rec.hash;
  if (rec.size >= 0) out.z = rec.size;
  // A lease: always on "writing"; on a live key while it is replaced.
  if (rec.state === "writing" || rec.until !== undefined) {
    out.o = rec.owner ?? "";
    out.u = rec.until ?? 0;
  }
  if (rec.mtime !== undefined) out.m = rec.mtime;
  if (rec.meta?.type) out.t = rec.meta.type;
  if (rec.meta?.etag) out.e = rec.meta.etag;
  if (rec.meta?.parts?.length) out.p = rec.meta.parts;
  if (rec.meta?.amz?.length) out.x = rec.meta.amz;
  if (rec.meta?.std?.length) out.y = rec.meta.std;
  if (rec.meta?.checksum) out.c = [rec.meta.checksum.alg, rec.meta.checksum.value];
  if (rec.meta?.tags?.length) out.g = rec.meta.tags;
  if (rec.next) {
    const next = fromRecord(rec.next.rec);
    out.n = rec.next.put ? [next, rec.next.tmp, 1] : [next, rec.next.tmp];
  }
  return out;
}

/**
 * Reads a stored record. Also takes mkv's LevelDB value strings
 * ("[DELETED][HASH<md5>]vol1,vol2"), so an exported mkv index loads as is.
 * Returns null for anything else, which callers treat as corrupt.
 */
export function toRecord(value: unknown): Record | null {
  if (typeof value === "string") return fromMkvString(value);
  if (typeof value !== "object" || value === null) return null;
  const v = value as Partial<Stored>;
  if (
    !Array.isArray(v.v) || !v.v.every((x) => typeof x === "string") ||
    typeof v.s !== "number" || !STATES[v.s]
  ) {
    return null;
  }
  const rec: Record = {
    state: STATES[v.s],
    rvolumes: v.v,
    hash: v.h ?? "",
    size: v.z ?? -1,
  };
  if (rec.state === "writing" || v.u !== undefined) {
    rec.owner = v.o ?? "";
    rec.until = v.u ?? 0;
  }
  if (typeof v.m === "number") rec.mtime = v.m;
  if (
    v.t !== undefined || v.e !== undefined || v.p !== undefined || v.x !== undefined ||
    v.y !== undefined || v.c !== undefined || v.g !== undefined
  ) {
    rec.meta = {};
    if (typeof v.t === "string") rec.meta.type = v.t;
    if (typeof v.e === "string") rec.meta.etag = v.e;
    if (Array.isArray(v.p)) rec.meta.parts = v.p;
    if (Array.isArray(v.x)) rec.meta.amz = v.x;
    if (Array.isArray(v.y)) rec.meta.std = v.y;
    if (Array.isArray(v.c) && v.c.every((x) => typeof x === "string")) {
      rec.meta.checksum = { alg: v.c[0] as Checksum["alg"], value: v.c[1] };
    }
    if (Array.isArray(v.g)) rec.meta.tags = v.g;
  }
  if (Array.isArray(v.n) && typeof v.n[1] === "string") {
    const next = toRecord(v.n[0]);
    if (next) {
      rec.next = v.n[2] === 1 ? { rec: next, tmp: v.n[1], put: true } : { rec: next, tmp: v.n[1] };
    }
  }
  return rec;
}

function fromMkvString(ss: string): Record {
  let state: State = "live";
  if (ss.startsWith("DELETED")) {
    state = "unlinked";
    ss = ss.slice(7);
  }
  let hash = "";
  if (ss.startsWith("HASH")) {
    hash = ss.slice(4, 36);
    ss = ss.slice(36);
  }
  return { state, rvolumes: ss === "" ? [] : ss.split(","), hash, size: -1 };
}

/** mkv's own string form, for export and for the tests against its vectors. */
export function toMkvString(rec: Record): string {
  const deleted = rec.state === "live" ? "" : "DELETED";
  const hash = rec.hash ? `HASH${rec.hash}` : "";
  return deleted + hash + rec.rvolumes.join(",");
}
