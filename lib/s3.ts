// The S3 gateway: path-style requests ("/<bucket>/<key>" is the plain key of
// the same bytes), or virtual-hosted-style ones under -s3-domain (Host
// "<bucket>.<domain>", path "/<key>": the same plain key), told apart from
// mkv's API by their signature, S3 query parameters or Host, dispatched here
// by method and operation to lib/s3_objects.ts, lib/s3_list.ts and
// lib/s3_multipart.ts. Errors speak S3's XML.
import { concat } from "./bytes.ts";
import { logUnexpected } from "./log.ts";
import {
  checkSignature,
  type Credentials,
  escapePath,
  isSigned,
  parseQueryPairs,
} from "./s3_auth.ts";
import { SourceError } from "./fanout.ts";
import { VolumeError, writeFailureStatus } from "./volumes.ts";
import { type S3Body, s3Body } from "./s3_body.ts";
import { presignedHeaders } from "./s3_presigned.ts";
import { requestBody } from "./request_body.ts";
import { errorIds, errorResponse, newRequestId, refusalOf, S3Error, s3Error } from "./s3_xml.ts";
import type { Store } from "./store.ts";
import type { Target } from "./target.ts";
import * as objects from "./s3_objects.ts";
import * as listing from "./s3_list.ts";
import * as multipart from "./s3_multipart.ts";
import { getObjectAttributes } from "./s3_attributes.ts";
import { deleteObjectTagging, getObjectTagging, putObjectTagging } from "./s3_tagging.ts";

export interface S3Options {
  /** Keys every request must be signed with; null accepts any signature. */
  creds: Credentials | null;
  /**
   * -s3-domain, lowercased: a Host "<bucket>.<domain>" names the bucket
   * (virtual-hosted style); "" for path-style only.
   */
  domain: string;
}

/** One S3 request, parsed: what every operation gets. */
export interface S3Request {
  store: Store;
  /** The request; its headers are read through `headers`, never here. */
  req: Omit<Request, "headers">;
  /**
   * The request's headers as the call reads them: a presigned URL's x-amz-*
   * query parameters among them (lib/s3_presigned.ts).
   */
  headers: Headers;
  /**
   * What the call's work stops at: the client gone, or a stopping master
   * cutting off the requests in flight (lib/server.ts Drain).
   */
  signal: AbortSignal;
  /**
   * The stopping master's cut-off alone, for the work a client that goes
   * does not stop (a DeleteObject's volume calls), and for the index writes
   * dropped at it while still unsent (CreateBucket's, UploadPart's, ...).
   */
  stop?: AbortSignal;
  /** The bucket ("" for the service: ListBuckets). */
  bucket: string;
  /** The object key within the bucket as bytes (empty for bucket calls). */
  object: Uint8Array;
  /** The whole plain key: "/<bucket>/<object>". */
  key: Uint8Array;
  /**
   * The object's URL as the request addressed it, on the Host it was sent
   * to: "http://<host>/<bucket>/<object>", virtual-hosted
   * "http://<bucket>.<domain>/<object>" (the object escaped as S3 does).
   */
  url: string;
  query: Map<string, string>;
  /** x-amz-content-sha256 as signed, or UNSIGNED-PAYLOAD. */
  signature: ReturnType<typeof checkSignature>;
  /**
   * The request's body as lib/s3_body.ts reads it (framing undone, digests
   * checked). Take it only through here: a body the answer leaves unread is
   * cancelled once the answer is made (see cancelUnread). `checksumHeaders`
   * false: x-amz-checksum-* headers are not the body's (lib/s3_body.ts).
   */
  body(checksumHeaders?: boolean): S3Body;
}

/**
 * S3's parameters that are no sub-resource the gateway refuses (UNSUPPORTED,
 * below), nor any of mkv's own (?list, ?unlinked, ?writing, ?status,
 * ?metrics, start, limit): its calls' and their arguments'.
 */
const S3_ARGS = [
  "list-type",
  "uploads",
  "uploadId",
  "partNumber",
  "delete",
  "location",
  "versioning",
  "versions",
  "ownershipControls",
  "attributes",
  "tagging",
  "prefix",
  "delimiter",
  "marker",
  "max-keys",
  "continuation-token",
  "start-after",
  "encoding-type",
  "fetch-owner",
  "key-marker",
  "version-id-marker",
  "upload-id-marker",
  "max-uploads",
  "max-parts",
  "part-number-marker",
  "max-buckets",
  "bucket-region",
  "versionId",
  "select-type",
  "x-id",
];

/**
 * Whether a query parameter is S3's alone: an unsigned request with one is
 * S3's (answered in S3's XML, a sub-resource the gateway has no part of
 * refused), never taken for mkv's API of the same path.
 */
function isS3Param(name: string, target: Target): boolean {
  // mkv's ?metrics is the master's, "/?metrics"; a bucket's is S3's
  // (GetBucketMetricsConfiguration).
  if (name === "metrics") return target.key.length > 1;
  return S3_PARAMS.has(name) || name.startsWith("response-");
}

/**
 * Whether a request comes from an AWS SDK (the AWS CLI, boto3, the AWS SDK
 * for JavaScript, ...): each sends `amz-sdk-invocation-id` and
 * `amz-sdk-request` with every call, signed or not (`aws --no-sign-request`,
 * botocore's UNSIGNED), and mkv's API has no use for them. Left to mkv's API,
 * an unsigned HeadObject or GetObject was answered with its 302 to a volume,
 * which no SDK follows, and a PutObject stored its value without its
 * `Content-Type` and `x-amz-meta-*`, an empty one refused (411), an
 * overwrite refused (403), with S3 keys set as without.
 */
export function isSdkRequest(headers: Headers): boolean {
  return headers.has("amz-sdk-invocation-id") || headers.has("amz-sdk-request");
}

/** Whether a request is for the S3 gateway rather than mkv's own API. */
export function isS3(req: Request, target: Target, opts: S3Options): boolean {
  if (isSigned(req.headers, target.query)) return true;
  if (isSdkRequest(req.headers)) return true;
  // mkv's API has no buckets: a bucket's host is S3's, signed or not.
  if (isVirtualHosted(req, opts)) return true;
  if (isFormUpload(req, target.query)) return true;
  if (target.query === "") return false;
  return parseQueryPairs(target.query).some(([name]) => isS3Param(name, target));
}

/** A request's target, and what stops its work (S3Request's signal and stop). */
interface S3Call {
  target: Target;
  signal: AbortSignal;
  stop?: AbortSignal;
}

export async function handleS3(
  store: Store,
  opts: S3Options,
  req: Request,
  call: S3Call,
): Promise<Response> {
  const res = await answerS3(store, opts, req, call);
  // S3 names every answer; clients log it and show it with errors.
  res.headers.set("x-amz-request-id", requestId(res));
  return res;
}

/**
 * A 503 decided before the call is made (a rebuild running, the index file
 * gone, a stalled master), as S3 says it: ServiceUnavailable, which its
 * clients retry.
 */
export function s3Refusal(message: string, target: Target, head: boolean): Response {
  const res = errorResponse(s3Error("ServiceUnavailable", message), target.rawPath, head);
  res.headers.set("x-amz-request-id", requestId(res));
  return res;
}

/** The request id of an answer: the one in its <Error> body, or a fresh one. */
function requestId(res: Response): string {
  return errorIds.get(res) ?? newRequestId();
}

async function answerS3(
  store: Store,
  opts: S3Options,
  req: Request,
  call: S3Call,
): Promise<Response> {
  const { target } = call;
  const opened: S3Body[] = [];
  const address = addressOf(req, target, opts);
  try {
    // Before the signature: a form's is in its fields, not the request's.
    if (isFormUpload(req, target.query)) {
      throw notImplemented("Browser form upload (POST Object)");
    }
    const s3 = s3Request(req, { store, creds: opts.creds, call, address, opened });
    refuseUnsupported(s3);
    return await dispatch(s3);
  } catch (err) {
    const error = asS3Error(err, { method: req.method, path: target.rawPath, address });
    return errorResponse(error, target.rawPath, req.method === "HEAD");
  } finally {
    cancelUnread(opened);
  }
}

/**
 * The request as every operation takes it, its signature checked; the
 * bodies its operation opens are kept in `opened` (see cancelUnread).
 */
function s3Request(
  req: Request,
  ctx: {
    store: Store;
    creds: Credentials | null;
    call: S3Call;
    address: Address;
    opened: S3Body[];
  },
): S3Request {
  const { target, signal, stop } = ctx.call;
  const { bucket, object, key, v2Path, url } = ctx.address;
  const signature = checkSignature(
    {
      method: req.method,
      path: target.rawPath,
      v2Path,
      query: target.query,
      headers: req.headers,
    },
    ctx.creds,
  );
  const headers = signature.presigned
    ? presignedHeaders(req.headers, parseQueryPairs(target.query, true))
    : req.headers;
  return {
    store: ctx.store,
    req,
    headers,
    signal,
    stop,
    bucket,
    object,
    key,
    url,
    query: new Map(parseQueryPairs(target.query, true)),
    signature,
    body(checksumHeaders = true) {
      const body = s3Body(requestBody(req), headers, signature, { checksumHeaders });
      ctx.opened.push(body);
      return body;
    },
  };
}

/** The operation, by what the request addresses: the service, a bucket or an object. */
function dispatch(s3: S3Request): Promise<Response> {
  if (s3.bucket === "") return service(s3);
  if (s3.object.length === 0) return bucketCall(s3);
  return objectCall(s3);
}

/** What ended a call, as S3 says it. */
function asS3Error(
  err: unknown,
  at: { method: string; path: string; address: Address },
): S3Error {
  if (err instanceof S3Error) {
    // S3 names what is missing, unless the call named it already (CopyObject's source).
    if (err.code === "NoSuchKey") err.names.Key ??= new TextDecoder().decode(at.address.object);
    if (err.code === "NoSuchBucket") err.names.BucketName ??= at.address.bucket;
    return err;
  }
  // A call cut off by a stopping master (ShuttingDown, 503), or a body
  // that failed: said in S3's words, as a write's is (objects.failure);
  // a 5xx logged in one line at the edge (lib/server.ts).
  if (err instanceof SourceError) {
    return objects.failure({ status: err.status, message: err.message });
  }
  // A volume's failure that reached here unanswered by the call (a part's
  // write, UploadPart's, that a volume refused or left unanswered): a
  // replica write's 500 (507 for a full disk), as PutObject's, its reason
  // naming the volume's URL and answer (`Cannot PUT "http://...": status 500`), no stack.
  if (err instanceof VolumeError) {
    return objects.failure({ status: writeFailureStatus(err), message: err.message });
  }
  // A refusal of the index's is logged in one line (lib/server.ts, as
  // every 503), anything else here with its stack.
  const refused = refusalOf(err);
  if (!refused) logUnexpected(`S3 ${at.method} ${at.path}`, err);
  const message = err instanceof Error ? err.message : String(err);
  return refused ?? s3Error("InternalError", message);
}

/**
 * A body refused before it was read (412, 409, KeyTooLongError, ...):
 * once piped through the digest checks, the request's own body counts as
 * used, so lib/server.ts no longer cancels it. Cancelled here, through
 * the pipe, so the rest of the upload is taken in and the client, which
 * may send it all before reading, gets the answer.
 */
function cancelUnread(opened: S3Body[]) {
  for (const b of opened) if (!b.body.locked) b.body.cancel().catch(() => {});
}

/**
 * A browser form upload (S3's POST Object): a POST of multipart/form-data,
 * which mkv's API has no part of, not one of S3's POST calls (?uploads,
 * ?uploadId, ?delete). Unsigned (its signature is a form field), so told
 * apart by its form.
 */
function isFormUpload(req: Request, query: string): boolean {
  if (req.method !== "POST") return false;
  const type = req.headers.get("content-type")?.trim().toLowerCase() ?? "";
  if (!type.startsWith("multipart/form-data")) return false;
  return !parseQueryPairs(query).some(([name]) => ["uploads", "uploadId", "delete"].includes(name));
}

/** Whether the request's Host names a bucket under -s3-domain. */
export function isVirtualHosted(req: Request, opts: S3Options): boolean {
  return opts.domain !== "" && hostBucket(req.headers.get("host"), opts.domain) !== null;
}

/**
 * The bucket a Host names under `domain` ("photos.s3.example.com:3000" under
 * "s3.example.com": "photos"; a name holding dots too); null for the domain
 * itself or a host not under it, which are path-style. Host names are
 * case-insensitive: the bucket is lowercased, as S3's bucket names are.
 */
export function hostBucket(host: string | null, domain: string): string | null {
  if (host === null) return null;
  // The port, then a fully qualified name's final dot.
  const name = host.trim().toLowerCase().replace(/:\d*$/, "").replace(/\.$/, "");
  if (!name.endsWith(`.${domain}`)) return null;
  const bucket = name.slice(0, -domain.length - 1);
  return bucket === "" ? null : bucket;
}

/** Where a request points: its bucket, its object, the plain key of both. */
interface Address {
  bucket: string;
  object: Uint8Array;
  key: Uint8Array;
  /** The object's URL (S3Request's). */
  url: string;
  /**
   * The path Signature Version 2 signs: for a virtual-hosted-style request,
   * the bucket's then the path sent ("/photos/cat.jpg" for Host
   * "photos.<domain>" and path "/cat.jpg"), as S3 defines its resource.
   */
  v2Path?: string;
}

/**
 * The scheme a TLS-terminating proxy in front says the client used
 * (X-Forwarded-Proto, its first entry: "https:"), for the URLs the gateway
 * answers with; null when it names none of http and https.
 */
function schemeOf(req: Request): string | null {
  const proto = req.headers.get("x-forwarded-proto")?.split(",")[0].trim().toLowerCase();
  return proto === "https" || proto === "http" ? `${proto}:` : null;
}

/**
 * Path-style: "/bucket/some/key". Virtual-hosted: the bucket from the Host,
 * the whole path its key ("/" alone: the bucket itself).
 */
function addressOf(req: Request, target: Target, opts: S3Options): Address {
  const bucket = opts.domain ? hostBucket(req.headers.get("host"), opts.domain) : null;
  const origin = `${schemeOf(req) ?? protocolOf(req.url)}//${authorityOf(req)}`;
  if (bucket === null) {
    const { bucket, object } = splitKey(target.key);
    return { bucket, object, key: target.key, url: `${origin}/${bucket}/${escapePath(object)}` };
  }
  const object = target.key.subarray(1);
  return {
    bucket,
    object,
    key: concat(encoder.encode(`/${bucket}`), target.key),
    url: `${origin}/${escapePath(object)}`,
    v2Path: `/${bucket}${target.rawPath}`,
  };
}

/**
 * "http:" of "http://host/path", read off the request's URL as sent, not
 * parsed: Deno builds it of the Host header, and a Host no URL can hold
 * ("h:99999", "[::1") made every S3 call a 500 of new URL's TypeError.
 */
function protocolOf(url: string): string {
  return url.slice(0, url.indexOf("//"));
}

/** The Host the request was sent to, or the authority of its URL when it names none. */
function authorityOf(req: Request): string {
  const host = req.headers.get("host");
  if (host !== null) return host;
  const start = req.url.indexOf("//") + 2;
  const end = req.url.indexOf("/", start);
  return req.url.slice(start, end < 0 ? undefined : end);
}

const encoder = new TextEncoder();

/** "/bucket/some/key" to "bucket" and the bytes of "some/key". */
function splitKey(key: Uint8Array): { bucket: string; object: Uint8Array } {
  const slash = key.indexOf(0x2f, 1);
  const end = slash < 0 ? key.length : slash;
  const bucket = new TextDecoder().decode(key.subarray(1, end));
  return { bucket, object: slash < 0 ? new Uint8Array() : key.subarray(slash + 1) };
}

function service(s3: S3Request): Promise<Response> {
  if (s3.req.method === "GET") return listing.listBuckets(s3);
  throw notAllowed(s3);
}

function bucketCall(s3: S3Request): Promise<Response> {
  const { method } = s3.req;
  const q = s3.query;
  if (method === "GET") {
    if (q.has("uploads")) return multipart.listUploads(s3);
    if (q.has("location")) return listing.location(s3);
    if (q.has("versioning")) return listing.versioning(s3);
    if (q.has("versions")) return listing.listVersions(s3);
    if (q.has("ownershipControls")) return listing.ownershipControls(s3);
    return q.get("list-type") === "2" ? listing.listV2(s3) : listing.listV1(s3);
  }
  if (method === "HEAD") return listing.headBucket(s3);
  if (method === "PUT" && q.has("ownershipControls")) return listing.putOwnershipControls(s3);
  if (method === "PUT") return listing.createBucket(s3);
  if (method === "DELETE") return listing.deleteBucket(s3);
  if (method === "POST" && q.has("delete")) return objects.deleteObjects(s3);
  throw notAllowed(s3);
}

function objectCall(s3: S3Request): Promise<Response> {
  const { method } = s3.req;
  const q = s3.query;
  const upload = q.get("uploadId");
  switch (method) {
    case "GET":
      if (q.has("attributes")) return getObjectAttributes(s3);
      if (q.has("tagging")) return getObjectTagging(s3);
      if (upload !== undefined) return multipart.listParts(s3, upload);
      return objects.getObject(s3, false);
    case "HEAD":
      return objects.getObject(s3, true);
    case "PUT":
      if (q.has("tagging")) return putObjectTagging(s3);
      if (upload !== undefined) return multipart.uploadPart(s3, upload);
      if (s3.headers.has("x-amz-copy-source")) return objects.copyObject(s3);
      return objects.putObject(s3);
    case "POST":
      if (q.has("uploads")) return multipart.createUpload(s3);
      if (upload !== undefined) return multipart.completeUpload(s3, upload);
      break;
    case "DELETE":
      if (q.has("tagging")) return deleteObjectTagging(s3);
      if (upload !== undefined) return multipart.abortUpload(s3, upload);
      return objects.deleteObject(s3);
  }
  throw notAllowed(s3);
}

/**
 * S3's sub-resources this gateway has no part of: every one of S3's API
 * but those it answers (S3_ARGS). Refused before dispatch: PUT ?acl is not
 * PutObject (it would overwrite the value with the XML), PUT ?renameObject
 * not a PutObject of nothing, DELETE ?policy not DeleteBucket, GET ?abac
 * not ListObjects.
 */
const UNSUPPORTED = [
  "acl",
  "policy",
  "policyStatus",
  "cors",
  "lifecycle",
  "legal-hold",
  "retention",
  "object-lock",
  "restore",
  "select",
  "torrent",
  "website",
  "logging",
  "notification",
  "replication",
  "encryption",
  "publicAccessBlock",
  "requestPayment",
  "accelerate",
  "analytics",
  "inventory",
  "metrics",
  "intelligent-tiering",
  "abac",
  "metadataConfiguration",
  "metadataTable",
  "metadataInventoryTable",
  "metadataJournalTable",
  "renameObject",
  "session",
];

/** Every parameter of S3's: the calls' arguments and every sub-resource. */
const S3_PARAMS = new Set([...S3_ARGS, ...UNSUPPORTED]);

/** The headers of server-side encryption, a copy source's included. */
const SSE = ["x-amz-server-side-encryption", "x-amz-copy-source-server-side-encryption"];

function refuseUnsupported(s3: S3Request) {
  for (const name of UNSUPPORTED) {
    if (s3.query.has(name)) throw notImplemented(`?${name}`);
  }
  objects.checkVersionId(s3.query.get("versionId"));
  // A retention or legal hold asked for and silently not kept would let a
  // client believe an object is protected: refused as S3 refuses it in a
  // bucket without Object Lock.
  for (const [name] of s3.headers) {
    if (name.startsWith("x-amz-object-lock-")) {
      throw s3Error("InvalidRequest", "Bucket is missing Object Lock Configuration");
    }
    // Likewise server-side encryption (S3's, KMS, a customer's key): values
    // are stored as sent, readable without any key; a client that asked for
    // encryption is told, not left to believe the object is encrypted.
    if (SSE.some((prefix) => name.startsWith(prefix))) {
      throw notImplemented(`Server-side encryption (${name})`);
    }
  }
  // An append (S3 Express's): taken for a PutObject it would overwrite the
  // object with just the bytes meant to go at its end.
  if (s3.headers.has("x-amz-write-offset-bytes")) {
    throw notImplemented("Appending to an object (x-amz-write-offset-bytes)");
  }
  // Only read: GetBucketVersioning, GetBucketLocation and ListObjectVersions
  // are answered.
  for (const name of ["versioning", "location", "versions"]) {
    if (s3.query.has(name) && s3.req.method !== "GET") {
      throw notImplemented(`${s3.req.method} ?${name}`);
    }
  }
  if (s3.query.has("ownershipControls")) refuseOwnershipCall(s3);
  if (s3.query.has("attributes")) refuseAttributesCall(s3);
  if (s3.query.has("tagging")) refuseTaggingCall(s3);
}

/**
 * Get-, Put- and DeleteObjectTagging are answered (lib/s3_tagging.ts); a
 * bucket's tags (Get-, Put-, DeleteBucketTagging) are not kept, and
 * ?tagging with another method is no call of S3's: never taken for a
 * ListObjects, CreateBucket or DeleteBucket of the same path.
 */
function refuseTaggingCall(s3: S3Request) {
  if (s3.object.length === 0) throw notImplemented("?tagging on a bucket");
  const { method } = s3.req;
  if (method !== "GET" && method !== "PUT" && method !== "DELETE") {
    throw notImplemented(`${method} ?tagging`);
  }
}

/**
 * GetObjectAttributes is answered (lib/s3_attributes.ts); ?attributes with
 * any other method, or on a bucket, is no call of S3's, never taken for a
 * PutObject, DeleteObject or ListObjects of the same path.
 */
function refuseAttributesCall(s3: S3Request) {
  if (s3.object.length === 0) throw notImplemented("?attributes on a bucket");
  if (s3.req.method !== "GET") throw notImplemented(`${s3.req.method} ?attributes`);
}

/**
 * Get- and PutBucketOwnershipControls are answered (lib/s3_list.ts);
 * DeleteBucketOwnershipControls is not: a bucket without them takes ACLs
 * in S3 (ObjectWriter's), which the gateway does not keep.
 */
function refuseOwnershipCall(s3: S3Request) {
  const { method } = s3.req;
  // A bucket's, never taken for a GetObject or PutObject of the key.
  if (s3.object.length > 0) throw notImplemented("?ownershipControls on an object");
  if (method === "DELETE") {
    throw s3Error(
      "NotImplemented",
      "DeleteBucketOwnershipControls is not implemented by this gateway: a bucket without " +
        "ownership controls takes ACLs (ObjectWriter), which the gateway does not keep",
    );
  }
  if (method !== "GET" && method !== "PUT") throw notImplemented(`${method} ?ownershipControls`);
}

function notAllowed(s3: S3Request): S3Error {
  return s3Error(
    "MethodNotAllowed",
    `The specified method ${s3.req.method} is not allowed against this resource.`,
  );
}

function notImplemented(what: string): S3Error {
  return s3Error("NotImplemented", `${what} is not implemented by this gateway`);
}
