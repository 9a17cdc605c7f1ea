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
  checkSdkAlgorithm,
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

export interface S3BodyOptions {
  /**
   * false: an x-amz-checksum-* header is not this body's (CompleteMultipartUpload's
   * is the whole object's: see objectChecksum); a trailer still is.
   */
  checksumHeaders?: boolean;
}

export function s3Body(
  raw: ReadableStream<Uint8Array> | null,
  headers: Headers,
  sig: Signature,
  opts: S3BodyOptions = {},
): S3Body {
  const contentMd5 = sentContentMd5(headers);
  const source = raw ?? new ReadableStream({ start: (c) => c.close() });
  let failure: S3Error | null = null;
  const trailers = new Map<string, string>();
  const { body, contentLength } = unframed(source, {
    headers,
    sig,
    trailers,
    onError: (e) => failure ??= e,
  });
  const digests = expectedDigests(headers, {
    payload: sig.payload,
    checksumHeaders: opts.checksumHeaders ?? true,
    trailers,
  });
  let checksum: Checksum | null = null;
  return {
    body: digests.length > 0 ? digestedThrough(body, digests) : body,
    contentLength,
    failure: () => failure,
    checksum: () => checksum,
    check(md5: string): S3Error | null {
      if (failure) return failure;
      return md5Mismatch(contentMd5, md5) ?? checkDigests(digests, (right) => {
        checksum = right;
      });
    },
  };
}

/**
 * The Content-MD5 sent, if any. Not an MD5 at all (S3: InvalidDigest,
 * before the body is read); one that differs from the body's is BadDigest,
 * once it is read (md5Mismatch).
 */
function sentContentMd5(headers: Headers): string | null {
  const contentMd5 = headers.get("content-md5");
  if (contentMd5 !== null && !/^[A-Za-z0-9+/]{22}==$/.test(contentMd5)) {
    throw s3Error("InvalidDigest", "The Content-MD5 you specified is not valid.");
  }
  return contentMd5;
}

/**
 * The value as sent without its framing, and its length when known in
 * advance: aws-chunked's undone (its length the decoded one), else the
 * Content-Length's.
 */
function unframed(
  source: ReadableStream<Uint8Array>,
  opts: {
    headers: Headers;
    sig: Signature;
    trailers: Map<string, string>;
    onError: (err: S3Error) => void;
  },
): { body: ReadableStream<Uint8Array>; contentLength: number | null } {
  const { headers, sig, trailers, onError } = opts;
  const chunked = sig.payload.startsWith("STREAMING-") ||
    (headers.get("content-encoding") ?? "").split(",").some((e) => e.trim() === "aws-chunked");
  if (!chunked) {
    const cl = headers.has("content-length") ? headerValue(headers, "content-length") : null;
    return { body: source, contentLength: cl === null ? null : Number(cl) };
  }
  const decoded = headers.get("x-amz-decoded-content-length");
  if (decoded === null || !/^\d+$/.test(decoded)) {
    throw s3Error("MissingContentLength", "aws-chunked needs x-amz-decoded-content-length");
  }
  const contentLength = Number(decoded);
  const signer = sig.chunks ?? null;
  const trailer = headers.get("x-amz-trailer")?.trim().toLowerCase() || null;
  const body = decodeChunked(source, {
    signer,
    trailers,
    onError,
    declared: contentLength,
    trailer,
  });
  return { body, contentLength };
}

/** A digest of the body, checked once the body was read. */
interface Expected {
  /** The header or trailer it was sent in. */
  name: string;
  hash: Digest;
  /** The value sent; undefined for a trailer declared but not sent. */
  expect: () => string | undefined;
  /** A checksum's algorithm (kept once found right); none for the payload hash. */
  alg?: Algorithm;
}

/** The digests to check: the signed payload hash, and one checksum. */
function expectedDigests(
  headers: Headers,
  opts: { payload: string; checksumHeaders: boolean; trailers: Map<string, string> },
): Expected[] {
  const { payload, trailers } = opts;
  const digests: Expected[] = [];
  // A SHA-256 in either case, as S3 takes it; any other value that names
  // no payload (sent with Version 2, or unsigned) never matches, as in S3.
  if (payload !== "UNSIGNED-PAYLOAD" && !payload.startsWith("STREAMING-")) {
    digests.push({
      name: "x-amz-content-sha256",
      hash: new NodeDigest("sha256", "hex"),
      expect: () => payload.toLowerCase(),
    });
  }
  // One checksum: a header's (not CompleteMultipartUpload's: see
  // objectChecksum) or the trailer's; a trailer's comes after the body.
  const sent = opts.checksumHeaders ? sentChecksum(headers) : null;
  const trailed = trailerAlgorithm(headers);
  const alg = sent?.alg ?? trailed;
  // The SDK's name for that checksum's algorithm, when it is this body's.
  if (opts.checksumHeaders) checkSdkAlgorithm(headers, alg);
  if (alg) {
    const header = `x-amz-checksum-${alg}`;
    digests.push({
      name: header,
      hash: digestFor(alg),
      expect: () => sent?.value ?? trailers.get(header),
      alg,
    });
  }
  return digests;
}

/** The body as it is read, each digest fed with it on the way. */
function digestedThrough(
  body: ReadableStream<Uint8Array>,
  digests: Expected[],
): ReadableStream<Uint8Array> {
  return body.pipeThrough(
    new TransformStream({
      transform(chunk, ctl) {
        for (const d of digests) d.hash.update(chunk);
        ctl.enqueue(chunk);
      },
    }),
  );
}

/** BadDigest when the body's MD5 is not the Content-MD5 sent. */
function md5Mismatch(contentMd5: string | null, md5: string): S3Error | null {
  if (contentMd5 === null || Buffer.from(md5, "hex").toString("base64") === contentMd5) {
    return null;
  }
  return s3Error("BadDigest", "The Content-MD5 you specified did not match what we received.");
}

/**
 * The first digest the body does not match (or a trailer declared and not
 * sent), else null; `right` is given the checksum once found right.
 */
function checkDigests(digests: Expected[], right: (c: Checksum) => void): S3Error | null {
  for (const d of digests) {
    const want = d.expect();
    if (want === undefined) return malformedTrailer();
    const got = d.hash.digest();
    if (got !== want) return digestMismatch(d.name);
    if (d.alg) right({ alg: d.alg, value: got });
  }
  return null;
}

/**
 * S3's answer to a trailer that is not the one x-amz-trailer declares: one
 * not declared (its checksum would go unchecked), one declared and not
 * sent, a line that is no "name:value".
 */
function malformedTrailer(): S3Error {
  return s3Error("MalformedTrailerError", MALFORMED_TRAILER);
}

const MALFORMED_TRAILER =
  "The request contained trailing data that was not well-formed or did not conform to our published schema.";

/** A digest sent that is not the body's, in S3's words for its header. */
function digestMismatch(name: string): S3Error {
  return name === "x-amz-content-sha256"
    ? s3Error(
      "XAmzContentSHA256Mismatch",
      "The provided 'x-amz-content-sha256' header does not match what was computed.",
    )
    : s3Error("BadDigest", `The ${name} you specified did not match the calculated checksum.`);
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

/** Longest line of chunk framing we read (a header, a trailer), without its CRLF. */
const MAX_LINE = 8192;

export interface ChunkedOptions {
  /** Checks each chunk's signature (and a signed trailer's); null: unsigned. */
  signer: ChunkSigner | null;
  /** Filled with the trailer's fields as it is read. */
  trailers: Map<string, string>;
  /** Told of a framing or signature error before the stream fails with it. */
  onError: (err: S3Error) => void;
  /** x-amz-decoded-content-length: more data than this is refused. */
  declared?: number;
  /**
   * The trailer's field x-amz-trailer declares (lowercase); any other but
   * x-amz-trailer-signature is MalformedTrailerError.
   */
  trailer?: string | null;
}

/**
 * Undoes aws-chunked: "<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n"
 * repeated, a zero-size chunk, then trailer lines and an empty line.
 */
export function decodeChunked(
  source: ReadableStream<Uint8Array>,
  opts: ChunkedOptions,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const decoder = new ChunkedDecoder(reader, opts);
  return new ReadableStream<Uint8Array>({
    pull: (ctl) => decoder.pull(ctl),
    cancel: (reason) => reader.cancel(reason),
  });
}

const LINE_TOO_LONG = `An aws-chunked line is longer than ${MAX_LINE} bytes`;

/** What the next bytes of aws-chunked framing are. */
type Framing = "header" | "data" | "crlf" | "trailer" | "end";

/** An aws-chunked body being undone: where in its framing it is, between pulls. */
class ChunkedDecoder {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #signer: ChunkSigner | null;
  #trailers: Map<string, string>;
  #onError: (err: S3Error) => void;
  #declared: number;
  #trailer: string | null;
  /** The source's last read, taken up to #pos. */
  #buf: Uint8Array = new Uint8Array(0);
  #pos = 0;
  /** The line of framing read so far: it may span the source's reads. */
  #line: number[] = [];
  #state: Framing = "header";
  /** The current chunk's data not yet given out. */
  #remaining = 0;
  /** Every chunk's size so far, held to #declared. */
  #total = 0;
  /** The current chunk's signature, as its header sent it. */
  #signature = "";
  /** The signature the next one is chained to: the last chunk's, at first the request's. */
  #previous: string;
  /** The current chunk's SHA-256, when chunks are signed. */
  #hash: Hash | null = null;
  /** The trailer's lines as signed: "name:value\n" each, its signature's not. */
  #signedLines = "";

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>, opts: ChunkedOptions) {
    this.#reader = reader;
    this.#signer = opts.signer;
    this.#trailers = opts.trailers;
    this.#onError = opts.onError;
    this.#declared = opts.declared ?? Infinity;
    this.#trailer = opts.trailer ?? null;
    this.#previous = opts.signer?.seed ?? "";
  }

  /** Reads the source until a piece of data can be given out, or the body ends. */
  async pull(ctl: ReadableStreamDefaultController<Uint8Array>) {
    while (true) {
      if (this.#state === "end") {
        ctl.close();
        this.#reader.cancel().catch(() => {});
        return;
      }
      if (this.#pos >= this.#buf.length) {
        const r = await this.#reader.read();
        if (r.done) return this.#sourceEnded(ctl);
        this.#buf = r.value;
        this.#pos = 0;
      } else if (this.#state === "data") {
        return this.#data(ctl);
      } else {
        const text = this.#nextLine();
        if (text !== null) this.#onLine(text);
      }
    }
  }

  /** The source ended: the body's end only once the last chunk was read. */
  #sourceEnded(ctl: ReadableStreamDefaultController<Uint8Array>) {
    // Some clients end without the final empty line after trailers.
    if (this.#state === "trailer") {
      this.#endTrailer();
      ctl.close();
      return;
    }
    this.#fail("The body ended inside an aws-chunked chunk");
  }

  /** As much of the current chunk's data as this read holds; its signature checked at its end. */
  #data(ctl: ReadableStreamDefaultController<Uint8Array>) {
    const n = Math.min(this.#remaining, this.#buf.length - this.#pos);
    const piece = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    this.#remaining -= n;
    this.#hash?.update(piece);
    if (this.#remaining === 0) {
      if (this.#hash) this.#verify(this.#hash.digest("hex"));
      this.#state = "crlf";
    }
    ctl.enqueue(piece);
  }

  /** The next line of framing without its CRLF; null until a read holds its end. */
  #nextLine(): string | null {
    const buf = this.#buf;
    const line = this.#line;
    const nl = buf.indexOf(0x0a, this.#pos);
    const end = nl < 0 ? buf.length : nl;
    for (let i = this.#pos; i < end; i++) line.push(buf[i]);
    // Room for the CR, not yet known to be one until the LF comes.
    if (line.length > MAX_LINE + 1) this.#fail(LINE_TOO_LONG);
    this.#pos = nl < 0 ? buf.length : nl + 1;
    if (nl < 0) return null;
    if (line[line.length - 1] === 0x0d) line.pop();
    if (line.length > MAX_LINE) this.#fail(LINE_TOO_LONG);
    this.#line = [];
    return String.fromCharCode(...line);
  }

  /** A line of framing, read as what the framing expects next. */
  #onLine(text: string) {
    switch (this.#state) {
      case "header":
        return this.#header(text);
      case "crlf":
        if (text !== "") this.#fail("aws-chunked data longer than its chunk header said");
        this.#state = "header";
        return;
      case "trailer":
        return this.#trailerLine(text);
    }
  }

  /** "<hex size>[;chunk-signature=<sig>]": a chunk's data follows, or (size 0) the trailer. */
  #header(text: string) {
    const [size, ...ext] = text.split(";");
    if (!/^[0-9a-fA-F]{1,16}$/.test(size)) this.#fail(`Bad aws-chunked chunk header "${text}"`);
    this.#remaining = parseInt(size, 16);
    this.#total += this.#remaining;
    if (this.#total > this.#declared) {
      this.#fail(
        "The aws-chunked body is longer than its x-amz-decoded-content-length",
        "InvalidRequest",
      );
    }
    this.#signature = ext.find((e) => e.startsWith("chunk-signature="))?.slice(16) ?? "";
    // A signed body's chunk without one is a body S3 cannot read: its
    // IncompleteBody (400), not a signature that does not match.
    if (this.#signer && !this.#signature) {
      this.#fail("A chunk of a signed aws-chunked body has no chunk-signature");
    }
    if (this.#remaining === 0) {
      this.#verify(EMPTY_SHA256);
      this.#state = "trailer";
    } else {
      this.#hash = this.#signer ? createHash("sha256") : null;
      this.#state = "data";
    }
  }

  /** A trailer's "name:value" line, or the empty line that ends the trailer. */
  #trailerLine(text: string) {
    if (text === "") {
      this.#endTrailer();
      this.#state = "end";
      return;
    }
    const colon = text.indexOf(":");
    if (colon < 0) this.#fail(MALFORMED_TRAILER, "MalformedTrailerError");
    const name = text.slice(0, colon).trim().toLowerCase();
    const value = text.slice(colon + 1).trim();
    // Sent twice, a field names two values; and each line was kept to the
    // body's end: a trailer sent without end held the master's memory.
    if (this.#trailers.has(name)) this.#fail(MALFORMED_TRAILER, "MalformedTrailerError");
    this.#trailers.set(name, value);
    if (name === "x-amz-trailer-signature") return;
    // One x-amz-trailer does not name would be taken unchecked.
    if (name !== this.#trailer) this.#fail(MALFORMED_TRAILER, "MalformedTrailerError");
    this.#signedLines += `${name}:${value}\n`;
  }

  /** A chunk checked against its signature, chained to the one before it. */
  #verify(sha: string) {
    if (!this.#signer) return;
    if (!sameHex(this.#signature, chunkSignature(this.#signer, this.#previous, sha))) {
      this.#fail("A chunk's signature does not match", "SignatureDoesNotMatch");
    }
    this.#previous = this.#signature;
  }

  /**
   * The trailer read whole: its signature checked when the payload says it
   * is signed (else a tamperer could change the checksum in it unseen).
   */
  #endTrailer() {
    if (!this.#signer?.trailer) return;
    const sent = this.#trailers.get("x-amz-trailer-signature");
    if (sent === undefined) {
      this.#fail("The trailer has no x-amz-trailer-signature", "SignatureDoesNotMatch");
    }
    const signed = trailerSignature(this.#signer, this.#previous, this.#signedLines);
    if (!sameHex(sent!, signed)) {
      this.#fail("The x-amz-trailer-signature does not match the trailer", "SignatureDoesNotMatch");
    }
  }

  #fail(message: string, code = "IncompleteBody"): never {
    // SignatureDoesNotMatch is 403, S3Error's own status; the rest s3Error's.
    const err = code === "SignatureDoesNotMatch"
      ? new S3Error(code, message)
      : s3Error(code, message);
    this.#onError(err);
    throw err;
  }
}

/** S3's answer to a body shorter than its length said: a value's, or an XML body's. */
export function incompleteBody(): S3Error {
  return s3Error(
    "IncompleteBody",
    "You did not provide the number of bytes specified by the Content-Length HTTP header",
  );
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
  // Fewer bytes than x-amz-decoded-content-length said (more fail as read): as a value's.
  if (body.contentLength !== null && size !== body.contentLength) throw incompleteBody();
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
