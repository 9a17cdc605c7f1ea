// S3's flexible checksums (lib/s3_checksum.ts) and their check on upload
// bodies (lib/s3_body.ts): the algorithms against their published check
// values, and what is refused (two checksums, a malformed one, one the
// gateway cannot compute) before any of the body is read. Then end to end
// with the AWS SDK against a real master and nginx volumes: checked,
// kept with the object and answered with x-amz-checksum-mode.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import zlib from "node:zlib";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListPartsCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import {
  compositeChecksum,
  digestFor,
  sentChecksum,
  trailerAlgorithm,
} from "../lib/s3_checksum.ts";
import { s3Body } from "../lib/s3_body.ts";
import { S3Error } from "../lib/s3_xml.ts";
import { errorAnswer, errorXml, s3Fails } from "./s3_answers.ts";
import { assertEquals, assertThrows } from "./assert.ts";
import { Cluster, randomBytes } from "./cluster.ts";
import { s3Client, unsignedHeaders } from "./s3_client.ts";

const enc = new TextEncoder();

function hexOf(alg: Parameters<typeof digestFor>[0], text: string, split = 1): string {
  const d = digestFor(alg);
  const bytes = enc.encode(text);
  // Fed in pieces: a digest must not depend on how the body was cut.
  const step = Math.ceil(bytes.length / split);
  for (let i = 0; i < bytes.length; i += step) d.update(bytes.subarray(i, i + step));
  return Buffer.from(d.digest(), "base64").toString("hex");
}

Deno.test("each algorithm gives its catalogued check value for '123456789'", () => {
  // The CRC catalogue's "check" values (CRC-32/ISO-HDLC, CRC-32/ISCSI, CRC-64/NVME).
  assertEquals(hexOf("crc32", "123456789"), "cbf43926");
  assertEquals(hexOf("crc32c", "123456789"), "e3069283");
  assertEquals(hexOf("crc64nvme", "123456789"), "ae8b14860a799888");
  assertEquals(hexOf("crc64nvme", "123456789", 4), "ae8b14860a799888");
  assertEquals(hexOf("md5", "123456789"), "25f9e794323b453885f5181f1b624d0b");
  assertEquals(hexOf("sha512", "").slice(0, 16), "cf83e1357eefb8bd");
});

Deno.test("CRC64NVME of a long value is the same whole or in odd pieces", () => {
  const text = "The quick brown fox jumps over the lazy dog. ".repeat(101);
  assertEquals(hexOf("crc64nvme", text, 7), hexOf("crc64nvme", text));
});

Deno.test("a composite checksum is the algorithm over the parts' checksums, then -<parts>", () => {
  // CRC-32 of the bytes cb f4 39 26 e3 06 92 83 (two parts' CRC-32s).
  const parts = ["y/Q5Jg==", "4waSgw=="];
  const d = digestFor("crc32");
  d.update(Buffer.from("cbf43926e3069283", "hex"));
  assertEquals(compositeChecksum("crc32", parts), { alg: "crc32", value: `${d.digest()}-2` });
});

function refusal(fn: () => unknown): { code: string; status: number } {
  const err = assertThrows(fn, S3Error) as S3Error;
  return { code: err.code, status: err.status };
}

Deno.test("two x-amz-checksum-* headers are refused: 400 InvalidRequest", () => {
  const h = new Headers({
    "x-amz-checksum-crc32": "DUoRhQ==",
    "x-amz-checksum-sha1": "A".repeat(27) + "=",
  });
  assertEquals(refusal(() => sentChecksum(h)), { code: "InvalidRequest", status: 400 });
});

Deno.test("a checksum that is not its algorithm's size in base64 is 400 InvalidRequest", () => {
  for (const [name, value] of [["crc32", "AAAA"], ["crc64nvme", "DUoRhQ=="], ["sha256", "x!"]]) {
    const h = new Headers({ [`x-amz-checksum-${name}`]: value });
    assertEquals(refusal(() => sentChecksum(h)), { code: "InvalidRequest", status: 400 });
  }
  const composite = new Headers({ "x-amz-checksum-crc32": "DUoRhQ==-3" });
  assertEquals(refusal(() => sentChecksum(composite)), { code: "InvalidRequest", status: 400 });
  assertEquals(sentChecksum(composite, true), { alg: "crc32", value: "DUoRhQ==-3" });
});

Deno.test("an XXHASH checksum, which the gateway cannot compute, is 501 NotImplemented", () => {
  const h = new Headers({ "x-amz-checksum-xxhash64": "AAAAAAAAAAA=" });
  assertEquals(refusal(() => sentChecksum(h)), { code: "NotImplemented", status: 501 });
  const t = new Headers({ "x-amz-trailer": "x-amz-checksum-xxhash3" });
  assertEquals(refusal(() => trailerAlgorithm(t)), { code: "NotImplemented", status: 501 });
});

function bodyOf(text: string, headers: Record<string, string>) {
  return s3Body(new Response(text).body, new Headers(headers), { payload: "UNSIGNED-PAYLOAD" });
}

Deno.test("a wrong x-amz-checksum-crc64nvme header is BadDigest; a right one is kept", async () => {
  // CRC-64/NVME of "hello world".
  const good = bodyOf("hello world", { "x-amz-checksum-crc64nvme": "jSnVw/bqjr4=" });
  assertEquals(await new Response(good.body).text(), "hello world");
  assertEquals(good.check(""), null);
  assertEquals(good.checksum(), { alg: "crc64nvme", value: "jSnVw/bqjr4=" });
  const bad = bodyOf("hello world", { "x-amz-checksum-crc64nvme": "AAAAAAAAAAA=" });
  await new Response(bad.body).arrayBuffer();
  assertEquals(bad.check("")?.code, "BadDigest");
  assertEquals(bad.checksum(), null);
});

Deno.test("wrong x-amz-checksum-sha512 and -md5 headers are BadDigest", async () => {
  for (const [alg, size] of [["sha512", 64], ["md5", 16]] as const) {
    const zero = Buffer.alloc(size).toString("base64");
    const body = bodyOf("hello world", { [`x-amz-checksum-${alg}`]: zero });
    await new Response(body.body).arrayBuffer();
    assertEquals(body.check("")?.code, "BadDigest", alg);
  }
});

function trailed(trailer: string, value: string) {
  const text = `5\r\nhello\r\n6\r\n world\r\n0\r\n${trailer}:${value}\r\n\r\n`;
  return s3Body(
    new Response(text).body,
    new Headers({
      "content-encoding": "aws-chunked",
      "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
      "x-amz-decoded-content-length": "11",
      "x-amz-trailer": trailer,
    }),
    { payload: "STREAMING-UNSIGNED-PAYLOAD-TRAILER" },
  );
}

Deno.test("an aws-chunked body's CRC64NVME trailer is checked and kept", async () => {
  const good = trailed("x-amz-checksum-crc64nvme", "jSnVw/bqjr4=");
  assertEquals(await new Response(good.body).text(), "hello world");
  assertEquals(good.check(""), null);
  assertEquals(good.checksum(), { alg: "crc64nvme", value: "jSnVw/bqjr4=" });
  const bad = trailed("x-amz-checksum-crc64nvme", "AAAAAAAAAAA=");
  await new Response(bad.body).arrayBuffer();
  assertEquals(bad.check("")?.code, "BadDigest");
});

function crc32Of(b: Uint8Array): string {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(zlib.crc32(b));
  return out.toString("base64");
}

function sumOf(alg: Parameters<typeof digestFor>[0], b: Uint8Array): string {
  const d = digestFor(alg);
  d.update(b);
  return d.digest();
}

const MiB = 1024 * 1024;

Deno.test("S3 checksums with the AWS SDK: checked on upload, kept, answered when asked", async (t) => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", "sum-key", "-s3-secret-key", "sum-secret"],
  });
  const s3 = s3Client(c.url, { accessKeyId: "sum-key", secretAccessKey: "sum-secret" });
  const Bucket = `sums-${crypto.randomUUID().slice(0, 8)}`;
  await s3.send(new CreateBucketCommand({ Bucket }));
  /** Asserts that a PutObject of 1000 bytes with `checksum` fails with `error`, nothing stored. */
  const assertPutRefused = async (
    checksum: Partial<PutObjectCommandInput>,
    error: { name: string; status: number },
  ) => {
    const Key = crypto.randomUUID();
    const put = new PutObjectCommand({ Bucket, Key, Body: randomBytes(1000), ...checksum });
    assertEquals(await s3Fails(s3.send(put)), error);
    const get = s3.send(new GetObjectCommand({ Bucket, Key }));
    assertEquals(await s3Fails(get), { name: "NoSuchKey", status: 404 });
  };
  /** Asserts that GetObject (ChecksumMode ENABLED) of `Key` reads `value`: its answer. */
  const assertReads = async (Key: string, value: Uint8Array) => {
    const got = await s3.send(new GetObjectCommand({ Bucket, Key, ChecksumMode: "ENABLED" }));
    assertEquals(Buffer.from(await got.Body!.transformToByteArray()).equals(value), true);
    return got;
  };
  /** An upload of `Key` asking CRC32, `value` its part 1 (its answer). */
  const onePartUpload = async (Key: string, value: Uint8Array) => {
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket, Key, ChecksumAlgorithm: "CRC32" }),
    );
    const part = await s3.send(
      new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: value }),
    );
    return { UploadId, part };
  };
  try {
    await t.step("a wrong x-amz-checksum-crc64nvme: 400 BadDigest, nothing stored", async () => {
      await assertPutRefused({ ChecksumCRC64NVME: "AAAAAAAAAAA=" }, {
        name: "BadDigest",
        status: 400,
      });
    });

    await t.step("an XXHASH64 checksum: 501 NotImplemented, nothing stored", async () => {
      await assertPutRefused({ ChecksumXXHASH64: "AAAAAAAAAAA=" }, {
        name: "NotImplemented",
        status: 501,
      });
    });

    await t.step("PutObject's checksum is answered by Get and Head, not with a range", async () => {
      const Key = crypto.randomUUID();
      const value = randomBytes(100_000);
      // The SDK's default: CRC32 in a header.
      const put = await s3.send(new PutObjectCommand({ Bucket, Key, Body: value }));
      assertEquals([put.ChecksumCRC32, put.ChecksumType], [crc32Of(value), "FULL_OBJECT"]);
      const got = await assertReads(Key, value);
      assertEquals([got.ChecksumCRC32, got.ChecksumType], [crc32Of(value), "FULL_OBJECT"]);
      const head = await s3.send(new HeadObjectCommand({ Bucket, Key, ChecksumMode: "ENABLED" }));
      assertEquals([head.ChecksumCRC32, head.ChecksumType], [crc32Of(value), "FULL_OBJECT"]);
      const part = await s3.send(
        new GetObjectCommand({ Bucket, Key, ChecksumMode: "ENABLED", Range: "bytes=10-19" }),
      );
      assertEquals(
        Buffer.from(await part.Body!.transformToByteArray()),
        Buffer.from(value.subarray(10, 20)),
      );
      assertEquals([part.ChecksumCRC32, part.ChecksumType], [undefined, undefined]);
    });

    await t.step("a streamed PutObject's CRC64NVME trailer is kept and answered", async () => {
      const Key = crypto.randomUUID();
      const value = randomBytes(300_000);
      await s3.send(
        new PutObjectCommand({
          Bucket,
          Key,
          Body: Readable.from([value.subarray(0, 100_000), value.subarray(100_000)]),
          ContentLength: value.length,
          ChecksumAlgorithm: "CRC64NVME",
        }),
      );
      const head = await s3.send(new HeadObjectCommand({ Bucket, Key, ChecksumMode: "ENABLED" }));
      assertEquals(head.ChecksumCRC64NVME, sumOf("crc64nvme", value));
    });

    await t.step(
      "lib-storage's Upload: parts' CRC32s answered, the object's composite kept",
      async () => {
        const Key = crypto.randomUUID();
        const value = randomBytes(12 * MiB);
        const upload = new Upload({
          client: s3,
          params: { Bucket, Key, Body: value },
          partSize: 5 * MiB,
        });
        const done = await upload.done();
        const parts = [0, 5 * MiB, 10 * MiB].map((at) => value.subarray(at, at + 5 * MiB));
        const composite = compositeChecksum("crc32", parts.map(crc32Of)).value;
        assertEquals([done.ChecksumCRC32, done.ChecksumType], [composite, "COMPOSITE"]);
        const got = await assertReads(Key, value);
        assertEquals([got.ChecksumCRC32, got.ChecksumType], [composite, "COMPOSITE"]);
      },
    );

    await t.step(
      "a Complete naming a part's checksum other than the part's: InvalidPart",
      async () => {
        const Key = crypto.randomUUID();
        const value = randomBytes(1000);
        const { UploadId, part } = await onePartUpload(Key, value);
        assertEquals(part.ChecksumCRC32, crc32Of(value));
        const listed = await s3.send(new ListPartsCommand({ Bucket, Key, UploadId }));
        assertEquals(listed.Parts?.[0].ChecksumCRC32, crc32Of(value));
        const complete = (ChecksumCRC32: string) =>
          s3.send(
            new CompleteMultipartUploadCommand({
              Bucket,
              Key,
              UploadId,
              MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag, ChecksumCRC32 }] },
            }),
          );
        assertEquals(await s3Fails(complete("AAAAAA==")), { name: "InvalidPart", status: 400 });
        const done = await complete(crc32Of(value));
        assertEquals(done.ChecksumCRC32, compositeChecksum("crc32", [crc32Of(value)]).value);
      },
    );

    await t.step(
      "a Complete whose whole-object CRC32 is not the object's: BadDigest, nothing stored, the upload kept",
      async () => {
        const Key = crypto.randomUUID();
        const value = randomBytes(1000);
        const { UploadId, part } = await onePartUpload(Key, value);
        const complete = (ChecksumCRC32: string) =>
          s3.send(
            new CompleteMultipartUploadCommand({
              Bucket,
              Key,
              UploadId,
              ChecksumCRC32,
              MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
            }),
          );
        // Checked as the parts are joined, after the answer's 200 went: its
        // <Error> (which the SDK reports with a status of its own, 503).
        const err = await complete(crc32Of(randomBytes(1000))).then(() => null, (e) => e);
        assertEquals([err?.name, err?.message], [
          "BadDigest",
          "The x-amz-checksum-crc32 you specified did not match the calculated checksum.",
        ]);
        assertEquals(
          await s3Fails(s3.send(new GetObjectCommand({ Bucket, Key }))),
          { name: "NoSuchKey", status: 404 },
        );
        const done = await complete(crc32Of(value));
        assertEquals([done.ChecksumCRC32, done.ChecksumType], [crc32Of(value), "FULL_OBJECT"]);
        await assertReads(Key, value);
      },
    );

    await t.step(
      "a CRC64NVME upload (FULL_OBJECT): the whole object's checksum is kept",
      async () => {
        const Key = crypto.randomUUID();
        const value = randomBytes(6 * MiB);
        const { UploadId } = await s3.send(
          new CreateMultipartUploadCommand({ Bucket, Key, ChecksumAlgorithm: "CRC64NVME" }),
        );
        const Parts = [];
        for (const [i, at] of [0, 5 * MiB].entries()) {
          const Body = value.subarray(at, Math.min(at + 5 * MiB, value.length));
          const p = await s3.send(
            new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: i + 1, Body }),
          );
          Parts.push({ PartNumber: i + 1, ETag: p.ETag });
        }
        const done = await s3.send(
          new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }),
        );
        assertEquals([done.ChecksumCRC64NVME, done.ChecksumType], [
          sumOf("crc64nvme", value),
          "FULL_OBJECT",
        ]);
        // The SDK checks the bytes it reads against it.
        const got = await assertReads(Key, value);
        assertEquals(got.ChecksumCRC64NVME, sumOf("crc64nvme", value));
      },
    );

    await t.step(
      "CopyObject: a checksum of the source's algorithm, or of the one asked",
      async () => {
        const Key = crypto.randomUUID();
        const value = randomBytes(50_000);
        await s3.send(new PutObjectCommand({ Bucket, Key, Body: value }));
        const CopySource = `${Bucket}/${Key}`;
        const same = await s3.send(new CopyObjectCommand({ Bucket, Key: `${Key}.a`, CopySource }));
        assertEquals(same.CopyObjectResult?.ChecksumCRC32, crc32Of(value));
        const sha = await s3.send(
          new CopyObjectCommand({
            Bucket,
            Key: `${Key}.b`,
            CopySource,
            ChecksumAlgorithm: "SHA256",
          }),
        );
        const want = createHash("sha256").update(value).digest("base64");
        assertEquals(sha.CopyObjectResult?.ChecksumSHA256, want);
        const head = await s3.send(
          new HeadObjectCommand({ Bucket, Key: `${Key}.b`, ChecksumMode: "ENABLED" }),
        );
        assertEquals([head.ChecksumSHA256, head.ChecksumCRC32], [want, undefined]);
      },
    );
    await t.step(
      "CopyObject onto itself keeps a whole-object checksum, drops a composite",
      async () => {
        const Key = crypto.randomUUID();
        const value = randomBytes(12 * MiB);
        await s3.send(new PutObjectCommand({ Bucket, Key, Body: value }));
        const self = {
          Bucket,
          Key,
          CopySource: `${Bucket}/${Key}`,
          MetadataDirective: "REPLACE" as const,
        };
        const kept = await s3.send(new CopyObjectCommand({ ...self, Metadata: { a: "1" } }));
        assertEquals(kept.CopyObjectResult?.ChecksumCRC32, crc32Of(value));
        const head = await s3.send(new HeadObjectCommand({ Bucket, Key, ChecksumMode: "ENABLED" }));
        assertEquals([head.ChecksumCRC32, head.Metadata], [crc32Of(value), { a: "1" }]);
        const parts = `${Key}.parts`;
        await new Upload({
          client: s3,
          params: { Bucket, Key: parts, Body: value },
          partSize: 5 * MiB,
        })
          .done();
        await s3.send(
          new CopyObjectCommand({ ...self, Key: parts, CopySource: `${Bucket}/${parts}` }),
        );
        const rewritten = await s3.send(
          new HeadObjectCommand({ Bucket, Key: parts, ChecksumMode: "ENABLED" }),
        );
        assertEquals([rewritten.ChecksumCRC32, rewritten.ChecksumType], [undefined, undefined]);
      },
    );
  } finally {
    s3.destroy();
    await c.stop();
  }
});

/**
 * What a PutObject of "hello world" with `headers` (and a zero signature,
 * unchecked by -s3) answers on a fresh cluster's fresh bucket, and whether
 * the object is there after.
 */
async function putAnswer(headers: Record<string, string>) {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const bucket = `/${crypto.randomUUID().slice(0, 8)}`;
    const made = await fetch(c.url + bucket, { method: "PUT", headers: unsignedHeaders() });
    assertEquals(made.status, 200);
    const answer = await errorAnswer(`${c.url}${bucket}/k`, {
      method: "PUT",
      body: "hello world",
      headers: unsignedHeaders(headers),
    });
    const after = await fetch(`${c.url}${bucket}/k`, { headers: unsignedHeaders() });
    await after.body?.cancel();
    return { answer, stored: after.status === 200, resource: `${bucket}/k` };
  } finally {
    await c.stop();
  }
}

/** S3's 400 InvalidRequest with `message`, for `resource`. */
function invalidRequest(message: string, resource: string) {
  return {
    status: 400,
    type: "application/xml",
    body: errorXml("InvalidRequest", message, "", resource),
  };
}

// CRC32 of "hello world".
const CRC32 = "DUoRhQ==";

Deno.test("PutObject with an x-amz-checksum-algorithm that names no algorithm is 400 InvalidRequest, nothing stored", async () => {
  const { answer, stored, resource } = await putAnswer({ "x-amz-checksum-algorithm": "nope" });
  assertEquals(
    answer,
    invalidRequest("Value for x-amz-checksum-algorithm header is invalid.", resource),
  );
  assertEquals(stored, false);
});

Deno.test("PutObject with an x-amz-sdk-checksum-algorithm that names no algorithm is 400 InvalidRequest, nothing stored", async () => {
  const { answer, stored, resource } = await putAnswer({
    "x-amz-sdk-checksum-algorithm": "nope",
    "x-amz-checksum-crc32": CRC32,
  });
  assertEquals(
    answer,
    invalidRequest("Value for x-amz-sdk-checksum-algorithm header is invalid.", resource),
  );
  assertEquals(stored, false);
});

Deno.test("PutObject whose x-amz-sdk-checksum-algorithm is not its checksum's algorithm is 400 InvalidRequest, as S3", async () => {
  const { answer, stored, resource } = await putAnswer({
    "x-amz-sdk-checksum-algorithm": "SHA256",
    "x-amz-checksum-crc32": CRC32,
  });
  assertEquals(
    answer,
    invalidRequest("Value for x-amz-sdk-checksum-algorithm header is invalid.", resource),
  );
  assertEquals(stored, false);
});

Deno.test("PutObject with an x-amz-sdk-checksum-algorithm and no checksum header nor trailer is 400 InvalidRequest saying so", async () => {
  const { answer, stored, resource } = await putAnswer({ "x-amz-sdk-checksum-algorithm": "CRC32" });
  assertEquals(
    answer,
    invalidRequest(
      "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or " +
        "x-amz-trailer headers were found.",
      resource,
    ),
  );
  assertEquals(stored, false);
});

Deno.test("PutObject whose x-amz-sdk-checksum-algorithm and x-amz-checksum-algorithm name its checksum's algorithm, in any case, is stored", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const bucket = `/${crypto.randomUUID().slice(0, 8)}`;
    const made = await fetch(c.url + bucket, { method: "PUT", headers: unsignedHeaders() });
    assertEquals(made.status, 200);
    const put = await fetch(`${c.url}${bucket}/k`, {
      method: "PUT",
      body: "hello world",
      headers: unsignedHeaders({
        "x-amz-sdk-checksum-algorithm": "crc32",
        "x-amz-checksum-algorithm": "CRC32",
        "x-amz-checksum-crc32": CRC32,
      }),
    });
    await put.body?.cancel();
    assertEquals([put.status, put.headers.get("x-amz-checksum-crc32")], [200, CRC32]);
  } finally {
    await c.stop();
  }
});
