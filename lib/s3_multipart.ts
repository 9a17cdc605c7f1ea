// S3 multipart uploads. Each part is a file on the volumes the key's hash
// puts it on, under a name rebuild and verify never take for a key
// ("/ab/cd/mpu.<upload>.<part>.<token>"), recorded in the index: so an
// upload survives a restart of the master. Complete streams the parts, in
// order, into the key's replicas as one value, then drops them.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { compare, equal, indexOf } from "./bytes.ts";
import { keyFits, type Part, type Upload } from "./index_db.ts";
import type { Meta } from "./record.ts";
import type { S3Request } from "./s3.ts";
import { checksumThrough, readWhole } from "./s3_body.ts";
import {
  type Algorithm,
  algorithmOf,
  type Checksum,
  checksumXml,
  compositeChecksum,
  sentChecksum,
} from "./s3_checksum.ts";
import { bucketExists, countParam, noSuchBucket, partNumberParam } from "./s3_list.ts";
import { headerTags, withTags } from "./s3_tags.ts";
import { ShuttingDown, SourceError } from "./fanout.ts";
import { type Md5Stream, md5Stream } from "./md5_stream.ts";
import { endings, received } from "./sizes.ts";
import {
  checkNewObject,
  checkWriteConditions,
  copyConditions,
  copyFailure,
  copySource,
  etagOf,
  failure,
  keyTooLong,
  liveRecord,
  metaFrom,
  openNamed,
  overtaken,
  OVERTAKEN_TRIES,
  preconditionFailed,
  volumesFault,
  writeConditions,
  writeObject,
  type Written,
  XML_MAX,
} from "./s3_objects.ts";
import {
  argumentError,
  type CompletePart,
  errorDocument,
  parseComplete,
  refusalOf,
  S3Error,
  s3Error,
  xmlDocument,
  type XmlNode,
  xmlResponse,
  xmlText,
  xmlTime,
} from "./s3_xml.ts";
import { remoteGet, volumeUrl } from "./volumes.ts";
import { logRefused, logUndone, logUnexpected } from "./log.ts";
import { recentErrors } from "./history.ts";
import { parseTarget, shownTarget } from "./target.ts";
import type { Store } from "./store.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function startsWith(bytes: Uint8Array, head: Uint8Array): boolean {
  return bytes.length >= head.length && equal(bytes.subarray(0, head.length), head);
}
/** S3's smallest part, but for the last. */
const MIN_PART = 5 * 1024 * 1024;
const OWNER = { ID: "mkv", DisplayName: "mkv" };

function keyText(s3: S3Request): string {
  return decoder.decode(s3.object);
}

export async function createUpload(s3: S3Request): Promise<Response> {
  checkNewObject(s3);
  if (!keyFits(s3.key)) throw keyTooLong();
  const id = crypto.randomUUID().replaceAll("-", "");
  // x-amz-tagging's tags, judged now, are the object's at Complete.
  const meta = withTags(metaFrom(s3.headers), headerTags(s3.headers));
  const upload: Upload = { key: s3.key, created: Date.now(), meta };
  const checksum = uploadChecksum(s3.headers);
  if (checksum) upload.checksum = checksum;
  await s3.store.index.createUpload(id, upload, { bucket: s3.bucket, signal: s3.stop });
  const res = xmlResponse("InitiateMultipartUploadResult", {
    Bucket: s3.bucket,
    Key: keyText(s3),
    UploadId: id,
  });
  if (checksum) {
    res.headers.set("x-amz-checksum-algorithm", checksum.alg.toUpperCase());
    res.headers.set("x-amz-checksum-type", checksum.type);
  }
  return res;
}

/**
 * CreateMultipartUpload's x-amz-checksum-algorithm, and the type of the
 * object's checksum (x-amz-checksum-type; S3's default is COMPOSITE, of the
 * parts' checksums, but for CRC64NVME, which has only FULL_OBJECT).
 */
function uploadChecksum(h: Headers): Upload["checksum"] {
  const alg = algorithmOf(h.get("x-amz-checksum-algorithm"), "x-amz-checksum-algorithm");
  if (alg === null) return undefined;
  const type = h.get("x-amz-checksum-type")?.trim().toUpperCase() ??
    (alg === "crc64nvme" ? "FULL_OBJECT" : "COMPOSITE");
  if (type !== "COMPOSITE" && type !== "FULL_OBJECT") {
    throw s3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.");
  }
  return { alg, type };
}

/** The upload, checked to belong to the request's key, or NoSuchUpload. */
async function openUpload(s3: S3Request, id: string) {
  const found = /^[0-9a-f]{32}$/.test(id) ? await s3.store.index.upload(id) : null;
  if (!found || !equal(found.upload.key, s3.key)) {
    throw s3Error(
      "NoSuchUpload",
      "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    );
  }
  return found;
}

/** Where a part goes: its upload (`id`, as read at `versionstamp`) and its number. */
interface PartSlot {
  id: string;
  versionstamp: string;
  n: number;
}

function partPath(id: string, n: number, token: string): string {
  const h = createHash("md5").update(`${id}.${n}`).digest("hex");
  return `/${h.slice(0, 2)}/${h.slice(2, 4)}/mpu.${id}.${n}.${token}`;
}

export async function uploadPart(s3: S3Request, id: string): Promise<Response> {
  const n = partNumberParam(s3.query);
  const { upload, versionstamp } = await openUpload(s3, id);
  if (s3.headers.has("x-amz-copy-source")) {
    return await uploadPartCopy(s3, { id, versionstamp, n }, upload.checksum?.alg);
  }
  const body = s3.body();
  let part: Part;
  try {
    part = await storePart(s3, { id, versionstamp, n }, {
      body: body.body,
      // Content-Length, or an aws-chunked body's x-amz-decoded-content-length.
      size: body.contentLength,
      check: (written) => body.check(written.md5),
      checksum: () => body.checksum(),
    });
  } catch (err) {
    throw body.failure() ?? err;
  }
  const res = new Response(null, { headers: { ETag: `"${part.md5}"` } });
  // As S3: clients name it again in CompleteMultipartUpload's list.
  if (part.checksum) res.headers.set(`x-amz-checksum-${part.checksum.alg}`, part.checksum.value);
  received.set(res, part.size);
  return res;
}

/**
 * UploadPartCopy: a part read from (a range of) another object, volume to
 * volumes; with the upload's checksum algorithm, its checksum computed.
 */
async function uploadPartCopy(
  s3: S3Request,
  slot: PartSlot,
  alg: Algorithm | undefined,
): Promise<Response> {
  const { headers } = s3;
  const source = copySource(headers.get("x-amz-copy-source")!);
  // A source overwritten between reading its record and opening its file
  // is opened again: its conditions are judged on the bytes copied.
  let opened;
  for (let tries = 1; !(opened = await openSource(s3, source)); tries++) {
    if (tries === OVERTAKEN_TRIES) throw overtaken();
  }
  const { res, length } = opened;
  const sum = alg ? checksumThrough(alg) : null;
  const body = sum ? sum.through(res.body!) : res.body!;
  let part: Part;
  try {
    part = await storePart(s3, slot, {
      body,
      // The volumes get the length, as CopyObject's do: no chunk framing
      // (when each chunk was copied to frame it, a 1 GiB part grew the
      // master's peak memory by 53-62 MiB; with the length 7-9 MiB). A
      // source cut short is still the volume's failure: volumesFault makes
      // the client's IncompleteBody an InternalError.
      size: length,
      check: (written) =>
        length !== null && written.bytes !== length
          ? s3Error("InternalError", "The source ended before the part was copied")
          : null,
      checksum: () => sum?.checksum() ?? null,
    });
  } catch (err) {
    throw volumesFault(err);
  } finally {
    if (!res.bodyUsed) body.cancel().catch(() => {});
  }
  return xmlResponse("CopyPartResult", {
    LastModified: xmlTime(part.mtime),
    ETag: `"${part.md5}"`,
    ...checksumXml(part.checksum, false),
  });
}

/**
 * UploadPartCopy's source checked (its conditions, its range) and opened:
 * the volume's answer and the length it must give, or null when an
 * overwrite of the source overtook it.
 */
async function openSource(
  s3: S3Request,
  source: Uint8Array,
): Promise<{ res: Response; length: number | null } | null> {
  const { headers, store } = s3;
  const src = await liveRecord(store, source, { stop: s3.stop }).catch((err) =>
    copyFailure(s3, source, err)
  );
  if (copyConditions(headers, src)) throw preconditionFailed();
  const rangeHeader = headers.get("x-amz-copy-source-range");
  let range: string | undefined;
  let length = src.size >= 0 ? src.size : null;
  if (rangeHeader !== null) {
    const r = copyRange(rangeHeader, src.size);
    range = `bytes=${r.start}-${r.end}`;
    length = r.end - r.start + 1;
  }
  const res = await openNamed(store, source, src, { range, signal: s3.signal });
  return res === null ? null : { res, length };
}

/**
 * x-amz-copy-source-range: "bytes=first-last", both within the source, or
 * 400 InvalidArgument in S3's words (not the 416 of a GetObject's Range).
 */
function copyRange(header: string, size: number): { start: number; end: number } {
  const refuse = (message: string) => argumentError(message, "x-amz-copy-source-range", header);
  const m = /^bytes=(\d+)-(\d+)$/.exec(header.trim());
  if (!m) {
    throw refuse(
      "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
    );
  }
  const [start, end] = [Number(m[1]), Number(m[2])];
  // Kept without its size (converted from Go mkv's index): copied whole only.
  if (size < 0) throw refuse("Range specified is not valid for a source object of unknown size");
  if (start > end || end >= size) {
    throw refuse(`Range specified is not valid for source object of size: ${size}`);
  }
  return { start, end };
}

/**
 * Writes a part's bytes to the volumes the key belongs on, under a fresh
 * name (a part uploaded twice never half-overwrites), checks them, and
 * records the part with its checksum (`checksum`, once checked); the part
 * it replaced, if any, is removed.
 */
async function storePart(
  s3: S3Request,
  slot: PartSlot,
  bytes: {
    body: ReadableStream<Uint8Array>;
    /** Its length when known: the volumes get it, and a body of another length fails the write. */
    size: number | null;
    check: (written: { bytes: number; md5: string }) => S3Error | null;
    checksum: () => Checksum | null;
  },
): Promise<Part> {
  const { id, versionstamp, n } = slot;
  const { body, size, check, checksum } = bytes;
  const { store } = s3;
  const volumes = store.kvolumes(s3.key);
  const path = partPath(id, n, crypto.randomUUID().slice(0, 8));
  let written;
  try {
    written = await store.writeFile(path, volumes, body, { signal: s3.signal, size });
    const bad = check(written);
    if (bad) throw bad;
  } catch (err) {
    await store.removeFile(path, volumes).catch(() => {});
    // The client's body failed (stalled: 408, ended early: 400): S3's
    // RequestTimeout or IncompleteBody, not an InternalError.
    if (err instanceof SourceError) throw failure({ status: err.status, message: err.message });
    throw err;
  }
  const part: Part = { path, volumes, md5: written.md5, size: written.bytes, mtime: Date.now() };
  const sum = checksum();
  if (sum) part.checksum = sum;
  let put;
  try {
    put = await store.index.putPart(id, versionstamp, n, part, { signal: s3.stop });
  } catch (err) {
    // Refused by the index (locked, fenced, its file gone), or dropped
    // unsent at a stopping master's cut-off: no record names the file,
    // which would be an orphan. Any other failure may have landed.
    if (refusalOf(err) || err instanceof ShuttingDown) {
      await store.removeFile(path, volumes).catch(() => {});
    }
    throw err;
  }
  if (put === null) {
    await store.removeFile(path, volumes).catch(() => {});
    throw s3Error("NoSuchUpload", "The upload was completed or aborted meanwhile");
  }
  if (put.replaced) await store.removeFile(put.replaced.path, put.replaced.volumes).catch(() => {});
  return part;
}

export async function listParts(s3: S3Request, id: string): Promise<Response> {
  const { upload } = await openUpload(s3, id);
  const max = countParam(s3.query, "max-parts");
  const marker = countParam(s3.query, "part-number-marker", { cap: Infinity, absent: 0 });
  const all = [...await s3.store.index.parts(id)].sort((a, b) => a[0] - b[0])
    .filter(([n]) => n > marker);
  const page = all.slice(0, max);
  // max-parts=0: an empty page, not truncated (as S3's max-keys=0).
  const truncated = max > 0 && all.length > max;
  return xmlResponse("ListPartsResult", {
    Bucket: s3.bucket,
    Key: keyText(s3),
    UploadId: id,
    Initiator: OWNER,
    Owner: OWNER,
    StorageClass: "STANDARD",
    PartNumberMarker: marker,
    NextPartNumberMarker: truncated ? page.at(-1)![0] : undefined,
    MaxParts: max,
    IsTruncated: truncated,
    Part: page.map(([n, p]) => ({
      PartNumber: n,
      LastModified: xmlTime(p.mtime),
      ETag: `"${p.md5}"`,
      Size: p.size,
      ...checksumXml(p.checksum, false),
    })),
    Initiated: xmlTime(upload.created),
    ChecksumAlgorithm: upload.checksum?.alg.toUpperCase(),
    ChecksumType: upload.checksum?.type,
  });
}

export async function completeUpload(s3: S3Request, id: string): Promise<Response> {
  // A retried Complete (the client missed the answer) gets the same answer.
  const done = await completedEtag(s3, id);
  if (done !== null) return await answerAgain(s3, id, done);
  const { upload, versionstamp } = await openUpload(s3, id);
  // If-None-Match: * and If-Match, as PutObject's: answered with their own
  // status when they do not hold now; the upload stays, to retry or abort.
  const cond = writeConditions(s3.headers);
  // Its x-amz-checksum-* is the object's, not the XML's (objectChecksum).
  const xml = await readWhole(s3.body(false), XML_MAX);
  const asked = parseComplete(xmlText(xml));
  const parts = chosenParts(asked, await s3.store.index.parts(id));
  checkObjectSize(s3.headers.get("x-amz-mp-object-size"), parts);
  const planned = objectChecksum(s3.headers, upload, parts);
  await checkWriteConditions(s3.store, s3.key, cond, { stop: s3.stop });
  const md5s = createHash("md5");
  for (const p of parts) md5s.update(Buffer.from(p.md5, "hex"));
  const etag = `${md5s.digest("hex")}-${parts.length}`;
  // As S3: 200 at once, then spaces while the parts are copied (a client
  // would time out on a silent multi-GB Complete), then the result or an
  // <Error>. A client that hangs up does not stop it: the object goes live.
  // A stopping master's cut-off does, until the value is live (PUT's).
  return keptAlive(s3, async () => {
    const meta = { ...upload.meta, etag, parts: sizeRuns(parts) };
    const w = await joinParts(s3, { id, parts, planned, meta, cond });
    if (typeof w === "string") {
      // Another Complete of this upload won: its answer is this one's too.
      return { xml: xmlDocument("CompleteMultipartUploadResult", completeResult(s3, w)) };
    }
    const rec = w.record;
    await endCompleted(s3, { id, versionstamp, etag: etagOf(rec) });
    const xml = xmlDocument("CompleteMultipartUploadResult", {
      ...completeResult(s3, etagOf(rec)),
      ...checksumXml(rec.meta?.checksum),
    });
    return { xml, undone: w.undone };
  });
}

/**
 * Ends upload `id` (read as `versionstamp`), whose value went live as
 * `etag`: recorded as completed before the parts go, so a Complete still
 * reading them finds the answer when they vanish. Then the upload and every
 * part of it go, those uploaded since the parts were read too (endUpload
 * lists them once no more can come). Cut off by a stopping master meanwhile
 * (a write unsent, or refused by an index locked at the cut), what is left
 * is left: the object stands, answered as made, and the upload stays listed
 * as a master killed there leaves it (a retry answers the same, an Abort
 * ends it).
 */
async function endCompleted(
  s3: S3Request,
  done: { id: string; versionstamp: string; etag: string },
): Promise<void> {
  const { id, versionstamp, etag } = done;
  const { index } = s3.store;
  try {
    await index.completed(id, { key: s3.key, etag }, { signal: s3.stop });
    const ended = await index.endUpload(id, versionstamp, { signal: s3.stop });
    if (ended) await removeParts(s3.store, ended);
  } catch (err) {
    if (!(err instanceof ShuttingDown)) throw err;
  }
}

/**
 * A Complete of an upload completed already (`etag`): a client's retry that
 * missed the answer gets it again. A Complete that made the value live and
 * stopped before ending the upload (its master killed between the two
 * commits) left it listed, its parts on the volumes and recorded (so no
 * orphans to verify): the retry ends it.
 */
async function answerAgain(s3: S3Request, id: string, etag: string): Promise<Response> {
  await s3.req.body?.cancel();
  const left = await s3.store.index.upload(id);
  const ended = left && await s3.store.index.endUpload(id, left.versionstamp);
  if (ended) await removeParts(s3.store, ended);
  return xmlResponse("CompleteMultipartUploadResult", completeResult(s3, etag));
}

/**
 * Writes the parts, in order, as the object's value: its record once live,
 * or the ETag another Complete of this upload (a client's retry) made live
 * meanwhile, removing the parts this one was reading. A copy of a part
 * found to hold other bytes than were uploaded is passed over by the next
 * try, from the other copies.
 */
async function joinParts(
  s3: S3Request,
  join: {
    id: string;
    parts: Part[];
    planned: ReturnType<typeof objectChecksum>;
    meta: Meta;
    cond: ReturnType<typeof writeConditions>;
  },
): Promise<Written | string> {
  const { id, parts, planned, cond } = join;
  // Part copies found bad ("volume path"): passed over by the next try.
  const bad = new Set<string>();
  for (let tries = 1;; tries++) {
    const read: PartsRead = { failure: null, bad };
    const known = bad.size;
    const joined = concatenated(s3.store, parts, read);
    // A fresh digest per try.
    const sum = planned && "whole" in planned ? checksumThrough(planned.whole, planned.want) : null;
    const meta = { ...join.meta };
    try {
      return await writeObject(s3.store, s3.key, {
        body: sum ? sum.through(joined) : joined,
        check: () => {
          const bad = sum?.check() ?? null;
          // The record is made from `meta` after this check.
          meta.checksum = sum?.checksum() ??
            (planned && "composite" in planned ? planned.composite : undefined);
          return bad;
        },
        contentLength: parts.reduce((n, p) => n + p.size, 0),
        meta,
        // Checked again as the value goes live: a write since the check above fails it.
        ...cond,
        // Not the client's going (the object goes live all the same).
        signal: s3.stop ?? new AbortController().signal,
        stop: s3.stop,
      });
    } catch (err) {
      const done = await completedEtag(s3, id);
      if (done !== null) return done;
      // Cut off by a stopping master: nothing live, the upload as it was
      // (not a failure to read the parts, which the write's end made).
      if (s3.stop?.aborted) throw failure({ status: 503, message: s3.stop.reason.message });
      if (read.failure === null) throw err;
      // A copy of a part held other bytes than were uploaded (sent
      // already, so that write failed): again, from the other copies.
      if (bad.size > known && tries < MAX_TRIES) continue;
      // The volumes' failure, not the client's (the write saw its body
      // fail: IncompleteBody or RequestTimeout otherwise).
      throw s3Error("InternalError", `Cannot read the parts: ${read.failure.message}`);
    }
  }
}

/**
 * The checksum a Complete gives the object: a whole-object one (its
 * x-amz-checksum-* header's, checked as the parts are joined, or of the
 * upload's FULL_OBJECT type) computed then; else the parts' composite one
 * (S3's COMPOSITE type), when each part has one of the upload's algorithm.
 * A composite header ("<checksum>-<parts>") must be that one (BadDigest);
 * it is not checked when a part has none (uploaded without). Null: none.
 */
function objectChecksum(
  h: Headers,
  upload: Upload,
  parts: Part[],
): { whole: Algorithm; want?: string } | { composite: Checksum } | null {
  const sent = sentChecksum(h, true);
  if (sent && !/-\d+$/.test(sent.value)) return { whole: sent.alg, want: sent.value };
  const alg = sent?.alg ?? upload.checksum?.alg ?? parts[0].checksum?.alg;
  if (!alg) return null;
  if (!sent && upload.checksum?.type === "FULL_OBJECT") return { whole: alg };
  if (!parts.every((p) => p.checksum?.alg === alg)) return null;
  const composite = compositeChecksum(alg, parts.map((p) => p.checksum!.value));
  if (sent && sent.value !== composite.value) {
    throw s3Error(
      "BadDigest",
      `The x-amz-checksum-${alg} you specified did not match the calculated checksum.`,
    );
  }
  return { composite };
}

/**
 * x-amz-mp-object-size, the size the client expects the object to have:
 * S3's 400 InvalidRequest when it is not the parts' (nothing is written).
 */
function checkObjectSize(header: string | null, parts: Part[]) {
  if (header === null) return;
  if (!/^\d+$/.test(header.trim())) {
    throw s3Error(
      "InvalidRequest",
      `Value for x-amz-mp-object-size header is invalid: '${header}'`,
    );
  }
  const size = parts.reduce((n, p) => n + p.size, 0);
  if (Number(header) !== size) {
    throw s3Error(
      "InvalidRequest",
      `The x-amz-mp-object-size header (${Number(header)}) is not the size of the parts (${size})`,
    );
  }
}

/** The ETag of the object upload `id` became, if it was completed into this key. */
async function completedEtag(s3: S3Request, id: string): Promise<string | null> {
  if (!/^[0-9a-f]{32}$/.test(id)) return null;
  const done = await s3.store.index.completedUpload(id);
  return done && equal(done.key, s3.key) ? done.etag : null;
}

function completeResult(s3: S3Request, etag: string): XmlNode {
  return {
    Location: s3.url,
    Bucket: s3.bucket,
    Key: keyText(s3),
    ETag: etag,
  };
}

/**
 * The parts a Complete names, checked as S3 checks them: order, ETags,
 * checksums (a part's <ChecksumCRC32> and the like, when it was uploaded
 * with one of that algorithm), sizes.
 */
function chosenParts(asked: CompletePart[], have: Map<number, Part>): Part[] {
  // The list's order first, as S3: it is wrong whatever the parts hold.
  if (asked.some(({ number }, i) => i > 0 && number <= asked[i - 1].number)) {
    throw s3Error("InvalidPartOrder", "The list of parts was not in ascending order.");
  }
  const parts: Part[] = [];
  for (const [i, { number, etag, checksums }] of asked.entries()) {
    const part = have.get(number);
    const sum = part?.checksum && checksums.get(part.checksum.alg);
    if (!part || part.md5 !== etag || (sum !== undefined && sum !== part.checksum!.value)) {
      throw s3Error(
        "InvalidPart",
        `Part ${number} was not uploaded, or its ETag does not match the one given.`,
      );
    }
    if (i < asked.length - 1 && part.size < MIN_PART) {
      throw s3Error("EntityTooSmall", `Part ${number} is smaller than the minimum of 5 MiB.`);
    }
    parts.push(part);
  }
  return parts;
}

/** The most runs of part sizes kept with an object (each a few bytes of its record). */
const MAX_RUNS = 500;

/**
 * The parts' sizes as runs of [size, count], for GetObject's partNumber;
 * undefined when an odd upload has too many runs to keep in the record.
 */
function sizeRuns(parts: Part[]): [number, number][] | undefined {
  const runs: [number, number][] = [];
  for (const { size } of parts) {
    const last = runs.at(-1);
    if (last && last[0] === size) last[1]++;
    else runs.push([size, 1]);
  }
  return runs.length <= MAX_RUNS ? runs : undefined;
}

/** Space sent every this often while a Complete is under way. */
const KEEPALIVE_MS = 5_000;

/**
 * A 200 whose XML comes when `work` is done, with spaces sent meanwhile.
 * What the work's write left undone (Written) is logged here, as the edge
 * (lib/server.ts) logs a PutObject's: the 200 was sent before it was known.
 */
function keptAlive(
  s3: S3Request,
  work: () => Promise<{ xml: string; undone?: string }>,
): Response {
  const resource = `/${s3.bucket}/${keyText(s3)}`;
  // The status page's errors name it as the edge names a request.
  const listed = `POST ${shownTarget(parseTarget(s3.req.url))}`;
  const encoder = new TextEncoder();
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  const send = (text: string) => writer.write(encoder.encode(text)).catch(() => {});
  // The prolog first; whitespace between it and the root element is XML.
  send('<?xml version="1.0" encoding="UTF-8"?>\n');
  const timer = setInterval(() => send(" "), KEEPALIVE_MS);
  // The <Error>'s reason the body ends with ("" for the result): a stopping
  // master counts a Complete its cut stopped as cut off (lib/sizes.ts endings).
  const ended = Promise.withResolvers<string>();
  (async () => {
    let xml: string;
    try {
      const done = await work();
      xml = done.xml;
      if (done.undone !== undefined) {
        logUndone(`S3 POST ${resource}`, 200, done.undone);
        recentErrors.add(`${listed} 200`, done.undone);
      }
      ended.resolve("");
    } catch (err) {
      // Answered in a 200 the edge does not log nor list: said here, as a
      // 5xx would be.
      const e = err instanceof S3Error ? err : refusalOf(err);
      if (e === null) logUnexpected(`S3 POST ${resource}`, err);
      else if (e.status >= 500) logRefused(`S3 POST ${resource}`, e.status, e.message);
      const error = e ?? s3Error("InternalError", String(err));
      if (error.status >= 500) recentErrors.add(`${listed} ${error.status}`, error.message);
      ended.resolve(error.message);
      xml = errorDocument(error, resource);
    } finally {
      clearInterval(timer);
    }
    await send(xml.replace(/^<\?xml[^>]*\?>\n/, ""));
    await writer.close().catch(() => {});
  })();
  const res = new Response(readable, { headers: { "Content-Type": "application/xml" } });
  endings.set(res, ended.promise);
  return res;
}

/** Tries of a Complete whose parts' copies are found bad one after another. */
const MAX_TRIES = 3;

/** How reading the parts went: the error that ended it, the part copies found bad. */
interface PartsRead {
  failure: Error | null;
  bad: Set<string>;
}

/**
 * The parts read one after the other, each checked against the size and MD5
 * it was uploaded with. A copy that fails or ends early is passed over for
 * the next, which goes on from the same byte; one of the wrong size or MD5
 * (rotted, or cut short by a crash: nginx does not fsync) fails the read and
 * is noted in `read.bad`, for the next try to pass over.
 */
function concatenated(store: Store, parts: Part[], read: PartsRead) {
  let i = 0;
  let part: PartReader | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      try {
        while (true) {
          if (part === null) {
            if (i === parts.length) return ctl.close();
            part = new PartReader(store, parts[i++], read.bad);
          }
          const chunk = await part.read();
          if (chunk !== null) return ctl.enqueue(chunk);
          part = null;
        }
      } catch (err) {
        read.failure = err instanceof Error ? err : new Error(String(err));
        throw err;
      }
    },
    cancel(reason) {
      return part?.cancel(reason);
    },
    // Nothing opened before the write reads (it may first wait for another
    // write of the key: an unread GET would trip its stall watch).
  }, { highWaterMark: 0 });
}

/** One part's bytes, from its copies in turn. */
class PartReader {
  #got = 0;
  #hash: Md5Stream;
  #volumes: string[];
  #reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  /** The copies read from so far. */
  #used: string[] = [];
  #last: unknown = null;

  constructor(readonly store: Store, readonly part: Part, readonly bad: Set<string>) {
    this.#hash = md5Stream(part.size);
    // Copies found bad by an earlier try last.
    const ok = (v: string) => !bad.has(`${v} ${part.path}`);
    this.#volumes = [...part.volumes.filter(ok), ...part.volumes.filter((v) => !ok(v))];
  }

  /** The next chunk, null at the part's end (checked). */
  async read(): Promise<Uint8Array | null> {
    const { part } = this;
    while (true) {
      if (this.#reader === null) {
        const v = this.#volumes.shift();
        if (v === undefined) {
          this.#hash.abort();
          throw this.#last ?? new Error(`No copy of part ${part.path}`);
        }
        this.#used.push(v);
        try {
          // Where the last copy stopped, when it failed midway.
          const range = this.#got > 0 ? `bytes=${this.#got}-` : undefined;
          const res = await remoteGet(volumeUrl(v, part.path), {
            signal: new AbortController().signal,
            // Half the write's own watch on its source: a copy that stops
            // is passed over before the write takes the parts for stalled.
            stall: this.store.opts.stall / 2,
            range,
          });
          this.#reader = res.body!.getReader();
        } catch (err) {
          this.#last = err;
          continue;
        }
      }
      let r;
      try {
        r = await this.#reader.read();
      } catch (err) {
        this.#last = err;
        this.#reader = null;
        continue;
      }
      if (!r.done) {
        if (this.#got + r.value.length > part.size) return this.#mismatch();
        this.#got += r.value.length;
        await this.#hash.update(r.value);
        return r.value;
      }
      this.#reader = null;
      // Ended early: a copy cut short (it may hold fewer bytes), or a
      // connection closed midway; the next copy goes on from here.
      if (this.#got < part.size) {
        this.#last = new Error(`"${volumeUrl(this.#used.at(-1)!, part.path)}" ended early`);
        continue;
      }
      if (await this.#hash.digest() !== part.md5) return this.#mismatch();
      return null;
    }
  }

  #mismatch(): never {
    this.#hash.abort();
    this.#reader?.cancel().catch(() => {});
    for (const v of this.#used) this.bad.add(`${v} ${this.part.path}`);
    throw new Error(
      `A copy of part ${this.part.path} on ${this.#used.join(", ")} ` +
        `does not hold the bytes uploaded (MD5 ${this.part.md5}, ${this.part.size} bytes)`,
    );
  }

  cancel(reason: unknown) {
    this.#hash.abort();
    return this.#reader?.cancel(reason);
  }
}

/** Removes part files; one that cannot be removed now is left to verify. */
async function removeParts(store: Store, parts: Part[]) {
  await Promise.all(parts.map((p) => store.removeFile(p.path, p.volumes).catch(() => {})));
}

export async function abortUpload(s3: S3Request, id: string): Promise<Response> {
  const { versionstamp } = await openUpload(s3, id);
  const parts = await s3.store.index.endUpload(id, versionstamp, { signal: s3.stop });
  if (!parts) throw s3Error("NoSuchUpload", "The upload was completed or aborted meanwhile");
  await removeParts(s3.store, parts);
  return new Response(null, { status: 204 });
}

/** The ids of the uploads in progress in `bucket`. */
export async function uploadsIn(store: Store, bucket: string): Promise<string[]> {
  const head = encoder.encode(`/${bucket}/`);
  const ids: string[] = [];
  for await (const [id, u] of store.index.uploads()) {
    if (startsWith(u.key, head)) ids.push(id);
  }
  return ids;
}

/**
 * Aborts uploads (DeleteBucket's, of the bucket's uploads in progress): each
 * ended as AbortMultipartUpload ends it, its parts' files removed. One
 * completed or aborted meanwhile is left to the call that ended it.
 */
export async function abortUploads(store: Store, ids: string[]): Promise<void> {
  for (const id of ids) {
    const found = await store.index.upload(id);
    const parts = found && await store.index.endUpload(id, found.versionstamp);
    if (parts) await removeParts(store, parts);
  }
}

/**
 * ListMultipartUploads: uploads in progress in the bucket, by key (bytewise,
 * S3's UTF-8 order, as ListObjects') then id.
 */
export async function listUploads(s3: S3Request): Promise<Response> {
  const q = s3.query;
  const prefix = encoder.encode(q.get("prefix") ?? "");
  const keyMarker = encoder.encode(q.get("key-marker") ?? "");
  const idMarker = q.get("upload-id-marker") ?? "";
  const max = countParam(q, "max-uploads");
  const after = await uploadsAfter(s3, { prefix, keyMarker, idMarker });
  const delimiter = encoder.encode(q.get("delimiter") ?? "");
  const { uploads, prefixes, truncated, last } = uploadsPage(after, {
    prefix,
    delimiter,
    keyMarker,
    max,
  });
  return xmlResponse("ListMultipartUploadsResult", {
    Bucket: s3.bucket,
    KeyMarker: q.get("key-marker") ?? "",
    UploadIdMarker: idMarker,
    NextKeyMarker: truncated && last ? last.key : undefined,
    NextUploadIdMarker: truncated && last?.id ? last.id : undefined,
    Prefix: q.get("prefix") ?? "",
    Delimiter: q.get("delimiter") || undefined,
    MaxUploads: max,
    IsTruncated: truncated,
    Upload: uploads,
    CommonPrefixes: prefixes.map((p) => ({ Prefix: p })),
  });
}

/** An upload in progress as ListMultipartUploads lists it: its key within the bucket. */
interface Listed {
  key: Uint8Array;
  id: string;
  created: number;
}

/**
 * The bucket's uploads in progress with `prefix`, after the markers, in
 * S3's order: by key in bytes (UTF-8), then upload id.
 */
async function uploadsAfter(
  s3: S3Request,
  at: { prefix: Uint8Array; keyMarker: Uint8Array; idMarker: string },
): Promise<Listed[]> {
  const { prefix, keyMarker, idMarker } = at;
  const bucket = encoder.encode(`/${s3.bucket}/`);
  const found: Listed[] = [];
  let inBucket = false;
  for await (const [id, u] of s3.store.index.uploads()) {
    if (!startsWith(u.key, bucket)) continue;
    inBucket = true;
    const key = u.key.subarray(bucket.length);
    if (startsWith(key, prefix)) found.push({ key, id, created: u.created });
  }
  // A bucket with an upload in progress is listed even with no key yet.
  if (!inBucket && !await bucketExists(s3)) throw noSuchBucket();
  found.sort((a, b) => compare(a.key, b.key) || (a.id < b.id ? -1 : 1));
  return found.filter((u) => {
    const order = compare(u.key, keyMarker);
    return keyMarker.length === 0 || order > 0 ||
      (order === 0 && idMarker !== "" && u.id > idMarker);
  });
}

/** One page of `after`: at most `max` uploads and common prefixes, and where it ended. */
function uploadsPage(
  after: Listed[],
  page: { prefix: Uint8Array; delimiter: Uint8Array; keyMarker: Uint8Array; max: number },
): {
  uploads: XmlNode[];
  prefixes: string[];
  truncated: boolean;
  last: { key: string; id: string } | null;
} {
  const { prefix, delimiter, keyMarker, max } = page;
  const uploads: XmlNode[] = [];
  const prefixes: string[] = [];
  let truncated = false;
  let last: { key: string; id: string } | null = null;
  let rolled: Uint8Array | null = null;
  for (const u of after) {
    const at = delimiter.length > 0 ? indexOf(u.key, delimiter, prefix.length) : -1;
    const common = at >= 0 ? u.key.subarray(0, at + delimiter.length) : null;
    // A prefix already rolled up here, or not after the key marker (as S3:
    // "CommonPrefixes is filtered out from results if it is not
    // lexicographically greater than the key-marker"; so a marker inside a
    // prefix, as a page that ended there leaves it, skips the rest of it).
    if (
      common !== null &&
      ((rolled !== null && equal(rolled, common)) ||
        (keyMarker.length > 0 && compare(common, keyMarker) <= 0))
    ) {
      continue;
    }
    if (uploads.length + prefixes.length === max) {
      // max-uploads=0: an empty page, not truncated (as S3's max-keys=0).
      truncated = max > 0;
      break;
    }
    const key = decoder.decode(common ?? u.key);
    last = { key, id: common !== null ? "" : u.id };
    if (common !== null) {
      rolled = common;
      prefixes.push(key);
    } else {
      uploads.push({
        Key: key,
        UploadId: u.id,
        Initiator: OWNER,
        Owner: OWNER,
        StorageClass: "STANDARD",
        Initiated: xmlTime(u.created),
      });
    }
  }
  return { uploads, prefixes, truncated, last };
}
