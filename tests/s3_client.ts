// The S3 clients as the tests use them: the AWS SDK's, path-style, one
// attempt (each answer is the master's own, not a retry's), alone or with a
// fresh -s3 cluster; the Python (boto3) checks under tests/clients; and
// Signature Version 4 by hand, for the requests no client sends.
import { createHash, createHmac } from "node:crypto";
import zlib from "node:zlib";
import { Buffer } from "node:buffer";
import { CreateMultipartUploadCommand, S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { canonicalRequest, type SignedRequest, signingKey, stringToSign } from "../lib/s3_auth.ts";
import { Cluster } from "./cluster.ts";
import { assertEquals } from "./assert.ts";

/** A client of the master at `endpoint`; without keys, the master (-s3) checks no signature. */
export function s3Client(
  endpoint: string,
  credentials = { accessKeyId: "x", secretAccessKey: "y" },
): S3Client {
  return new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials,
    maxAttempts: 1,
  });
}

/** Runs `test` on a fresh cluster whose master serves S3 (-s3), with its client; stops both after. */
export async function withS3Cluster(
  test: (c: Cluster, s3: S3Client) => Promise<void>,
): Promise<void> {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  try {
    await test(c, s3);
  } finally {
    s3.destroy();
    await c.stop();
  }
}

/**
 * Runs the Python client check tests/clients/`script` with `args`: asserts
 * that it exits 0 having printed exactly `lines` (its "ok <name>" lines).
 */
export async function assertPythonChecks(script: string, args: string[], lines: string[]) {
  const out = await new Deno.Command("python3", {
    args: [new URL(`./clients/${script}`, import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const printed = new TextDecoder().decode(out.stdout).trim().split("\n");
  const errors = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, printed.join("\n") + "\n" + errors);
  assertEquals(printed, lines);
}

/** A multipart upload of `Key` with `parts` as its parts 1 to n: its id and the Parts to complete it. */
export async function uploadParts(
  s3: S3Client,
  Bucket: string,
  Key: string,
  parts: Uint8Array[],
): Promise<{ UploadId: string; Parts: { PartNumber: number; ETag: string }[] }> {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
  const Parts = [];
  for (const [i, Body] of parts.entries()) {
    const PartNumber = i + 1;
    const { ETag } = await s3.send(
      new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body }),
    );
    Parts.push({ PartNumber, ETag: ETag! });
  }
  return { UploadId: UploadId!, Parts };
}

/**
 * The headers of an S3 call whose payload is unsigned (UNSIGNED-PAYLOAD),
 * signed with a signature of zeros: what a master without S3 keys (-s3)
 * takes, as it checks no signature; `extra` added.
 */
export function unsignedHeaders(extra: Record<string, string> = {}): Record<string, string> {
  const now = new Date().toISOString().replace(/[-:]|\.\d+/g, "");
  return {
    "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
    "x-amz-date": now,
    "authorization": `AWS4-HMAC-SHA256 Credential=a/${now.slice(0, 8)}/us-east-1/s3/` +
      `aws4_request, SignedHeaders=host;x-amz-date, Signature=${"0".repeat(64)}`,
    ...extra,
  };
}

/**
 * The headers of an unsigned aws-chunked body (STREAMING-UNSIGNED-PAYLOAD-TRAILER)
 * declaring `decoded` bytes, signed with a signature of zeros: what a master
 * without S3 keys (-s3) takes, as it checks no signature.
 */
export function awsChunkedHeaders(decoded: number): Record<string, string> {
  const now = new Date().toISOString().replace(/[-:]|\.\d+/g, "");
  return {
    "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": String(decoded),
    "x-amz-date": now,
    "authorization": `AWS4-HMAC-SHA256 Credential=a/${now.slice(0, 8)}/us-east-1/s3/` +
      `aws4_request, SignedHeaders=host;x-amz-date, Signature=${"0".repeat(64)}`,
  };
}

function sha256Hex(data: string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The CRC32 of `data` (text as UTF-8), base64, as x-amz-checksum-crc32 carries it. */
export function crc32(data: string | Uint8Array): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(zlib.crc32(data) >>> 0);
  return b.toString("base64");
}

/**
 * Signature Version 4 worked step by step as AWS documents it (region
 * us-east-1, service s3) with `keys`, for requests dated `date` (their
 * x-amz-date, as 20261124T120000Z).
 */
export class SigV4 {
  readonly scope: string;
  readonly #key: Uint8Array;

  constructor(
    readonly keys: { accessKey: string; secretKey: string },
    readonly date: string,
  ) {
    const day = date.slice(0, 8);
    this.scope = `${day}/us-east-1/s3/aws4_request`;
    this.#key = signingKey(keys.secretKey, day, "us-east-1", "s3");
  }

  #hmacHex(text: string): string {
    return createHmac("sha256", this.#key).update(text).digest("hex");
  }

  /**
   * The signature of `req` over all its headers (sorted) and its
   * x-amz-content-sha256 (none: ""), its path taken as `signedPath` (the
   * client's escaping; as sent unless given), and the Authorization that
   * carries it.
   */
  sign(
    req: SignedRequest,
    opts: { signedPath?: string } = {},
  ): { signature: string; authorization: string } {
    const names = [...req.headers.keys()].sort();
    const payload = req.headers.get("x-amz-content-sha256") ?? "";
    const canonical = canonicalRequest(req, opts.signedPath ?? req.path, names, payload, false);
    const signature = this.#hmacHex(stringToSign(this.date, this.scope, canonical));
    const authorization = `AWS4-HMAC-SHA256 Credential=${this.keys.accessKey}/${this.scope},` +
      `SignedHeaders=${names.join(";")},Signature=${signature}`;
    return { signature, authorization };
  }

  /**
   * The query of `req` (its own parameters first) presigned for 5 minutes
   * over all its headers (sorted) and `payload` as its payload line
   * (UNSIGNED-PAYLOAD, as SDKs presign, unless given).
   */
  presign(req: SignedRequest, opts: { payload?: string } = {}): string {
    const names = [...req.headers.keys()].sort();
    const query = (req.query === "" ? "" : `${req.query}&`) + "X-Amz-Algorithm=AWS4-HMAC-SHA256" +
      `&X-Amz-Credential=${encodeURIComponent(`${this.keys.accessKey}/${this.scope}`)}` +
      `&X-Amz-Date=${this.date}&X-Amz-Expires=300` +
      `&X-Amz-SignedHeaders=${encodeURIComponent(names.join(";"))}`;
    const payload = opts.payload ?? "UNSIGNED-PAYLOAD";
    const canonical = canonicalRequest({ ...req, query }, req.path, names, payload, true);
    return `${query}&X-Amz-Signature=${
      this.#hmacHex(stringToSign(this.date, this.scope, canonical))
    }`;
  }

  /** The chunk-signature of an aws-chunked chunk of `data` that follows the one signed `previous`. */
  chunk(previous: string, data: string): string {
    return this.#hmacHex(
      ["AWS4-HMAC-SHA256-PAYLOAD", this.date, this.scope, previous, sha256Hex(""), sha256Hex(data)]
        .join("\n"),
    );
  }

  /** The x-amz-trailer-signature of a trailer's `lines` after the final chunk signed `previous`. */
  trailer(previous: string, lines: string): string {
    return this.#hmacHex(
      ["AWS4-HMAC-SHA256-TRAILER", this.date, this.scope, previous, sha256Hex(lines)].join("\n"),
    );
  }
}

/** The payloads of an aws-chunked body: chunks signed or not, a trailer signed or not. */
export type Streaming =
  | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
  | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
  | "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

/**
 * A PUT of `value` (ASCII) at `path` of the master at `host`, as an
 * aws-chunked body of one chunk and the final one, framed and signed by
 * `signer` as AWS documents it for `payload` (a -TRAILER payload's trailer
 * is the value's CRC32; signed when the chunks are; declared in
 * x-amz-trailer unless `undeclared`). Its headers hold Authorization and
 * the Host signed.
 */
export function chunkedUpload(
  signer: SigV4,
  opts: { host: string; path: string; payload: Streaming; value: string; undeclared?: boolean },
): { req: SignedRequest; body: string } {
  const { payload, value } = opts;
  const trailed = payload.endsWith("-TRAILER");
  const signed = !payload.startsWith("STREAMING-UNSIGNED");
  const headers = new Headers({
    host: opts.host,
    "content-encoding": "aws-chunked",
    "x-amz-content-sha256": payload,
    "x-amz-date": signer.date,
    "x-amz-decoded-content-length": String(value.length),
  });
  if (trailed && !opts.undeclared) headers.set("x-amz-trailer", "x-amz-checksum-crc32");
  const req = { method: "PUT", path: opts.path, query: "", headers };
  const seed = signer.sign(req);
  const first = signer.chunk(seed.signature, value);
  const last = signer.chunk(first, "");
  const ext = (sig: string) => signed ? `;chunk-signature=${sig}` : "";
  let body = `${value.length.toString(16)}${ext(first)}\r\n${value}\r\n0${ext(last)}\r\n`;
  if (trailed) {
    const lines = `x-amz-checksum-crc32:${crc32(value)}\n`;
    body += lines.replace("\n", "\r\n");
    if (signed) body += `x-amz-trailer-signature:${signer.trailer(last, lines)}\r\n`;
  }
  body += "\r\n";
  headers.set("authorization", seed.authorization);
  return { req, body };
}
