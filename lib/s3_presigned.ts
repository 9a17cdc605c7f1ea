// A presigned URL's request headers in its query string. SDK presigners put
// a call's x-amz-* headers there (the AWS SDKs for JavaScript, PHP and Ruby
// with Signature Version 4; botocore, boto3's default, with Version 2), and
// S3 takes them as the headers they stand for: a presigned PutObject's
// x-amz-meta-* and x-amz-tagging are kept as if sent as headers. They are
// signed as part of the query: Version 4's canonical query string holds
// them, Version 2's string to sign holds them with its x-amz-* headers.
import { argumentError } from "./s3_xml.ts";

/** A presigned URL's own parameters (Version 4's), lowercased: never headers. */
const AUTH_PARAMETERS = new Set([
  "x-amz-algorithm",
  "x-amz-credential",
  "x-amz-date",
  "x-amz-expires",
  "x-amz-signedheaders",
  "x-amz-signature",
  "x-amz-security-token",
]);

/**
 * Whether S3 takes a query's x-amz-* parameter (lowercased) for its header.
 * Not x-amz-content-sha256: S3 reads a presigned URL's payload hash from a
 * header only (the query's says UNSIGNED-PAYLOAD, as the SDKs sign it). Nor
 * a checksum (x-amz-checksum-*, x-amz-sdk-checksum-algorithm): S3 ignores
 * one in the query, and the AWS SDK for JavaScript puts the CRC32 of no
 * bytes there in every presigned PutObject since 3.729.
 */
function takenAsHeader(name: string): boolean {
  if (!name.startsWith("x-amz-") || AUTH_PARAMETERS.has(name)) return false;
  if (name === "x-amz-content-sha256" || name === "x-amz-sdk-checksum-algorithm") return false;
  return !name.startsWith("x-amz-checksum-");
}

/**
 * The headers a presigned request's call reads: its own, and each x-amz-*
 * parameter of its query (`pairs`, decoded) that S3 takes for a header. A
 * header the request sends itself wins over the query's (as MinIO and
 * LocalStack read them; a Version 4 one is signed, or refused unsigned).
 */
export function presignedHeaders(headers: Headers, pairs: [string, string][]): Headers {
  return withQueryHeaders(headers, pairs, takenAsHeader);
}

/**
 * The headers a Version 2 presigned URL signs: its request's and every
 * x-amz-* parameter of its query (botocore's HmacV1QueryAuth moves them
 * all there, and signs them as its x-amz-* headers).
 */
export function v2SignedHeaders(headers: Headers, pairs: [string, string][]): Headers {
  return withQueryHeaders(headers, pairs, (name) => name.startsWith("x-amz-"));
}

/**
 * `headers` with each parameter of `pairs` that `taken` names and the
 * request does not send itself. A parameter given twice is one header of
 * its values joined with "," (Headers.append would join them with ", "): as
 * S3 joins a header's lines, for Version 2's string to sign (its
 * documentation's rule, botocore's) and to keep them (Ceph's RGW, an S3
 * clone, joins a query's repeated x-amz-meta-* so too).
 */
function withQueryHeaders(
  headers: Headers,
  pairs: [string, string][],
  taken: (name: string) => boolean,
): Headers {
  const added = new Map<string, string[]>();
  for (const [sent, value] of pairs) {
    const name = sent.toLowerCase();
    if (!taken(name) || headers.has(checkName(name, sent))) continue;
    added.set(name, [...added.get(name) ?? [], headerValue(sent, value)]);
  }
  if (added.size === 0) return headers;
  const out = new Headers(headers);
  for (const [name, values] of added) out.set(name, values.join(","));
  return out;
}

/** A header name of a parameter's, else 400 InvalidArgument naming it (Headers would throw). */
function checkName(name: string, sent: string): string {
  if (/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) return name;
  throw argumentError("The query parameter's name is not a valid header name.", sent, sent);
}

/**
 * A parameter's value as its header would carry it: its UTF-8 bytes, each
 * a character (as Deno hands the master a header's bytes), so a value sent
 * in the query is kept as the same bytes sent as a header are. A line break
 * or NUL, which no header holds, is 400 InvalidArgument naming it.
 */
function headerValue(param: string, value: string): string {
  if (/[\0\r\n]/.test(value)) {
    throw argumentError("Header value cannot hold a line break or NUL.", param, value);
  }
  let out = "";
  for (const b of new TextEncoder().encode(value)) out += String.fromCharCode(b);
  return out;
}
