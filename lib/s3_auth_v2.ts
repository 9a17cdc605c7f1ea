// S3's older request signatures (Signature Version 2: HMAC-SHA1), still what
// boto3's generate_presigned_url and s3cmd-style tools send by default:
// "Authorization: AWS <key>:<signature>" or "?AWSAccessKeyId=&Expires=&Signature=".
import { createHmac, timingSafeEqual } from "node:crypto";
import type { Credentials, SignedRequest } from "./s3_auth.ts";
import { parseQueryPairs, requestExpired, signedText, tooSkewed } from "./s3_auth.ts";
import { v2SignedHeaders } from "./s3_presigned.ts";
import { S3Error } from "./s3_xml.ts";

const MAX_SKEW_MS = 15 * 60_000;

/**
 * Query parameters that are part of the signed resource: S3's list, and
 * every one botocore signs (its HmacV1Auth's), so a call on any of them
 * (?cors, ?select&select-type=2, ...) is answered, not refused as
 * SignatureDoesNotMatch.
 */
const SUBRESOURCES = new Set([
  "accelerate",
  "acl",
  "analytics",
  "cors",
  "defaultObjectAcl",
  "delete",
  "inventory",
  "lifecycle",
  "location",
  "logging",
  "metrics",
  "notification",
  "object-lock",
  "partNumber",
  "policy",
  "replication",
  "requestPayment",
  "restore",
  "select",
  "select-type",
  "storageClass",
  "response-cache-control",
  "response-content-disposition",
  "response-content-encoding",
  "response-content-language",
  "response-content-type",
  "response-expires",
  "tagging",
  "torrent",
  "uploadId",
  "uploads",
  "versionId",
  "versioning",
  "versions",
  "website",
]);

/**
 * A presigned URL's Signature Version 2 parameters: any of them makes the
 * request presigned, and then all three are required (checkV2), as S3 and
 * LocalStack, which checks it against S3, have it: a URL cut short at an
 * "&" is refused, never an anonymous request nor mkv's API.
 */
const QUERY_PARAMETERS = ["AWSAccessKeyId", "Expires", "Signature"];

/**
 * Whether the request carries a Signature Version 2: in its Authorization
 * header, or any of a presigned URL's parameters.
 */
export function isV2(auth: string | null, query: string): boolean {
  if (auth !== null) return auth.startsWith("AWS ");
  if (!QUERY_PARAMETERS.some((name) => query.includes(name))) return false;
  return parseQueryPairs(query).some(([name]) => QUERY_PARAMETERS.includes(name));
}

/** Whether a query carries a presigned URL's Version 2 Signature. */
export function hasV2Signature(query: string): boolean {
  if (!query.includes("Signature")) return false;
  return parseQueryPairs(query).some(([name]) => name === "Signature");
}

/** Checks a Signature Version 2; throws S3Error when it does not hold. */
export function checkV2(req: SignedRequest, creds: Credentials | null, now: number) {
  const auth = req.headers.get("authorization");
  const q = new Map(parseQueryPairs(req.query));
  let accessKey: string, signature: string, date: string;
  if (auth !== null) {
    const colon = auth.lastIndexOf(":");
    if (colon < 4) {
      throw new S3Error("AuthorizationHeaderMalformed", "Expected AWS <key>:<signature>", 400);
    }
    accessKey = auth.slice(4, colon).trim();
    signature = auth.slice(colon + 1).trim();
    // With x-amz-date, the Date line of the string to sign is empty.
    const when = req.headers.get("x-amz-date") ?? req.headers.get("date") ?? "";
    const at = Date.parse(when);
    if (Number.isNaN(at)) throw new S3Error("AccessDenied", "The request has no valid Date");
    if (Math.abs(now - at) > MAX_SKEW_MS) throw tooSkewed(when, now);
    date = req.headers.has("x-amz-date") ? "" : when;
  } else {
    // S3's words, whichever is missing.
    if (!QUERY_PARAMETERS.every((name) => q.has(name))) {
      throw new S3Error(
        "AccessDenied",
        "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
      );
    }
    accessKey = q.get("AWSAccessKeyId") ?? "";
    signature = q.get("Signature") ?? "";
    date = q.get("Expires") ?? "";
    if (!/^\d+$/.test(date)) throw new S3Error("AccessDenied", "Expires must be a number", 403);
    if (now > Number(date) * 1000) throw requestExpired(Number(date) * 1000, now);
  }
  if (!creds) return;
  if (accessKey !== creds.accessKey) {
    throw new S3Error(
      "InvalidAccessKeyId",
      "The AWS Access Key Id you provided does not exist in our records.",
    );
  }
  // A bucket's resource is "/bucket/" (S3's own rule, botocore's HmacV1
  // signs that) though a path-style request for it may say "/bucket".
  const paths = [req.path];
  if (/^\/[^/]+$/.test(req.path)) paths.push(req.path + "/");
  // A presigned URL's x-amz-* parameters are signed as its x-amz-* headers.
  // "+" a space in both, as the call reads them (parseQueryPairs).
  const headers = auth === null
    ? v2SignedHeaders(req.headers, parseQueryPairs(req.query, true))
    : req.headers;
  const b = new TextEncoder().encode(signature);
  const matches = paths.some((path) => {
    const a = new TextEncoder().encode(
      signV2(creds.secretKey, stringToSignV2({ ...req, path, headers }, date)),
    );
    return a.length === b.length && timingSafeEqual(a, b);
  });
  if (!matches) {
    throw new S3Error(
      "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided. " +
        "Check your key and signing method.",
    );
  }
}

export function stringToSignV2(req: SignedRequest, date: string): string {
  const h = req.headers;
  const amz = [...h].filter(([name]) => name.startsWith("x-amz-"))
    .map(([name, value]) => `${name}:${signedText(value).trim()}\n`)
    .sort()
    .join("");
  const sub = parseQueryPairs(req.query, true)
    .filter(([name]) => SUBRESOURCES.has(name))
    .sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
    .map(([name, value]) => (value === "" ? name : `${name}=${value}`));
  const resource = req.path + (sub.length ? `?${sub.join("&")}` : "");
  return [
    req.method,
    signedText(h.get("content-md5") ?? ""),
    signedText(h.get("content-type") ?? ""),
    date,
    amz + resource,
  ].join("\n");
}

export function signV2(secret: string, toSign: string): string {
  return createHmac("sha1", secret).update(toSign).digest("base64");
}
