// S3's request signatures (AWS Signature Version 4), checked the way S3
// checks them: from the Authorization header or from a presigned URL's
// X-Amz-* query parameters. Pure functions of the request's parts, so the
// AWS documentation's examples are the unit tests.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { checkV2, hasV2Signature, isV2 } from "./s3_auth_v2.ts";
import { argumentError, S3Error, s3Error } from "./s3_xml.ts";

export interface Credentials {
  accessKey: string;
  secretKey: string;
}

/** What the checks need of a request; `path` and `query` as sent. */
export interface SignedRequest {
  method: string;
  path: string;
  /**
   * The path Signature Version 2 signs when it is not `path`: a
   * virtual-hosted-style request's, its bucket's then `path` (S3's resource).
   */
  v2Path?: string;
  query: string;
  headers: Headers;
}

/** The outcome: how the payload is sent, and what signs its chunks. */
export interface Signature {
  /**
   * x-amz-content-sha256 (header auth); presigned, UNSIGNED-PAYLOAD or the
   * hex SHA-256 an x-amz-content-sha256 header names.
   */
  payload: string;
  /** For STREAMING-AWS4-HMAC-SHA256-PAYLOAD: the seed of the chunk chain. */
  chunks?: ChunkSigner;
  /**
   * Signed in the query (a presigned URL, either version): its x-amz-*
   * parameters stand for headers (lib/s3_presigned.ts).
   */
  presigned?: boolean;
}

/** Signs aws-chunked chunks, each over the one before (S3's streaming). */
export interface ChunkSigner {
  key: Uint8Array;
  date: string;
  scope: string;
  /** The request's own signature: the first chunk's "previous". */
  seed: string;
  /**
   * STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: the trailer after the last
   * chunk is signed too (x-amz-trailer-signature).
   */
  trailer: boolean;
}

const ALGORITHM = "AWS4-HMAC-SHA256";
/** Signature Version 4A (ECDSA, multi-region): S3's, not this gateway's. */
const ALGORITHM_4A = "AWS4-ECDSA-P256-SHA256";
/** S3 refuses header-signed requests dated further than this from now. */
const MAX_SKEW_MS = 15 * 60_000;
/** Presigned URLs live at most 7 days. */
const MAX_EXPIRES_S = 604_800;
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Whether a request carries an S3 signature at all. */
export function isSigned(headers: Headers, query: string): boolean {
  const auth = headers.get("authorization");
  if (auth !== null && [ALGORITHM, ALGORITHM_4A, "AWS "].some((a) => auth.startsWith(a))) {
    return true;
  }
  return isPresigned(query) || isV2(null, query);
}

/**
 * Whether a query carries any of a presigned URL's X-Amz-* parameters
 * (Signature Version 4): S3 then takes the request as presigned, and one
 * without all of them is AuthorizationQueryParametersError, never an
 * anonymous request (a URL cut short at a "&", as a shell does).
 */
function isPresigned(query: string): boolean {
  if (!query.includes("X-Amz-")) return false;
  return parseQueryPairs(query).some(([name]) => QUERY_PARAMETERS.includes(name));
}

/**
 * Checks a request's signature against `creds` (null: accept any, as mkv
 * does with no keys set). Throws S3Error (403, 400) when it does not hold.
 */
export function checkSignature(
  req: SignedRequest,
  creds: Credentials | null,
  now = Date.now(),
): Signature {
  const auth = req.headers.get("authorization");
  if (auth !== null && (isPresigned(req.query) || hasV2Signature(req.query))) {
    throw twoMechanisms(auth);
  }
  // Not left to mkv's API, which would store an upload's aws-chunked framing
  // as the value and answer a read with a redirect, the signature unchecked.
  if (auth?.startsWith(ALGORITHM_4A)) {
    throw s3Error(
      "NotImplemented",
      `Signature Version 4A (${ALGORITHM_4A}) is not implemented by this gateway`,
    );
  }
  if (isV2(auth, req.query)) {
    checkV2(req.v2Path === undefined ? req : { ...req, path: req.v2Path }, creds, now);
    return {
      payload: req.headers.get("x-amz-content-sha256") ?? "UNSIGNED-PAYLOAD",
      presigned: auth === null,
    };
  }
  if (auth === null && !isPresigned(req.query)) {
    if (creds) throw new S3Error("AccessDenied", "Anonymous requests are not allowed");
    return { payload: req.headers.get("x-amz-content-sha256") ?? "UNSIGNED-PAYLOAD" };
  }
  return checkV4(req, creds, { auth, now });
}

/**
 * A request signed in its Authorization header and presigned in its query
 * too (a presigned URL's X-Amz-* parameters, or Version 2's Signature): S3
 * takes neither, whichever would hold (400 InvalidArgument naming the
 * header, in S3's words), where the gateway checked the header alone.
 */
function twoMechanisms(auth: string): S3Error {
  return argumentError(
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature " +
      "query string parameter or the Authorization header should be specified",
    "Authorization",
    auth,
  );
}

/** checkSignature of a Signature Version 4 request: by header (`auth`) or presigned. */
function checkV4(
  req: SignedRequest,
  creds: Credentials | null,
  sent: { auth: string | null; now: number },
): Signature {
  const { auth, now } = sent;
  const parts = auth !== null ? fromHeader(auth, req.headers) : fromQuery(req.query);
  const sha = req.headers.get("x-amz-content-sha256");
  const payload = auth !== null ? sha ?? "" : presignedPayload(sha);
  if (auth !== null && payload === "") {
    throw new S3Error(
      "InvalidRequest",
      "Missing required header for this request: x-amz-content-sha256",
      400,
    );
  }
  if (auth !== null) checkPayload(payload);
  else refuseStreaming(sha);
  checkTime(parts, auth !== null, now);
  const presigned = auth === null;
  if (!creds) return { payload, presigned };
  if (parts.accessKey !== creds.accessKey) {
    throw new S3Error(
      "InvalidAccessKeyId",
      "The AWS Access Key Id you provided does not exist in our records.",
    );
  }
  const key = signingKey(creds.secretKey, parts.day, parts.region, parts.service);
  const scope = `${parts.day}/${parts.region}/${parts.service}/aws4_request`;
  const signature = matchingSignature(req, parts, {
    key,
    scope,
    payload,
    presigned: auth === null,
  });
  refuseUnsigned(req.headers, parts.signedHeaders);
  const chunks = payload.startsWith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    ? { key, date: parts.date, scope, seed: signature, trailer: payload.endsWith("-TRAILER") }
    : undefined;
  return { payload, chunks, presigned };
}

/**
 * A presigned request's payload: UNSIGNED-PAYLOAD, unless it carries a hex
 * x-amz-content-sha256 header, which its body is then held to, as S3 holds
 * it (a client that knows its upload's bytes presigns their SHA-256).
 */
function presignedPayload(sent: string | null): string {
  return sent !== null && SHA256_HEX.test(sent) ? sent : "UNSIGNED-PAYLOAD";
}

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

/**
 * A presigned request whose x-amz-content-sha256 names a STREAMING-*
 * payload: 400 InvalidRequest. S3 documents aws-chunked uploads only for
 * requests signed in the Authorization header (the request's signature seeds
 * the chunks'), and a presigned URL signs no payload: taken as
 * UNSIGNED-PAYLOAD, its framing was stored as the value unless a
 * Content-Encoding: aws-chunked said otherwise.
 */
function refuseStreaming(sent: string | null) {
  if (!sent?.startsWith("STREAMING-")) return;
  throw s3Error(
    "InvalidRequest",
    `x-amz-content-sha256 ${sent} is for requests signed in the Authorization header: ` +
      "a presigned URL's payload is UNSIGNED-PAYLOAD or a SHA-256",
  );
}

/** The payloads an x-amz-content-sha256 may name instead of the body's SHA-256. */
const PAYLOADS = [
  "UNSIGNED-PAYLOAD",
  "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
  "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
  "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
];
/** Signature Version 4A's chunks (ECDSA), which this gateway cannot check. */
const PAYLOADS_4A = [
  "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
  "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
];

/**
 * A header-signed request's x-amz-content-sha256: a SHA-256 in hex (either
 * case, as S3 takes it) or one of S3's payloads, else 400 InvalidArgument
 * naming it, as S3 (a value that names neither was stored unchecked).
 */
function checkPayload(payload: string) {
  if (SHA256_HEX.test(payload) || PAYLOADS.includes(payload)) return;
  if (PAYLOADS_4A.includes(payload)) {
    throw s3Error("NotImplemented", `${payload} is not implemented by this gateway`);
  }
  throw argumentError(
    `x-amz-content-sha256 must be ${[...PAYLOADS, ...PAYLOADS_4A].join(", ")} ` +
      "or a valid sha256 value.",
    "x-amz-content-sha256",
    payload,
  );
}

/** The signature computed that matches the one sent; else SignatureDoesNotMatch. */
function matchingSignature(
  req: SignedRequest,
  parts: Parts,
  signing: { key: Uint8Array; scope: string; payload: string; presigned: boolean },
): string {
  const { key, scope, payload, presigned } = signing;
  // Clients differ in how they escape a path; S3 signs it escaped once, by
  // its own rules. Try that first, then the path exactly as sent.
  const paths = [canonicalPath(req.path), req.path];
  // A presigned URL signs UNSIGNED-PAYLOAD, or the SHA-256 its request's
  // x-amz-content-sha256 carries (the Go SDK's, presigning a known body).
  const payloads = presigned ? [payload, "UNSIGNED-PAYLOAD"] : [payload];
  for (const line of new Set(payloads)) {
    for (const path of new Set(paths)) {
      const canonical = canonicalRequest(req, path, parts.signedHeaders, line, presigned);
      const signature = hmacHex(key, stringToSign(parts.date, scope, canonical));
      if (sameHex(signature, parts.signature)) return signature;
    }
  }
  throw new S3Error(
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided. " +
      "Check your key and signing method.",
  );
}

/**
 * S3 takes no x-amz-* header the signature leaves out (403 AccessDenied,
 * naming them): added to a signed request or a presigned URL, one would
 * change what it does unseen (x-amz-copy-source makes a PutObject a copy
 * of an object the signer never named). x-amz-content-sha256 is signed as
 * the payload line whether listed or not. Nor a signature that leaves out
 * Host, which Signature Version 4 requires: a virtual-hosted request's Host
 * names its bucket, and one signed without it was taken on any bucket's
 * Host (a PutObject replayed into another bucket).
 */
function refuseUnsigned(headers: Headers, signed: string[]) {
  const covered = new Set(signed.map((h) => h.toLowerCase()));
  const unsigned = [...headers.keys()].filter((name) =>
    name.startsWith("x-amz-") && name !== "x-amz-content-sha256" && !covered.has(name)
  );
  if (!covered.has("host")) unsigned.unshift("host");
  if (unsigned.length === 0) return;
  const err = new S3Error(
    "AccessDenied",
    "There were headers present in the request which were not signed",
  );
  err.names.HeadersNotSigned = unsigned.join(", ");
  throw err;
}

interface Parts {
  accessKey: string;
  day: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
  /** X-Amz-Date, "20130524T000000Z". */
  date: string;
  /** Header-signed only: the date as sent (X-Amz-Date, or Date), which S3's errors name. */
  sent?: string;
  /** Presigned only: seconds the URL is valid. */
  expires?: number;
}

function fromHeader(auth: string, headers: Headers): Parts {
  const fields = new Map<string, string>();
  for (const part of auth.slice(ALGORITHM.length).split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const date = headers.get("x-amz-date") ?? "";
  const parts = credentialParts(
    fields.get("Credential"),
    fields.get("SignedHeaders"),
    fields.get("Signature"),
    date || isoFromHttpDate(headers.get("date")),
  );
  return { ...parts, sent: date || headers.get("date")! };
}

/** The query parameters a presigned URL (Signature Version 4) must carry. */
const QUERY_PARAMETERS = [
  "X-Amz-Algorithm",
  "X-Amz-Credential",
  "X-Amz-Signature",
  "X-Amz-Date",
  "X-Amz-SignedHeaders",
  "X-Amz-Expires",
];

function fromQuery(query: string): Parts {
  const q = new Map(parseQueryPairs(query));
  // S3's words: one message whichever is missing, naming all it needs.
  if (QUERY_PARAMETERS.some((name) => !q.has(name))) {
    throw new S3Error(
      "AuthorizationQueryParametersError",
      "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, " +
        "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
      400,
    );
  }
  if (q.get("X-Amz-Algorithm") !== ALGORITHM) {
    throw new S3Error(
      "AuthorizationQueryParametersError",
      "X-Amz-Algorithm must be " + ALGORITHM,
      400,
    );
  }
  const parts = credentialParts(
    q.get("X-Amz-Credential"),
    q.get("X-Amz-SignedHeaders"),
    q.get("X-Amz-Signature"),
    q.get("X-Amz-Date")!,
  );
  // Decimal digits, as S3 reads it: "86400.0" or "0x15180" is no number of seconds.
  const sent = q.get("X-Amz-Expires")!;
  if (!/^-?\d+$/.test(sent)) {
    throw new S3Error("AuthorizationQueryParametersError", "X-Amz-Expires should be a number", 400);
  }
  const expires = Number(sent);
  if (expires < 1 || expires > MAX_EXPIRES_S) {
    throw new S3Error(
      "AuthorizationQueryParametersError",
      `X-Amz-Expires must be a number of seconds from 1 to ${MAX_EXPIRES_S}`,
      400,
    );
  }
  return { ...parts, expires };
}

function credentialParts(
  credential: string | undefined,
  signed: string | undefined,
  signature: string | undefined,
  date: string,
): Parts {
  const c = credential?.split("/") ?? [];
  if (c.length !== 5 || c[4] !== "aws4_request" || !signed || !signature) {
    throw new S3Error(
      "AuthorizationHeaderMalformed",
      "The authorization header is malformed: expected Credential, SignedHeaders and Signature",
      400,
    );
  }
  if (!/^\d{8}T\d{6}Z$/.test(date) || !date.startsWith(c[1])) {
    throw new S3Error(
      "AuthorizationHeaderMalformed",
      "X-Amz-Date is missing or does not match the credential's date",
      400,
    );
  }
  return {
    accessKey: c[0],
    day: c[1],
    region: c[2],
    service: c[3],
    signedHeaders: signed.split(";"),
    signature,
    date,
  };
}

function checkTime(parts: Parts, header: boolean, now: number) {
  const at = Date.UTC(
    +parts.date.slice(0, 4),
    +parts.date.slice(4, 6) - 1,
    +parts.date.slice(6, 8),
    +parts.date.slice(9, 11),
    +parts.date.slice(11, 13),
    +parts.date.slice(13, 15),
  );
  if (header) {
    if (Math.abs(now - at) > MAX_SKEW_MS) throw tooSkewed(parts.sent!, now);
    return;
  }
  // As S3 (and MinIO): a URL signed by a clock a little ahead is taken.
  if (at - now > MAX_SKEW_MS) throw notYetValid(at, at + parts.expires! * 1000, now);
  if (now > at + parts.expires! * 1000) {
    throw requestExpired(at + parts.expires! * 1000, now, parts.expires);
  }
}

/**
 * S3's answer to a header-signed request dated too far from the server's
 * clock: the request's time as sent, the server's, and the skew allowed.
 */
export function tooSkewed(sent: string, now: number): S3Error {
  const err = new S3Error(
    "RequestTimeTooSkewed",
    "The difference between the request time and the current time is too large.",
  );
  err.names.RequestTime = sent;
  err.names.ServerTime = errorTime(now);
  err.names.MaxAllowedSkewMilliseconds = MAX_SKEW_MS;
  return err;
}

/**
 * S3's answer to a presigned URL dated ahead of the server's clock (past
 * the skew allowed): its X-Amz-Date, in milliseconds since 1970 as S3
 * writes it, when it would expire and the server's time.
 */
function notYetValid(signedAt: number, expiresAt: number, now: number): S3Error {
  const err = new S3Error("AccessDenied", "Request is not yet valid");
  err.names["X-Amz-Date"] = signedAt;
  err.names.Expires = errorTime(expiresAt);
  err.names.ServerTime = errorTime(now);
  return err;
}

/**
 * S3's answer to a presigned URL past its time: when it expired and the
 * server's time, as S3 names them (and a Signature Version 4 URL's
 * X-Amz-Expires), so that a client can tell an expired URL from a skewed clock.
 */
export function requestExpired(expiredAt: number, now: number, amzExpires?: number): S3Error {
  const err = new S3Error("AccessDenied", "Request has expired");
  err.names["X-Amz-Expires"] = amzExpires;
  err.names.Expires = errorTime(expiredAt);
  err.names.ServerTime = errorTime(now);
  return err;
}

/** A time as S3's errors give it: whole seconds, "2026-11-24T10:00:00Z". */
function errorTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/** "Tue, 24 Nov 2026 10:00:00 GMT" to "20261124T100000Z" ("" when absent). */
function isoFromHttpDate(date: string | null): string {
  if (!date) return "";
  const t = Date.parse(date);
  return Number.isNaN(t) ? "" : new Date(t).toISOString().replace(/[-:]|\.\d{3}/g, "");
}

export function canonicalRequest(
  req: SignedRequest,
  path: string,
  signedHeaders: string[],
  payload: string,
  presigned: boolean,
): string {
  // A "+" is a space, as the call reads it (and S3 signs it): read as a
  // "+" (%2B), a holder of the URL could send a signed %2B as "+", and the
  // call take what it was never given.
  const pairs = parseQueryPairs(req.query, true)
    .filter(([k]) => !(presigned && k === "X-Amz-Signature"))
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0);
  const query = pairs.map(([k, v]) => `${k}=${v}`).join("&");
  const headers = signedHeaders.map((h) =>
    `${h}:${signedText(headerValue(req.headers, h)).trim().replace(/\s+/g, " ")}\n`
  ).join("");
  return [req.method, path, query, headers, signedHeaders.join(";"), payload].join("\n");
}

/**
 * A header's value; a Content-Length sent twice with the same number (some
 * clients do) is that number, not Headers' joined "6, 6".
 */
export function headerValue(h: Headers, name: string): string {
  const v = h.get(name) ?? "";
  if (name !== "content-length") return v;
  const m = /^(\d+)(\s*,\s*\1)*$/.exec(v);
  return m ? m[1] : v;
}

/**
 * A header's value as signatures (either version) sign it: the text its
 * bytes spell. Deno hands the master a header's bytes a character each,
 * and a string to sign is hashed as UTF-8, so bytes that are UTF-8 are
 * taken as the characters they encode, hashed as the same bytes sent (as
 * boto3 and S3 sign them; hashed a character each they were encoded twice,
 * 403 SignatureDoesNotMatch). Bytes that are no UTF-8 are each their Latin-1
 * character: fetch sends "é" as the one byte E9, which the AWS SDK for
 * JavaScript signs as its UTF-8.
 */
export function signedText(value: string): string {
  if (!/[\x80-\xff]/.test(value)) return value;
  try {
    return UTF8.decode(Uint8Array.from(value, (c) => c.charCodeAt(0)));
  } catch {
    return value;
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function stringToSign(date: string, scope: string, canonical: string): string {
  return `${ALGORITHM}\n${date}\n${scope}\n${sha256Hex(canonical)}`;
}

export function signingKey(
  secret: string,
  day: string,
  region: string,
  service: string,
): Uint8Array {
  let k: Uint8Array = hmac(new TextEncoder().encode("AWS4" + secret), day);
  for (const part of [region, service, "aws4_request"]) k = hmac(k, part);
  return k;
}

/** The signature of one aws-chunked chunk, given the one before it. */
export function chunkSignature(
  signer: ChunkSigner,
  previous: string,
  chunkSha256: string,
): string {
  const toSign = [
    "AWS4-HMAC-SHA256-PAYLOAD",
    signer.date,
    signer.scope,
    previous,
    EMPTY_SHA256,
    chunkSha256,
  ].join("\n");
  return hmacHex(signer.key, toSign);
}

/**
 * The signature of an aws-chunked body's trailer, given the last chunk's:
 * over the SHA-256 of its lines ("name:value\n" each, the signature's own
 * line not among them).
 */
export function trailerSignature(signer: ChunkSigner, previous: string, lines: string): string {
  const toSign = [
    "AWS4-HMAC-SHA256-TRAILER",
    signer.date,
    signer.scope,
    previous,
    sha256Hex(lines),
  ].join("\n");
  return hmacHex(signer.key, toSign);
}

/** The path as S3 signs it: percent-decoded, then every byte escaped but A-Z a-z 0-9 - _ . ~ /. */
export function canonicalPath(raw: string): string {
  let bytes: Uint8Array;
  try {
    bytes = decodeBytes(raw);
  } catch {
    return raw;
  }
  return escapeBytes(bytes, true);
}

/** AWS's URI encoding of a query name or value (already decoded). */
export function uriEncode(s: string): string {
  return escapeBytes(new TextEncoder().encode(s), false);
}

/** Bytes of a path as S3 escapes them: all but A-Z a-z 0-9 - _ . ~ / as %XX. */
export function escapePath(bytes: Uint8Array): string {
  return escapeBytes(bytes, true);
}

function escapeBytes(bytes: Uint8Array, keepSlash: boolean): string {
  let out = "";
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~]/.test(c) || (keepSlash && c === "/")) out += c;
    else out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function decodeBytes(s: string): Uint8Array {
  const src = new TextEncoder().encode(s);
  const out = new Uint8Array(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    if (src[i] === 0x25) {
      // The two hex digits as bytes of src (indexes into s would drift
      // after any non-ASCII character).
      const hex = String.fromCharCode(src[i + 1] ?? 0, src[i + 2] ?? 0);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Error("Broken escape");
      out[n++] = parseInt(hex, 16);
      i += 2;
    } else out[n++] = src[i];
  }
  return out.slice(0, n);
}

/**
 * A raw query as [name, value] pairs, percent-decoded. `plusIsSpace` reads
 * "+" as a space, as S3 reads the values of its parameters (clients signing
 * with version 2 send spaces so) and signatures sign them: what a call reads
 * and what its signature covers must be one text. Without it "+" stays "+":
 * for the parameters of the signature itself (a Version 2 Signature is
 * base64, whose "+" some clients send raw).
 */
export function parseQueryPairs(query: string, plusIsSpace = false): [string, string][] {
  if (query === "") return [];
  const dec = new TextDecoder();
  return query.split("&").filter((p) => p !== "").map((p) => {
    const eq = p.indexOf("=");
    let name = eq < 0 ? p : p.slice(0, eq);
    let value = eq < 0 ? "" : p.slice(eq + 1);
    if (plusIsSpace) {
      name = name.replaceAll("+", " ");
      value = value.replaceAll("+", " ");
    }
    try {
      return [dec.decode(decodeBytes(name)), dec.decode(decodeBytes(value))];
    } catch {
      return [name, value];
    }
  });
}

function hmac(key: Uint8Array, data: string): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(data).digest());
}

function hmacHex(key: Uint8Array, data: string): string {
  return createHmac("sha256", key).update(data).digest("hex");
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Whether the hex signature `a` (as sent) is `b`, compared in constant time. */
export function sameHex(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b.toLowerCase());
  return x.length === y.length && timingSafeEqual(x, y);
}
