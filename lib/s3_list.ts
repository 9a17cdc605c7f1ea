// S3's listings and bucket calls over the index: a bucket is the first
// path segment of keys ("/<bucket>/..."), or one made by CreateBucket and
// still empty.
import { base64, compare, concat, indexOf, successor } from "./bytes.ts";
import { keyFits } from "./index_db.ts";
import type { Record } from "./record.ts";
import type { S3Request } from "./s3.ts";
import { escapePath } from "./s3_auth.ts";
import { checkVersionId, etagOf, hasGrant } from "./s3_objects.ts";
import { readWhole, requireDigest } from "./s3_body.ts";
import { abortUploads, uploadsIn } from "./s3_multipart.ts";
import {
  argumentError,
  parseCreateBucket,
  parseOwnershipControls,
  S3Error,
  s3Error,
  schemaError,
  type XmlNode,
  xmlResponse,
  xmlText,
  xmlTextResponse,
  xmlTime,
} from "./s3_xml.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const MAX_KEYS = 1000;
/** S3's highest part number. */
const MAX_PART_NUMBER = 10_000;
const OWNER = { ID: "mkv", DisplayName: "mkv" };

/** One listed item: an object, or a common prefix rolled up at the delimiter. */
type Item = { key: Uint8Array; rec: Record } | { prefix: Uint8Array };

interface Page {
  items: Item[];
  /** Full key to resume from (inclusive), when truncated. */
  next: Uint8Array | null;
}

/**
 * Live keys of `bucket` starting with `prefix`, from `start` on, at most
 * `max` items, keys sharing a prefix up to `delimiter` rolled into one.
 * A rolled-up prefix is skipped past in the index, not read key by key.
 */
export async function listPage(
  s3: S3Request,
  opts: {
    prefix: Uint8Array;
    delimiter: Uint8Array;
    start: Uint8Array | null;
    max: number;
    /** A marker or start-after (a full key): a rolled-up prefix up to it was listed before. */
    after?: Uint8Array;
  },
): Promise<Page> {
  const base = encoder.encode(`/${s3.bucket}/`);
  const full = concat(base, opts.prefix);
  // No key can start with a prefix longer than a key can be.
  if (!keyFits(full)) return { items: [], next: null };
  const end = successor(full);
  let from = opts.start && compare(opts.start, full) > 0 ? opts.start : full;
  const items: Item[] = [];
  scan: while (end === null || compare(from, end) < 0) {
    for await (const [key, rec] of s3.store.index.from(from, end)) {
      if (rec.state !== "live") continue;
      const rel = key.subarray(base.length);
      const at = opts.delimiter.length > 0 ? indexOf(rel, opts.delimiter, opts.prefix.length) : -1;
      if (at < 0) {
        if (items.length === opts.max) return { items, next: key };
        items.push({ key: rel, rec });
        continue;
      }
      const prefix = rel.slice(0, at + opts.delimiter.length);
      const rolled = concat(base, prefix);
      // As S3: a prefix at or before the marker was the last page's.
      if (!opts.after || compare(rolled, opts.after) > 0) {
        if (items.length === opts.max) return { items, next: key };
        items.push({ prefix });
      }
      const after = successor(rolled);
      if (after === null) break scan;
      from = after;
      continue scan;
    }
    break;
  }
  return { items, next: null };
}

/** ListObjectsV2. */
export async function listV2(s3: S3Request): Promise<Response> {
  const q = s3.query;
  const { prefix, delimiter, max, url } = common(s3);
  const token = q.get("continuation-token");
  const startAfter = q.get("start-after");
  let start: Uint8Array | null = null;
  if (token !== undefined && token !== "") start = decodeToken(token, s3.bucket);
  else if (startAfter) start = afterKey(s3.bucket, startAfter);
  const page = max === 0 ? { items: [], next: null } : await listPage(s3, {
    prefix,
    delimiter,
    start,
    max,
    after: startAfter ? encoder.encode(`/${s3.bucket}/${startAfter}`) : undefined,
  });
  if (page.items.length === 0 && !await bucketExists(s3)) throw noSuchBucket();
  const show = text(url);
  return xmlResponse("ListBucketResult", {
    Name: s3.bucket,
    Prefix: show(prefix),
    Delimiter: delimiter.length ? show(delimiter) : undefined,
    MaxKeys: max,
    EncodingType: url ? "url" : undefined,
    KeyCount: page.items.length,
    ContinuationToken: token,
    NextContinuationToken: page.next ? encodeToken(page.next) : undefined,
    StartAfter: startAfter === undefined ? undefined : show(startAfter),
    IsTruncated: page.next !== null,
    ...entries(page.items, show, q.get("fetch-owner") === "true"),
  });
}

/** ListObjects (v1), paged by marker. */
export async function listV1(s3: S3Request): Promise<Response> {
  const { prefix, delimiter, max, url } = common(s3);
  const marker = s3.query.get("marker") ?? "";
  const page = max === 0 ? { items: [], next: null } : await listPage(s3, {
    prefix,
    delimiter,
    start: marker ? afterKey(s3.bucket, marker) : null,
    max,
    after: marker ? encoder.encode(`/${s3.bucket}/${marker}`) : undefined,
  });
  if (page.items.length === 0 && !await bucketExists(s3)) throw noSuchBucket();
  const show = text(url);
  const last = resumeAt(page);
  const nextMarker = last ? show("key" in last ? last.key : last.prefix) : undefined;
  return xmlResponse("ListBucketResult", {
    Name: s3.bucket,
    Prefix: show(prefix),
    Marker: show(marker),
    NextMarker: nextMarker,
    Delimiter: delimiter.length ? show(delimiter) : undefined,
    MaxKeys: max,
    EncodingType: url ? "url" : undefined,
    IsTruncated: page.next !== null,
    ...entries(page.items, show, true),
  });
}

/**
 * ListObjectVersions, for buckets never versioned (the only kind here): as
 * S3 answers for one, every object is its one version, "null", the latest,
 * paged by key-marker (version-id-marker "null" resumes after that key).
 */
export async function listVersions(s3: S3Request): Promise<Response> {
  const { prefix, delimiter, max, url } = common(s3);
  const keyMarker = s3.query.get("key-marker") ?? "";
  const versionMarker = s3.query.get("version-id-marker") ?? "";
  if (versionMarker !== "" && keyMarker === "") {
    throw s3Error(
      "InvalidArgument",
      "A version-id marker cannot be specified without a key marker.",
    );
  }
  if (versionMarker !== "") checkVersionId(versionMarker);
  const page = max === 0 ? { items: [], next: null } : await listPage(s3, {
    prefix,
    delimiter,
    start: keyMarker ? afterKey(s3.bucket, keyMarker) : null,
    max,
    after: keyMarker ? encoder.encode(`/${s3.bucket}/${keyMarker}`) : undefined,
  });
  if (page.items.length === 0 && !await bucketExists(s3)) throw noSuchBucket();
  const show = text(url);
  const last = resumeAt(page);
  const { Contents, CommonPrefixes } = entries(page.items, show, true);
  return xmlResponse("ListVersionsResult", {
    Name: s3.bucket,
    Prefix: show(prefix),
    KeyMarker: show(keyMarker),
    VersionIdMarker: versionMarker,
    NextKeyMarker: last ? show("key" in last ? last.key : last.prefix) : undefined,
    NextVersionIdMarker: last && "key" in last ? "null" : undefined,
    Delimiter: delimiter.length ? show(delimiter) : undefined,
    MaxKeys: max,
    EncodingType: url ? "url" : undefined,
    IsTruncated: page.next !== null,
    Version: Contents.map(({ Key, ...rest }) => ({
      Key,
      VersionId: "null",
      IsLatest: true,
      ...rest,
    })),
    CommonPrefixes,
  });
}

/** A truncated page's last item, which the next page's marker names; null when not truncated. */
function resumeAt(page: Page): Item | null {
  return page.next ? page.items.at(-1) ?? null : null;
}

function common(s3: S3Request) {
  const q = s3.query;
  const max = countParam(q, "max-keys", { argName: "maxKeys" });
  const encoding = q.get("encoding-type");
  if (encoding !== undefined && encoding !== "url") {
    throw s3Error("InvalidArgument", "Invalid Encoding Method specified in Request");
  }
  return {
    prefix: encoder.encode(q.get("prefix") ?? ""),
    delimiter: encoder.encode(q.get("delimiter") ?? ""),
    max,
    url: encoding === "url",
  };
}

/**
 * A count parameter (max-keys, max-uploads, max-parts, part-number-marker)
 * read as S3 reads it: a 32-bit integer (leading zeros and all), 0 an empty
 * page, more than `cap` served as `cap`; `absent` when not given. Otherwise
 * 400 InvalidArgument with S3's two messages: not such an integer, or
 * negative (`argName`: how S3's message spells the parameter).
 */
export function countParam(
  q: Map<string, string>,
  param: string,
  opts: { argName?: string; cap?: number; absent?: number } = {},
): number {
  const { argName = param, cap = MAX_KEYS, absent = cap } = opts;
  const n = int32Param(q, param);
  if (n === undefined) return absent;
  if (n < 0) {
    const message = `Argument ${argName} must be an integer between 0 and 2147483647`;
    throw argumentError(message, param, String(n));
  }
  return Math.min(n, cap);
}

/**
 * UploadPart's and GetObject's partNumber: decimal digits, 1 to 10000 (a
 * "0x2", "1e0" or " 2" Number() would read is none); else 400
 * InvalidArgument naming it, in S3's words.
 */
export function partNumberParam(q: Map<string, string>): number {
  const raw = q.get("partNumber") ?? "";
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= MAX_PART_NUMBER)) {
    const message = `Part number must be an integer between 1 and ${MAX_PART_NUMBER}, inclusive`;
    throw argumentError(message, "partNumber", raw);
  }
  return n;
}

/**
 * An integer parameter as S3 reads it: a 32-bit integer, leading zeros and
 * all ("-0" is 0); undefined when not given; otherwise 400 InvalidArgument
 * "Provided <param> not an integer or within integer range".
 */
function int32Param(q: Map<string, string>, param: string): number | undefined {
  const raw = q.get(param);
  if (raw === undefined) return undefined;
  const n = /^[-+]?\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= -(2 ** 31) && n < 2 ** 31)) {
    throw argumentError(`Provided ${param} not an integer or within integer range`, param, raw);
  }
  return n === 0 ? 0 : n;
}

function entries(
  items: Item[],
  show: (b: Uint8Array) => string,
  owner: boolean,
): { Contents: XmlNode[]; CommonPrefixes: XmlNode[] } {
  const contents: XmlNode[] = [];
  const prefixes: XmlNode[] = [];
  for (const item of items) {
    if ("prefix" in item) {
      prefixes.push({ Prefix: show(item.prefix) });
      continue;
    }
    contents.push({
      Key: show(item.key),
      LastModified: xmlTime(item.rec.mtime ?? 0),
      ETag: item.rec.hash || item.rec.meta?.etag ? etagOf(item.rec) : undefined,
      Size: Math.max(item.rec.size, 0),
      Owner: owner ? OWNER : undefined,
      StorageClass: "STANDARD",
    });
  }
  return { Contents: contents, CommonPrefixes: prefixes };
}

/** Keys as XML text: UTF-8, or every byte but the unreserved escaped (encoding-type=url). */
function text(url: boolean): (b: Uint8Array | string) => string {
  return (b) => {
    const bytes = typeof b === "string" ? encoder.encode(b) : b;
    return url ? escapePath(bytes) : decoder.decode(bytes);
  };
}

/** The first full key after "/<bucket>/<key>". */
function afterKey(bucket: string, key: string): Uint8Array {
  return concat(encoder.encode(`/${bucket}/${key}`), new Uint8Array([0]));
}

function encodeToken(key: Uint8Array): string {
  return base64(key);
}

function decodeToken(token: string, bucket: string): Uint8Array {
  let key: Uint8Array;
  try {
    key = Uint8Array.from(atob(token), (c) => c.charCodeAt(0));
  } catch {
    throw s3Error("InvalidArgument", "The continuation token provided is incorrect");
  }
  const base = encoder.encode(`/${bucket}/`);
  if (compare(key.subarray(0, base.length), base) !== 0) {
    throw s3Error("InvalidArgument", "The continuation token provided is incorrect");
  }
  return key;
}

/** Every bucket: made by CreateBucket, or the first segment of a live key. */
async function allBuckets(s3: S3Request): Promise<Map<string, number>> {
  const found = await s3.store.index.buckets();
  let from: Uint8Array | null = encoder.encode("/");
  while (from !== null) {
    let next: Uint8Array | null = null;
    for await (const [key, rec] of s3.store.index.from(from, encoder.encode("0"))) {
      const slash = key.indexOf(0x2f, 1);
      if (rec.state !== "live" || slash < 2) continue;
      const name = decoder.decode(key.subarray(1, slash));
      if (!found.has(name)) found.set(name, rec.mtime ?? 0);
      // Skip the rest of this bucket's keys in the index, not one by one.
      next = successor(key.subarray(0, slash + 1));
      break;
    }
    from = next;
  }
  return found;
}

/** Whether a bucket exists: made by CreateBucket, or holding a live key. */
export async function bucketExists(s3: S3Request): Promise<boolean> {
  if (await s3.store.index.bucket(s3.bucket) !== null) return true;
  const page = await listPage(s3, {
    prefix: new Uint8Array(),
    delimiter: new Uint8Array(),
    start: null,
    max: 1,
  });
  return page.items.length > 0;
}

/**
 * ListBuckets: every bucket in name order, or those starting with `prefix`,
 * those in `bucket-region`, `max-buckets` at a time (1 to 10,000), the next
 * page after the `continuation-token` the last one ended with. Its
 * arguments are judged in S3's order: `max-buckets`, then `bucket-region`,
 * then the token.
 */
export async function listBuckets(s3: S3Request): Promise<Response> {
  const q = s3.query;
  const prefix = q.get("prefix") ?? "";
  const max = bucketsPageSize(q);
  const region = bucketRegionParam(q);
  const regions = await s3.store.index.bucketRegions();
  if (region !== null) checkKnownRegion(region, regions);
  const token = q.get("continuation-token");
  const after = token ? bucketOfToken(token) : "";
  const all = [...await allBuckets(s3)].sort((a, b) => a[0] < b[0] ? -1 : 1)
    .filter(([name]) => name.startsWith(prefix) && name > after)
    .filter(([name]) => region === null || sameRegion(regionOf(regions.get(name) ?? null), region));
  const buckets = all.slice(0, max);
  const more = all.length > buckets.length;
  return xmlResponse("ListAllMyBucketsResult", {
    Owner: OWNER,
    Buckets: {
      Bucket: buckets.map(([name, at]) => ({
        Name: name,
        CreationDate: xmlTime(at),
        BucketRegion: regionOf(regions.get(name) ?? null),
      })),
    },
    ContinuationToken: more ? base64(encoder.encode(buckets.at(-1)![0])) : undefined,
    Prefix: q.has("prefix") ? prefix : undefined,
  });
}

/** The largest ListBuckets page, and S3's default one for a paginated call. */
const MAX_BUCKETS = 10_000;

/**
 * ListBuckets' page: `max-buckets` (1 to 10,000; any other integer is 400
 * InvalidArgument, as S3). Without it, every bucket, unless the call names
 * a `prefix`, `bucket-region` or `continuation-token`: then 10,000, S3's
 * default page for a paginated ListBuckets.
 */
export function bucketsPageSize(q: Map<string, string>): number {
  const paged = ["prefix", "bucket-region", "continuation-token"].some((name) => q.has(name));
  const max = int32Param(q, "max-buckets");
  if (max === undefined) return paged ? MAX_BUCKETS : Infinity;
  if (max >= 1 && max <= MAX_BUCKETS) return max;
  throw argumentError(
    `Argument max-buckets must be an integer between 1 and ${MAX_BUCKETS}`,
    "max-buckets",
    String(max),
  );
}

/**
 * ListBuckets' `bucket-region`: the region listed buckets are in (as their
 * BucketRegion names it), null for any; one that cannot be a region's name
 * (CreateBucket's LOCATION; an empty one too) is 400 InvalidArgument, as S3
 * answers a region it does not know.
 */
function bucketRegionParam(q: Map<string, string>): string | null {
  const region = q.get("bucket-region");
  if (region === undefined) return null;
  if (LOCATION.test(region)) return region;
  throw unknownRegion(region);
}

/**
 * A region-shaped `bucket-region` names a region S3 knows (AWS_REGIONS, any
 * case, as S3 reads it) or one a bucket here was made in (the gateway keeps
 * other stores' region names too: see LOCATION); any other, "eu-east-1",
 * is 400 InvalidArgument, as S3 answers it, rather than an empty list.
 */
function checkKnownRegion(region: string, regions: Map<string, string>) {
  if (AWS_REGIONS.has(region.toLowerCase())) return;
  for (const made of regions.values()) if (sameRegion(regionOf(made), region)) return;
  throw unknownRegion(region);
}

function unknownRegion(region: string): S3Error {
  const err = s3Error("InvalidArgument", `Argument value ${region} is not a valid AWS Region`);
  err.names.ArgumentName = "bucket-region";
  return err;
}

/** Region names compared as S3 compares them: in any case. */
function sameRegion(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/**
 * The regions of AWS's partitions (botocore 1.43.11's partitions.json, its
 * "-global" names left out): the names S3 takes as a `bucket-region`.
 */
const AWS_REGIONS = new Set([
  "af-south-1",
  "ap-east-1",
  "ap-east-2",
  "ap-northeast-1",
  "ap-northeast-2",
  "ap-northeast-3",
  "ap-south-1",
  "ap-south-2",
  "ap-southeast-1",
  "ap-southeast-2",
  "ap-southeast-3",
  "ap-southeast-4",
  "ap-southeast-5",
  "ap-southeast-6",
  "ap-southeast-7",
  "ca-central-1",
  "ca-west-1",
  "cn-north-1",
  "cn-northwest-1",
  "eu-central-1",
  "eu-central-2",
  "eu-isoe-west-1",
  "eu-north-1",
  "eu-south-1",
  "eu-south-2",
  "eu-west-1",
  "eu-west-2",
  "eu-west-3",
  "eusc-de-east-1",
  "il-central-1",
  "me-central-1",
  "me-south-1",
  "mx-central-1",
  "sa-east-1",
  "us-east-1",
  "us-east-2",
  "us-gov-east-1",
  "us-gov-west-1",
  "us-iso-east-1",
  "us-iso-west-1",
  "us-isob-east-1",
  "us-isob-west-1",
  "us-isof-east-1",
  "us-isof-south-1",
  "us-west-1",
  "us-west-2",
]);

/** The bucket a ListBuckets continuation-token names: the last of the page before. */
function bucketOfToken(token: string): string {
  try {
    return decoder.decode(Uint8Array.from(atob(token), (c) => c.charCodeAt(0)));
  } catch {
    throw s3Error("InvalidArgument", "The continuation token provided is incorrect");
  }
}

export async function headBucket(s3: S3Request): Promise<Response> {
  if (!await bucketExists(s3)) throw noSuchBucket();
  const constraint = await s3.store.index.bucketRegion(s3.bucket);
  return new Response(null, { headers: { "x-amz-bucket-region": regionOf(constraint) } });
}

/** The region a LocationConstraint names: none is us-east-1, "EU" eu-west-1 (S3's). */
function regionOf(constraint: string | null): string {
  if (constraint === null) return "us-east-1";
  return constraint === "EU" ? "eu-west-1" : constraint;
}

/**
 * The gateway has no region of its own (any region signs), so a bucket
 * made with a LocationConstraint keeps it, to report: a region's name (S3's,
 * or another store's: letters, digits, dashes), or S3's legacy "EU".
 */
const LOCATION = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

/** CreateBucket's LocationConstraint: "" for us-east-1, or 400 InvalidLocationConstraint. */
async function locationConstraint(s3: S3Request): Promise<string> {
  const xml = await readWhole(s3.body(), CONFIG_MAX);
  const constraint = parseCreateBucket(xmlText(xml));
  if (constraint === "" || constraint === "us-east-1") return "";
  if (LOCATION.test(constraint)) return constraint;
  const err = s3Error(
    "InvalidLocationConstraint",
    "The specified location-constraint is not valid",
  );
  err.names.LocationConstraint = constraint;
  throw err;
}

/** The longest CreateBucket body read (S3's configuration is a few hundred bytes). */
const CONFIG_MAX = 64 * 1024;

/** Valid S3 bucket names: 3-63 of a-z 0-9 . -, a letter or digit at each end. */
const BUCKET_NAME = /^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$/;

export async function createBucket(s3: S3Request): Promise<Response> {
  if (!BUCKET_NAME.test(s3.bucket)) {
    throw s3Error("InvalidBucketName", "The specified bucket is not valid.");
  }
  checkOwnership(s3.headers);
  checkBucketAcl(s3.headers);
  const region = await locationConstraint(s3);
  // As S3 in us-east-1: making a bucket you own again succeeds (it keeps
  // the region it was made in).
  await s3.store.index.createBucket(s3.bucket, Date.now(), {
    region: region || undefined,
    signal: s3.stop,
  });
  return new Response(null, { headers: { Location: `/${s3.bucket}` } });
}

export async function deleteBucket(s3: S3Request): Promise<Response> {
  // An upload made in the bucket between the listing of its uploads and the
  // removal of its record fails the removal: listed again, and aborted with
  // the others. Tries while CreateMultipartUploads keep coming, then 409.
  for (let tries = 0; tries < DELETE_TRIES; tries++) {
    const uploads = await emptyBucketUploads(s3);
    const outcome = await s3.store.index.deleteBucket(s3.bucket, {
      uploadsMark: uploads.mark,
      signal: s3.stop,
    });
    if (outcome === "refused") {
      throw s3Error(
        "ServiceUnavailable",
        "The index is incomplete (a rebuild has not finished): the volumes may hold keys of " +
          "this bucket; run rebuild",
      );
    }
    if (outcome === "changed") continue;
    // As S3 deletes a general purpose bucket with uploads in progress: they
    // go with it, their parts' files too (none left listed in a bucket that
    // is gone, nor orphaned on the volumes). After the bucket's record, so a
    // refused DeleteBucket aborts nothing; a master stopped in between
    // leaves them listed, and a DeleteBucket again aborts them.
    await abortUploads(s3.store, uploads.ids);
    return new Response(null, { status: 204 });
  }
  throw s3Error(
    "OperationAborted",
    "A conflicting conditional operation is currently in progress against this resource: " +
      "multipart uploads kept being created in the bucket while it was deleted. Please try again.",
  );
}

/** How many times DeleteBucket lists a bucket's uploads again when one is made meanwhile. */
const DELETE_TRIES = 10;

/**
 * The uploads in progress in a bucket found empty of keys (else 409
 * BucketNotEmpty), with the uploadsMark read before they were listed. 404
 * NoSuchBucket for one that is not there: it exists if CreateBucket made it
 * (one known only through its keys went with the last of them), or while an
 * upload is in progress in it (as ListMultipartUploads lists it).
 */
async function emptyBucketUploads(s3: S3Request): Promise<{ ids: string[]; mark: string | null }> {
  const page = await listPage(s3, {
    prefix: new Uint8Array(),
    delimiter: new Uint8Array(),
    start: null,
    max: 1,
  });
  if (page.items.length > 0) {
    throw s3Error("BucketNotEmpty", "The bucket you tried to delete is not empty");
  }
  const mark = await s3.store.index.uploadsMark(s3.bucket);
  const ids = await uploadsIn(s3.store, s3.bucket);
  if (ids.length === 0 && await s3.store.index.bucket(s3.bucket) === null) {
    throw noSuchBucket();
  }
  return { ids, mark };
}

/** S3's Object Ownership settings; BucketOwnerEnforced is the gateway's, its buckets' only. */
const OWNERSHIPS = ["BucketOwnerEnforced", "ObjectWriter", "BucketOwnerPreferred"];

/**
 * CreateBucket's x-amz-object-ownership: BucketOwnerEnforced (ACLs
 * disabled, S3's default) is taken. The other two enable ACLs, which the
 * gateway does not keep (one key pair owns everything; mkv's API serves
 * every key to anyone): refused, 501, rather than a bucket made that is not
 * what was asked for. One S3 has not: 400 InvalidArgument, as S3.
 */
function checkOwnership(h: Headers) {
  const ownership = h.get("x-amz-object-ownership");
  if (ownership === null || ownership === "BucketOwnerEnforced") return;
  if (!OWNERSHIPS.includes(ownership)) {
    const err = s3Error("InvalidArgument", `Invalid x-amz-object-ownership header: ${ownership}`);
    err.names.ArgumentName = "x-amz-object-ownership";
    throw err;
  }
  throw ownershipRefused(`${ownership} (x-amz-object-ownership)`);
}

/** 501 to an Object Ownership that enables ACLs (`what`: the setting, as the call named it). */
function ownershipRefused(what: string): S3Error {
  return s3Error(
    "NotImplemented",
    `Object Ownership ${what} is not implemented by this gateway: it keeps no ACLs, as S3 ` +
      "keeps none with BucketOwnerEnforced",
  );
}

/**
 * PutBucketOwnershipControls: BucketOwnerEnforced, what every bucket here
 * has, is taken (nothing to change); the settings that enable ACLs are
 * refused as CreateBucket refuses them (501), one S3 has not is 400
 * MalformedXML, as S3.
 */
export async function putOwnershipControls(s3: S3Request): Promise<Response> {
  if (!await bucketExists(s3)) throw noSuchBucket();
  requireDigest(s3.headers);
  const xml = await readWhole(s3.body(), CONFIG_MAX);
  const ownership = parseOwnershipControls(xmlText(xml));
  if (!OWNERSHIPS.includes(ownership)) throw schemaError();
  if (ownership !== "BucketOwnerEnforced") throw ownershipRefused(ownership);
  return new Response(null);
}

/**
 * GetBucketOwnershipControls: BucketOwnerEnforced, every bucket's here (as
 * a bucket S3 makes today has by default).
 */
export async function ownershipControls(s3: S3Request): Promise<Response> {
  if (!await bucketExists(s3)) throw noSuchBucket();
  return xmlResponse("OwnershipControls", {
    Rule: { ObjectOwnership: "BucketOwnerEnforced" },
  });
}

/**
 * A bucket's ACL, as S3 takes it with ACLs disabled (BucketOwnerEnforced,
 * its default): private, the owner's alone, is taken; any other, or a
 * grant, refused (objects' ACLs: s3_objects.ts checkNewObject).
 */
function checkBucketAcl(h: Headers) {
  const acl = h.get("x-amz-acl")?.trim();
  if ((acl === undefined || acl === "private") && !hasGrant(h)) return;
  throw s3Error(
    "InvalidBucketAclWithObjectOwnership",
    "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
  );
}

/** GetBucketLocation: the LocationConstraint it was made with; empty for us-east-1, as S3. */
export async function location(s3: S3Request): Promise<Response> {
  if (!await bucketExists(s3)) throw noSuchBucket();
  const constraint = await s3.store.index.bucketRegion(s3.bucket);
  return xmlTextResponse("LocationConstraint", constraint ?? "");
}

export async function versioning(s3: S3Request): Promise<Response> {
  if (!await bucketExists(s3)) throw noSuchBucket();
  return xmlResponse("VersioningConfiguration", {});
}

export function noSuchBucket() {
  return s3Error("NoSuchBucket", "The specified bucket does not exist");
}
