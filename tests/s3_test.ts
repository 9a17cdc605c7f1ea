// The S3 gateway driven by the real AWS SDK for JavaScript v3 against a real
// master and real nginx volumes: objects, listings, buckets, copies,
// multipart (across a master restart), signatures and presigned URLs.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import zlib from "node:zlib";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteBucketPolicyCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  DeleteObjectTaggingCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutBucketVersioningCommand,
  PutObjectAclCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { Cluster, randomBytes, volumeFiles } from "./cluster.ts";
import { awsChunkedHeaders, s3Client, uploadParts } from "./s3_client.ts";
import { assert, assertEquals } from "./assert.ts";
import { errorAnswer, errorXml, md5Header, s3Fails } from "./s3_answers.ts";
import { key2path } from "../lib/keys.ts";
import { openIndex } from "../lib/open.ts";

const enc = new TextEncoder();

const ACCESS = "mkv-test-access";
const SECRET = "mkv-test-secret-key";

function client(c: Cluster, secret = SECRET, accessKeyId = ACCESS): S3Client {
  return s3Client(c.url, { accessKeyId, secretAccessKey: secret });
}

function bucketName(): string {
  return `b-${crypto.randomUUID().slice(0, 8)}`;
}

function md5Hex(b: Uint8Array): string {
  return createHash("md5").update(b).digest("hex");
}

async function bytesOf(
  s3: S3Client,
  Bucket: string,
  Key: string,
  Range?: string,
) {
  const got = await s3.send(new GetObjectCommand({ Bucket, Key, Range }));
  return { got, bytes: await got.Body!.transformToByteArray() };
}

/** Uploads of `keys` started in `Bucket`, one each; `abort()` aborts them all. */
async function startUploads(s3: S3Client, Bucket: string, keys: string[]) {
  const ids: string[] = [];
  for (const Key of keys) {
    ids.push((await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }))).UploadId!);
  }
  return {
    async abort() {
      for (const [i, UploadId] of ids.entries()) {
        await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: keys[i], UploadId }));
      }
    },
  };
}

function invalidRangeAnswer(resource: string, range: string, size: number) {
  return {
    status: 416,
    type: "application/xml",
    body: errorXml(
      "InvalidRange",
      "The requested range is not satisfiable",
      `<RangeRequested>${range}</RangeRequested><ActualObjectSize>${size}</ActualObjectSize>`,
      resource,
    ),
  };
}

Deno.test("S3 gateway with the AWS SDK against real nginx volumes", async (t) => {
  const c = await Cluster.start({ flags: ["-s3-access-key", ACCESS, "-s3-secret-key", SECRET] });
  let s3 = client(c);
  /** The key's record without its size, as one converted from Go mkv's index has it. */
  const unsize = async (key: string) => {
    await c.stopMaster();
    const index = await openIndex(c.db);
    const e = await index.get(enc.encode(key));
    await index.set(enc.encode(key), { ...e!.rec, size: -1 });
    index.close();
    await c.startMaster();
    s3.destroy();
    s3 = client(c);
  };
  try {
    await t.step("PutObject then GetObject: same bytes, MD5 ETag, type, metadata", async () => {
      const Bucket = bucketName();
      const value = randomBytes(100_000);
      const put = await s3.send(
        new PutObjectCommand({
          Bucket,
          Key: "dir/file.bin",
          Body: value,
          ContentType: "application/x-test",
          Metadata: { owner: "alice" },
        }),
      );
      assertEquals(put.ETag, `"${md5Hex(value)}"`);
      const { got, bytes } = await bytesOf(s3, Bucket, "dir/file.bin");
      assertEquals(got.$metadata.httpStatusCode, 200);
      assertEquals(Buffer.from(bytes).equals(Buffer.from(value)), true);
      assertEquals(got.ETag, `"${md5Hex(value)}"`);
      assertEquals(got.ContentType, "application/x-test");
      assertEquals(got.ContentLength, 100_000);
      assertEquals(got.Metadata, { owner: "alice" });
      assert(Math.abs(got.LastModified!.getTime() - Date.now()) < 120_000, "Last-Modified is now");
    });

    await t.step(
      "Cache-Control, Content-Disposition and the like are kept; response-* overrides them",
      async () => {
        const Bucket = bucketName();
        await s3.send(
          new PutObjectCommand({
            Bucket,
            Key: "doc",
            Body: "text",
            CacheControl: "max-age=60",
            ContentDisposition: 'attachment; filename="a.txt"',
            ContentLanguage: "de",
            ContentEncoding: "identity",
            Expires: new Date("2030-01-01T00:00:00Z"),
          }),
        );
        const head = await s3.send(new HeadObjectCommand({ Bucket, Key: "doc" }));
        assertEquals(head.CacheControl, "max-age=60");
        assertEquals(head.ContentDisposition, 'attachment; filename="a.txt"');
        assertEquals(head.ContentLanguage, "de");
        assertEquals(head.ContentEncoding, "identity");
        assertEquals(head.Expires?.toISOString(), "2030-01-01T00:00:00.000Z");
        const url = await getSignedUrl(
          s3,
          new GetObjectCommand({
            Bucket,
            Key: "doc",
            ResponseContentDisposition: 'inline; filename="b.txt"',
            ResponseContentType: "text/plain",
          }),
        );
        const res = await fetch(url);
        assertEquals(await res.text(), "text");
        assertEquals(res.headers.get("content-disposition"), 'inline; filename="b.txt"');
        assertEquals(res.headers.get("content-type"), "text/plain");
        // A streamed (aws-chunked) upload's transport encoding is not the object's.
        const body = Readable.from([new TextEncoder().encode("chunked")]);
        await s3.send(
          new PutObjectCommand({ Bucket, Key: "streamed", Body: body, ContentLength: 7 }),
        );
        const plain = await s3.send(new HeadObjectCommand({ Bucket, Key: "streamed" }));
        assertEquals(plain.ContentEncoding, undefined);
      },
    );

    await t.step("an S3 object is a plain key, and a plain key an S3 object", async () => {
      const Bucket = bucketName();
      await s3.send(new PutObjectCommand({ Bucket, Key: "x/y", Body: "via s3" }));
      const plain = await fetch(`${c.url}/${Bucket}/x/y`);
      assertEquals(plain.status, 200);
      assertEquals(await plain.text(), "via s3");
      const list = await (await fetch(`${c.url}/${Bucket}/?list`)).json();
      assertEquals(list.keys, [`/${Bucket}/x/y`]);
      assertEquals(
        (await fetch(`${c.url}/${Bucket}/plain`, { method: "PUT", body: "via curl" })).status,
        201,
      );
      const { got, bytes } = await bytesOf(s3, Bucket, "plain");
      assertEquals(new TextDecoder().decode(bytes), "via curl");
      assertEquals(got.ETag, `"${md5Hex(new TextEncoder().encode("via curl"))}"`);
      assertEquals(got.ContentType, "binary/octet-stream");
    });

    await t.step("a streamed upload (aws-chunked with a CRC32 trailer) round-trips", async () => {
      const Bucket = bucketName();
      const value = randomBytes(3 * 1024 * 1024 + 17);
      const body = Readable.from([value.subarray(0, 1_000_000), value.subarray(1_000_000)]);
      await s3.send(
        new PutObjectCommand({ Bucket, Key: "streamed", Body: body, ContentLength: value.length }),
      );
      const { bytes } = await bytesOf(s3, Bucket, "streamed");
      assertEquals(md5Hex(bytes), md5Hex(value));
    });

    await t.step("PutObject overwrites; If-None-Match: * refuses to", async () => {
      const Bucket = bucketName();
      await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "first" }));
      await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "second value" }));
      assertEquals(
        new TextDecoder().decode((await bytesOf(s3, Bucket, "k")).bytes),
        "second value",
      );
      const fail = await s3Fails(
        s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "third", IfNoneMatch: "*" })),
      );
      assertEquals(fail, { name: "PreconditionFailed", status: 412 });
    });

    await t.step("empty objects are kept (S3 has them)", async () => {
      const Bucket = bucketName();
      await s3.send(new PutObjectCommand({ Bucket, Key: "dir/", Body: "" }));
      const { got, bytes } = await bytesOf(s3, Bucket, "dir/");
      assertEquals(bytes.length, 0);
      assertEquals(got.ETag, `"d41d8cd98f00b204e9800998ecf8427e"`);
    });

    await t.step(
      "HeadObject gives length, ETag, type and Last-Modified; 404 when missing",
      async () => {
        const Bucket = bucketName();
        await s3.send(
          new PutObjectCommand({ Bucket, Key: "h", Body: "12345", ContentType: "text/plain" }),
        );
        const head = await s3.send(new HeadObjectCommand({ Bucket, Key: "h" }));
        assertEquals(head.ContentLength, 5);
        assertEquals(head.ContentType, "text/plain");
        assertEquals(head.ETag, `"827ccb0eea8a706c4c34a16891f84e7b"`);
        assert(head.LastModified instanceof Date);
        assertEquals(await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key: "nope" }))), {
          name: "NotFound",
          status: 404,
        });
      },
    );

    await t.step("Range gives 206 with the exact bytes; past the end is InvalidRange", async () => {
      const Bucket = bucketName();
      await s3.send(new PutObjectCommand({ Bucket, Key: "r", Body: "0123456789" }));
      const { got, bytes } = await bytesOf(s3, Bucket, "r", "bytes=2-5");
      assertEquals(got.$metadata.httpStatusCode, 206);
      assertEquals(got.ContentRange, "bytes 2-5/10");
      assertEquals(new TextDecoder().decode(bytes), "2345");
      const tail = await bytesOf(s3, Bucket, "r", "bytes=-3");
      assertEquals(new TextDecoder().decode(tail.bytes), "789");
      assertEquals(await s3Fails(bytesOf(s3, Bucket, "r", "bytes=20-30")), {
        name: "InvalidRange",
        status: 416,
      });
    });

    await t.step(
      "an unsatisfiable Range's InvalidRange names RangeRequested and ActualObjectSize",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "r", Body: "0123456789" }));
        const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "r" }));
        assertEquals(
          await errorAnswer(url, { headers: { range: "bytes=20-30" } }),
          invalidRangeAnswer(`/${Bucket}/r`, "bytes=20-30", 10),
        );
      },
    );

    await t.step(
      "InvalidRange of a value of unknown size names the size the volume gives",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "r", Body: "0123456789" }));
        await unsize(`/${Bucket}/r`);
        const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "r" }));
        assertEquals(
          await errorAnswer(url, { headers: { range: "bytes=20-30" } }),
          invalidRangeAnswer(`/${Bucket}/r`, "bytes=20-30", 10),
        );
      },
    );

    await t.step(
      "HeadObject of a value of unknown size names the size the volume gives, whole and by Range",
      async () => {
        // It answered Content-Length: 0 (the SDK's ContentLength 0 for 10
        // bytes, which GetObject then sends) and 200 to a Range.
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "r", Body: "0123456789" }));
        await unsize(`/${Bucket}/r`);
        const url = await getSignedUrl(s3, new HeadObjectCommand({ Bucket, Key: "r" }));
        const head = async (headers: HeadersInit) => {
          const res = await fetch(url, { method: "HEAD", headers });
          return [res.status, res.headers.get("content-length"), res.headers.get("content-range")];
        };
        assertEquals(await head({}), [200, "10", null]);
        assertEquals(await head({ range: "bytes=2-4" }), [206, "3", "bytes 2-4/10"]);
        assertEquals(await head({ range: "bytes=-3" }), [206, "3", "bytes 7-9/10"]);
        assertEquals(await head({ range: "bytes=20-30" }), [416, "0", null]);
      },
    );

    await t.step(
      "a Range's unit in any case, and whitespace around its range, are honoured as RFC 9110 has them (nginx does too)",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "r", Body: "0123456789" }));
        const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "r" }));
        const head = await getSignedUrl(s3, new HeadObjectCommand({ Bucket, Key: "r" }));
        const answers = async (range: string) => {
          const got = await fetch(url, { headers: { range } });
          const res = await fetch(head, { method: "HEAD", headers: { range } });
          return [
            got.status,
            got.headers.get("content-range"),
            await got.text(),
            res.status,
            res.headers.get("content-range"),
          ];
        };
        for (const range of ["Bytes=2-5", "BYTES=2-5", "bytes= 2-5", "bytes=\t2-5 "]) {
          assertEquals(
            await answers(range),
            [206, "bytes 2-5/10", "2345", 206, "bytes 2-5/10"],
            range,
          );
        }
        assertEquals(await answers("Bytes= -3"), [206, "bytes 7-9/10", "789", 206, "bytes 7-9/10"]);
        // Not a range RFC 9110 allows (no whitespace around "=", nor within
        // a range), nor two ranges: the whole value, as before.
        for (const range of ["bytes =2-5", "bytes=2 -5", "bytes=2-3,5-6", "items=2-5"]) {
          assertEquals(await answers(range), [200, null, "0123456789", 200, null], range);
        }
        const unsatisfiable = await errorAnswer(url, { headers: { range: "Bytes= 20-30" } });
        assertEquals(unsatisfiable, invalidRangeAnswer(`/${Bucket}/r`, "bytes=20-30", 10));
      },
    );

    await t.step(
      "a Range's unit in any case is honoured for a value of unknown size too, passed on to nginx as bytes=",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "r", Body: "0123456789" }));
        await unsize(`/${Bucket}/r`);
        const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "r" }));
        const res = await fetch(url, { headers: { range: "Bytes= 2-5" } });
        assertEquals(
          [res.status, res.headers.get("content-range"), await res.text()],
          [206, "bytes 2-5/10", "2345"],
        );
      },
    );

    await t.step(
      "GetObject of a value of unknown size ignores a Range ending before its start, as S3",
      async () => {
        // nginx was sent it and answered 416: InvalidRange for the 200 and
        // the whole value a value of known size gets.
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "r", Body: "0123456789" }));
        await unsize(`/${Bucket}/r`);
        const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "r" }));
        const res = await fetch(url, { headers: { range: "bytes=5-2" } });
        assertEquals(
          [res.status, res.headers.get("content-length"), res.headers.get("content-range")],
          [200, "10", null],
        );
        assertEquals(await res.text(), "0123456789");
      },
    );

    await t.step("GetObject of a missing key: NoSuchKey in S3's XML", async () => {
      const Bucket = bucketName();
      await s3.send(new CreateBucketCommand({ Bucket }));
      assertEquals(await s3Fails(s3.send(new GetObjectCommand({ Bucket, Key: "gone" }))), {
        name: "NoSuchKey",
        status: 404,
      });
      const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "gone" }));
      const res = await fetch(url);
      assertEquals(res.status, 404);
      assertEquals(res.headers.get("content-type"), "application/xml");
      const xml = await res.text();
      assert(xml.includes("<Code>NoSuchKey</Code>"), xml);
      assert(xml.includes("<Key>gone</Key>"), xml);
      assert(xml.includes(`<Resource>/${Bucket}/gone</Resource>`), xml);
      // The x-amz-request-id header names the same request as the body.
      const id = res.headers.get("x-amz-request-id");
      assert(id !== null && xml.includes(`<RequestId>${id}</RequestId>`), `${id} in ${xml}`);
    });

    await t.step(
      "an object's LastModified is the same to a listing, HeadObject and CopyObject: whole seconds",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "a", Body: "x" }));
        const head = await s3.send(new HeadObjectCommand({ Bucket, Key: "a" }));
        const listed = await s3.send(new ListObjectsV2Command({ Bucket }));
        const v1 = await s3.send(new ListObjectsCommand({ Bucket }));
        assertEquals(listed.Contents?.[0].LastModified?.getTime(), head.LastModified?.getTime());
        assertEquals(v1.Contents?.[0].LastModified?.getTime(), head.LastModified?.getTime());
        const copy = await s3.send(
          new CopyObjectCommand({ Bucket, Key: "b", CopySource: `${Bucket}/a` }),
        );
        const copied = await s3.send(new HeadObjectCommand({ Bucket, Key: "b" }));
        assertEquals(
          copy.CopyObjectResult?.LastModified?.getTime(),
          copied.LastModified?.getTime(),
        );
      },
    );

    await t.step("ListObjectsV2: prefix, delimiter, paging by token, start-after", async () => {
      const Bucket = bucketName();
      const keys = ["a/1", "a/2", "b/1", "c", "d", "e"];
      for (const Key of keys) await s3.send(new PutObjectCommand({ Bucket, Key, Body: Key }));
      const all = await s3.send(new ListObjectsV2Command({ Bucket }));
      assertEquals(all.Contents!.map((o) => o.Key), keys);
      assertEquals(all.KeyCount, 6);
      assertEquals(all.IsTruncated, false);
      assertEquals(all.Contents![0].Size, 3);
      assertEquals(all.Contents![0].ETag, `"${md5Hex(new TextEncoder().encode("a/1"))}"`);
      const rolled = await s3.send(new ListObjectsV2Command({ Bucket, Delimiter: "/" }));
      assertEquals(rolled.CommonPrefixes!.map((p) => p.Prefix), ["a/", "b/"]);
      assertEquals(rolled.Contents!.map((o) => o.Key), ["c", "d", "e"]);
      assertEquals(rolled.KeyCount, 5);
      const pre = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: "a/" }));
      assertEquals(pre.Contents!.map((o) => o.Key), ["a/1", "a/2"]);
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = await s3.send(
          new ListObjectsV2Command({
            Bucket,
            Delimiter: "/",
            MaxKeys: 2,
            ContinuationToken: token,
          }),
        );
        pages++;
        seen.push(...(page.CommonPrefixes ?? []).map((p) => p.Prefix!));
        seen.push(...(page.Contents ?? []).map((o) => o.Key!));
        assertEquals(page.KeyCount! <= 2, true);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      assertEquals(pages, 3);
      assertEquals(seen.sort(), ["a/", "b/", "c", "d", "e"]);
      const after = await s3.send(new ListObjectsV2Command({ Bucket, StartAfter: "c" }));
      assertEquals(after.Contents!.map((o) => o.Key), ["d", "e"]);
    });

    await t.step(
      "listings past the index's first small batch: every key once, in order",
      async () => {
        const Bucket = bucketName();
        const keys: string[] = [];
        for (let i = 0; i < 12; i++) keys.push(`f${String(i).padStart(2, "0")}`);
        for (let i = 0; i < 12; i++) {
          for (const f of ["a", "b", "c"]) keys.push(`g${String(i).padStart(2, "0")}/${f}`);
        }
        await Promise.all(
          keys.map((Key) => s3.send(new PutObjectCommand({ Bucket, Key, Body: "v" }))),
        );
        const all = await s3.send(new ListObjectsV2Command({ Bucket }));
        assertEquals(all.Contents!.map((o) => o.Key), [...keys].sort());
        const rolled = await s3.send(new ListObjectsV2Command({ Bucket, Delimiter: "/" }));
        assertEquals(rolled.Contents!.map((o) => o.Key), keys.slice(0, 12));
        assertEquals(
          rolled.CommonPrefixes!.map((p) => p.Prefix),
          Array.from({ length: 12 }, (_, i) => `g${String(i).padStart(2, "0")}/`),
        );
      },
    );

    await t.step("ListObjects (v1) pages by marker", async () => {
      const Bucket = bucketName();
      for (const Key of ["k1", "k2", "k3"]) {
        await s3.send(new PutObjectCommand({ Bucket, Key, Body: "v" }));
      }
      const first = await s3.send(new ListObjectsCommand({ Bucket, MaxKeys: 2 }));
      assertEquals(first.Contents!.map((o) => o.Key), ["k1", "k2"]);
      assertEquals(first.IsTruncated, true);
      const second = await s3.send(new ListObjectsCommand({ Bucket, Marker: "k2" }));
      assertEquals(second.Contents!.map((o) => o.Key), ["k3"]);
      assertEquals(second.IsTruncated, false);
    });

    await t.step("buckets: create, head, list, delete only when empty", async () => {
      const Bucket = bucketName();
      assertEquals(await s3Fails(s3.send(new HeadBucketCommand({ Bucket }))), {
        name: "NotFound",
        status: 404,
      });
      await s3.send(new CreateBucketCommand({ Bucket }));
      assertEquals(
        (await s3.send(new HeadBucketCommand({ Bucket }))).$metadata.httpStatusCode,
        200,
      );
      await s3.send(new PutObjectCommand({ Bucket, Key: "o", Body: "v" }));
      const names = (await s3.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name);
      assert(names.includes(Bucket), `${Bucket} in ${names}`);
      assertEquals(await s3Fails(s3.send(new DeleteBucketCommand({ Bucket }))), {
        name: "BucketNotEmpty",
        status: 409,
      });
      await s3.send(new DeleteObjectCommand({ Bucket, Key: "o" }));
      await s3.send(new DeleteBucketCommand({ Bucket }));
      assertEquals(await s3Fails(s3.send(new HeadBucketCommand({ Bucket }))), {
        name: "NotFound",
        status: 404,
      });
      // A bucket that only exists as the first segment of a plain key.
      const implicit = bucketName();
      await fetch(`${c.url}/${implicit}/k`, { method: "PUT", body: "v" });
      const again = (await s3.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name);
      assert(again.includes(implicit), `${implicit} in ${again}`);
      assert(!again.includes(Bucket), `${Bucket} gone from ${again}`);
      // Emptied by S3's DeleteObject, it stays (as S3's buckets do) until
      // DeleteBucket, which then succeeds (as `rclone purge` and
      // `aws s3 rb --force` expect).
      await s3.send(new DeleteObjectCommand({ Bucket: implicit, Key: "k" }));
      const emptied = await s3.send(new ListObjectsV2Command({ Bucket: implicit }));
      assertEquals([emptied.$metadata.httpStatusCode, emptied.KeyCount], [200, 0]);
      const gone = await s3.send(new DeleteBucketCommand({ Bucket: implicit }));
      assertEquals(gone.$metadata.httpStatusCode, 204);
      assertEquals(await s3Fails(s3.send(new HeadBucketCommand({ Bucket: implicit }))), {
        name: "NotFound",
        status: 404,
      });
      // Emptied by mkv's own DELETE, a bucket known only through its keys is gone.
      const plain = bucketName();
      await (await fetch(`${c.url}/${plain}/k`, { method: "PUT", body: "v" })).body?.cancel();
      assertEquals((await fetch(`${c.url}/${plain}/k`, { method: "DELETE" })).status, 204);
      assertEquals(await s3Fails(s3.send(new ListObjectsV2Command({ Bucket: plain }))), {
        name: "NoSuchBucket",
        status: 404,
      });
    });

    await t.step("every call on a bucket that does not exist is 404 NoSuchBucket", async () => {
      const Bucket = bucketName();
      const noSuchBucket = { name: "NoSuchBucket", status: 404 };
      assertEquals(await s3Fails(s3.send(new ListObjectsV2Command({ Bucket }))), noSuchBucket);
      assertEquals(await s3Fails(s3.send(new ListObjectsCommand({ Bucket }))), noSuchBucket);
      assertEquals(
        await s3Fails(s3.send(new ListMultipartUploadsCommand({ Bucket }))),
        noSuchBucket,
      );
      assertEquals(
        await s3Fails(
          s3.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: [{ Key: "k" }] } })),
        ),
        noSuchBucket,
      );
      assertEquals(await s3Fails(s3.send(new DeleteBucketCommand({ Bucket }))), noSuchBucket);
      assertEquals(
        await s3Fails(s3.send(new DeleteObjectCommand({ Bucket, Key: "k" }))),
        noSuchBucket,
      );
      assertEquals(
        await s3Fails(s3.send(new GetObjectCommand({ Bucket, Key: "k" }))),
        noSuchBucket,
      );
      // HEAD has no body to name the code in: a bare 404, as S3.
      assertEquals(await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key: "k" }))), {
        name: "NotFound",
        status: 404,
      });
      // In a bucket that exists, a missing key is still NoSuchKey.
      await s3.send(new CreateBucketCommand({ Bucket }));
      assertEquals(await s3Fails(s3.send(new GetObjectCommand({ Bucket, Key: "k" }))), {
        name: "NoSuchKey",
        status: 404,
      });
      const listed = await s3.send(new ListObjectsV2Command({ Bucket }));
      assertEquals([listed.$metadata.httpStatusCode, listed.KeyCount], [200, 0]);
      // And deleting a missing key there is S3's 204.
      const deleted = await s3.send(new DeleteObjectCommand({ Bucket, Key: "k" }));
      assertEquals(deleted.$metadata.httpStatusCode, 204);
      await s3.send(new DeleteBucketCommand({ Bucket }));
    });

    await t.step(
      "a call on an object's ACL is 501 NotImplemented, and leaves the object alone",
      async () => {
        const Bucket = bucketName();
        const Key = "precious";
        await s3.send(new PutObjectCommand({ Bucket, Key, Body: "kept" }));
        assertEquals(
          await s3Fails(s3.send(new PutObjectAclCommand({ Bucket, Key, ACL: "private" }))),
          { name: "NotImplemented", status: 501 },
        );
        assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, Key)).bytes), "kept");
      },
    );

    await t.step(
      "PutObjectTagging, GetObjectTagging, DeleteObjectTagging: the tags kept, the object alone",
      async () => {
        const Bucket = bucketName();
        const Key = "precious";
        await s3.send(new PutObjectCommand({ Bucket, Key, Body: "kept", Tagging: "b=2" }));
        const TagSet = [{ Key: "a", Value: "1" }, { Key: "b", Value: "" }];
        await s3.send(new PutObjectTaggingCommand({ Bucket, Key, Tagging: { TagSet } }));
        assertEquals((await s3.send(new GetObjectTaggingCommand({ Bucket, Key }))).TagSet, TagSet);
        assertEquals((await s3.send(new HeadObjectCommand({ Bucket, Key }))).TagCount, 2);
        await s3.send(new DeleteObjectTaggingCommand({ Bucket, Key }));
        assertEquals((await s3.send(new GetObjectTaggingCommand({ Bucket, Key }))).TagSet, []);
        assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, Key)).bytes), "kept");
      },
    );

    await t.step(
      "a write asking for Object Lock (retention, legal hold) is refused, not stored unprotected",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const refused = { name: "InvalidRequest", status: 400 };
        const until = new Date(Date.now() + 86_400_000);
        const asks = [
          { ObjectLockMode: "COMPLIANCE" as const, ObjectLockRetainUntilDate: until },
          { ObjectLockLegalHoldStatus: "ON" as const },
        ];
        for (const ask of asks) {
          assertEquals(
            await s3Fails(
              s3.send(new PutObjectCommand({ Bucket, Key: "locked", Body: "x", ...ask })),
            ),
            refused,
          );
        }
        assertEquals(
          await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key: "locked" }))),
          { name: "NotFound", status: 404 },
        );
      },
    );

    await t.step(
      "a write asking for server-side encryption (S3, KMS, customer key) is 501, not stored plain",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const notImplemented = { name: "NotImplemented", status: 501 };
        const asks = [
          { ServerSideEncryption: "AES256" as const },
          { ServerSideEncryption: "aws:kms" as const, SSEKMSKeyId: "some-key" },
          { SSECustomerAlgorithm: "AES256", SSECustomerKey: "k".repeat(32) },
        ];
        for (const ask of asks) {
          const put = new PutObjectCommand({ Bucket, Key: "secret", Body: "x", ...ask });
          assertEquals(await s3Fails(s3.send(put)), notImplemented);
          const create = new CreateMultipartUploadCommand({ Bucket, Key: "secret", ...ask });
          assertEquals(await s3Fails(s3.send(create)), notImplemented);
        }
        assertEquals(
          await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key: "secret" }))),
          { name: "NotFound", status: 404 },
        );
        await s3.send(new PutObjectCommand({ Bucket, Key: "plain", Body: "x" }));
        const copy = new CopyObjectCommand({
          Bucket,
          Key: "secret",
          CopySource: `${Bucket}/plain`,
          ServerSideEncryption: "AES256",
        });
        assertEquals(await s3Fails(s3.send(copy)), notImplemented);
        const { Uploads } = await s3.send(new ListMultipartUploadsCommand({ Bucket }));
        assertEquals(Uploads ?? [], []);
      },
    );

    await t.step(
      "an append (WriteOffsetBytes) is 501 NotImplemented: the object stays whole",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "log", Body: "hello " }));
        const append = new PutObjectCommand({
          Bucket,
          Key: "log",
          Body: "world",
          WriteOffsetBytes: 6,
        });
        assertEquals(await s3Fails(s3.send(append)), { name: "NotImplemented", status: 501 });
        assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, "log")).bytes), "hello ");
      },
    );

    await t.step(
      "bucket policy and versioning changes are 501 NotImplemented, and the bucket stays",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const notImplemented = { name: "NotImplemented", status: 501 };
        assertEquals(
          await s3Fails(s3.send(new DeleteBucketPolicyCommand({ Bucket }))),
          notImplemented,
        );
        assertEquals(
          await s3Fails(
            s3.send(
              new PutBucketVersioningCommand({
                Bucket,
                VersioningConfiguration: { Status: "Enabled" },
              }),
            ),
          ),
          notImplemented,
        );
        const head = await s3.send(new HeadBucketCommand({ Bucket }));
        assertEquals(head.$metadata.httpStatusCode, 200);
        await s3.send(new DeleteBucketCommand({ Bucket }));
      },
    );

    await t.step(
      'a versionId other than "null" is 400 InvalidArgument: never the current object\'s',
      async () => {
        const Bucket = bucketName();
        const Key = "versioned";
        await s3.send(new PutObjectCommand({ Bucket, Key, Body: "current" }));
        const VersionId = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY";
        const invalid = { name: "InvalidArgument", status: 400 };
        assertEquals(
          await s3Fails(s3.send(new DeleteObjectCommand({ Bucket, Key, VersionId }))),
          invalid,
        );
        assertEquals(
          await s3Fails(s3.send(new GetObjectCommand({ Bucket, Key, VersionId }))),
          invalid,
        );
        assertEquals(
          await s3Fails(
            s3.send(
              new CopyObjectCommand({
                Bucket,
                Key: "copy",
                CopySource: `${Bucket}/${Key}?versionId=${VersionId}`,
              }),
            ),
          ),
          invalid,
        );
        const batch = await s3.send(
          new DeleteObjectsCommand({ Bucket, Delete: { Objects: [{ Key, VersionId }] } }),
        );
        assertEquals(batch.Errors!.map((e) => [e.Key, e.Code]), [[Key, "InvalidArgument"]]);
        assertEquals(batch.Deleted, undefined);
        // The version of an object in an unversioned bucket is "null": itself.
        const got = await s3.send(new GetObjectCommand({ Bucket, Key, VersionId: "null" }));
        assertEquals(await got.Body!.transformToString(), "current");
        await s3.send(new DeleteObjectCommand({ Bucket, Key, VersionId: "null" }));
        assertEquals(await s3Fails(s3.send(new GetObjectCommand({ Bucket, Key }))), {
          name: "NoSuchKey",
          status: 404,
        });
      },
    );

    await t.step("a bucket with only a multipart upload in progress lists it", async () => {
      const Bucket = bucketName();
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: "m" }));
      const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket }));
      assertEquals(listed.Uploads!.map((u) => [u.Key, u.UploadId]), [["m", UploadId]]);
      await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: "m", UploadId }));
    });

    await t.step("DeleteObject and DeleteObjects remove the files from the volumes", async () => {
      const Bucket = bucketName();
      for (const Key of ["d1", "d2", "d3"]) {
        await s3.send(new PutObjectCommand({ Bucket, Key, Body: "v" }));
      }
      const named = async () =>
        (await Promise.all(c.volumes.map((v) => volumeFiles(v)))).flat()
          .filter((f) =>
            ["d1", "d2", "d3"].some((k) => f.endsWith(key2path(enc.encode(`/${Bucket}/${k}`))))
          );
      assertEquals((await named()).length, 9);
      const del = await s3.send(new DeleteObjectCommand({ Bucket, Key: "d1" }));
      assertEquals(del.$metadata.httpStatusCode, 204);
      const many = await s3.send(
        new DeleteObjectsCommand({
          Bucket,
          Delete: { Objects: [{ Key: "d2" }, { Key: "d3" }, { Key: "never" }] },
        }),
      );
      assertEquals(many.Deleted!.map((d) => d.Key).sort(), ["d2", "d3", "never"]);
      assertEquals(many.Errors, undefined);
      const left = await s3.send(new ListObjectsV2Command({ Bucket }));
      assertEquals(left.KeyCount, 0);
      assertEquals(await named(), []);
      assertEquals((await fetch(`${c.url}/${Bucket}/d2`, { redirect: "manual" })).status, 404);
    });

    await t.step(
      "an unlinked key, invisible to S3, is kept by DeleteObject(s): RELINK brings it back",
      async () => {
        const Bucket = bucketName();
        for (const Key of ["u1", "u2", "live"]) {
          await s3.send(new PutObjectCommand({ Bucket, Key, Body: `value of ${Key}` }));
        }
        for (const key of ["u1", "u2"]) {
          assertEquals(
            (await fetch(`${c.url}/${Bucket}/${key}`, { method: "UNLINK" })).status,
            204,
          );
        }
        assertEquals(await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key: "u1" }))), {
          name: "NotFound",
          status: 404,
        });
        const del = await s3.send(new DeleteObjectCommand({ Bucket, Key: "u1" }));
        assertEquals(del.$metadata.httpStatusCode, 204);
        const many = await s3.send(
          new DeleteObjectsCommand({
            Bucket,
            Delete: { Objects: [{ Key: "u2" }, { Key: "live" }] },
          }),
        );
        assertEquals(many.Deleted!.map((d) => d.Key).sort(), ["live", "u2"]);
        const unlinked = await (await fetch(`${c.url}/${Bucket}/?unlinked`)).json();
        assertEquals(unlinked.keys, [`/${Bucket}/u1`, `/${Bucket}/u2`]);
        for (const key of ["u1", "u2"]) {
          assertEquals(
            (await fetch(`${c.url}/${Bucket}/${key}`, { method: "RELINK" })).status,
            204,
          );
          assertEquals(
            new TextDecoder().decode((await bytesOf(s3, Bucket, key)).bytes),
            `value of ${key}`,
          );
        }
        assertEquals(await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key: "live" }))), {
          name: "NotFound",
          status: 404,
        });
      },
    );

    await t.step("CopyObject: same bytes, metadata copied or replaced", async () => {
      const Bucket = bucketName();
      const value = randomBytes(50_000);
      await s3.send(
        new PutObjectCommand({ Bucket, Key: "src", Body: value, ContentType: "image/png" }),
      );
      const copied = await s3.send(
        new CopyObjectCommand({ Bucket, Key: "dst", CopySource: `${Bucket}/src` }),
      );
      assertEquals(copied.CopyObjectResult!.ETag, `"${md5Hex(value)}"`);
      const { got, bytes } = await bytesOf(s3, Bucket, "dst");
      assertEquals(md5Hex(bytes), md5Hex(value));
      assertEquals(got.ContentType, "image/png");
      await s3.send(
        new CopyObjectCommand({
          Bucket,
          Key: "src",
          CopySource: `${Bucket}/src`,
          MetadataDirective: "REPLACE",
          ContentType: "image/jpeg",
        }),
      );
      const head = await s3.send(new HeadObjectCommand({ Bucket, Key: "src" }));
      assertEquals(head.ContentType, "image/jpeg");
      assertEquals(head.ETag, `"${md5Hex(value)}"`);
      assertEquals(
        await s3Fails(
          s3.send(new CopyObjectCommand({ Bucket, Key: "x", CopySource: `${Bucket}/none` })),
        ),
        { name: "NoSuchKey", status: 404 },
      );
    });

    await t.step(
      "CopyObject of a source whose every replica is gone: NoSuchKey, the destination untouched",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "gone", Body: "source" }));
        await s3.send(new PutObjectCommand({ Bucket, Key: "dst", Body: "before" }));
        const path = key2path(enc.encode(`/${Bucket}/gone`));
        for (const v of c.volumes) {
          for (const f of (await volumeFiles(v)).filter((f) => f.endsWith(path))) {
            assertEquals((await fetch(`http://${v}${f}`, { method: "DELETE" })).status, 204);
          }
        }
        assertEquals(
          await s3Fails(
            s3.send(new CopyObjectCommand({ Bucket, Key: "dst", CopySource: `${Bucket}/gone` })),
          ),
          { name: "NoSuchKey", status: 404 },
        );
        assertEquals((await bytesOf(s3, Bucket, "dst")).bytes, enc.encode("before"));
        assertEquals(
          await s3Fails(
            s3.send(new CopyObjectCommand({ Bucket, Key: "new", CopySource: `${Bucket}/gone` })),
          ),
          { name: "NoSuchKey", status: 404 },
        );
        assertEquals(
          await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key: "new" }))),
          { name: "NotFound", status: 404 },
        );
        // GetObject and HeadObject of the source agree: no such key.
        assertEquals(
          await s3Fails(s3.send(new GetObjectCommand({ Bucket, Key: "gone" }))),
          { name: "NoSuchKey", status: 404 },
        );
        assertEquals(
          await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key: "gone" }))),
          { name: "NotFound", status: 404 },
        );
      },
    );

    await t.step(
      "a 17 MiB multipart upload (lib-storage): multipart ETag, same bytes",
      async () => {
        const Bucket = bucketName();
        const value = randomBytes(17 * 1024 * 1024);
        const up = new Upload({
          client: s3,
          params: { Bucket, Key: "big/value", Body: value, ContentType: "video/mp4" },
          partSize: 5 * 1024 * 1024,
          queueSize: 2,
        });
        const done = await up.done();
        const md5s = createHash("md5");
        for (let i = 0; i < value.length; i += 5 * 1024 * 1024) {
          md5s.update(createHash("md5").update(value.subarray(i, i + 5 * 1024 * 1024)).digest());
        }
        const etag = `"${md5s.digest("hex")}-4"`;
        assertEquals(done.ETag, etag);
        const { got, bytes } = await bytesOf(s3, Bucket, "big/value");
        assertEquals(got.ETag, etag);
        assertEquals(got.ContentType, "video/mp4");
        assertEquals(bytes.length, value.length);
        assertEquals(md5Hex(bytes), md5Hex(value));
        // The parts are gone from the volumes; the value is where the hash puts it.
        const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket }));
        assertEquals(uploads.Uploads, undefined);
        for (const v of c.volumes) {
          assertEquals((await volumeFiles(v)).filter((f) => f.includes("mpu.")), []);
        }
      },
    );

    await t.step(
      "GetObject and HeadObject by partNumber: that part's bytes, 206, the part count",
      async () => {
        const Bucket = bucketName();
        const Key = "parts/value";
        const parts = [
          randomBytes(5 * 1024 * 1024),
          randomBytes(5 * 1024 * 1024),
          randomBytes(1234),
        ];
        const { UploadId, Parts } = await uploadParts(s3, Bucket, Key, parts);
        await s3.send(
          new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }),
        );
        const size = 10 * 1024 * 1024 + 1234;
        const second = await s3.send(new GetObjectCommand({ Bucket, Key, PartNumber: 2 }));
        assertEquals(second.$metadata.httpStatusCode, 206);
        assertEquals(second.ContentRange, `bytes 5242880-10485759/${size}`);
        assertEquals(second.ContentLength, 5 * 1024 * 1024);
        assertEquals(second.PartsCount, 3);
        assertEquals(md5Hex(await second.Body!.transformToByteArray()), md5Hex(parts[1]));
        const last = await s3.send(new HeadObjectCommand({ Bucket, Key, PartNumber: 3 }));
        assertEquals(last.$metadata.httpStatusCode, 206);
        assertEquals(last.ContentRange, `bytes 10485760-${size - 1}/${size}`);
        assertEquals(last.ContentLength, 1234);
        assertEquals(last.PartsCount, 3);
        // Without partNumber the whole object, and no part count (as S3).
        const whole = await s3.send(new HeadObjectCommand({ Bucket, Key }));
        assertEquals([whole.ContentLength, whole.PartsCount], [size, undefined]);
        assertEquals(
          await s3Fails(s3.send(new GetObjectCommand({ Bucket, Key, PartNumber: 4 }))),
          { name: "InvalidPartNumber", status: 416 },
        );
      },
    );

    await t.step(
      "partNumber 1 of an object not uploaded in parts is all of it; 2 is 416",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "single", Body: "0123456789" }));
        const first = await s3.send(
          new GetObjectCommand({ Bucket, Key: "single", PartNumber: 1 }),
        );
        assertEquals(first.$metadata.httpStatusCode, 206);
        assertEquals(first.ContentRange, "bytes 0-9/10");
        assertEquals(first.PartsCount, undefined);
        assertEquals(await first.Body!.transformToString(), "0123456789");
        assertEquals(
          await s3Fails(s3.send(new GetObjectCommand({ Bucket, Key: "single", PartNumber: 2 }))),
          { name: "InvalidPartNumber", status: 416 },
        );
        assertEquals(
          await s3Fails(
            s3.send(
              new GetObjectCommand({ Bucket, Key: "single", PartNumber: 1, Range: "bytes=0-1" }),
            ),
          ),
          { name: "InvalidRequest", status: 400 },
        );
      },
    );

    await t.step(
      "UploadPartCopy builds an object from ranges of another, volume to volumes",
      async () => {
        const Bucket = bucketName();
        const source = randomBytes(6 * 1024 * 1024 + 100);
        await s3.send(new PutObjectCommand({ Bucket, Key: "src", Body: source }));
        const Key = "assembled";
        const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
        const cut = 5 * 1024 * 1024;
        const first = await s3.send(
          new UploadPartCopyCommand({
            Bucket,
            Key,
            UploadId,
            PartNumber: 1,
            CopySource: `${Bucket}/src`,
            CopySourceRange: `bytes=0-${cut - 1}`,
          }),
        );
        const second = await s3.send(
          new UploadPartCopyCommand({
            Bucket,
            Key,
            UploadId,
            PartNumber: 2,
            CopySource: `${Bucket}/src`,
            CopySourceRange: `bytes=${cut}-${source.length - 1}`,
          }),
        );
        assertEquals(first.CopyPartResult!.ETag, `"${md5Hex(source.subarray(0, cut))}"`);
        await s3.send(
          new CompleteMultipartUploadCommand({
            Bucket,
            Key,
            UploadId,
            MultipartUpload: {
              Parts: [
                { PartNumber: 1, ETag: first.CopyPartResult!.ETag },
                { PartNumber: 2, ETag: second.CopyPartResult!.ETag },
              ],
            },
          }),
        );
        assertEquals(md5Hex((await bytesOf(s3, Bucket, Key)).bytes), md5Hex(source));
      },
    );

    await t.step("multipart parts live on the volumes and survive a master restart", async () => {
      const Bucket = bucketName();
      const Key = "restart/value";
      const parts = [randomBytes(5 * 1024 * 1024), randomBytes(5 * 1024 * 1024), randomBytes(1234)];
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
      const etags: string[] = [];
      for (const [i, Body] of parts.slice(0, 2).entries()) {
        const r = await s3.send(
          new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: i + 1, Body }),
        );
        etags.push(r.ETag!);
      }
      assertEquals(etags, parts.slice(0, 2).map((p) => `"${md5Hex(p)}"`));
      await c.stopMaster();
      await c.startMaster();
      s3.destroy();
      s3 = client(c);
      const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket }));
      assertEquals(listed.Uploads!.map((u) => [u.Key, u.UploadId]), [[Key, UploadId]]);
      const third = await s3.send(
        new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 3, Body: parts[2] }),
      );
      etags.push(third.ETag!);
      const lp = await s3.send(new ListPartsCommand({ Bucket, Key, UploadId }));
      assertEquals(lp.Parts!.map((p) => [p.PartNumber, p.ETag, p.Size]), [
        [1, etags[0], 5 * 1024 * 1024],
        [2, etags[1], 5 * 1024 * 1024],
        [3, etags[2], 1234],
      ]);
      const wrong = await s3Fails(
        s3.send(
          new CompleteMultipartUploadCommand({
            Bucket,
            Key,
            UploadId,
            MultipartUpload: { Parts: [{ PartNumber: 1, ETag: etags[1] }] },
          }),
        ),
      );
      assertEquals(wrong, { name: "InvalidPart", status: 400 });
      const complete = new CompleteMultipartUploadCommand({
        Bucket,
        Key,
        UploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) },
      });
      const completed = await s3.send(complete);
      // A client that missed the answer and asks again gets the same one.
      assertEquals((await s3.send(complete)).ETag, completed.ETag);
      const { bytes } = await bytesOf(s3, Bucket, Key);
      const whole = Buffer.concat(parts);
      assertEquals(bytes.length, whole.length);
      assertEquals(md5Hex(bytes), md5Hex(whole));
      assertEquals(
        await s3Fails(s3.send(new ListPartsCommand({ Bucket, Key, UploadId }))),
        { name: "NoSuchUpload", status: 404 },
      );
    });

    await t.step(
      "two Completes of one upload at once (a client's retry): both get its ETag",
      async () => {
        const Bucket = bucketName();
        const Key = "completed-twice";
        const parts = [
          randomBytes(5 * 1024 * 1024),
          randomBytes(5 * 1024 * 1024),
          randomBytes(777),
        ];
        const { UploadId, Parts } = await uploadParts(s3, Bucket, Key, parts);
        const complete = () =>
          s3.send(
            new CompleteMultipartUploadCommand({
              Bucket,
              Key,
              UploadId,
              MultipartUpload: { Parts },
            }),
          ).then((r) => r.ETag, (e) => `${e.name} ${e.$metadata?.httpStatusCode}`);
        const [a, b] = await Promise.all([complete(), complete()]);
        assertEquals(a, b);
        assert(/^"[0-9a-f]{32}-3"$/.test(a!), a);
        const { bytes } = await bytesOf(s3, Bucket, Key);
        assertEquals(md5Hex(bytes), md5Hex(Buffer.concat(parts)));
      },
    );

    await t.step(
      "a Complete that fails after its 200 says so in an <Error>; the upload stays",
      async () => {
        const Bucket = bucketName();
        const Key = "complete-fails";
        const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
        const part = await s3.send(
          new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: randomBytes(1000) }),
        );
        const complete = new CompleteMultipartUploadCommand({
          Bucket,
          Key,
          UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
        });
        await c.stopVolume(0);
        let failure;
        try {
          failure = await s3Fails(s3.send(complete));
        } finally {
          await c.startVolume(0);
        }
        // The SDK reads an <Error> in a 200 as an error and reports it as 503 (retryable).
        assertEquals(failure, { name: "InternalError", status: 503 });
        assertEquals(await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key }))), {
          name: "NotFound",
          status: 404,
        });
        const done = await s3.send(complete);
        assert(done.ETag!.endsWith('-1"'), done.ETag);
      },
    );

    await t.step(
      "ListMultipartUploads pages past a rolled-up prefix by its key marker",
      async () => {
        const Bucket = bucketName();
        const uploads = await startUploads(s3, Bucket, ["a/1", "a/2", "b"]);
        const seen: string[] = [];
        let KeyMarker: string | undefined;
        let UploadIdMarker: string | undefined;
        for (let page = 0; page < 10; page++) {
          const r = await s3.send(
            new ListMultipartUploadsCommand({
              Bucket,
              Delimiter: "/",
              MaxUploads: 1,
              KeyMarker,
              UploadIdMarker,
            }),
          );
          seen.push(
            ...(r.CommonPrefixes ?? []).map((p) => p.Prefix!),
            ...(r.Uploads ?? []).map((u) => u.Key!),
          );
          if (!r.IsTruncated) break;
          KeyMarker = r.NextKeyMarker;
          UploadIdMarker = r.NextUploadIdMarker;
        }
        assertEquals(seen, ["a/", "b"]);
        await uploads.abort();
      },
    );

    await t.step(
      "ListMultipartUploads: a key-marker inside a rolled-up prefix skips the rest of it, as S3",
      async () => {
        // S3: "CommonPrefixes is filtered out from results if it is not
        // lexicographically greater than the key-marker": a/ is not after a/1.
        const Bucket = bucketName();
        const keys = ["a/1", "a/2", "b"];
        const uploads = await startUploads(s3, Bucket, keys);
        const r = await s3.send(
          new ListMultipartUploadsCommand({ Bucket, Delimiter: "/", KeyMarker: "a/1" }),
        );
        assertEquals(r.CommonPrefixes, undefined);
        assertEquals(r.Uploads?.map((u) => u.Key), ["b"]);
        await uploads.abort();
      },
    );

    await t.step(
      "ListMultipartUploads pages through keys in UTF-8 byte order, as ListObjectsV2",
      async () => {
        // U+E000 sorts before U+1F600 in UTF-8 (S3's order), after it in
        // UTF-16 (JavaScript's): a key-marker there skipped the other.
        const Bucket = bucketName();
        const keys = ["a", "\u{E000}", "\u{1F600}"];
        const uploads = await startUploads(s3, Bucket, keys);
        const seen: string[] = [];
        let KeyMarker: string | undefined;
        for (let page = 0; page < 10; page++) {
          const r = await s3.send(
            new ListMultipartUploadsCommand({ Bucket, MaxUploads: 1, KeyMarker }),
          );
          seen.push(...(r.Uploads ?? []).map((u) => u.Key!));
          if (!r.IsTruncated) break;
          KeyMarker = r.NextKeyMarker;
        }
        assertEquals(seen, keys);
        await uploads.abort();
      },
    );

    await t.step(
      "Complete: parts out of order are InvalidPartOrder, a small part not last EntityTooSmall",
      async () => {
        const Bucket = bucketName();
        const Key = "small-parts";
        const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
        const Parts: { PartNumber: number; ETag?: string }[] = [];
        for (const PartNumber of [1, 2]) {
          const { ETag } = await s3.send(
            new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body: "tiny" }),
          );
          Parts.push({ PartNumber, ETag });
        }
        const complete = (parts: typeof Parts) =>
          s3.send(
            new CompleteMultipartUploadCommand({
              Bucket,
              Key,
              UploadId,
              MultipartUpload: { Parts: parts },
            }),
          );
        // The order is the list's own fault, whatever the parts' sizes.
        assertEquals(await s3Fails(complete([Parts[1], Parts[0]])), {
          name: "InvalidPartOrder",
          status: 400,
        });
        assertEquals(await s3Fails(complete(Parts)), { name: "EntityTooSmall", status: 400 });
        await s3.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }));
      },
    );

    await t.step(
      "a Complete whose x-amz-mp-object-size is not the parts' size: 400, the upload stays",
      async () => {
        const Bucket = bucketName();
        const Key = "sized";
        const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
        const { ETag } = await s3.send(
          new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: "abc" }),
        );
        const complete = (MpuObjectSize: number) =>
          s3.send(
            new CompleteMultipartUploadCommand({
              Bucket,
              Key,
              UploadId,
              MpuObjectSize,
              MultipartUpload: { Parts: [{ PartNumber: 1, ETag }] },
            }),
          );
        assertEquals(await s3Fails(complete(4)), { name: "InvalidRequest", status: 400 });
        assertEquals(
          await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key }))),
          { name: "NotFound", status: 404 },
        );
        await complete(3);
        assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, Key)).bytes), "abc");
      },
    );

    await t.step("AbortMultipartUpload removes the parts; the upload is then gone", async () => {
      const Bucket = bucketName();
      const Key = "aborted";
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
      await s3.send(
        new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: randomBytes(1000) }),
      );
      const withPart = (await Promise.all(c.volumes.map((v) => volumeFiles(v)))).flat()
        .filter((f) => f.includes(`mpu.${UploadId}.`));
      assertEquals(withPart.length, 3);
      await s3.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }));
      const after = (await Promise.all(c.volumes.map((v) => volumeFiles(v)))).flat()
        .filter((f) => f.includes(`mpu.${UploadId}.`));
      assertEquals(after, []);
      assertEquals(
        await s3Fails(
          s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 2, Body: "x" })),
        ),
        { name: "NoSuchUpload", status: 404 },
      );
    });

    await t.step(
      "DeleteObjects of keys with \\n and \\r (sent as &#x0A; &#13;) deletes those keys",
      async () => {
        const Bucket = bucketName();
        const keys = ["line\nbreak", "carriage\rreturn", "amp&#x0A;literal"];
        for (const Key of keys) await s3.send(new PutObjectCommand({ Bucket, Key, Body: "v" }));
        const res = await s3.send(
          new DeleteObjectsCommand({ Bucket, Delete: { Objects: keys.map((Key) => ({ Key })) } }),
        );
        assertEquals(res.Deleted!.map((d) => d.Key).sort(), [...keys].sort());
        assertEquals((await s3.send(new ListObjectsV2Command({ Bucket }))).KeyCount, 0);
      },
    );

    await t.step(
      "a key with control characters is listed as S3 lists it (&#x1;), read back exactly",
      async () => {
        const Bucket = bucketName();
        const Key = "ctl\x01\x1f\x08key";
        await s3.send(new PutObjectCommand({ Bucket, Key, Body: "v" }));
        const listed = await s3.send(new ListObjectsV2Command({ Bucket }));
        assertEquals(listed.Contents!.map((o) => o.Key), [Key]);
        const url = await getSignedUrl(s3, new ListObjectsV2Command({ Bucket }));
        const xml = await (await fetch(url)).text();
        assert(xml.includes("<Key>ctl&#x1;&#x1f;&#x8;key</Key>"), xml);
      },
    );

    await t.step(
      "ListObjects pages past a rolled-up prefix by its marker; start-after skips it",
      async () => {
        const Bucket = bucketName();
        for (const Key of ["a/1", "a/2", "b", "c/1"]) {
          await s3.send(new PutObjectCommand({ Bucket, Key, Body: "v" }));
        }
        const seen: string[] = [];
        let Marker: string | undefined;
        for (let page = 0; page < 10; page++) {
          const r = await s3.send(
            new ListObjectsCommand({ Bucket, Delimiter: "/", MaxKeys: 1, Marker }),
          );
          seen.push(
            ...(r.CommonPrefixes ?? []).map((p) => p.Prefix!),
            ...(r.Contents ?? []).map((o) => o.Key!),
          );
          if (!r.IsTruncated) break;
          Marker = r.NextMarker;
        }
        assertEquals(seen, ["a/", "b", "c/"]);
        const after = await s3.send(
          new ListObjectsV2Command({ Bucket, Delimiter: "/", StartAfter: "a/" }),
        );
        assertEquals((after.CommonPrefixes ?? []).map((p) => p.Prefix), ["c/"]);
        assertEquals((after.Contents ?? []).map((o) => o.Key), ["b"]);
        const long = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: "x".repeat(3000) }));
        assertEquals(long.KeyCount, 0);
      },
    );

    await t.step(
      "Range b < a is ignored (200, whole value); any range of an empty object is 416",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "r", Body: "0123456789" }));
        const { got, bytes } = await bytesOf(s3, Bucket, "r", "bytes=5-3");
        assertEquals(got.$metadata.httpStatusCode, 200);
        assertEquals(new TextDecoder().decode(bytes), "0123456789");
        await s3.send(new PutObjectCommand({ Bucket, Key: "empty", Body: "" }));
        assertEquals(await s3Fails(bytesOf(s3, Bucket, "empty", "bytes=0-")), {
          name: "InvalidRange",
          status: 416,
        });
        // A HEAD answer has no body to name the error: its status says it.
        const head = await s3Fails(
          s3.send(new HeadObjectCommand({ Bucket, Key: "empty", Range: "bytes=0-" })),
        );
        assertEquals(head.status, 416);
      },
    );

    await t.step(
      "If-Match on PUT and x-amz-copy-source-if-match are honoured (412 when not)",
      async () => {
        const Bucket = bucketName();
        const first = await s3.send(new PutObjectCommand({ Bucket, Key: "m", Body: "one" }));
        assertEquals(
          await s3Fails(
            s3.send(new PutObjectCommand({ Bucket, Key: "m", Body: "two", IfMatch: '"00"' })),
          ),
          { name: "PreconditionFailed", status: 412 },
        );
        await s3.send(new PutObjectCommand({ Bucket, Key: "m", Body: "two", IfMatch: first.ETag }));
        assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, "m")).bytes), "two");
        assertEquals(
          await s3Fails(
            s3.send(new PutObjectCommand({ Bucket, Key: "absent", Body: "x", IfMatch: "*" })),
          ),
          { name: "NoSuchKey", status: 404 },
        );
        assertEquals(
          await s3Fails(
            s3.send(
              new CopyObjectCommand({
                Bucket,
                Key: "c",
                CopySource: `${Bucket}/m`,
                CopySourceIfMatch: first.ETag,
              }),
            ),
          ),
          { name: "PreconditionFailed", status: 412 },
        );
      },
    );

    await t.step(
      "CopyObject's If-None-Match: * and If-Match are about the destination (412 when not)",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "src", Body: "source" }));
        const dst = await s3.send(new PutObjectCommand({ Bucket, Key: "dst", Body: "dest" }));
        const copy = (Key: string, conditions: { IfNoneMatch?: string; IfMatch?: string }) =>
          s3.send(
            new CopyObjectCommand({ Bucket, Key, CopySource: `${Bucket}/src`, ...conditions }),
          );
        const text = async (Key: string) =>
          new TextDecoder().decode((await bytesOf(s3, Bucket, Key)).bytes);
        assertEquals(await s3Fails(copy("dst", { IfNoneMatch: "*" })), {
          name: "PreconditionFailed",
          status: 412,
        });
        assertEquals(await s3Fails(copy("dst", { IfMatch: `"${"0".repeat(32)}"` })), {
          name: "PreconditionFailed",
          status: 412,
        });
        assertEquals(await text("dst"), "dest");
        await copy("dst", { IfMatch: dst.ETag });
        assertEquals(await text("dst"), "source");
        assertEquals(await s3Fails(copy("absent", { IfMatch: "*" })), {
          name: "NoSuchKey",
          status: 404,
        });
        await copy("fresh", { IfNoneMatch: "*" });
        assertEquals(await text("fresh"), "source");
        // Onto itself (a metadata rewrite): If-Match is checked all the same.
        assertEquals(
          await s3Fails(
            s3.send(
              new CopyObjectCommand({
                Bucket,
                Key: "src",
                CopySource: `${Bucket}/src`,
                MetadataDirective: "REPLACE",
                IfMatch: `"${"0".repeat(32)}"`,
              }),
            ),
          ),
          { name: "PreconditionFailed", status: 412 },
        );
      },
    );

    await t.step(
      "DeleteObject's If-Match and DeleteObjects' <ETag> delete only the value named",
      async () => {
        const Bucket = bucketName();
        const puts = new Map<string, string>();
        for (const Key of ["a", "b", "c"]) {
          puts.set(Key, (await s3.send(new PutObjectCommand({ Bucket, Key, Body: Key }))).ETag!);
        }
        const other = `"${"0".repeat(32)}"`;
        assertEquals(
          await s3Fails(s3.send(new DeleteObjectCommand({ Bucket, Key: "a", IfMatch: other }))),
          { name: "PreconditionFailed", status: 412 },
        );
        assertEquals(
          await s3Fails(s3.send(new DeleteObjectCommand({ Bucket, Key: "absent", IfMatch: "*" }))),
          { name: "NoSuchKey", status: 404 },
        );
        const del = await s3.send(
          new DeleteObjectCommand({ Bucket, Key: "a", IfMatch: puts.get("a") }),
        );
        assertEquals(del.$metadata.httpStatusCode, 204);
        const many = await s3.send(
          new DeleteObjectsCommand({
            Bucket,
            Delete: {
              Objects: [{ Key: "b", ETag: other }, { Key: "c", ETag: puts.get("c") }],
            },
          }),
        );
        assertEquals(many.Deleted!.map((d) => d.Key), ["c"]);
        assertEquals(many.Errors!.map((e) => [e.Key, e.Code]), [["b", "PreconditionFailed"]]);
        const left = await s3.send(new ListObjectsV2Command({ Bucket }));
        assertEquals(left.Contents!.map((o) => o.Key), ["b"]);
      },
    );

    await t.step(
      "CompleteMultipartUpload honours If-None-Match: * and If-Match (412, the upload stays)",
      async () => {
        const Bucket = bucketName();
        const Key = "conditional-complete";
        const first = await s3.send(new PutObjectCommand({ Bucket, Key, Body: "original" }));
        const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
        const part = await s3.send(
          new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: "new value" }),
        );
        const complete = (conditions: { IfNoneMatch?: string; IfMatch?: string }) =>
          s3.send(
            new CompleteMultipartUploadCommand({
              Bucket,
              Key,
              UploadId,
              MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
              ...conditions,
            }),
          );
        assertEquals(await s3Fails(complete({ IfNoneMatch: "*" })), {
          name: "PreconditionFailed",
          status: 412,
        });
        assertEquals(await s3Fails(complete({ IfMatch: `"${"0".repeat(32)}"` })), {
          name: "PreconditionFailed",
          status: 412,
        });
        assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, Key)).bytes), "original");
        // Still in progress: completed when the condition holds.
        const done = await complete({ IfMatch: first.ETag });
        assert(done.ETag!.endsWith('-1"'), done.ETag);
        assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, Key)).bytes), "new value");

        // If-Match of a key that does not exist: NoSuchKey; If-None-Match: * creates it.
        const Fresh = "conditional-fresh";
        const up = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: Fresh }));
        const p = await s3.send(
          new UploadPartCommand({
            Bucket,
            Key: Fresh,
            UploadId: up.UploadId,
            PartNumber: 1,
            Body: "fresh",
          }),
        );
        const completeFresh = (conditions: { IfNoneMatch?: string; IfMatch?: string }) =>
          s3.send(
            new CompleteMultipartUploadCommand({
              Bucket,
              Key: Fresh,
              UploadId: up.UploadId,
              MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p.ETag }] },
              ...conditions,
            }),
          );
        assertEquals(await s3Fails(completeFresh({ IfMatch: "*" })), {
          name: "NoSuchKey",
          status: 404,
        });
        await completeFresh({ IfNoneMatch: "*" });
        assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, Fresh)).bytes), "fresh");
      },
    );

    await t.step("a multipart upload of a key too long to store is refused at once", async () => {
      const Bucket = bucketName();
      assertEquals(
        await s3Fails(s3.send(new CreateMultipartUploadCommand({ Bucket, Key: "k".repeat(2100) }))),
        { name: "KeyTooLongError", status: 400 },
      );
    });

    await t.step("a wrong secret or access key is refused with 403", async () => {
      const Bucket = bucketName();
      await s3.send(new CreateBucketCommand({ Bucket }));
      const bad = client(c, "not-the-secret");
      assertEquals(
        await s3Fails(bad.send(new PutObjectCommand({ Bucket, Key: "k", Body: "v" }))),
        { name: "SignatureDoesNotMatch", status: 403 },
      );
      bad.destroy();
      const stranger = client(c, SECRET, "someone-else");
      assertEquals(
        await s3Fails(stranger.send(new ListObjectsV2Command({ Bucket }))),
        { name: "InvalidAccessKeyId", status: 403 },
      );
      stranger.destroy();
      assertEquals((await s3.send(new ListObjectsV2Command({ Bucket }))).KeyCount, 0);
      const anonymous = await fetch(`${c.url}/${Bucket}?list-type=2`);
      assertEquals(anonymous.status, 403);
      assert((await anonymous.text()).includes("<Code>AccessDenied</Code>"));
    });

    await t.step(
      "a presigned GET works with plain fetch; tampered or expired does not",
      async () => {
        const Bucket = bucketName();
        const value = randomBytes(4096);
        await s3.send(new PutObjectCommand({ Bucket, Key: "shared", Body: value }));
        const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "shared" }), {
          expiresIn: 60,
        });
        const res = await fetch(url);
        assertEquals(res.status, 200);
        assertEquals(md5Hex(new Uint8Array(await res.arrayBuffer())), md5Hex(value));
        const tampered = await fetch(url.replace("shared", "sharee"));
        assertEquals(tampered.status, 403);
        assert((await tampered.text()).includes("<Code>SignatureDoesNotMatch</Code>"));
        const old = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "shared" }), {
          expiresIn: 1,
          signingDate: new Date(Date.now() - 10_000),
        });
        const expired = await fetch(old);
        assertEquals(expired.status, 403);
        assert((await expired.text()).includes("Request has expired"));
      },
    );

    await t.step(
      "a Content-MD5 that does not match: BadDigest; not an MD5: InvalidDigest",
      async () => {
        const Bucket = bucketName();
        const fail = await s3Fails(
          s3.send(
            new PutObjectCommand({
              Bucket,
              Key: "digest",
              Body: "the value",
              ContentMD5: Buffer.from(createHash("md5").update("another").digest()).toString(
                "base64",
              ),
            }),
          ),
        );
        assertEquals(fail, { name: "BadDigest", status: 400 });
        assertEquals(
          (await fetch(`${c.url}/${Bucket}/digest`, { redirect: "manual" })).status,
          404,
        );
        // One that is no MD5 at all (not 16 bytes of base64) is InvalidDigest, as S3 says.
        for (const ContentMD5 of ["not-an-md5", Buffer.from("short").toString("base64")]) {
          const bad = await s3Fails(
            s3.send(new PutObjectCommand({ Bucket, Key: "digest", Body: "the value", ContentMD5 })),
          );
          assertEquals(bad, { name: "InvalidDigest", status: 400 }, ContentMD5);
        }
        assertEquals(
          (await fetch(`${c.url}/${Bucket}/digest`, { redirect: "manual" })).status,
          404,
        );
      },
    );
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("S3 with -s3 and no keys: signatures are not checked, as mkv", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = client(c, "anything", "anyone");
  try {
    const Bucket = bucketName();
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "open" }));
    assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, "k")).bytes), "open");
    const unsigned = await fetch(`${c.url}/${Bucket}?list-type=2`);
    assertEquals(unsigned.status, 200);
    assert((await unsigned.text()).includes("<Key>k</Key>"));
    // "+" in a parameter's value is a space, as S3 reads it (SigV2 clients send that).
    await s3.send(new PutObjectCommand({ Bucket, Key: "dir with space/x", Body: "s" }));
    const plus = await fetch(`${c.url}/${Bucket}?list-type=2&prefix=dir+with+space/`);
    assert((await plus.text()).includes("<Key>dir with space/x</Key>"));
    // A DeleteObjects body past 2 MiB is refused, not read into memory.
    const huge = "<Delete>" + "<Object><Key>k</Key></Object>".repeat(100_000) + "</Delete>";
    const tooBig = await fetch(`${c.url}/${Bucket}?delete`, {
      method: "POST",
      headers: md5Header(huge),
      body: huge,
    });
    assertEquals(tooBig.status, 400);
    assert((await tooBig.text()).includes("<Code>MaxMessageLengthExceeded</Code>"));
    assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, "k")).bytes), "open");
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("S3 values count in the byte metrics: PutObject and UploadPart in, GetObject out", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = client(c);
  /** The two byte counters (a scrape's own body is not in them). */
  const scrape = async () => {
    const text = await (await fetch(`${c.url}/?metrics`)).text();
    const counter = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)![1]);
    return {
      in: counter("mkv_request_bytes_total"),
      out: counter("mkv_response_bytes_total"),
    };
  };
  try {
    const Bucket = bucketName();
    await s3.send(new CreateBucketCommand({ Bucket }));
    const before = await scrape();
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: randomBytes(1000) }));
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: "mp" }));
    await s3.send(
      new UploadPartCommand({ Bucket, Key: "mp", UploadId, PartNumber: 1, Body: randomBytes(300) }),
    );
    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: "mp", UploadId }));
    const mid = await scrape();
    assertEquals(mid.in - before.in, 1300);
    // CreateMultipartUpload's answer is XML the master sent.
    const initiated = `<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult ` +
      `xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${Bucket}</Bucket><Key>mp</Key>` +
      `<UploadId>${UploadId}</UploadId></InitiateMultipartUploadResult>`;
    assertEquals(mid.out - before.out, enc.encode(initiated).length);
    assertEquals((await bytesOf(s3, Bucket, "k")).bytes.length, 1000);
    const after = await scrape();
    assertEquals([after.in - mid.in, after.out - mid.out], [0, 1000]);
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("without -s3 or keys the gateway is off: a signed GET is mkv's 302", async () => {
  const c = await Cluster.start();
  try {
    const key = `/${bucketName()}/k`;
    assertEquals((await fetch(c.url + key, { method: "PUT", body: "v" })).status, 201);
    const signed = {
      authorization: "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/s3/aws4_request, " +
        "SignedHeaders=host, Signature=00",
    };
    const res = await fetch(c.url + key, { headers: signed, redirect: "manual" });
    await res.body?.cancel();
    assertEquals(res.status, 302);
    const list = await fetch(`${c.url}${key}?list-type=2`);
    assertEquals(list.status, 400);
    assertEquals(
      await list.text(),
      'Unknown operation "?list-type=2": expected ?list, ?unlinked, ?writing, ?status or ?metrics\n',
    );
  } finally {
    await c.stop();
  }
});

Deno.test("keys from $MKV_S3_ACCESS_KEY and $MKV_S3_SECRET_KEY turn the gateway on and are required", async () => {
  const c = await Cluster.start();
  const master = await c.spawnMaster([], {
    MKV_S3_ACCESS_KEY: "env-key",
    MKV_S3_SECRET_KEY: "env-secret",
  });
  const url = master.url;
  const s3 = s3Client(url, { accessKeyId: "env-key", secretAccessKey: "env-secret" });
  try {
    const Bucket = bucketName();
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "from env" }));
    assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, "k")).bytes), "from env");
    const unsigned = await fetch(`${url}/${Bucket}?list-type=2`);
    assertEquals(unsigned.status, 403);
    assert((await unsigned.text()).includes("<Code>AccessDenied</Code>"));
  } finally {
    s3.destroy();
    await master.stop();
    await c.stop();
  }
});

Deno.test("S3 arguments refused in S3's words (400 InvalidArgument naming the argument)", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const bucket = bucketName();
    assertEquals(
      (await fetch(`${c.url}/${bucket}/src`, { method: "PUT", body: "0123456789" })).status,
      201,
    );
    const created = await (await fetch(`${c.url}/${bucket}/k?uploads`, { method: "POST" })).text();
    const id = /<UploadId>([0-9a-f]+)<\/UploadId>/.exec(created)![1];
    const copyPart = (range: string) =>
      errorAnswer(`${c.url}/${bucket}/k?partNumber=1&uploadId=${id}`, {
        method: "PUT",
        headers: { "x-amz-copy-source": `/${bucket}/src`, "x-amz-copy-source-range": range },
      });

    await t.step(
      "UploadPartCopy of a range past the source's end: InvalidArgument naming its size",
      async () => {
        assertEquals(await copyPart("bytes=5-10"), {
          status: 400,
          type: "application/xml",
          body: errorXml(
            "InvalidArgument",
            "Range specified is not valid for source object of size: 10",
            "<ArgumentName>x-amz-copy-source-range</ArgumentName>" +
              "<ArgumentValue>bytes=5-10</ArgumentValue>",
            `/${bucket}/k`,
          ),
        });
      },
    );

    await t.step(
      "UploadPartCopy of a range not of the form bytes=first-last: InvalidArgument",
      async () => {
        assertEquals(await copyPart("bytes=5-"), {
          status: 400,
          type: "application/xml",
          body: errorXml(
            "InvalidArgument",
            "The x-amz-copy-source-range value must be of the form bytes=first-last where " +
              "first and last are the zero-based offsets of the first and last bytes to copy",
            "<ArgumentName>x-amz-copy-source-range</ArgumentName>" +
              "<ArgumentValue>bytes=5-</ArgumentValue>",
            `/${bucket}/k`,
          ),
        });
      },
    );

    await t.step(
      "CopyObject with an x-amz-metadata-directive not COPY or REPLACE: InvalidArgument naming it, nothing copied",
      async () => {
        // Refused before the source is read: a missing one too.
        for (const source of ["src", "no-such-source"]) {
          const copy = await errorAnswer(`${c.url}/${bucket}/copied?x-id=CopyObject`, {
            method: "PUT",
            headers: {
              "x-amz-copy-source": `/${bucket}/${source}`,
              "x-amz-metadata-directive": "MOVE",
            },
          });
          assertEquals(copy, {
            status: 400,
            type: "application/xml",
            body: errorXml(
              "InvalidArgument",
              "Unknown metadata directive.",
              "<ArgumentName>x-amz-metadata-directive</ArgumentName>" +
                "<ArgumentValue>MOVE</ArgumentValue>",
              `/${bucket}/copied`,
            ),
          });
        }
        const copied = await fetch(`${c.url}/${bucket}/copied`, { redirect: "manual" });
        assertEquals([copied.status, await copied.text()], [404, ""]);
      },
    );

    const withPart = `${c.url}/${bucket}/k?uploadId=${id}`;
    assertEquals(
      (await fetch(`${withPart}&partNumber=1`, { method: "PUT", body: "part" })).status,
      200,
    );
    /** Every count parameter, with the URL it is sent to and S3's name for it. */
    const counts = [
      { param: "max-keys", argName: "maxKeys", url: `${c.url}/${bucket}?list-type=2` },
      { param: "max-keys", argName: "maxKeys", url: `${c.url}/${bucket}?marker=` },
      { param: "max-uploads", argName: "max-uploads", url: `${c.url}/${bucket}?uploads` },
      { param: "max-parts", argName: "max-parts", url: withPart },
      { param: "part-number-marker", argName: "part-number-marker", url: withPart },
    ];
    const resourceOf = (url: string) => new URL(url).pathname;

    await t.step(
      "a partNumber other than decimal digits 1 to 10000: InvalidArgument naming it, no part stored",
      async () => {
        // Each of these reads as a number to JavaScript's Number().
        for (const value of ["0x2", "1e0", " 2", "+2", "2.0", "0", "10001"]) {
          const asked = `partNumber=${encodeURIComponent(value)}`;
          for (
            const [url, init] of [
              [`${withPart}&${asked}`, { method: "PUT", body: "other" }],
              [`${c.url}/${bucket}/src?${asked}`, {}],
            ] as const
          ) {
            assertEquals(await errorAnswer(url, init), {
              status: 400,
              type: "application/xml",
              body: errorXml(
                "InvalidArgument",
                "Part number must be an integer between 1 and 10000, inclusive",
                `<ArgumentName>partNumber</ArgumentName><ArgumentValue>${value}</ArgumentValue>`,
                resourceOf(url),
              ),
            }, `${url} ${asked}`);
          }
        }
        const listed = await (await fetch(withPart)).text();
        assertEquals([...listed.matchAll(/<PartNumber>(\d+)</g)].map((m) => m[1]), ["1"]);
      },
    );

    await t.step(
      "a count that is no 32-bit integer: InvalidArgument, not an integer or within range",
      async () => {
        for (const { param, url } of counts) {
          for (const value of ["abc", "2147483648", "1.5"]) {
            assertEquals(await errorAnswer(`${url}&${param}=${value}`), {
              status: 400,
              type: "application/xml",
              body: errorXml(
                "InvalidArgument",
                `Provided ${param} not an integer or within integer range`,
                `<ArgumentName>${param}</ArgumentName><ArgumentValue>${value}</ArgumentValue>`,
                resourceOf(url),
              ),
            }, `${param}=${value}`);
          }
        }
      },
    );

    await t.step(
      "a negative count: InvalidArgument, must be an integer between 0 and 2147483647",
      async () => {
        for (const { param, argName, url } of counts) {
          assertEquals(await errorAnswer(`${url}&${param}=-01`), {
            status: 400,
            type: "application/xml",
            body: errorXml(
              "InvalidArgument",
              `Argument ${argName} must be an integer between 0 and 2147483647`,
              `<ArgumentName>${param}</ArgumentName><ArgumentValue>-1</ArgumentValue>`,
              resourceOf(url),
            ),
          }, param);
        }
      },
    );

    /** A listing's XML with its dates (not the test's to know) as "DATE". */
    const listing = async (url: string) => {
      const res = await fetch(url);
      const body = (await res.text()).replace(
        /<(LastModified|Initiated)>[^<]*</g,
        "<$1>DATE<",
      );
      return { status: res.status, body };
    };
    const xml = (root: string, inner: string) =>
      `<?xml version="1.0" encoding="UTF-8"?>\n<${root} ` +
      `xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${inner}</${root}>`;
    const owner = "<ID>mkv</ID><DisplayName>mkv</DisplayName>";

    await t.step("max-keys=0: an empty page, not truncated, in either listing", async () => {
      for (const url of [`${c.url}/${bucket}?list-type=2`, `${c.url}/${bucket}?marker=`]) {
        const { status, body } = await listing(`${url}&max-keys=0`);
        assertEquals(status, 200);
        assert(body.includes("<MaxKeys>0</MaxKeys>"), body);
        assert(body.includes("<IsTruncated>false</IsTruncated>"), body);
        assert(!body.includes("<Contents>") && !body.includes("Next"), body);
      }
    });

    await t.step("max-uploads=0: an empty page, not truncated", async () => {
      assertEquals(await listing(`${c.url}/${bucket}?uploads&max-uploads=0`), {
        status: 200,
        body: xml(
          "ListMultipartUploadsResult",
          `<Bucket>${bucket}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>` +
            "<Prefix></Prefix><MaxUploads>0</MaxUploads><IsTruncated>false</IsTruncated>",
        ),
      });
    });

    await t.step("max-parts=0: an empty page, not truncated", async () => {
      assertEquals(await listing(`${withPart}&max-parts=0`), {
        status: 200,
        body: xml(
          "ListPartsResult",
          `<Bucket>${bucket}</Bucket><Key>k</Key><UploadId>${id}</UploadId>` +
            `<Initiator>${owner}</Initiator><Owner>${owner}</Owner>` +
            "<StorageClass>STANDARD</StorageClass><PartNumberMarker>0</PartNumberMarker>" +
            "<MaxParts>0</MaxParts><IsTruncated>false</IsTruncated>" +
            "<Initiated>DATE</Initiated>",
        ),
      });
    });

    await t.step("a count past 1000, up to 2147483647, is served as 1000", async () => {
      for (const { param, url } of counts.slice(0, 4)) {
        const { status, body } = await listing(`${url}&${param}=0002147483647`);
        assertEquals(status, 200, param);
        const tag = { "max-keys": "MaxKeys", "max-uploads": "MaxUploads", "max-parts": "MaxParts" }[
          param
        ];
        assert(body.includes(`<${tag}>1000</${tag}>`), body);
      }
    });
  } finally {
    await c.stop();
  }
});

/** An aws-chunked body (unsigned, no trailer) of `value`, in chunks of `size` bytes. */
function awsChunked(value: Uint8Array, size = 64 * 1024): Uint8Array<ArrayBuffer> {
  const out: Uint8Array[] = [];
  for (let at = 0; at < value.length; at += size) {
    const piece = value.subarray(at, at + size);
    out.push(enc.encode(`${piece.length.toString(16)}\r\n`), piece, enc.encode("\r\n"));
  }
  out.push(enc.encode("0\r\n\r\n"));
  return new Uint8Array(Buffer.concat(out));
}

Deno.test("UploadPart gives the volumes the part's length, not a chunked stream", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  // Volume 2 behind a proxy that notes how each PUT's body comes framed.
  const puts = new Map<string, { length: string | null; encoding: string | null }>();
  const real = c.volumes[2];
  const proxy = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const { pathname, search } = new URL(req.url);
    if (req.method === "PUT") {
      puts.set(pathname, {
        length: req.headers.get("content-length"),
        encoding: req.headers.get("transfer-encoding"),
      });
    }
    const headers = new Headers(req.headers);
    headers.delete("content-length");
    headers.delete("transfer-encoding");
    headers.delete("host");
    try {
      const res = await fetch(`http://${real}${pathname}${search}`, {
        method: req.method,
        headers,
        body: req.method === "PUT" ? req.body : undefined,
        redirect: "manual",
      });
      return new Response(res.body, { status: res.status, headers: res.headers });
    } catch {
      // A PUT the master cut off (its body failed): nothing to answer.
      return new Response(null, { status: 502 });
    }
  });
  try {
    await c.stopMaster();
    await c.startMaster([], [c.volumes[0], c.volumes[1], `127.0.0.1:${proxy.addr.port}`]);
    const bucket = bucketName();
    const created = await (await fetch(`${c.url}/${bucket}/k?uploads`, { method: "POST" })).text();
    const id = /<UploadId>([0-9a-f]+)<\/UploadId>/.exec(created)![1];
    const partUrl = (n: number) => `${c.url}/${bucket}/k?partNumber=${n}&uploadId=${id}`;
    /** The part's file as the proxied volume keeps it, and how its PUT came. */
    const stored = async (n: number) => {
      const paths = [...puts.keys()].filter((p) => p.includes(`/mpu.${id}.${n}.`));
      assertEquals(paths.length, 1, `one PUT of part ${n}`);
      const file = await fetch(`http://${real}${paths[0]}`);
      return { md5: md5Hex(new Uint8Array(await file.arrayBuffer())), ...puts.get(paths[0])! };
    };
    const partFiles = async () =>
      (await Promise.all(c.volumes.map((v) => volumeFiles(v)))).flat()
        .filter((f) => f.includes(`/mpu.${id}.`));

    await t.step("a part with a Content-Length: that length, exact bytes and ETag", async () => {
      // Both ways to the volumes: read whole (up to 256 KiB) and streamed.
      for (const [n, size] of [[1, 1000], [2, 300_000]]) {
        const value = randomBytes(size);
        const res = await fetch(partUrl(n), { method: "PUT", body: value });
        assertEquals([res.status, await res.text()], [200, ""]);
        assertEquals(res.headers.get("etag"), `"${md5Hex(value)}"`);
        assertEquals(await stored(n), { md5: md5Hex(value), length: String(size), encoding: null });
      }
    });

    await t.step(
      "an aws-chunked part: its decoded length, exact bytes and ETag",
      async () => {
        for (const [n, size] of [[3, 1000], [4, 300_000]]) {
          const value = randomBytes(size);
          const res = await fetch(partUrl(n), {
            method: "PUT",
            headers: awsChunkedHeaders(size),
            body: awsChunked(value),
          });
          assertEquals([res.status, await res.text()], [200, ""]);
          assertEquals(res.headers.get("etag"), `"${md5Hex(value)}"`);
          assertEquals(await stored(n), {
            md5: md5Hex(value),
            length: String(size),
            encoding: null,
          });
        }
      },
    );

    await t.step(
      "an aws-chunked part shorter than its decoded length: 400 IncompleteBody, no file left",
      async () => {
        const before = await partFiles();
        for (const [n, size] of [[5, 1000], [6, 300_000]]) {
          const answer = await errorAnswer(partUrl(n), {
            method: "PUT",
            headers: awsChunkedHeaders(size + 1),
            body: awsChunked(randomBytes(size)),
          });
          assertEquals(answer, {
            status: 400,
            type: "application/xml",
            body: errorXml(
              "IncompleteBody",
              "You did not provide the number of bytes specified by the Content-Length HTTP header",
              "",
              `/${bucket}/k`,
            ),
          });
        }
        assertEquals(await partFiles(), before);
        const listed = await (await fetch(`${c.url}/${bucket}/k?uploadId=${id}`)).text();
        const numbers = [...listed.matchAll(/<PartNumber>(\d+)</g)].map((m) => m[1]);
        assert(!numbers.includes("5") && !numbers.includes("6"), listed);
      },
    );

    await t.step(
      "an aws-chunked part longer than its decoded length: 400 InvalidRequest, no file left",
      async () => {
        const before = await partFiles();
        for (const [n, size] of [[7, 1000], [8, 300_000]]) {
          const answer = await errorAnswer(partUrl(n), {
            method: "PUT",
            headers: awsChunkedHeaders(size - 1),
            body: awsChunked(randomBytes(size)),
          });
          assertEquals(answer, {
            status: 400,
            type: "application/xml",
            body: errorXml(
              "InvalidRequest",
              "The aws-chunked body is longer than its x-amz-decoded-content-length",
              "",
              `/${bucket}/k`,
            ),
          });
        }
        assertEquals(await partFiles(), before);
      },
    );
  } finally {
    await c.stop();
    await proxy.shutdown();
  }
});

/** What a raw PUT was answered: the status, the S3 error code, the ETag. */
type RawAnswer = { status: number; code: string; etag: string };

/**
 * A PUT over a raw socket, its headers sent at once and its body when told:
 * `send(n)` sends the body up to byte n, `answer()` the rest and then reads
 * the answer (as boto3 does: the whole body first). Signed V2-style with any
 * key (the cluster runs -s3: not checked).
 */
async function rawPut(
  port: number,
  path: string,
  body: Uint8Array,
  headers: Record<string, string>,
): Promise<{ send(upTo: number): Promise<void>; answer(): Promise<RawAnswer> }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const all: Record<string, string> = {
    Host: `127.0.0.1:${port}`,
    Date: new Date().toUTCString(),
    Authorization: "AWS anyone:c2lnbmF0dXJl",
    "Content-Length": String(body.length),
    // What boto3 always sends: a payload hash and a checksum, both checked
    // while the body streams.
    "x-amz-content-sha256": createHash("sha256").update(body).digest("hex"),
    "x-amz-checksum-crc32": crc32Base64(body),
    ...headers,
  };
  const head = `PUT ${path} HTTP/1.1\r\n` +
    Object.entries(all).map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n";
  await writeAll(conn, enc.encode(head));
  let sent = 0;
  const send = async (upTo: number) => {
    await writeAll(conn, body.subarray(sent, upTo));
    sent = upTo;
  };
  const exchange = async (): Promise<RawAnswer> => {
    await send(body.length);
    const got: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    let text = "";
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      got.push(buf.slice(0, n));
      text = new TextDecoder().decode(Buffer.concat(got));
      const end = text.indexOf("\r\n\r\n");
      const length = /\r\ncontent-length: (\d+)/i.exec(text);
      if (end >= 0 && length && text.length >= end + 4 + Number(length[1])) break;
    }
    return {
      status: Number(text.slice(9, 12)),
      code: /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? "",
      etag: /\r\netag: ("[^"]*")/i.exec(text)?.[1] ?? "",
    };
  };
  const answer = async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hang = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new Error("PUT: no answer within 60 s of sending the whole body (is it still read?)"),
        );
      }, 60_000);
    });
    try {
      return await Promise.race([exchange(), hang]);
    } finally {
      clearTimeout(timer);
      conn.close();
    }
  };
  return { send, answer };
}

/** A raw PUT that sends its whole body, then reads the answer. */
async function putWholeThenRead(
  port: number,
  path: string,
  body: Uint8Array,
  headers: Record<string, string>,
): Promise<RawAnswer> {
  return await (await rawPut(port, path, body, headers)).answer();
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array) {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function crc32Base64(b: Uint8Array): string {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(zlib.crc32(b));
  return out.toString("base64");
}

Deno.test("XML bodies sent aws-chunked are held to x-amz-decoded-content-length, as values are", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const bucket = bucketName();
    const url = `${c.url}/${bucket}`;
    /** A POST of `xml` as aws-chunked, its decoded length declared one byte more than it is. */
    const short = (target: string, xml: string, headers: Record<string, string> = {}) =>
      errorAnswer(target, {
        method: "POST",
        headers: { ...awsChunkedHeaders(enc.encode(xml).length + 1), ...headers },
        body: awsChunked(enc.encode(xml)),
      });
    const incomplete = (resource: string) => ({
      status: 400,
      type: "application/xml",
      body: errorXml(
        "IncompleteBody",
        "You did not provide the number of bytes specified by the Content-Length HTTP header",
        "",
        resource,
      ),
    });

    await t.step("DeleteObjects: 400 IncompleteBody, nothing deleted", async () => {
      assertEquals((await fetch(`${url}/k`, { method: "PUT", body: "kept" })).status, 201);
      const xml = "<Delete><Object><Key>k</Key></Object></Delete>";
      const md5 = createHash("md5").update(xml).digest("base64");
      assertEquals(
        await short(`${url}?delete`, xml, { "content-md5": md5 }),
        incomplete(`/${bucket}`),
      );
      const kept = await fetch(`${url}/k`, { redirect: "manual" });
      await kept.body?.cancel();
      assertEquals(kept.status, 302);
    });

    await t.step("CompleteMultipartUpload: 400 IncompleteBody, the upload stays", async () => {
      const created = await (await fetch(`${url}/mp?uploads`, { method: "POST" })).text();
      const id = /<UploadId>([0-9a-f]+)<\/UploadId>/.exec(created)![1];
      const part = await fetch(`${url}/mp?partNumber=1&uploadId=${id}`, {
        method: "PUT",
        body: "p",
      });
      const etag = part.headers.get("etag");
      await part.body?.cancel();
      const xml = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>" +
        `<ETag>${etag}</ETag></Part></CompleteMultipartUpload>`;
      assertEquals(await short(`${url}/mp?uploadId=${id}`, xml), incomplete(`/${bucket}/mp`));
      const parts = await fetch(`${url}/mp?uploadId=${id}`);
      assertEquals([parts.status, (await parts.text()).includes("<PartNumber>1</PartNumber>")], [
        200,
        true,
      ]);
    });
  } finally {
    await c.stop();
  }
});

Deno.test("a PutObject refused after its body started streaming still reads the body and answers", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  // More than the socket buffers hold: a server that stops reading blocks the sender.
  const big = randomBytes(16 * 1024 * 1024);
  try {
    const bucket = bucketName();
    const first = await putWholeThenRead(c.masterPort, `/${bucket}/k`, enc.encode("first"), {});
    assertEquals(first, { status: 200, code: "", etag: `"${md5Hex(enc.encode("first"))}"` });

    await t.step("If-None-Match: * over an existing key: 412 PreconditionFailed", async () => {
      const res = await putWholeThenRead(c.masterPort, `/${bucket}/k`, big, {
        "If-None-Match": "*",
      });
      assertEquals(res, { status: 412, code: "PreconditionFailed", etag: "" });
    });

    await t.step("an If-Match naming another ETag: 412 PreconditionFailed", async () => {
      const res = await putWholeThenRead(c.masterPort, `/${bucket}/k`, big, {
        "If-Match": `"${"0".repeat(32)}"`,
      });
      assertEquals(res, { status: 412, code: "PreconditionFailed", etag: "" });
    });

    await t.step("a key too long to store: 400 KeyTooLongError", async () => {
      const res = await putWholeThenRead(c.masterPort, `/${bucket}/${"x".repeat(2100)}`, big, {});
      assertEquals(res, { status: 400, code: "KeyTooLongError", etag: "" });
    });

    await t.step("the key still holds its first value", async () => {
      const got = await fetch(`${c.url}/${bucket}/k`);
      assertEquals(got.status, 200);
      assertEquals(await got.text(), "first");
    });
  } finally {
    await c.stop();
  }
});

/** Waits until the key is in the index's "writing" state (a write of it is in flight). */
async function untilWriting(url: string, key: string) {
  for (let i = 0; i < 600; i++) {
    const res = await fetch(`${url}${key}?writing`);
    if ((await res.json()).keys.includes(key)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${key} never showed as being written (30 s)`);
}

Deno.test("unconditional S3 writes of a key with a write in flight wait for it: 200, last writer wins", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = client(c, "anything", "anyone");
  try {
    const Bucket = bucketName();

    await t.step("three concurrent PutObjects of one key: all 200, one value whole", async () => {
      const values = [1, 2, 3].map(() => randomBytes(2 * 1024 * 1024));
      const puts = await Promise.all(
        values.map((Body) => s3.send(new PutObjectCommand({ Bucket, Key: "race", Body }))),
      );
      assertEquals(puts.map((p) => p.$metadata.httpStatusCode), [200, 200, 200]);
      const { bytes } = await bytesOf(s3, Bucket, "race");
      const held = values.findIndex((v) => Buffer.from(v).equals(Buffer.from(bytes)));
      assert(held >= 0, "the key holds one of the three values exactly");
      assertEquals(puts[held].ETag, `"${md5Hex(values[held])}"`);
    });

    // A raw PUT holds the key mid-body (claimed, "writing") while the others
    // come; whether they arrive before it ends or after, they are written last.
    const held = async (key: string) => {
      const first = randomBytes(1024 * 1024);
      const put = await rawPut(c.masterPort, `/${Bucket}/${key}`, first, {});
      await put.send(first.length / 2);
      await untilWriting(c.url, `/${Bucket}/${key}`);
      return put;
    };

    await t.step("a PutObject meeting a write in flight waits, then overwrites it", async () => {
      const put = await held("held");
      const second = s3.send(new PutObjectCommand({ Bucket, Key: "held", Body: "second" }));
      // Time for the second to meet the first in flight (the outcome is the same if not).
      await new Promise((r) => setTimeout(r, 500));
      assertEquals((await put.answer()).status, 200);
      assertEquals((await second).$metadata.httpStatusCode, 200);
      assertEquals(new TextDecoder().decode((await bytesOf(s3, Bucket, "held")).bytes), "second");
    });

    await t.step("a CopyObject meeting a write in flight waits, then overwrites it", async () => {
      await s3.send(new PutObjectCommand({ Bucket, Key: "source", Body: "copied" }));
      const put = await held("copy-target");
      const copy = s3.send(
        new CopyObjectCommand({ Bucket, Key: "copy-target", CopySource: `${Bucket}/source` }),
      );
      await new Promise((r) => setTimeout(r, 500));
      assertEquals((await put.answer()).status, 200);
      assertEquals((await copy).$metadata.httpStatusCode, 200);
      const got = await bytesOf(s3, Bucket, "copy-target");
      assertEquals(new TextDecoder().decode(got.bytes), "copied");
    });

    await t.step("If-None-Match: * meeting a write in flight is 409 OperationAborted", async () => {
      const put = await held("conditional");
      const conditional = await s3Fails(
        s3.send(new PutObjectCommand({ Bucket, Key: "conditional", Body: "x", IfNoneMatch: "*" })),
      );
      assertEquals(conditional, { name: "OperationAborted", status: 409 });
      assertEquals((await put.answer()).status, 200);
    });
  } finally {
    s3.destroy();
    await c.stop();
  }
});
