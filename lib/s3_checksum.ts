// S3's flexible checksums (x-amz-checksum-*): the algorithms the gateway
// computes, which one a request sends (header or trailer), and the checksum
// of a multipart object made of its parts' (S3's COMPOSITE type).
import { Buffer } from "node:buffer";
import { createHash, type Hash } from "node:crypto";
import zlib from "node:zlib";
import { s3Error } from "./s3_xml.ts";

/** S3's checksum algorithms the gateway computes, by their header's suffix. */
export const ALGORITHMS = [
  "crc32",
  "crc32c",
  "crc64nvme",
  "sha1",
  "sha256",
  "md5",
  "sha512",
] as const;
export type Algorithm = typeof ALGORITHMS[number];

/**
 * S3's checksum algorithms the gateway cannot compute: a request that sends
 * one is refused (501), never stored with its checksum unchecked.
 */
const UNSUPPORTED = ["xxhash64", "xxhash3", "xxhash128"];

/** Bytes of each algorithm's digest: its header holds their base64. */
const SIZES: { [alg in Algorithm]: number } = {
  crc32: 4,
  crc32c: 4,
  crc64nvme: 8,
  sha1: 20,
  sha256: 32,
  md5: 16,
  sha512: 64,
};

/** A checksum as S3 keeps it: a composite one's value ends in "-<parts>". */
export interface Checksum {
  alg: Algorithm;
  value: string;
}

/** S3's x-amz-checksum-type of a checksum. */
export function checksumType(sum: Checksum): "COMPOSITE" | "FULL_OBJECT" {
  return /-\d+$/.test(sum.value) ? "COMPOSITE" : "FULL_OBJECT";
}

/** The checksum's headers (x-amz-checksum-<alg>, x-amz-checksum-type), set on `h`. */
export function setChecksumHeaders(h: Headers, sum: Checksum | undefined) {
  if (!sum) return;
  h.set(`x-amz-checksum-${sum.alg}`, sum.value);
  h.set("x-amz-checksum-type", checksumType(sum));
}

/**
 * The XML elements S3 names a checksum with (ChecksumCRC32, then an
 * object's ChecksumType; a part's has none).
 */
export function checksumXml(
  sum: Checksum | undefined,
  withType = true,
): { [name: string]: string } {
  if (!sum) return {};
  const xml = { [`Checksum${sum.alg.toUpperCase()}`]: sum.value };
  return withType ? { ...xml, ChecksumType: checksumType(sum) } : xml;
}

function notImplemented(what: string) {
  return s3Error(
    "NotImplemented",
    `A header you provided implies functionality that is not implemented: ${what}`,
  );
}

/**
 * An algorithm's name as a request gives it (x-amz-checksum-algorithm:
 * "CRC32"), or null for none; 501 for one S3 has and the gateway cannot
 * compute, 400 for one S3 does not have.
 */
export function algorithmOf(name: string | null, header: string): Algorithm | null {
  if (name === null) return null;
  const alg = name.trim().toLowerCase();
  if ((ALGORITHMS as readonly string[]).includes(alg)) return alg as Algorithm;
  if (UNSUPPORTED.includes(alg)) throw notImplemented(`${header}: ${name}`);
  throw s3Error("InvalidRequest", `Value for ${header} header is invalid.`);
}

/**
 * x-amz-sdk-checksum-algorithm, the algorithm an SDK says the body's
 * checksum is of (PutObject, UploadPart, ...), checked against `sent`, the
 * algorithm of the checksum it does send (header or trailer; null: none).
 * S3 refuses it, 400 InvalidRequest before the body is read, when it names
 * no algorithm of S3's or another than the checksum's, or comes with no
 * checksum; it is not a checksum of its own.
 */
export function checkSdkAlgorithm(headers: Headers, sent: Algorithm | null) {
  const name = headers.get("x-amz-sdk-checksum-algorithm");
  if (name === null) return;
  const alg = name.trim().toLowerCase();
  const known = (ALGORITHMS as readonly string[]).includes(alg) || UNSUPPORTED.includes(alg);
  if (known && sent === null) {
    throw s3Error(
      "InvalidRequest",
      "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or " +
        "x-amz-trailer headers were found.",
    );
  }
  if (alg !== sent) {
    throw s3Error("InvalidRequest", "Value for x-amz-sdk-checksum-algorithm header is invalid.");
  }
}

/**
 * The one x-amz-checksum-<alg> header a request sends, its value checked
 * for form (base64 of the algorithm's size: S3's InvalidRequest otherwise),
 * or null. Two are refused, as S3 refuses them; one of an algorithm the
 * gateway cannot compute is 501. `composite`: a value may end in
 * "-<parts>" (CompleteMultipartUpload's).
 */
export function sentChecksum(headers: Headers, composite = false): Checksum | null {
  let found: Checksum | null = null;
  for (const [name, value] of headers) {
    if (!name.startsWith("x-amz-checksum-")) continue;
    const suffix = name.slice("x-amz-checksum-".length);
    if (["algorithm", "mode", "type"].includes(suffix)) continue;
    if (UNSUPPORTED.includes(suffix)) throw notImplemented(name);
    if (!(ALGORITHMS as readonly string[]).includes(suffix)) continue;
    if (found) {
      throw s3Error(
        "InvalidRequest",
        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
      );
    }
    found = { alg: suffix as Algorithm, value: value.trim() };
  }
  if (found) checkForm(found, `x-amz-checksum-${found.alg}`, composite);
  return found;
}

/** A checksum whose value is not the base64 of its algorithm's digest: 400. */
function checkForm(sum: Checksum, header: string, composite: boolean) {
  const bytes = SIZES[sum.alg];
  const chars = 4 * Math.ceil(bytes / 3);
  const value = composite ? sum.value.replace(/-[1-9]\d{0,4}$/, "") : sum.value;
  if (
    value.length !== chars || !/^[A-Za-z0-9+/]+={0,2}$/.test(value) ||
    Buffer.from(value, "base64").length !== bytes
  ) {
    throw s3Error("InvalidRequest", `Value for ${header} header is invalid.`);
  }
}

/**
 * The checksum an aws-chunked body's x-amz-trailer says will follow it, or
 * null when it names none; 501 for one the gateway cannot compute, 400 for
 * a trailer that is no checksum.
 */
export function trailerAlgorithm(headers: Headers): Algorithm | null {
  const trailer = headers.get("x-amz-trailer")?.trim().toLowerCase();
  if (!trailer) return null;
  if (!trailer.startsWith("x-amz-checksum-")) {
    throw s3Error("InvalidRequest", `The trailer ${trailer} is not a checksum`);
  }
  return algorithmOf(trailer.slice("x-amz-checksum-".length), "x-amz-trailer");
}

export interface Digest {
  update(data: Uint8Array): void;
  /** The checksum's base64, as S3 writes it. */
  digest(): string;
}

export function digestFor(alg: Algorithm): Digest {
  switch (alg) {
    case "crc32":
      return new Crc32();
    case "crc32c":
      return new Crc32c();
    case "crc64nvme":
      return new Crc64Nvme();
    default:
      return new NodeDigest(alg, "base64");
  }
}

/**
 * S3's COMPOSITE checksum of a multipart object: the algorithm over its
 * parts' checksums (their bytes, in order), "-<parts>" after it.
 */
export function compositeChecksum(alg: Algorithm, parts: string[]): Checksum {
  const d = digestFor(alg);
  for (const p of parts) d.update(Buffer.from(p, "base64"));
  return { alg, value: `${d.digest()}-${parts.length}` };
}

export class NodeDigest implements Digest {
  #hash: Hash;
  constructor(alg: string, readonly encoding: "hex" | "base64") {
    this.#hash = createHash(alg);
  }
  update(data: Uint8Array) {
    this.#hash.update(data);
  }
  digest(): string {
    return this.#hash.digest(this.encoding);
  }
}

/** CRC-32 (zlib's), as S3's base64 of the big-endian value. */
class Crc32 implements Digest {
  #crc = 0;
  update(data: Uint8Array) {
    this.#crc = zlib.crc32(data, this.#crc);
  }
  digest(): string {
    return crcBase64([this.#crc]);
  }
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), table-driven. */
class Crc32c implements Digest {
  #crc = 0xffffffff;
  update(data: Uint8Array) {
    let c = this.#crc;
    for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
    this.#crc = c;
  }
  digest(): string {
    return crcBase64([(this.#crc ^ 0xffffffff) >>> 0]);
  }
}

/**
 * CRC-64/NVME's tables for slicing by 8: the reflected polynomial
 * 0x9a6c9329ac4bc9b5, each 64-bit entry as two 32-bit halves (high, low).
 */
const CRC64_TABLES = (() => {
  const poly = 0x9a6c9329ac4bc9b5n;
  const tables: Uint32Array[] = [];
  const base: bigint[] = [];
  for (let n = 0; n < 256; n++) {
    let c = BigInt(n);
    for (let k = 0; k < 8; k++) c = c & 1n ? poly ^ (c >> 1n) : c >> 1n;
    base.push(c);
  }
  let row = base;
  for (let slice = 0; slice < 8; slice++) {
    const t = new Uint32Array(512);
    for (let n = 0; n < 256; n++) {
      t[2 * n] = Number(row[n] >> 32n);
      t[2 * n + 1] = Number(row[n] & 0xffffffffn);
    }
    tables.push(t);
    // The next slice: this one's entry moved on by one more zero byte.
    row = row.map((c) => base[Number(c & 0xffn)] ^ (c >> 8n));
  }
  return tables;
})();

/** CRC-64/NVME (S3's CRC64NVME), sliced by 8 on 32-bit halves. */
class Crc64Nvme implements Digest {
  #hi = 0xffffffff;
  #lo = 0xffffffff;
  update(data: Uint8Array) {
    const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC64_TABLES;
    let hi = this.#hi, lo = this.#lo;
    let i = 0;
    for (; i + 8 <= data.length; i += 8) {
      const a = ((lo ^ data[i]) & 0xff) << 1;
      const b = (((lo >>> 8) ^ data[i + 1]) & 0xff) << 1;
      const c = (((lo >>> 16) ^ data[i + 2]) & 0xff) << 1;
      const d = (((lo >>> 24) ^ data[i + 3]) & 0xff) << 1;
      const e = ((hi ^ data[i + 4]) & 0xff) << 1;
      const f = (((hi >>> 8) ^ data[i + 5]) & 0xff) << 1;
      const g = (((hi >>> 16) ^ data[i + 6]) & 0xff) << 1;
      const h = (((hi >>> 24) ^ data[i + 7]) & 0xff) << 1;
      hi = t7[a] ^ t6[b] ^ t5[c] ^ t4[d] ^ t3[e] ^ t2[f] ^ t1[g] ^ t0[h];
      lo = t7[a + 1] ^ t6[b + 1] ^ t5[c + 1] ^ t4[d + 1] ^ t3[e + 1] ^ t2[f + 1] ^ t1[g + 1] ^
        t0[h + 1];
    }
    for (; i < data.length; i++) {
      const a = ((lo ^ data[i]) & 0xff) << 1;
      lo = ((lo >>> 8) | ((hi & 0xff) << 24)) ^ t0[a + 1];
      hi = (hi >>> 8) ^ t0[a];
    }
    this.#hi = hi;
    this.#lo = lo;
  }
  digest(): string {
    return crcBase64([(this.#hi ^ 0xffffffff) >>> 0, (this.#lo ^ 0xffffffff) >>> 0]);
  }
}

/** Big-endian 32-bit words as base64. */
function crcBase64(words: number[]): string {
  const b = new Uint8Array(4 * words.length);
  const view = new DataView(b.buffer);
  words.forEach((w, i) => view.setUint32(4 * i, w >>> 0));
  return Buffer.from(b).toString("base64");
}
