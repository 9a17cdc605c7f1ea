// S3's object calls: Get/Head (streamed through the master: S3 clients do
// not follow redirects), Put, Copy, Delete, DeleteObjects.
import { base64, equal } from "./bytes.ts";
import { signedText } from "./s3_auth.ts";
import { isClaimed } from "./claim.ts";
import { CLIENT_CLOSED, type FanoutResult } from "./fanout.ts";
import { KEY_LIMIT, keyFits } from "./index_db.ts";
import { key2path } from "./keys.ts";
import { pool } from "./pool.ts";
import { plural } from "./progress.ts";
import { fitsRecord, type Meta, type Record } from "./record.ts";
import type { S3Request } from "./s3.ts";
import { checksumThrough, incompleteBody, readWhole, requireDigest } from "./s3_body.ts";
import {
  algorithmOf,
  type Checksum,
  checksumType,
  checksumXml,
  setChecksumHeaders,
} from "./s3_checksum.ts";
import { bucketExists, noSuchBucket, partNumberParam } from "./s3_list.ts";
import { headerTags, type Tags, withTags } from "./s3_tags.ts";
import {
  argumentError,
  parseDelete,
  refusalOf,
  S3Error,
  s3Error,
  xmlResponse,
  xmlText,
  xmlTime,
} from "./s3_xml.ts";
import { logRefused, logUnexpected } from "./log.ts";
import { recentErrors } from "./history.ts";
import { parseTarget, shownTarget } from "./target.ts";
import { received, sent, undone, unwritten } from "./sizes.ts";
import { otherSizes, type Outcome, passedOver, shuffled, type Store } from "./store.ts";
import { headFile, remoteGet, UnsatisfiableRange, VolumeError, volumeUrl } from "./volumes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The longest XML body read (1,000 keys to delete, 10,000 parts to complete). */
export const XML_MAX = 2 * 1024 * 1024;

/** S3 keeps at most 2 KB of user metadata. */
const META_MAX = 2048;

/** S3's ETag of a record, quoted. */
export function etagOf(rec: Record): string {
  return `"${rec.meta?.etag ?? rec.hash}"`;
}

export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

/** The headers every answer about an object carries. */
function objectHeaders(rec: Record): Headers {
  const h = new Headers({
    "Accept-Ranges": "bytes",
    "Content-Type": rec.meta?.type ?? "binary/octet-stream",
  });
  if (rec.hash || rec.meta?.etag) h.set("ETag", etagOf(rec));
  if (rec.mtime !== undefined) h.set("Last-Modified", httpDate(rec.mtime));
  for (const [name, value] of rec.meta?.amz ?? []) h.set(`x-amz-meta-${name}`, mailSafe(value));
  for (const [name, value] of rec.meta?.std ?? []) h.set(name, value);
  // As S3: the count, when there are tags (GetObjectTagging reads them).
  if (rec.meta?.tags?.length) h.set("x-amz-tagging-count", String(rec.meta.tags.length));
  return h;
}

/**
 * An x-amz-meta-* value as S3 answers it: ASCII as it is; beyond ASCII,
 * RFC 2047-encoded ("encoded as per RFC 2047 to make them mail-safe before
 * returning", S3's documentation), the text its bytes spell as signatures
 * read it (UTF-8 bytes as their characters, other bytes each its Latin-1
 * one) in UTF-8 and base64, one encoded word: `=?UTF-8?B?Y2Fmw6k=?=`.
 * Sent as stored, its bytes went out raw, which no S3 client decodes.
 */
function mailSafe(value: string): string {
  if (!/[\x80-\xff]/.test(value)) return value;
  return `=?UTF-8?B?${base64(new TextEncoder().encode(signedText(value)))}?=`;
}

/** S3's answer for a key with no live value. */
export function noSuchKey(): S3Error {
  return s3Error("NoSuchKey", "The specified key does not exist.");
}

/** A live record of the key, or NoSuchKey. `stop`: a stopping master's cut-off (Store.readEntry). */
export async function liveRecord(
  store: Store,
  key: Uint8Array,
  opts: { stop?: AbortSignal } = {},
): Promise<Record> {
  if (!keyFits(key)) throw keyTooLong();
  // Its ETag must name the bytes a replica gives: not while a REPLACE renames.
  const e = await store.readEntry(key, opts);
  if (!e || e.rec.state !== "live") {
    throw noSuchKey();
  }
  return e.rec;
}

/** Reads of a key overtaken by overwrites, one after another, before one is answered. */
export const OVERTAKEN_TRIES = 10;

/**
 * True while the key's record still names the value `rec` names, once a
 * volume has opened a file of it (its answer's headers came): no REPLACE has
 * begun renaming since `rec` was read (one records its switch first), so the
 * file opened holds `rec`'s bytes. A REBALANCE or a repair copies the same
 * bytes: it changes no more than the replicas.
 */
async function stillNamed(store: Store, key: Uint8Array, rec: Record): Promise<boolean> {
  const now = (await store.index.get(key))?.rec;
  return now !== undefined && sameValue(now, rec);
}

/** Whether the record `now` names, live, the value `rec` names. */
function sameValue(now: Record, rec: Record): boolean {
  return now.state === "live" && now.next === undefined && now.hash === rec.hash &&
    now.size === rec.size && now.mtime === rec.mtime && now.meta?.etag === rec.meta?.etag;
}

/**
 * True while the key's record still names `rec`'s value on `rec`'s replicas:
 * when every one of them has answered that it has no such file, the value
 * is gone (NoSuchKey). Otherwise a write or a move of the key since `rec`
 * was read took those files away (a DELETE, an overwrite, REBALANCE, the
 * rebalance tool: the copies left behind are deleted once the index names
 * the new ones), and the key is read again.
 */
async function stillThere(store: Store, key: Uint8Array, rec: Record): Promise<boolean> {
  const now = (await store.index.get(key))?.rec;
  return now !== undefined && sameValue(now, rec) &&
    now.rvolumes.length === rec.rvolumes.length &&
    now.rvolumes.every((v, i) => v === rec.rvolumes[i]);
}

/** A read overtaken by overwrites OVERTAKEN_TRIES times: clients retry a 503. */
export function overtaken(): S3Error {
  return s3Error("ServiceUnavailable", "The key is being overwritten: retry");
}

/** GetObject and HeadObject: the value from a replica that answers. */
export async function getObject(s3: S3Request, head: boolean): Promise<Response> {
  // A value overwritten between reading its record and opening its file is
  // read again: the answer's headers (ETag, conditions) name its bytes.
  for (let tries = 1;; tries++) {
    const out = await readObject(s3, head);
    if (out !== null) return out;
    if (tries === OVERTAKEN_TRIES) throw overtaken();
  }
}

/**
 * The record of the key as HeadObject finds it: live, and held whole by a
 * replica that answers (else NoSuchKey, or 503 when one did not answer),
 * read again when an overwrite overtook it. GetObjectAttributes' object.
 */
export async function headRecord(s3: S3Request): Promise<Record> {
  for (let tries = 1;; tries++) {
    const rec = await objectRecord(s3);
    if (await headAnswer(s3, rec, new Headers(), undefined) !== null) return rec;
    if (tries === OVERTAKEN_TRIES) throw overtaken();
  }
}

/** The key's live record; NoSuchKey, or NoSuchBucket when its bucket does not exist either. */
async function objectRecord(s3: S3Request): Promise<Record> {
  try {
    return await liveRecord(s3.store, s3.key, { stop: s3.stop });
  } catch (err) {
    // No such key: in a bucket that does not exist either, S3 says that.
    if (err instanceof S3Error && err.code === "NoSuchKey" && !await bucketExists(s3)) {
      throw noSuchBucket();
    }
    throw err;
  }
}

/** GetObject or HeadObject once; null when an overwrite overtook it. */
async function readObject(s3: S3Request, head: boolean): Promise<Response | null> {
  const rec = await objectRecord(s3);
  const headers = objectHeaders(rec);
  for (const [param, name] of OVERRIDES) {
    const value = s3.query.get(param);
    if (value !== undefined) headers.set(name, headerFrom(param, value));
  }
  const early = preconditions(s3.headers, rec);
  if (early === 304) return new Response(null, { status: 304, headers });
  if (early === 412) throw preconditionFailed();
  const part = partOf(s3, rec);
  if (part?.count !== undefined) headers.set("x-amz-mp-parts-count", String(part.count));
  const range = part ? part.range : singleRange(s3.headers.get("range"));
  // The object's checksum names the whole of it: not sent with a range or a
  // part, which clients would check against it.
  if (checksumMode(s3.headers) && !part && !range) {
    setChecksumHeaders(headers, rec.meta?.checksum);
  }
  if (head) return await headAnswer(s3, rec, headers, range);
  // The range worked out here, as for HEAD, when the size is known; nginx
  // gets only a plain "bytes=a-b" (or the header as is for a value of
  // unknown size, but for one S3 ignores, which nginx answers 416).
  let asked = range;
  if (range && rec.size >= 0) {
    const r = rangeOf(range, rec.size);
    if (r === "unsatisfiable") throw invalidRange(range, rec.size);
    asked = r ? `bytes=${r.start}-${r.end}` : undefined;
  } else if (range && rangeOf(range, Number.MAX_SAFE_INTEGER) === null) {
    asked = undefined;
  }
  const res = await openNamed(s3.store, s3.key, rec, { range: asked, signal: s3.signal });
  if (res === null) return null;
  for (const name of ["Content-Length", "Content-Range"]) {
    const v = res.headers.get(name);
    if (v !== null) headers.set(name, v);
  }
  if (!headers.has("Last-Modified")) {
    headers.set("Last-Modified", res.headers.get("Last-Modified") ?? httpDate(0));
  }
  const out = new Response(res.body, { status: res.status, headers });
  sent.set(out, Number(headers.get("Content-Length") ?? 0));
  return out;
}

/**
 * GetObject's partNumber: part n's bytes as a range, with the object's part
 * count when it is a multipart one (S3 sends the count only then). Part 1 of
 * an object not uploaded in parts is the whole of it. Null without partNumber.
 */
function partOf(
  s3: S3Request,
  rec: Record,
): { range: string | undefined; count?: number } | null {
  if (!s3.query.has("partNumber")) return null;
  const n = partNumberParam(s3.query);
  if (s3.headers.has("range")) {
    throw s3Error(
      "InvalidRequest",
      "Cannot specify both Range header and partNumber query parameter",
    );
  }
  const runs = rec.meta?.parts ?? [];
  if (rec.meta?.etag && runs.length === 0) {
    // Completed before part sizes were kept, or with too many sizes to keep.
    throw s3Error(
      "NotImplemented",
      "The part sizes of this object are not known: read it by Range",
    );
  }
  const count = runs.reduce((all, [, times]) => all + times, 0);
  let start = 0;
  let before = 0;
  for (const [size, times] of runs) {
    if (n <= before + times) {
      start += (n - before - 1) * size;
      // An empty part (an empty object's only one) has no range: all of nothing.
      return { range: size > 0 ? `bytes=${start}-${start + size - 1}` : undefined, count };
    }
    start += size * times;
    before += times;
  }
  if (count > 0 || n > 1) {
    throw s3Error("InvalidPartNumber", "The requested partnumber is not satisfiable");
  }
  // The whole object as one part; an empty one (or one of unknown size) as it is.
  return { range: rec.size > 0 ? `bytes=0-${rec.size - 1}` : undefined };
}

async function headAnswer(
  s3: S3Request,
  rec: Record,
  headers: Headers,
  range: string | undefined,
): Promise<Response | null> {
  const path = key2path(s3.key);
  let down = 0;
  // Files of another size than the value's: no copy of it (lib/store.ts's locate).
  let otherSize: Map<string, number> | undefined;
  for (const v of rec.rvolumes) {
    const { status, length } = await headFile(volumeUrl(v, path), s3.store.opts.voltimeout, {
      signal: s3.signal,
    });
    if (status === 200 && fitsRecord(rec, length)) {
      // Of a value of unknown size (a record converted from Go mkv's
      // index), the file's: the size GetObject's body has.
      const size = rec.size >= 0 ? rec.size : length;
      const r = range && size >= 0 ? rangeOf(range, size) : null;
      if (r === "unsatisfiable") throw invalidRange(range!, size);
      if (r) {
        headers.set("Content-Range", `bytes ${r.start}-${r.end}/${size}`);
        headers.set("Content-Length", String(r.end - r.start + 1));
        return new Response(null, { status: 206, headers });
      }
      if (size >= 0) headers.set("Content-Length", String(size));
      return new Response(null, { status: 200, headers });
    }
    if (status === 200) otherSize = passedOver(otherSize, v, { size: length, key: s3.key, rec });
    else if (status !== 404) down++;
  }
  if (down > 0) throw s3Error("ServiceUnavailable", "No replica of the key answers");
  if (!await stillThere(s3.store, s3.key, rec)) return null;
  throw noWholeReplica(rec, otherSize);
}

/**
 * A live key whose every replica answered that it has no such file, or one
 * of another size (`otherSize`, holdsBytes'): the value is lost. NoSuchKey,
 * as S3 has no other answer for it: retrying would not help (503 says it would).
 */
function noWholeReplica(
  rec: Record,
  otherSize: Map<string, number | null> | undefined,
): S3Error {
  if (!otherSize) return s3Error("NoSuchKey", "Every replica of the key is missing");
  return s3Error(
    "NoSuchKey",
    `Every replica of the key is missing or of another size (${otherSizes(rec, otherSize)})`,
  );
}

/**
 * The size of the file a volume's answer to a GET is of: its Content-Length
 * (200) or its Content-Range's (206); -1 when not said.
 */
function fileSize(res: Response): number {
  const size = res.status === 200
    ? res.headers.get("content-length")
    : /\/(\d+)$/.exec(res.headers.get("content-range") ?? "")?.[1];
  return size === null || size === undefined ? -1 : Number(size);
}

/**
 * openReplica, then stillNamed: the volume's answer while the key's record
 * still names `rec`, else null (an overwrite overtook the read, or a write
 * or move of the key took away every file `rec` names). The body
 * is cancelled unless it is handed back, the check's failure included (the
 * index locked past retrying): an unread one kept its volume's connection
 * and its stall watch (which waits for a reader), for good once the volume
 * had sent it whole.
 */
export async function openNamed(
  store: Store,
  key: Uint8Array,
  rec: Record,
  opts: { range?: string; signal: AbortSignal },
): Promise<Response | null> {
  const res = await openReplica(store, key, rec, opts);
  if (res === null) return null;
  let named = false;
  try {
    named = await stillNamed(store, key, rec);
  } finally {
    if (!named) await res.body?.cancel().catch(() => {});
  }
  return named ? res : null;
}

/**
 * Opens the value (or a range of it) on the first replica that gives it;
 * null when none has its file and the key's record has changed since `rec`.
 */
async function openReplica(
  store: Store,
  key: Uint8Array,
  rec: Record,
  opts: { range?: string; signal: AbortSignal },
): Promise<Response | null> {
  const path = key2path(key);
  let last: unknown = null;
  let missing = 0;
  // Files of another size than the value's: no copy of it, passed over.
  let otherSize: Map<string, number | null> | undefined;
  for (const v of shuffled(rec.rvolumes)) {
    let res: Response;
    try {
      res = await remoteGet(volumeUrl(v, path), { ...opts, stall: store.opts.stall });
    } catch (err) {
      // The client gone, or a stopping master's cut-off: no other replica is tried.
      if (opts.signal.aborted) throw err;
      if (err instanceof VolumeError && err.status === 416) {
        const size = err instanceof UnsatisfiableRange ? err.size : null;
        // A value of unknown size: the volume's 416 says how big it is.
        if (rec.size < 0) throw invalidRange(opts.range ?? "", size);
        // Of one of known size the range was checked first: this file is
        // shorter than the value.
        otherSize = passedOver(otherSize, v, { size, key, rec });
        continue;
      }
      if (err instanceof VolumeError && err.status === 404) missing++;
      last = err;
      continue;
    }
    const size = fileSize(res);
    if (fitsRecord(rec, size)) return res;
    await res.body?.cancel().catch(() => {});
    otherSize = passedOver(otherSize, v, { size, key, rec });
  }
  // Every replica says it has no such file (or one of another size): the
  // files went with a write or a move of the key since its record was read
  // (read again), or the value is lost: no such key, as HeadObject
  // answers; retrying would not help, which is what 503 says.
  if (missing + (otherSize?.size ?? 0) === rec.rvolumes.length) {
    if (!await stillThere(store, key, rec)) return null;
    throw noWholeReplica(rec, otherSize);
  }
  const whole = otherSize
    ? ` (and none that did holds it whole: ${otherSizes(rec, otherSize)})`
    : "";
  throw s3Error(
    "ServiceUnavailable",
    `No replica of the key answers: ${last instanceof Error ? last.message : last}${whole}`,
  );
}

/**
 * S3's 416: it names the Range asked for and the object's size (SDKs read
 * the size to ask again), as S3 does.
 */
function invalidRange(requested: string, size: number | null): S3Error {
  const err = s3Error("InvalidRange", "The requested range is not satisfiable");
  err.names.RangeRequested = requested;
  if (size !== null) err.names.ActualObjectSize = size;
  return err;
}

/** x-amz-checksum-mode: ENABLED, a read that asks for the object's checksum. */
function checksumMode(h: Headers): boolean {
  return h.get("x-amz-checksum-mode")?.trim().toUpperCase() === "ENABLED";
}

/**
 * One range, "bytes=a-b", "bytes=a-" or "bytes=-n": its unit in any case
 * and whitespace around the range taken, as RFC 9110 has them (nginx takes
 * them too; what S3 does with them is not documented); ignored otherwise,
 * as S3 ignores other forms (several ranges, another unit). Returned in
 * that plain form, which nginx is sent and an InvalidRange names.
 */
function singleRange(h: string | null): string | undefined {
  const range = h === null ? null : /^bytes=[ \t]*(\d+-\d*|-\d+)[ \t]*$/i.exec(h.trim());
  return range ? `bytes=${range[1]}` : undefined;
}

/**
 * A "bytes=a-b", "bytes=a-" or "bytes=-n" range of a value of `size` bytes:
 * the bytes, "unsatisfiable" (416), or null for a range to ignore (b < a:
 * not a valid range, so the whole value is sent, as RFC 9110 and S3 do).
 */
export function rangeOf(
  range: string,
  size: number,
): { start: number; end: number } | "unsatisfiable" | null {
  const [a, b] = range.slice(6).split("-");
  let start: number, end: number;
  if (a === "") {
    const n = Number(b);
    if (n === 0 || size === 0) return "unsatisfiable";
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    if (b !== "" && Number(b) < start) return null;
    end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  }
  if (start >= size) return "unsatisfiable";
  return { start, end };
}

/** x-amz-copy-source-if-*: true when one does not hold (S3 answers 412 to any). */
export function copyConditions(h: Headers, src: Record): boolean {
  return preconditions(h, src, "x-amz-copy-source-") !== 0;
}

export function preconditionFailed(): S3Error {
  return s3Error(
    "PreconditionFailed",
    "At least one of the preconditions you specified did not hold",
  );
}

/** Whether an If-Match style list ("*", quoted or bare ETags) names the record. */
function etagMatches(list: string, rec: Record): boolean {
  const etag = etagOf(rec);
  return list.split(",").map((s) => s.trim())
    .some((t) => t === "*" || t === etag || `"${t}"` === etag);
}

/** If-Match and friends (`prefix`: x-amz-copy-source-): a status to answer with, or 0. */
function preconditions(h: Headers, rec: Record, prefix = ""): number {
  const ifMatch = h.get(`${prefix}if-match`);
  if (ifMatch !== null && !etagMatches(ifMatch, rec)) return 412;
  const ifNoneMatch = h.get(`${prefix}if-none-match`);
  if (ifNoneMatch !== null && etagMatches(ifNoneMatch, rec)) return 304;
  if (rec.mtime !== undefined) {
    const second = Math.floor(rec.mtime / 1000) * 1000;
    const since = Date.parse(h.get(`${prefix}if-unmodified-since`) ?? "");
    if (ifMatch === null && !Number.isNaN(since) && second > since) return 412;
    const modified = Date.parse(h.get(`${prefix}if-modified-since`) ?? "");
    if (ifNoneMatch === null && !Number.isNaN(modified) && second <= modified) return 304;
  }
  return 0;
}

/** Content-Type and x-amz-meta-* of an upload. */
export function metaFrom(h: Headers): Meta {
  const meta: Meta = {};
  const type = h.get("content-type");
  if (type) meta.type = type;
  const amz: [string, string][] = [];
  let size = 0;
  for (const [name, value] of h) {
    if (!name.startsWith("x-amz-meta-")) continue;
    amz.push([name.slice(11), value]);
    size += name.length - 11 + value.length;
  }
  if (size > META_MAX) {
    throw s3Error(
      "MetadataTooLarge",
      `Your metadata headers exceed the maximum allowed (${META_MAX} bytes).`,
    );
  }
  if (amz.length > 0) meta.amz = amz;
  const std: [string, string][] = [];
  for (const name of STANDARD) {
    let value = h.get(name);
    // aws-chunked is how the body came, not what the object is.
    if (name === "content-encoding" && value !== null) {
      value = value.split(",").map((e) => e.trim()).filter((e) => e && e !== "aws-chunked")
        .join(", ");
    }
    if (value) std.push([name, value]);
    size += value?.length ?? 0;
  }
  // The record holding them must stay small (Deno KV: 64 KiB a value; a
  // REPLACE's record holds the old value's and the new one's): the
  // Content-Type counts too, or one of 30 KB was stored, and an overwrite
  // by another failed 500, its files left behind.
  size += type?.length ?? 0;
  if (size > 4 * META_MAX) {
    throw s3Error("MetadataTooLarge", "Your metadata headers exceed the maximum allowed.");
  }
  if (std.length > 0) meta.std = std;
  return meta;
}

/** Headers S3 keeps with an object and sends back with it. */
const STANDARD = [
  "cache-control",
  "content-disposition",
  "content-encoding",
  "content-language",
  "expires",
];

/** GetObject's response-* parameters (presigned downloads) and the header each sets. */
const OVERRIDES: [string, string][] = [
  ["response-content-type", "content-type"],
  ["response-content-language", "content-language"],
  ["response-expires", "expires"],
  ["response-cache-control", "cache-control"],
  ["response-content-disposition", "content-disposition"],
  ["response-content-encoding", "content-encoding"],
];

/**
 * A response-* parameter's value as its header carries it, else 400
 * InvalidArgument naming it: a header holds bytes (S3's words for a
 * character past U+00FF) and no line break or NUL, which Headers refuses
 * with a TypeError (the GetObject was a 500 with a stack in the log).
 */
function headerFrom(param: string, value: string): string {
  if (/[\0\r\n]/.test(value)) {
    throw argumentError("Header value cannot hold a line break or NUL.", param, value);
  }
  if (/[\u0100-\u{10FFFF}]/u.test(value)) {
    throw argumentError("Header value cannot be represented using ISO-8859-1.", param, value);
  }
  return value;
}

export interface WriteOptions {
  body: ReadableStream<Uint8Array>;
  contentLength: number | null;
  meta: Meta;
  /** A digest to check before the value goes live; null when it holds. */
  check?: (written: FanoutResult) => S3Error | null;
  /** If-None-Match: * — only when the key does not exist. */
  create?: boolean;
  /** If-Match: only over the live value with one of these ETags. */
  ifMatch?: string;
  signal: AbortSignal;
  /** A stopping master's cut-off (PutOptions.stop). */
  stop?: AbortSignal;
}

/** An object written: its record, live. */
export interface Written {
  record: Record;
  /**
   * What the write left undone, which S3's answer (200) has no place for:
   * its store outcome's message ("Old copy on ... not deleted", "the new
   * value is live on 2 of 3 replicas: REBALANCE the key ..."), for the log
   * and the status page's errors (see noteUndone).
   */
  undone?: string;
}

/** A value made live as `record`, its store outcome saying `message`. */
function written(record: Record, message: string | undefined): Written {
  return message ? { record, undone: message } : { record };
}

/**
 * Writes a whole object: PUT when the key is free, REPLACE when it is live
 * (S3 overwrites; readers see the old value or the new one, never neither).
 */
export async function writeObject(
  store: Store,
  key: Uint8Array,
  w: WriteOptions,
): Promise<Written> {
  if (!keyFits(key)) throw keyTooLong();
  let refused: S3Error | null = null;
  const opts = {
    contentLength: w.contentLength,
    signal: w.signal,
    stop: w.stop,
    meta: w.meta,
    md5: true,
    allowEmpty: true,
    check: (written: FanoutResult): Outcome | null => {
      refused = w.check?.(written) ?? null;
      return refused ? { status: refused.status, message: refused.message } : null;
    },
  };
  if (w.ifMatch !== undefined) {
    const ifMatch = w.ifMatch;
    const out = await store.replace(key, w.body, {
      ...opts,
      expect: (prev) => etagMatches(ifMatch, prev) ? null : { status: 412 },
    });
    if (out.status === 404) throw noSuchKey();
    if (out.status === 412) throw preconditionFailed();
    if (refused) throw refused;
    if (out.record) return written(out.record, out.message);
    throw failure(out);
  }
  // A 404 (the key went between PUT's 403 and REPLACE) or a 409 (another
  // write of the key in flight) is answered before any of the body is read,
  // so the write can go again with the same body. S3 never answers 409 to an
  // unconditional PutObject (the last writer wins): such writes wait for the
  // one in flight. If-None-Match: * answers its 409 at once, as before.
  const conflicts = new Backoff(w.signal);
  for (let vanished = 0; vanished < 3;) {
    let out = await store.put(key, w.body, opts);
    // S3 overwrites, but not a value the index lacks: a write that failed
    // would delete it, and rebuild is what puts it back. Clients retry a 503.
    if (out.unindexed) throw unindexedRefusal(out);
    if (out.status === 403 && w.create) throw preconditionFailed();
    if (out.status === 403) out = await store.replace(key, w.body, opts);
    if (out.status === 404) {
      vanished++;
      continue;
    }
    if (out.status === 409 && !w.create && !w.body.locked && await conflicts.wait()) continue;
    if (refused) throw refused;
    if (out.record) return written(out.record, out.message);
    throw failure(out);
  }
  throw s3Error("OperationAborted", "The key changed state repeatedly while it was written: retry");
}

/** How long an unconditional write waits in all for other writes of its key. */
export const CONFLICT_WAIT_MS = 10_000;

/**
 * Pauses between tries of a write that met another write of its key: 10 ms,
 * doubling up to 1 s, until CONFLICT_WAIT_MS of pauses (or the client hung
 * up); then wait() says false and the 409 is answered.
 */
export class Backoff {
  #pause = 10;
  #waited = 0;
  constructor(readonly signal: AbortSignal) {}

  async wait(): Promise<boolean> {
    if (this.#waited >= CONFLICT_WAIT_MS || this.signal.aborted) return false;
    const ms = this.#pause;
    this.#waited += ms;
    this.#pause = Math.min(ms * 2, 1000);
    await new Promise((resolve) => setTimeout(resolve, ms));
    return !this.signal.aborted;
  }
}

/**
 * A write refused by the incomplete index's question to the volumes (store
 * Outcome `unindexed`): 503 whatever the volumes said, as clients retry it.
 */
function unindexedRefusal(out: Outcome): S3Error {
  const err = s3Error("ServiceUnavailable", out.message!);
  err.unwritten = true;
  return err;
}

/** A store outcome that did not make the value live, in S3's words. */
export function failure(out: Outcome): S3Error {
  const message = out.message ?? `Status ${out.status}`;
  switch (out.status) {
    case 400:
      return incompleteBody();
    case 408:
      return s3Error(
        "RequestTimeout",
        "Your socket connection to the server was not read from or written to within the timeout period",
      );
    case 409:
      return s3Error(
        "OperationAborted",
        "A conflicting operation is in progress on this key: retry",
      );
    case 411:
      return s3Error("MissingContentLength", message);
    case 414:
      return keyTooLong();
    case CLIENT_CLOSED:
      // The client's doing (lib/fanout.ts ClientGone): logged and counted
      // 499 as mkv's writes are, no error line; its answer, which no one
      // reads, has no body (lib/s3_xml.ts errorResponse).
      return new S3Error("ClientClosedRequest", message, CLIENT_CLOSED);
    case 503:
      // A volume did not answer: S3's clients retry this one with backoff.
      return s3Error("ServiceUnavailable", message);
    case 507:
      // A volume's disk is full. S3 has no such code (MinIO's is
      // XMinioStorageFull); the AWS SDKs retry a 500 (four times, the
      // whole body each time), not a 507.
      return s3Error("InsufficientStorage", message);
    default:
      return s3Error("InternalError", message);
  }
}

/** A key too long for the index (with its bucket; a zero byte counts twice). */
export function keyTooLong(): S3Error {
  return s3Error("KeyTooLongError", `Your key is too long (with its bucket, ${KEY_LIMIT})`);
}

/**
 * What S3 refuses of a new object (PutObject, CopyObject's destination,
 * CreateMultipartUpload) before any of it is read: a key over S3's limit, a
 * storage class the store does not keep, an ACL.
 */
export function checkNewObject(s3: S3Request) {
  checkKeyLength(s3.object);
  checkStorageClass(s3.headers);
  checkObjectAcl(s3.headers);
}

/**
 * x-amz-storage-class: every value is kept as S3's STANDARD (replicas on
 * the volumes, read at once), so STANDARD is the only class taken; another
 * (GLACIER's restores, ONEZONE_IA's one zone, ...) would be stored as
 * STANDARD while the client believed otherwise. Refused as S3 refuses a
 * class it does not offer.
 */
function checkStorageClass(h: Headers) {
  const asked = h.get("x-amz-storage-class");
  if (asked === null || asked.trim() === "STANDARD") return;
  const err = s3Error(
    "InvalidStorageClass",
    "The storage class you specified is not valid: this gateway stores every object as STANDARD",
  );
  err.names.StorageClassRequested = asked;
  throw err;
}

/**
 * ACLs, as S3 takes them in a bucket that has them disabled (Object
 * Ownership's BucketOwnerEnforced, S3's default for new buckets): one key
 * pair owns and reaches everything, so a canned ACL that grants only the
 * owner (private, bucket-owner-full-control) is taken and changes nothing,
 * and any other (public-read, ...), or a grant (x-amz-grant-*), is refused
 * rather than left unkept: a client told its object is public-read that is
 * not, or believing one private that mkv's API serves to anyone.
 */
function checkObjectAcl(h: Headers) {
  const acl = h.get("x-amz-acl")?.trim();
  const ownerOnly = acl === undefined || acl === "private" || acl === "bucket-owner-full-control";
  if (ownerOnly && !hasGrant(h)) return;
  throw s3Error("AccessControlListNotSupported", "The bucket does not allow ACLs");
}

/** Whether a request grants access through an x-amz-grant-* header. */
export function hasGrant(h: Headers): boolean {
  for (const [name] of h) if (name.startsWith("x-amz-grant-")) return true;
  return false;
}

/** S3's longest object key, in bytes of UTF-8. */
export const OBJECT_KEY_MAX = 1024;

/**
 * A write's object key held to S3's limit: KeyTooLongError naming its size,
 * as S3's. Only writes: a longer key written through mkv's API (up to the
 * index's limit) is still read, copied from and deleted through S3.
 */
function checkKeyLength(object: Uint8Array) {
  if (object.length <= OBJECT_KEY_MAX) return;
  const err = s3Error("KeyTooLongError", "Your key is too long");
  err.names.Size = object.length;
  err.names.MaxSizeAllowed = OBJECT_KEY_MAX;
  throw err;
}

/**
 * A write's conditions (PutObject, CompleteMultipartUpload): If-None-Match: *
 * creates only, If-Match replaces only the value it names.
 */
export function writeConditions(h: Headers): { create: boolean; ifMatch?: string } {
  const ifNoneMatch = h.get("if-none-match");
  if (ifNoneMatch !== null && ifNoneMatch.trim() !== "*") {
    throw s3Error("NotImplemented", "If-None-Match on a write takes only *");
  }
  return { create: ifNoneMatch !== null, ifMatch: h.get("if-match") ?? undefined };
}

/**
 * The conditions of a write checked against the key as it is now, before
 * anything is written (writeObject checks them again, atomically, as it
 * makes the value live): 412 or NoSuchKey at once. `stop`: a stopping
 * master's cut-off, at which the reading of the key stops finishing a dead
 * master's REPLACE of it (Store.entry), throwing ShuttingDown (503, the
 * switch left for the key's next request).
 */
export async function checkWriteConditions(
  store: Store,
  key: Uint8Array,
  cond: { create: boolean; ifMatch?: string },
  opts: { stop?: AbortSignal } = {},
): Promise<void> {
  if (!cond.create && cond.ifMatch === undefined) return;
  if (!keyFits(key)) throw keyTooLong();
  const e = await store.entry(key, { stop: opts.stop });
  const live = e?.rec.state === "live" ? e.rec : null;
  if (cond.create && live) throw preconditionFailed();
  if (cond.ifMatch !== undefined) {
    if (!live) throw noSuchKey();
    if (!etagMatches(cond.ifMatch, live)) throw preconditionFailed();
  }
}

export async function putObject(s3: S3Request): Promise<Response> {
  checkNewObject(s3);
  const { headers } = s3;
  // CreateMultipartUpload's and CopyObject's header, which some clients
  // (minio-go) send with a PutObject's checksum too: one that names no
  // algorithm is refused as theirs is, not taken as none.
  algorithmOf(headers.get("x-amz-checksum-algorithm"), "x-amz-checksum-algorithm");
  const meta = withTags(metaFrom(headers), headerTags(headers));
  const body = s3.body();
  const cond = writeConditions(headers);
  let w: Written;
  try {
    w = await writeObject(s3.store, s3.key, {
      body: body.body,
      contentLength: body.contentLength,
      meta,
      check: (w) => {
        const bad = body.check(w.md5);
        // Kept once checked (a trailer's comes after the body): the record
        // is made from `meta` after this check.
        meta.checksum = body.checksum() ?? undefined;
        return bad;
      },
      ...cond,
      signal: s3.signal,
      stop: s3.stop,
    });
  } catch (err) {
    throw body.failure() ?? err;
  }
  const rec = w.record;
  const res = new Response(null, { headers: { ETag: etagOf(rec) } });
  setChecksumHeaders(res.headers, rec.meta?.checksum);
  received.set(res, rec.size);
  noteUndone(res, w);
  return res;
}

/**
 * What write `w` left undone, on its answer `res` (a 200 with no place to
 * say it): lib/server.ts logs it as a warning line and lists it among the
 * status page's errors, as an mkv write's.
 */
function noteUndone(res: Response, w: Written) {
  if (w.undone !== undefined) undone.set(res, w.undone);
}

/** Headers that make a CopyObject onto itself with COPY legal in S3. */
const SELF_COPY_CHANGES = ["x-amz-storage-class", "x-amz-website-redirect-location"];

/** CopyObject: the value read from a replica of the source, written anew. */
export async function copyObject(s3: S3Request): Promise<Response> {
  checkNewObject(s3);
  const sourceKey = copySource(s3.headers.get("x-amz-copy-source")!);
  const directive = directiveOf(s3.headers, "metadata");
  // The tags REPLACE gives the copy, judged before the source is read;
  // COPY's are the source's.
  const tags = directiveOf(s3.headers, "tagging") === "REPLACE"
    ? headerTags(s3.headers)
    : undefined;
  // If-None-Match: * and If-Match are about the destination, as PutObject's.
  const cond = writeConditions(s3.headers);
  // A source overwritten between reading its record and opening its file
  // is read again, as GetObject's: its record, its conditions, its bytes.
  for (let tries = 1;; tries++) {
    const out = await copyOnce(s3, { sourceKey, directive, tags, cond });
    if (out !== null) return out;
    if (tries === OVERTAKEN_TRIES) throw overtaken();
  }
}

/**
 * CopyObject once; null when an overwrite of the source overtook it before
 * its file was opened (the write then failed before taking any of it: the
 * destination is as it was).
 */
async function copyOnce(
  s3: S3Request,
  asked: {
    sourceKey: Uint8Array;
    directive: Directive;
    /** x-amz-tagging, with x-amz-tagging-directive REPLACE; undefined: the source's tags. */
    tags: Tags | undefined;
    cond: { create: boolean; ifMatch?: string };
  },
): Promise<Response | null> {
  const { headers, store } = s3;
  const { sourceKey, directive, cond } = asked;
  const src = await liveRecord(store, sourceKey, { stop: s3.stop }).catch((err) =>
    copyFailure(s3, sourceKey, err)
  );
  if (copyConditions(headers, src)) throw preconditionFailed();
  await checkWriteConditions(store, s3.key, cond, { stop: s3.stop });
  const meta = withTags(copiedMeta(headers, directive, src), asked.tags ?? src.meta?.tags);
  // S3 gives a copy a checksum: of the algorithm asked for, else the source's.
  const alg = algorithmOf(headers.get("x-amz-checksum-algorithm"), "x-amz-checksum-algorithm") ??
    src.meta?.checksum?.alg;
  const copy: Copy = { sourceKey, src, directive, meta, alg, cond };
  const w = equal(sourceKey, s3.key) ? await copyOntoItself(s3, copy) : await copyValue(s3, copy);
  if (w === null) return null;
  const rec = w.record;
  const res = xmlResponse("CopyObjectResult", {
    LastModified: xmlTime(rec.mtime ?? Date.now()),
    ETag: etagOf(rec),
    ...checksumXml(rec.meta?.checksum),
  });
  noteUndone(res, w);
  return res;
}

/** A CopyObject as copyOnce settled it, for the write that makes it. */
interface Copy {
  sourceKey: Uint8Array;
  /** The source's live record. */
  src: Record;
  /** x-amz-metadata-directive: COPY or REPLACE. */
  directive: Directive;
  /** The copy's metadata. */
  meta: Meta;
  /** The copy's checksum algorithm, if it gets one. */
  alg: Checksum["alg"] | undefined;
  /** The destination's write conditions (writeConditions). */
  cond: { create: boolean; ifMatch?: string };
}

/**
 * Where a copy's metadata (or its tags) comes from: the source (COPY) or
 * the request (REPLACE).
 */
type Directive = "COPY" | "REPLACE";

/**
 * x-amz-metadata-directive or x-amz-tagging-directive (`of`), COPY when not
 * sent; any other value is S3's 400 InvalidArgument naming it ("Unknown
 * metadata directive."), before the source is read.
 */
function directiveOf(headers: Headers, of: "metadata" | "tagging"): Directive {
  const name = `x-amz-${of}-directive`;
  const sent = headers.get(name);
  const directive = (sent ?? "COPY").toUpperCase();
  if (directive === "COPY" || directive === "REPLACE") return directive;
  throw argumentError(`Unknown ${of} directive.`, name, sent!);
}

/** The metadata a copy gets, by its directive: the source's or the request's. */
function copiedMeta(headers: Headers, directive: Directive, src: Record): Meta {
  const meta: Meta = directive === "COPY" ? { ...src.meta } : metaFrom(headers);
  // A multipart ETag names the parts, which a copy does not keep; its
  // checksum is the copy's own (copyOnce's alg).
  delete meta.etag;
  delete meta.parts;
  delete meta.checksum;
  return meta;
}

/**
 * A copy onto itself: its record's metadata rewritten, no data moved. Null
 * when an overwrite of the key overtook the value the copy read (copyOnce).
 */
async function copyOntoItself(s3: S3Request, copy: Copy): Promise<Written | null> {
  // S3 copies an object onto itself when the copy changes something: its
  // metadata (REPLACE), or its storage class or website redirect, which
  // the gateway does not keep (a copy then keeps the metadata it has).
  if (copy.directive === "COPY" && !SELF_COPY_CHANGES.some((h) => s3.headers.has(h))) {
    throw s3Error(
      "InvalidRequest",
      "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
    );
  }
  const conflicts = new Backoff(s3.signal);
  while (true) {
    const done = await rewriteMeta(s3.store, s3.key, {
      src: copy.src,
      meta: copy.meta,
      ifMatch: copy.cond.ifMatch,
      alg: copy.alg,
      stop: s3.stop,
    });
    if (done === "overtaken") return null;
    if (done !== null) return { record: done };
    if (!await conflicts.wait()) throw failure({ status: 409 });
  }
}

/**
 * A copy to another key: the source's value read from a replica and
 * written anew. Null when an overwrite of the source overtook it (copyOnce).
 */
async function copyValue(s3: S3Request, copy: Copy): Promise<Written | null> {
  const { store } = s3;
  const { sourceKey, src, meta, alg } = copy;
  if (!keyFits(s3.key)) throw keyTooLong();
  // Opened when the write first reads it: not while it waits for another
  // write of the key (an unread GET would trip its stall watch).
  const stale = overtaken();
  const source = lazyBody(async () => {
    const res = await openNamed(store, sourceKey, src, { signal: s3.signal });
    // Overwritten since its record was read: the copy conditions, the
    // metadata copied, were the old value's (a source with no MD5 known,
    // rebuilt, has no check of the bytes to catch it).
    if (res === null) throw stale;
    return res.body!;
  });
  const sum = alg ? checksumThrough(alg) : null;
  try {
    return await writeObject(store, s3.key, {
      body: sum ? sum.through(source.body) : source.body,
      contentLength: src.size >= 0 ? src.size : null,
      meta,
      check: (w) => {
        if (src.hash && w.md5 !== src.hash) {
          return s3Error("InternalError", "The copy does not have the source's MD5");
        }
        if (sum) meta.checksum = sum.checksum();
        return null;
      },
      ...copy.cond,
      signal: s3.signal,
      stop: s3.stop,
    });
  } catch (err) {
    const failed = source.failure();
    if (failed === stale) return null;
    throw failed ?? volumesFault(err);
  }
}

/**
 * A write whose body is a volume's (a copy), failed as if the client's body
 * had: ended early (IncompleteBody) or stalled (RequestTimeout). The store's
 * failure then, which S3's clients retry, not the client's.
 */
export function volumesFault(err: unknown): unknown {
  if (!(err instanceof S3Error)) return err;
  if (err.code !== "IncompleteBody" && err.code !== "RequestTimeout") return err;
  return s3Error("InternalError", "The source could not be read whole from the volumes");
}

/**
 * A stream opened by its first read (highWaterMark 0: not before), and the
 * S3 error opening it failed with, if it did.
 */
export function lazyBody(open: () => Promise<ReadableStream<Uint8Array>>): {
  body: ReadableStream<Uint8Array>;
  failure(): S3Error | null;
} {
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let failure: S3Error | null = null;
  const body = new ReadableStream<Uint8Array>({
    async pull(ctl) {
      if (reader === null) {
        try {
          reader = (await open()).getReader();
        } catch (err) {
          if (err instanceof S3Error) failure = err;
          throw err;
        }
      }
      const r = await reader.read();
      if (r.done) ctl.close();
      else ctl.enqueue(r.value);
    },
    cancel(reason) {
      return reader?.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return { body, failure: () => failure };
}

/**
 * Buckets are unversioned: an object's one version is "null". Any other id
 * is refused, as S3 does, so that deleting or reading an old version never
 * deletes or reads the current value.
 */
export function checkVersionId(id: string | undefined) {
  if (id !== undefined && id !== "null") {
    throw s3Error("InvalidArgument", "Invalid version id specified");
  }
}

/** "/bucket/key" or "bucket/key", URL-encoded, maybe with "?versionId=". */
export function copySource(header: string): Uint8Array {
  const [raw, query] = header.split("?", 2);
  checkVersionId(new URLSearchParams(query ?? "").get("versionId") ?? undefined);
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw s3Error("InvalidArgument", "x-amz-copy-source is not URL-encoded right");
  }
  const key = decoded.startsWith("/") ? decoded : "/" + decoded;
  if (key.indexOf("/", 1) < 0) {
    throw s3Error("InvalidArgument", "x-amz-copy-source must name a bucket and a key");
  }
  return encoder.encode(key);
}

/**
 * A copy's missing source (CopyObject, UploadPartCopy): named, as S3 does;
 * NoSuchBucket when its bucket is missing too.
 */
export async function copyFailure(
  s3: S3Request,
  sourceKey: Uint8Array,
  err: unknown,
): Promise<never> {
  if (!(err instanceof S3Error) || err.code !== "NoSuchKey") throw err;
  const slash = sourceKey.indexOf(0x2f, 1);
  const bucket = decoder.decode(sourceKey.subarray(1, slash));
  if (!await bucketExists({ ...s3, bucket })) {
    const missing = noSuchBucket();
    missing.names.BucketName = bucket;
    throw missing;
  }
  err.names.Key = decoder.decode(sourceKey.subarray(slash + 1));
  throw err;
}

/**
 * Copy onto itself with new metadata: one index commit, no data moved. Null
 * when another write of the key is in flight or won the commit: try again.
 * "overtaken" when the key no longer holds `src`, the value the copy read
 * (its conditions and the metadata it copies were that value's): read the
 * key again, as a copy overtaken by an overwrite of its source is.
 * The value's checksum (as `src` has it) stays when it is of the whole value and of `alg`;
 * a composite one named the parts, which the copy is no longer made of.
 * `stop`: a stopping master's cut-off, at which the commit, while still
 * unsent, is dropped (Index.cas: it rejects with ShuttingDown, a 503).
 */
async function rewriteMeta(
  store: Store,
  key: Uint8Array,
  opts: {
    src: Record;
    meta: Meta;
    ifMatch: string | undefined;
    alg: Checksum["alg"] | undefined;
    stop?: AbortSignal;
  },
): Promise<Record | null | "overtaken"> {
  const { src, meta, ifMatch, alg, stop } = opts;
  const e = await store.entry(key, { stop });
  if (!e || e.rec.state !== "live") throw noSuchKey();
  if (isClaimed(e.rec)) return null;
  if (!sameValue(e.rec, src)) return "overtaken";
  if (ifMatch !== undefined && !etagMatches(ifMatch, e.rec)) throw preconditionFailed();
  // The checksum as the copy read it, as its metadata and its algorithm
  // were: the key's record now may be another copy's of the same value,
  // made in the same millisecond (sameValue cannot tell them apart), and
  // its checksum, dropped for another algorithm, is not this copy's to drop.
  const kept = src.meta?.checksum;
  const checksum = kept && kept.alg === alg && checksumType(kept) === "FULL_OBJECT"
    ? kept
    : undefined;
  const rec: Record = { ...e.rec, meta: { ...meta, checksum }, mtime: Date.now() };
  return await store.index.cas(key, e.versionstamp, rec, { signal: stop }) === null ? null : rec;
}

export async function deleteObject(s3: S3Request): Promise<Response> {
  if (!keyFits(s3.key)) throw keyTooLong();
  const wasLive = (await s3.store.entry(s3.key, { stop: s3.stop }))?.rec.state === "live";
  // A missing key is 204, but not in a bucket that does not exist either.
  if (!wasLive && !await bucketExists(s3)) throw noSuchBucket();
  if (wasLive) await keepBucket(s3);
  const ifMatch = s3.headers.get("if-match") ?? undefined;
  const deleted = await deleteKey(s3.store, s3.key, { ifMatch, stop: s3.stop });
  const res = new Response(null, { status: 204 });
  // As S3, the version deleted is named when one was asked for (null, the only one).
  const version = s3.query.get("versionId");
  if (version !== undefined) res.headers.set("x-amz-version-id", version);
  if (!deleted) unwritten.add(res);
  return res;
}

/**
 * S3 removes a bucket only by DeleteBucket: one known only through its keys
 * is recorded as made before S3's DeleteObject(s) removes any of them, so it
 * stays (empty) until DeleteBucket, as clients emptying a bucket then expect.
 * Before, not after: a reader between the last delete and the record (or a
 * master killed there) would find no bucket at all.
 */
async function keepBucket(s3: S3Request): Promise<void> {
  if (await s3.store.index.bucket(s3.bucket) !== null) return;
  await s3.store.index.createBucket(s3.bucket, Date.now(), { signal: s3.stop });
}

/**
 * Deletes a key; S3 answers the same whether or not it existed. An unlinked
 * key, which S3 does not see, is kept for RELINK (or mkv's own DELETE).
 * False when there was none to delete: nothing was written. `stop`: as
 * Store.delete's.
 */
async function deleteKey(
  store: Store,
  key: Uint8Array,
  opts: { ifMatch?: string; stop?: AbortSignal },
): Promise<boolean> {
  const { ifMatch, stop } = opts;
  if (!keyFits(key)) throw keyTooLong();
  // If-Match (S3's conditional delete): only the value it names, or with *
  // any live value; 412 otherwise, and NoSuchKey when there is none.
  const missing: Outcome = { status: 404 };
  const expect = ifMatch === undefined
    ? undefined
    : (prev: Record | null): Outcome | null =>
      prev === null ? missing : etagMatches(ifMatch, prev) ? null : { status: 412 };
  const out = await store.delete(key, { keepUnlinked: true, expect, askVolumes: true, stop });
  if (out === missing) throw noSuchKey();
  // A value the incomplete index lacks: it cannot be deleted (no record
  // names its files), and answered deleted, it would come back with
  // rebuild. Clients retry a 503.
  if (out.unindexed) throw unindexedRefusal(out);
  if (out.status === 412) throw preconditionFailed();
  if (out.status === 204 || out.status === 404) return out.status === 204;
  if (out.status === 403) throw new S3Error("AccessDenied", out.message ?? "Protected");
  throw failure(out);
}

/** DeleteObjects: POST /bucket?delete, an answer per key. */
export async function deleteObjects(s3: S3Request): Promise<Response> {
  if (!await bucketExists(s3)) throw noSuchBucket();
  requireDigest(s3.headers);
  const xml = await readWhole(s3.body(), XML_MAX);
  const { keys, versions, etags, quiet } = parseDelete(xmlText(xml));
  await keepBucket(s3);
  // As S3, each answer names the version asked for (null, the only one).
  const results: { Key: string; VersionId?: string; Code?: string; Message?: string }[] = keys
    .map((k, i) => ({ Key: k, VersionId: versions[i] }));
  // Whether every key's answer is a delete made (fenced), none a record read.
  let allWritten = true;
  const refused: S3Error[] = [];
  // Up to 1,000 keys: a few at a time, not 3,000 volume calls at once.
  await pool(results.entries(), 16, async ([i, r]) => {
    try {
      checkVersionId(versions[i]);
      const key = encoder.encode(`/${s3.bucket}/${keys[i]}`);
      if (!await deleteKey(s3.store, key, { ifMatch: etags[i], stop: s3.stop })) {
        allWritten = false;
      }
    } catch (err) {
      allWritten = false;
      const e = err instanceof S3Error ? err : refusalOf(err);
      if (e === null) logUnexpected(`S3 POST /${s3.bucket}?delete`, err);
      else if (e.status >= 500) refused.push(e);
      r.Code = e?.code ?? "InternalError";
      r.Message = e?.message ?? String(err);
    }
  });
  // Answered in a 200 the edge does not log nor list: said here, once for
  // the request, as a 5xx would be.
  if (refused.length > 0) {
    const { status, message } = refused[0];
    const reason = `${refused.length} of ${plural(keys.length, "key")}: ${message}`;
    logRefused(`S3 POST /${s3.bucket}?delete`, status, reason);
    recentErrors.add(`POST ${shownTarget(parseTarget(s3.req.url))} ${status}`, reason);
  }
  const res = xmlResponse("DeleteResult", {
    Deleted: quiet ? [] : results.filter((r) => !r.Code),
    Error: results.filter((r) => r.Code),
  });
  if (!allWritten) unwritten.add(res);
  return res;
}
