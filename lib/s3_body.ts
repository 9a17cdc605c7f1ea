// An S3 upload's body as the store takes it: aws-chunked framing removed
// (each chunk's signature checked when keys are set), and the digests the
// client sent (x-amz-content-sha256, Content-MD5, x-amz-checksum-*) checked
// before the value goes live. Streams: nothing is held whole in memory.
import { Buffer } from "node:buffer";
import { createHash, type Hash } from "node:crypto";
import {
  chunkSignature,
  type ChunkSigner,
  EMPTY_SHA256,
  headerValue,
  sameHex,
  type Signature,
  trailerSignature,
} from "./s3_auth.ts";
import {
  type Algorithm,
  type Checksum,
  type Digest,
  digestFor,
  NodeDigest,
  sentChecksum,
  trailerAlgorithm,
} from "./s3_checksum.ts";
import { S3Error, s3Error } from "./s3_xml.ts";

export interface S3Body {
  body: ReadableStream<Uint8Array>;
  /** The value's length when known in advance, else null. */
  contentLength: number | null;
  /** After the whole body was read: the first digest that did not match. */
  check(md5: string): S3Error | null;
  /** A framing or chunk-signature error met while reading, if any. */
  failure(): S3Error | null;
  /** The x-amz-checksum-* the body was sent with, once check() found it right. */
  checksum(): Checksum | null;
}

export function s3Body(
  raw: ReadableStream<Uint8Array> | null,
  headers: Headers,
  sig: Signature,
  /**
   * false: an x-amz-checksum-* header is not this body's (CompleteMultipartUpload's
   * is the whole object's: see objectChecksum); a trailer still is.
   */
  checksumHeaders = true,
): S3Body {
  const contentMd5 = headers.get("content-md5");
  // Not an MD5 at all (S3: InvalidDigest, before the body is read); one that
  // differs from the body's is BadDigest, once it is read (check below).
  if (contentMd5 !== null && !/^[A-Za-z0-9+/]{22}==$/.test(contentMd5)) {
    throw s3Error("InvalidDigest", "The Content-MD5 you specified is not valid.");
  }
  const source = raw ?? new ReadableStream({ start: (c) => c.close() });
  const chunked = sig.payload.startsWith("STREAMING-") ||
    (headers.get("content-encoding") ?? "").split(",").some((e) => e.trim() === "aws-chunked");
  let failure: S3Error | null = null;
  const trailers = new Map<string, string>();
  let body = source;
  let contentLength: number | null = null;
  if (chunked) {
    const decoded = headers.get("x-amz-decoded-content-length");
    if (decoded === null || !/^\d+$/.test(decoded)) {
      throw s3Error("MissingContentLength", "aws-chunked needs x-amz-decoded-content-length");
    }
    contentLength = Number(decoded);
    body = decodeChunked(source, sig.chunks ?? null, trailers, (e) => failure ??= e, contentLength);
  } else {
    const cl = headers.has("content-length") ? headerValue(headers, "content-length") : null;
    contentLength = cl === null ? null : Number(cl);
  }
  // The digests to check: the signed payload hash, and one checksum.
  const hashes: { name: string; hash: Digest; expect: () => string | undefined }[] = [];
  if (/^[0-9a-f]{64}$/.test(sig.payload)) {
    hashes.push({
      name: "x-amz-content-sha256",
      hash: new NodeDigest("sha256", "hex"),
      expect: () => sig.payload,
    });
  }
  // One checksum: a header's (not CompleteMultipartUpload's: see
  // objectChecksum) or the trailer's; a trailer's comes after the body.
  const sent = checksumHeaders ? sentChecksum(headers) : null;
  const trailed = trailerAlgorithm(headers);
  const alg = sent?.alg ?? trailed;
  let checksum: Checksum | null = null;
  if (alg) {
    const header = `x-amz-checksum-${alg}`;
    hashes.push({
      name: header,
      hash: digestFor(alg),
      expect: () => sent?.value ?? trailers.get(header),
    });
  }
  if (hashes.length > 0) {
    body = body.pipeThrough(
      new TransformStream({
        transform(chunk, ctl) {
          for (const h of hashes) h.hash.update(chunk);
          ctl.enqueue(chunk);
        },
      }),
    );
  }
  return {
    body,
    contentLength,
    failure: () => failure,
    checksum: () => checksum,
    check(md5: string): S3Error | null {
      if (failure) return failure;
      if (contentMd5 !== null && Buffer.from(md5, "hex").toString("base64") !== contentMd5) {
        return s3Error(
          "BadDigest",
          "The Content-MD5 you specified did not match what we received.",
        );
      }
      for (const h of hashes) {
        const want = h.expect();
        if (want === undefined) {
          return s3Error("InvalidRequest", `The trailer ${h.name} was declared but not sent`);
        }
        const got = h.hash.digest();
        if (got !== want) {
          return h.name === "x-amz-content-sha256"
            ? s3Error(
              "XAmzContentSHA256Mismatch",
              "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
            : s3Error(
              "BadDigest",
              `The ${h.name} you specified did not match the calculated checksum.`,
            );
        }
        if (alg && h.name === `x-amz-checksum-${alg}`) checksum = { alg, value: got };
      }
      return null;
    },
  };
}

/**
 * A checksum computed as a stream is read through it (a multipart object's
 * as its parts are joined, a copy's), checked against `want` when given:
 * the value a client sent (CompleteMultipartUpload's whole-object one).
 */
export function checksumThrough(alg: Algorithm, want?: string): {
  through(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array>;
  /** Once the stream ended: BadDigest when it is not `want`. */
  check(): S3Error | null;
  /** Once the stream ended: the checksum of what went through. */
  checksum(): Checksum;
} {
  const hash = digestFor(alg);
  let value: string | null = null;
  const checksum = (): Checksum => ({ alg, value: value ??= hash.digest() });
  return {
    // Pulled only as the write reads (highWaterMark 0), as the parts
    // themselves: nothing is opened while the write waits for its turn.
    through(body) {
      const reader = body.getReader();
      return new ReadableStream<Uint8Array>({
        async pull(ctl) {
          const r = await reader.read();
          if (r.done) return ctl.close();
          hash.update(r.value);
          ctl.enqueue(r.value);
        },
        cancel: (reason) => reader.cancel(reason),
      }, { highWaterMark: 0 });
    },
    check: () =>
      want === undefined || checksum().value === want ? null : s3Error(
        "BadDigest",
        `The x-amz-checksum-${alg} you specified did not match the calculated checksum.`,
      ),
    checksum,
  };
}

/** Longest line of chunk framing we read (a header, a trailer). */
const MAX_LINE = 8192;

/**
 * Undoes aws-chunked: "<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n"
 * repeated, a zero-size chunk, then trailer lines and an empty line.
 */
export function decodeChunked(
  source: ReadableStream<Uint8Array>,
  signer: ChunkSigner | null,
  trailers: Map<string, string>,
  onError: (err: S3Error) => void,
  /** x-amz-decoded-content-length: more data than this is refused. */
  declared = Infinity,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let buf: Uint8Array = new Uint8Array(0);
  let pos = 0;
  let line: number[] = [];
  type State = "header" | "data" | "crlf" | "trailer" | "end";
  let state: State = "header";
  let remaining = 0;
  let total = 0;
  let signature = "";
  let previous = signer?.seed ?? "";
  let hash: Hash | null = null;
  /** The trailer's lines as signed: "name:value\n" each, its signature's not. */
  let signedLines = "";

  const fail = (message: string, code = "IncompleteBody"): never => {
    const err = code === "SignatureDoesNotMatch"
      ? new S3Error(code, message)
      : s3Error(code, message);
    onError(err);
    throw err;
  };

  const verify = (sha: string) => {
    if (!signer) return;
    if (!sameHex(signature, chunkSignature(signer, previous, sha))) {
      fail("A chunk's signature does not match", "SignatureDoesNotMatch");
    }
    previous = signature;
  };

  /**
   * The trailer read whole: its signature checked when the payload says it
   * is signed (else a tamperer could change the checksum in it unseen).
   */
  const endTrailer = () => {
    if (!signer?.trailer) return;
    const sent = trailers.get("x-amz-trailer-signature");
    if (sent === undefined) {
      fail("The trailer has no x-amz-trailer-signature", "SignatureDoesNotMatch");
    }
    if (!sameHex(sent!, trailerSignature(signer, previous, signedLines))) {
      fail("The x-amz-trailer-signature does not match the trailer", "SignatureDoesNotMatch");
    }
  };

  const onLine = (text: string) => {
    switch (state) {
      case "header": {
        const [size, ...ext] = text.split(";");
        if (!/^[0-9a-fA-F]{1,16}$/.test(size)) fail(`Bad aws-chunked chunk header "${text}"`);
        remaining = parseInt(size, 16);
        total += remaining;
        if (total > declared) {
          fail(
            "The aws-chunked body is longer than its x-amz-decoded-content-length",
            "InvalidRequest",
          );
        }
        signature = ext.find((e) => e.startsWith("chunk-signature="))?.slice(16) ?? "";
        if (signer && !signature) fail("A chunk has no signature", "SignatureDoesNotMatch");
        if (remaining === 0) {
          verify(EMPTY_SHA256);
          state = "trailer";
        } else {
          hash = signer ? createHash("sha256") : null;
          state = "data";
        }
        return;
      }
      case "crlf":
        if (text !== "") fail("aws-chunked data longer than its chunk header said");
        state = "header";
        return;
      case "trailer": {
        if (text === "") {
          endTrailer();
          state = "end";
          return;
        }
        const colon = text.indexOf(":");
        if (colon > 0) {
          const name = text.slice(0, colon).trim().toLowerCase();
          const value = text.slice(colon + 1).trim();
          trailers.set(name, value);
          if (name !== "x-amz-trailer-signature") signedLines += `${name}:${value}\n`;
        }
        return;
      }
    }
  };

  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      while (true) {
        if (state === "end") {
          ctl.close();
          reader.cancel().catch(() => {});
          return;
        }
        if (pos >= buf.length) {
          const r = await reader.read();
          if (r.done) {
            // Some clients end without the final empty line after trailers.
            if (state === "trailer") {
              endTrailer();
              ctl.close();
              return;
            }
            fail("The body ended inside an aws-chunked chunk");
          }
          buf = r.value!;
          pos = 0;
          continue;
        }
        if (state === "data") {
          const n = Math.min(remaining, buf.length - pos);
          const piece = buf.subarray(pos, pos + n);
          pos += n;
          remaining -= n;
          hash?.update(piece);
          if (remaining === 0) {
            if (hash) verify(hash.digest("hex"));
            state = "crlf";
          }
          ctl.enqueue(piece);
          return;
        }
        const nl = buf.indexOf(0x0a, pos);
        const end = nl < 0 ? buf.length : nl;
        for (let i = pos; i < end; i++) line.push(buf[i]);
        if (line.length > MAX_LINE) fail("An aws-chunked line is too long");
        pos = nl < 0 ? buf.length : nl + 1;
        if (nl < 0) continue;
        if (line[line.length - 1] === 0x0d) line.pop();
        const text = String.fromCharCode(...line);
        line = [];
        onLine(text);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/**
 * A small request body (DeleteObjects' and CompleteMultipartUpload's XML)
 * read whole, at most `cap` bytes, its digests checked like a value's.
 */
export async function readWhole(body: S3Body, cap: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  const reader = body.body.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > cap) {
        reader.cancel().catch(() => {});
        throw s3Error(
          "MaxMessageLengthExceeded",
          `Your request was too big (at most ${cap} bytes)`,
        );
      }
      parts.push(value);
    }
  } catch (err) {
    throw body.failure() ?? err;
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  const bad = body.check(createHash("md5").update(bytes).digest("hex"));
  if (bad) throw bad;
  return bytes;
}

/**
 * What S3 asks of the calls whose body must come with a digest of it
 * (DeleteObjects, PutBucketOwnershipControls): a Content-MD5, or an
 * x-amz-checksum-* header or trailer (what SDKs send instead since 2025);
 * else 400 InvalidRequest, as S3 answers, before the body is read.
 */
export function requireDigest(headers: Headers) {
  if (headers.has("content-md5") || sentChecksum(headers) || trailerAlgorithm(headers)) return;
  throw s3Error("InvalidRequest", "Missing required header for this request: Content-MD5");
}
