// S3's wire format: XML answers and errors, and the XML bodies clients send
// (DeleteObjects, CompleteMultipartUpload, PutObjectTagging, ...).
import { XMLParser } from "fast-xml-parser";
import { reasons, sent, unwritten } from "./sizes.ts";
import { Fenced, IndexGone, isBusy, LOCKED_ANSWER } from "./group_commit.ts";
import { CLIENT_CLOSED, ShuttingDown } from "./fanout.ts";

const NS = "http://s3.amazonaws.com/doc/2006-03-01/";

/** An S3 error: its code, S3's status for it, and a message for people. */
export class S3Error extends Error {
  /**
   * What S3 names in some errors: the missing key (NoSuchKey), the missing
   * bucket (NoSuchBucket), the argument refused (InvalidArgument), the range
   * asked for and the object's size (InvalidRange), a key's size and the
   * most allowed (KeyTooLongError), the storage class or region asked for
   * (InvalidStorageClass, InvalidLocationConstraint), when an expired
   * presigned URL expired and the master's time then (AccessDenied; one
   * not yet valid, its X-Amz-Date too), a skewed request's time, the
   * master's and the skew allowed (RequestTimeTooSkewed), the x-amz-*
   * headers a signature left out (AccessDenied), the tag refused and its
   * value (InvalidTag).
   */
  readonly names: {
    Key?: string;
    BucketName?: string;
    ArgumentName?: string;
    ArgumentValue?: string;
    RangeRequested?: string;
    ActualObjectSize?: number;
    Size?: number;
    MaxSizeAllowed?: number;
    StorageClassRequested?: string;
    LocationConstraint?: string;
    "X-Amz-Expires"?: number;
    "X-Amz-Date"?: number;
    Expires?: string;
    RequestTime?: string;
    ServerTime?: string;
    MaxAllowedSkewMilliseconds?: number;
    HeadersNotSigned?: string;
    TagKey?: string;
    TagValue?: string;
  } = {};

  /**
   * Decided by what the index held, nothing written (a store Outcome's
   * `unindexed`): its answer is `unwritten` (lib/sizes.ts).
   */
  unwritten = false;

  constructor(readonly code: string, message: string, readonly status = 403) {
    super(message);
  }
}

/** S3's status for the codes this gateway answers with, when not 403. */
export function s3Error(code: string, message: string): S3Error {
  return new S3Error(code, message, STATUS[code] ?? 400);
}

/** InvalidArgument naming the argument and its value, as S3 does. */
export function argumentError(message: string, name: string, value: string): S3Error {
  const err = s3Error("InvalidArgument", message);
  err.names.ArgumentName = name;
  err.names.ArgumentValue = value;
  return err;
}

const STATUS: { [code: string]: number } = {
  NoSuchKey: 404,
  NoSuchBucket: 404,
  NoSuchUpload: 404,
  BucketNotEmpty: 409,
  BucketAlreadyOwnedByYou: 409,
  OperationAborted: 409,
  InvalidRange: 416,
  InvalidPartNumber: 416,
  PreconditionFailed: 412,
  NotImplemented: 501,
  MethodNotAllowed: 405,
  InternalError: 500,
  ServiceUnavailable: 503,
  InsufficientStorage: 507,
  SlowDown: 503,
  AccessDenied: 403,
  MissingContentLength: 411,
};

/**
 * A time as S3's XML gives it (LastModified, Initiated, CreationDate):
 * whole seconds, as HTTP's Last-Modified of the same object is.
 */
export function xmlTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString();
}

export function escapeXml(s: string): string {
  // "\r" too: an XML parser would read a raw one back as "\n".
  return s.replace(/[&<>"'\r]/g, (c) => `&#${c.charCodeAt(0)};`)
    // XML 1.0 has no other control characters, even escaped; S3 writes them
    // as references all the same ("&#x1;"): the AWS SDK for JavaScript reads
    // them back as the key, strict parsers refuse the document (as S3's),
    // and encoding-type=url (boto3's default) avoids them. U+FFFD instead
    // would list a key that is not the key, and two keys as one.
    // deno-lint-ignore no-control-regex
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, (c) => `&#x${c.charCodeAt(0).toString(16)};`);
}

/** A tree of elements: a string is text, an array repeats the element. */
export type Xml = string | number | boolean | XmlNode | XmlNode[] | null | undefined;
export interface XmlNode {
  [name: string]: Xml;
}

function render(name: string, value: Xml): string {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map((v) => render(name, v)).join("");
  if (typeof value === "object") {
    const inner = Object.entries(value).map(([k, v]) => render(k, v)).join("");
    return `<${name}>${inner}</${name}>`;
  }
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}

/** An XML document with one root element in S3's namespace. */
export function xmlDocument(root: string, body: XmlNode): string {
  const inner = Object.entries(body).map(([k, v]) => render(k, v)).join("");
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${NS}">${inner}</${root}>`;
}

/** An answer whose root element holds text alone (GetBucketLocation's). */
export function xmlTextResponse(root: string, text: string): Response {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${NS}">` +
    `${escapeXml(text)}</${root}>`;
  return withXml(xml, { status: 200, headers: { "Content-Type": "application/xml" } });
}

export function xmlResponse(root: string, body: XmlNode, status = 200): Response {
  return withXml(xmlDocument(root, body), {
    status,
    headers: { "Content-Type": "application/xml" },
  });
}

/** A response with an XML body, its size noted (lib/sizes.ts). */
function withXml(xml: string, init: ResponseInit): Response {
  const bytes = encoder.encode(xml);
  const res = new Response(bytes, init);
  sent.set(res, bytes.length);
  return res;
}

const encoder = new TextEncoder();

/** What an <Error> names, in the order S3 writes it. */
const NAMED: (keyof S3Error["names"])[] = [
  "Key",
  "BucketName",
  "ArgumentName",
  "ArgumentValue",
  "RangeRequested",
  "ActualObjectSize",
  "Size",
  "MaxSizeAllowed",
  "StorageClassRequested",
  "LocationConstraint",
  "X-Amz-Expires",
  "X-Amz-Date",
  "Expires",
  "RequestTime",
  "ServerTime",
  "MaxAllowedSkewMilliseconds",
  "HeadersNotSigned",
  "TagKey",
  "TagValue",
];

/** S3's <Error> document. */
export function errorDocument(err: S3Error, resource: string, id = newRequestId()): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n` +
    render("Error", {
      Code: err.code,
      Message: err.message,
      ...Object.fromEntries(NAMED.map((name) => [name, err.names[name]])),
      Resource: resource,
      RequestId: id,
    });
}

/**
 * The ServiceUnavailable of a call the index refused: a write fenced, the
 * index locked past its retries, its file gone; or one a stopping master
 * cut off (ShuttingDown) before its write was sent. Nothing was written, and a
 * retry can succeed (once the master has joined again, the lock is
 * released, the master restarted); S3's clients retry a 503. Null for any
 * other error.
 */
export function refusalOf(err: unknown): S3Error | null {
  if (isBusy(err)) return s3Error("ServiceUnavailable", LOCKED_ANSWER);
  if (err instanceof Fenced || err instanceof IndexGone || err instanceof ShuttingDown) {
    return s3Error("ServiceUnavailable", err.message);
  }
  return null;
}

export function newRequestId(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 16).toUpperCase();
}

/** The RequestId in an error answer's body, for its x-amz-request-id header. */
export const errorIds = new WeakMap<Response, string>();

/**
 * An S3 error answer; HEAD answers carry no body (as S3), nor does a 499
 * (its client gone: no byte of it counts as sent, as mkv's).
 */
export function errorResponse(err: S3Error, resource: string, head: boolean): Response {
  const headers: HeadersInit = { "Content-Type": "application/xml" };
  let res;
  if (head || err.status === CLIENT_CLOSED) {
    res = new Response(null, { status: err.status, headers });
  } else {
    const id = newRequestId();
    res = withXml(errorDocument(err, resource, id), { status: err.status, headers });
    errorIds.set(res, id);
  }
  if (err.status >= 500) reasons.set(res, err.message);
  if (err.unwritten) unwritten.add(res);
  return res;
}

const parser = new XMLParser({
  ignoreAttributes: true,
  removeNSPrefix: true,
  parseTagValue: false,
  trimValues: false,
  // References are read here (textOf), once each: the parser's own read
  // "&#x1F600;" as U+F600 (16 bits), "&#38;#x3C;" as "<" (twice over),
  // and HTML's "&nbsp;" and "&copy;", which XML does not define.
  processEntities: false,
  tagValueProcessor: (_name, value) => textOf(value),
  isArray: (name) => ["Object", "Part", "Rule", "Tag"].includes(name),
});

/** XML's named references: the only ones a body without a DOCTYPE has. */
const ENTITIES = new Map([["amp", "&"], ["lt", "<"], ["gt", ">"], ["quot", '"'], ["apos", "'"]]);

/**
 * Text with its references read: XML's five named ones and numeric ones
 * (SDKs write "\n" in a key as "&#x0A;"); any other "&" is MalformedXML,
 * as S3's parser, strict XML, refuses it.
 */
function textOf(raw: string): string {
  return raw.replace(/&(?:#x([0-9a-fA-F]+);|#([0-9]+);|([a-z]+);)?/g, (_ref, hex, dec, name) => {
    const named = name === undefined ? undefined : ENTITIES.get(name);
    if (named !== undefined) return named;
    const code = hex !== undefined ? parseInt(hex, 16) : dec !== undefined ? parseInt(dec, 10) : -1;
    if (code < 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) throw notWellFormed();
    return String.fromCodePoint(code);
  });
}

/**
 * CDATA sections as the text they hold, escaped (comments left as they
 * are): with references read by textOf, the parser's CDATA would be read
 * for references too. One pass, each end looked for once: a regex
 * scanning from every "<!--" to the body's end for its "-->" held the
 * master's thread about 12 minutes for a 2 MiB body of unclosed ones.
 */
function cdataAsText(text: string): string {
  let out = "";
  let at = 0;
  // Once an end is not found after some opening, none follows a later one.
  let commentsEnd = true;
  let cdataEnds = true;
  for (let open = text.indexOf("<!", at); open >= 0; open = text.indexOf("<!", open + 2)) {
    if (commentsEnd && text.startsWith("<!--", open)) {
      const end = text.indexOf("-->", open + 4);
      if (end < 0) commentsEnd = false;
      else open = end + 1; // The comment as it is; "-->" past.
      continue;
    }
    if (!cdataEnds || !text.startsWith("<![CDATA[", open)) continue;
    const end = text.indexOf("]]>", open + 9);
    if (end < 0) {
      cdataEnds = false;
      continue;
    }
    const cdata = text.slice(open + 9, end);
    out += text.slice(at, open) +
      cdata.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
    at = end + 3;
    open = end + 1;
  }
  return out + text.slice(at);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A request's XML body as text: bytes that are not UTF-8 are 400
 * MalformedXML, as S3's parser refuses them (read as U+FFFD, a
 * DeleteObjects deleted the key of that character instead).
 */
export function xmlText(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw notWellFormed();
  }
}

function notWellFormed(): S3Error {
  return s3Error("MalformedXML", "The XML you provided was not well-formed");
}

function parse(text: string): { [name: string]: unknown } {
  // The parser expands entities a DOCTYPE declares, each reference anew: a
  // 4 KB body could name a megabyte key, a 2 MiB one gigabytes. S3's bodies
  // have no DOCTYPE; one is refused.
  if (/<!DOCTYPE/i.test(text)) {
    throw s3Error(
      "MalformedXML",
      "The XML you provided has a DOCTYPE, which S3's bodies never have",
    );
  }
  try {
    const doc = parser.parse(cdataAsText(text), true);
    if (typeof doc === "object" && doc !== null) return doc;
  } catch (err) {
    // A reference textOf refused, else falls through to the error below.
    if (err instanceof S3Error) throw err;
  }
  throw notWellFormed();
}

/** DeleteObjects' body: the keys to delete and whether to answer quietly. */
export function parseDelete(
  text: string,
): {
  keys: string[];
  versions: (string | undefined)[];
  /** Each key's <ETag>, S3's conditional delete (If-Match) of that key. */
  etags: (string | undefined)[];
  quiet: boolean;
} {
  const del = parse(text).Delete as
    | { Object?: { Key?: unknown; VersionId?: unknown; ETag?: unknown }[]; Quiet?: unknown }
    | undefined;
  // S3's schema: one <Object> at least (an empty <Delete/> parses as "").
  if (!del || typeof del !== "object" || !del.Object?.length) {
    throw s3Error("MalformedXML", "Expected <Delete> with 1 to 1000 <Object> elements");
  }
  const objects = del.Object;
  if (objects.length > 1000) {
    throw s3Error("MalformedXML", "At most 1000 keys can be deleted in one request");
  }
  const keys = objects.map((o) => {
    if (typeof o?.Key !== "string" || o.Key === "") {
      throw s3Error("MalformedXML", "Every <Object> needs a <Key>");
    }
    return o.Key;
  });
  const versions = objects.map((o) => o.VersionId === undefined ? undefined : String(o.VersionId));
  const etags = objects.map((o) => o.ETag === undefined ? undefined : String(o.ETag));
  return { keys, versions, etags, quiet: String(del.Quiet ?? "").trim().toLowerCase() === "true" };
}

/**
 * CreateBucket's body: its <LocationConstraint>, "" without one (an empty
 * body, or a configuration naming none: us-east-1's).
 */
export function parseCreateBucket(text: string): string {
  if (text.trim() === "") return "";
  const config = parse(text).CreateBucketConfiguration as
    | { LocationConstraint?: unknown }
    | undefined;
  if (config === undefined || (typeof config !== "object" && config !== "")) {
    throw s3Error("MalformedXML", "Expected <CreateBucketConfiguration>");
  }
  const constraint = typeof config === "object" ? config.LocationConstraint : undefined;
  return typeof constraint === "string" ? constraint.trim() : "";
}

/** A body that parsed but is not what S3's schema allows there, as S3 says it. */
export function schemaError(): S3Error {
  return s3Error(
    "MalformedXML",
    "The XML you provided was not well-formed or did not validate against our published schema",
  );
}

/**
 * PutBucketOwnershipControls' body: the <ObjectOwnership> of its one
 * <Rule> (S3's schema allows one), as sent; none, or two rules, is 400
 * MalformedXML.
 */
export function parseOwnershipControls(text: string): string {
  const controls = parse(text).OwnershipControls as { Rule?: unknown[] } | undefined;
  const rules = typeof controls === "object" ? controls.Rule ?? [] : [];
  const rule = rules.length === 1 ? rules[0] as { ObjectOwnership?: unknown } : undefined;
  const ownership = typeof rule === "object" ? rule.ObjectOwnership : undefined;
  if (typeof ownership !== "string") throw schemaError();
  return ownership;
}

/**
 * PutObjectTagging's body: its <Tag>s' keys and values as sent, in order
 * (judged by lib/s3_tags.ts). No <Tagging>, no <TagSet> in it, a <Tag>
 * without one <Key> and one <Value>, or one of them not text, is S3's
 * MalformedXML; an empty <TagSet/> is no tags.
 */
export function parseTagging(text: string): [string, string][] {
  const tagging = parse(text).Tagging as { TagSet?: unknown } | undefined;
  const set = typeof tagging === "object" ? tagging.TagSet : undefined;
  if (typeof set === "string" && set.trim() === "") return [];
  if (typeof set !== "object" || set === null) throw schemaError();
  const tags = (set as { Tag?: unknown[] }).Tag ?? [];
  return tags.map((t) => {
    const tag = t as { Key?: unknown; Value?: unknown };
    if (typeof tag !== "object" || typeof tag.Key !== "string" || typeof tag.Value !== "string") {
      throw schemaError();
    }
    return [tag.Key, tag.Value];
  });
}

/** One part a CompleteMultipartUpload names. */
export interface CompletePart {
  number: number;
  etag: string;
  /** Its <ChecksumCRC32> and the like: algorithm (lowercase) to value. */
  checksums: Map<string, string>;
}

/** CompleteMultipartUpload's body: the parts, in the order given. */
export function parseComplete(text: string): CompletePart[] {
  const done = parse(text).CompleteMultipartUpload as { Part?: unknown[] } | undefined;
  if (!done || typeof done !== "object" || !done.Part?.length) {
    throw s3Error("MalformedXML", "Expected <CompleteMultipartUpload> with <Part> elements");
  }
  return done.Part.map((p) => {
    const part = p as { PartNumber?: unknown; ETag?: unknown; [name: string]: unknown };
    // Decimal digits only: "0x2", "2e0" or "" are no part's number, though Number() reads them.
    const digits = typeof part.PartNumber === "string" ? part.PartNumber.trim() : "";
    if (!/^\d+$/.test(digits) || typeof part.ETag !== "string") {
      throw s3Error("MalformedXML", "Every <Part> needs a <PartNumber> and an <ETag>");
    }
    const checksums = new Map<string, string>();
    for (const [name, value] of Object.entries(part)) {
      const alg = /^Checksum([A-Z0-9]+)$/.exec(name)?.[1];
      if (alg && alg !== "TYPE" && typeof value === "string") {
        checksums.set(alg.toLowerCase(), value.trim());
      }
    }
    return {
      number: Number(digits),
      etag: part.ETag.trim().replace(/^"|"$/g, "").replace(/^&quot;|&quot;$/g, ""),
      checksums,
    };
  });
}
