// Presigned URLs whose query carries request headers: the AWS SDK for
// JavaScript hoists a call's x-amz-* headers (x-amz-meta-*, x-amz-tagging,
// x-amz-copy-source, ...) into its presigned URL's query, and S3 takes them
// as those headers, refusals included. Each checked end to end against a
// real master and nginx volumes.
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import { createHmac } from "node:crypto";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { Cluster } from "./cluster.ts";
import { s3Client, SigV4 } from "./s3_client.ts";
import { errorAnswer, errorXml, s3Fails } from "./s3_answers.ts";
import { assertEquals } from "./assert.ts";

const ACCESS = "presign-access";
const SECRET = "presign-secret";

function bucketName(): string {
  return `pq-${crypto.randomUUID().slice(0, 8)}`;
}

/** A request to `path` of `method`, presigned over `query` (its own parameters) and `headers`. */
function presigned(
  c: Cluster,
  req: { method: string; path: string; query: string; headers?: Record<string, string> },
): { url: string; init: RequestInit } {
  const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, "");
  const signer = new SigV4({ accessKey: ACCESS, secretKey: SECRET }, now);
  const headers = new Headers({ host: new URL(c.url).host, ...req.headers });
  const query = signer.presign({ method: req.method, path: req.path, query: req.query, headers });
  headers.delete("host");
  return { url: `${c.url}${req.path}?${query}`, init: { method: req.method, headers } };
}

/** The same request signed in its Authorization header, `headers` among its signed ones. */
function signed(
  c: Cluster,
  req: { method: string; path: string; headers: Record<string, string> },
): { url: string; init: RequestInit } {
  const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, "");
  const signer = new SigV4({ accessKey: ACCESS, secretKey: SECRET }, now);
  const headers = new Headers({
    host: new URL(c.url).host,
    "x-amz-date": now,
    "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
    ...req.headers,
  });
  const { authorization } = signer.sign({ method: req.method, path: req.path, query: "", headers });
  headers.set("authorization", authorization);
  headers.delete("host");
  return { url: `${c.url}${req.path}`, init: { method: req.method, headers } };
}

/** An object's metadata and tags, as HeadObject and GetObjectTagging answer them. */
async function kept(s3: S3Client, Bucket: string, Key: string) {
  const head = await s3.send(new HeadObjectCommand({ Bucket, Key }));
  const { TagSet } = await s3.send(new GetObjectTaggingCommand({ Bucket, Key }));
  return { metadata: head.Metadata, tags: TagSet?.map((t) => `${t.Key}=${t.Value}`) };
}

async function notStored(s3: S3Client, Bucket: string, Key: string) {
  return await s3Fails(s3.send(new HeadObjectCommand({ Bucket, Key })));
}

const NOT_FOUND = { name: "NotFound", status: 404 };

Deno.test("presigned URLs with request headers in their query", async (t) => {
  const c = await Cluster.start({ flags: ["-s3-access-key", ACCESS, "-s3-secret-key", SECRET] });
  const s3 = s3Client(c.url, { accessKeyId: ACCESS, secretAccessKey: SECRET });
  try {
    await t.step(
      "the JS SDK's presigned PutObject keeps the Metadata and Tagging of its query",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const url = await getSignedUrl(
          s3,
          new PutObjectCommand({
            Bucket,
            Key: "up",
            Metadata: { color: "Blue" },
            Tagging: "project=mkv&env=dev%20box",
          }),
        );
        const query = new URL(url).searchParams;
        assertEquals([query.get("x-amz-meta-color"), query.get("x-amz-tagging")], [
          "Blue",
          "project=mkv&env=dev%20box",
        ]);
        const res = await fetch(url, { method: "PUT", body: "presigned body" });
        assertEquals([res.status, await res.text()], [200, ""]);
        assertEquals(await kept(s3, Bucket, "up"), {
          metadata: { color: "Blue" },
          tags: ["env=dev box", "project=mkv"],
        });
      },
    );

    await t.step(
      "a presigned CreateMultipartUpload gives the object the metadata and tags of its query",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const url = await getSignedUrl(
          s3,
          new CreateMultipartUploadCommand({
            Bucket,
            Key: "mpu",
            Metadata: { color: "Blue" },
            Tagging: "a=1",
          }),
        );
        assertEquals(new URL(url).searchParams.get("x-amz-meta-color"), "Blue");
        const res = await fetch(url, { method: "POST" });
        const xml = await res.text();
        assertEquals(res.status, 200);
        const UploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(xml)![1];
        const part = await s3.send(
          new UploadPartCommand({ Bucket, Key: "mpu", UploadId, PartNumber: 1, Body: "one part" }),
        );
        await s3.send(
          new CompleteMultipartUploadCommand({
            Bucket,
            Key: "mpu",
            UploadId,
            MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
          }),
        );
        assertEquals(await kept(s3, Bucket, "mpu"), { metadata: { color: "Blue" }, tags: ["a=1"] });
      },
    );

    await t.step(
      "a presigned CopyObject takes its source and REPLACE metadata from its query",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        await s3.send(
          new PutObjectCommand({ Bucket, Key: "src", Body: "source", Metadata: { old: "1" } }),
        );
        const url = await getSignedUrl(
          s3,
          new CopyObjectCommand({
            Bucket,
            Key: "dst",
            CopySource: `${Bucket}/src`,
            MetadataDirective: "REPLACE",
            Metadata: { color: "Blue" },
          }),
        );
        assertEquals(new URL(url).searchParams.get("x-amz-copy-source"), `${Bucket}/src`);
        const res = await fetch(url, { method: "PUT" });
        assertEquals([res.status, (await res.text()).includes("<CopyObjectResult ")], [200, true]);
        const got = await s3.send(new GetObjectCommand({ Bucket, Key: "dst" }));
        assertEquals([await got.Body!.transformToString(), got.Metadata], ["source", {
          color: "Blue",
        }]);
      },
    );

    await t.step("a presigned UploadPartCopy takes its source from its query", async () => {
      const Bucket = bucketName();
      await s3.send(new CreateBucketCommand({ Bucket }));
      await s3.send(new PutObjectCommand({ Bucket, Key: "src", Body: "copied part" }));
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: "mpu" }));
      const url = await getSignedUrl(
        s3,
        new UploadPartCopyCommand({
          Bucket,
          Key: "mpu",
          UploadId,
          PartNumber: 1,
          CopySource: `${Bucket}/src`,
        }),
      );
      const res = await fetch(url, { method: "PUT" });
      const xml = await res.text();
      assertEquals([res.status, xml.includes("<CopyPartResult ")], [200, true]);
      const ETag = /<ETag>([^<]+)<\/ETag>/.exec(xml)![1].replaceAll("&#34;", '"').replaceAll(
        "&quot;",
        '"',
      );
      await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket,
          Key: "mpu",
          UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag }] },
        }),
      );
      const got = await s3.send(new GetObjectCommand({ Bucket, Key: "mpu" }));
      assertEquals(await got.Body!.transformToString(), "copied part");
    });

    await t.step(
      "a query x-amz-tagging that is no URL query is refused as the header is: 400 InvalidArgument",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const path = `/${Bucket}/tagged`;
        const q = presigned(c, { method: "PUT", path, query: "x-amz-tagging=a%3D1%26a%3D2" });
        const h = signed(c, { method: "PUT", path, headers: { "x-amz-tagging": "a=1&a=2" } });
        const byQuery = await errorAnswer(q.url, { ...q.init, body: "x" });
        assertEquals(byQuery, {
          status: 400,
          type: "application/xml",
          body: errorXml(
            "InvalidArgument",
            "The header &#39;x-amz-tagging&#39; shall be encoded as UTF-8 then URLEncoded URL " +
              "query parameters without tag name duplicates.",
            "",
            path,
          ),
        });
        assertEquals(byQuery, await errorAnswer(h.url, { ...h.init, body: "x" }));
        assertEquals(await notStored(s3, Bucket, "tagged"), NOT_FOUND);
      },
    );

    await t.step(
      "a query x-amz-server-side-encryption is 501 NotImplemented as the header is, nothing stored",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const path = `/${Bucket}/secret`;
        const q = presigned(c, {
          method: "PUT",
          path,
          query: "x-amz-server-side-encryption=AES256",
        });
        const byQuery = await errorAnswer(q.url, { ...q.init, body: "x" });
        assertEquals(byQuery, {
          status: 501,
          type: "application/xml",
          body: errorXml(
            "NotImplemented",
            "Server-side encryption (x-amz-server-side-encryption) is not implemented by this gateway",
            "",
            path,
          ),
        });
        const h = signed(c, {
          method: "PUT",
          path,
          headers: { "x-amz-server-side-encryption": "AES256" },
        });
        assertEquals(byQuery, await errorAnswer(h.url, { ...h.init, body: "x" }));
        assertEquals(await notStored(s3, Bucket, "secret"), NOT_FOUND);
      },
    );

    await t.step(
      "a presigned GetObject with a customer key (SSE-C) in its query is 501 NotImplemented",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        await s3.send(new PutObjectCommand({ Bucket, Key: "plain", Body: "x" }));
        const path = `/${Bucket}/plain`;
        const q = presigned(c, {
          method: "GET",
          path,
          query: "x-amz-server-side-encryption-customer-algorithm=AES256",
        });
        assertEquals(await errorAnswer(q.url, q.init), {
          status: 501,
          type: "application/xml",
          body: errorXml(
            "NotImplemented",
            "Server-side encryption (x-amz-server-side-encryption-customer-algorithm) is not " +
              "implemented by this gateway",
            "",
            path,
          ),
        });
      },
    );

    await t.step(
      "a query x-amz-object-lock-legal-hold is refused as the header is: 400 InvalidRequest",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const path = `/${Bucket}/locked`;
        const q = presigned(c, { method: "PUT", path, query: "x-amz-object-lock-legal-hold=ON" });
        assertEquals(await errorAnswer(q.url, { ...q.init, body: "x" }), {
          status: 400,
          type: "application/xml",
          body: errorXml(
            "InvalidRequest",
            "Bucket is missing Object Lock Configuration",
            "",
            path,
          ),
        });
        assertEquals(await notStored(s3, Bucket, "locked"), NOT_FOUND);
      },
    );

    await t.step(
      "a query x-amz-meta-* value with a line break is 400 InvalidArgument naming it",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const path = `/${Bucket}/broken`;
        const q = presigned(c, { method: "PUT", path, query: "x-amz-meta-a=one%0Atwo" });
        assertEquals(await errorAnswer(q.url, { ...q.init, body: "x" }), {
          status: 400,
          type: "application/xml",
          body: errorXml(
            "InvalidArgument",
            "Header value cannot hold a line break or NUL.",
            "<ArgumentName>x-amz-meta-a</ArgumentName><ArgumentValue>one\ntwo</ArgumentValue>",
            path,
          ),
        });
        assertEquals(await notStored(s3, Bucket, "broken"), NOT_FOUND);
      },
    );

    await t.step(
      "a query x-amz-meta-* whose name no header can have is 400 InvalidArgument naming it",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const path = `/${Bucket}/badname`;
        const q = presigned(c, { method: "PUT", path, query: "x-amz-meta-a%20b=1" });
        assertEquals(await errorAnswer(q.url, { ...q.init, body: "x" }), {
          status: 400,
          type: "application/xml",
          body: errorXml(
            "InvalidArgument",
            "The query parameter&#39;s name is not a valid header name.",
            "<ArgumentName>x-amz-meta-a b</ArgumentName><ArgumentValue>x-amz-meta-a b</ArgumentValue>",
            path,
          ),
        });
        assertEquals(await notStored(s3, Bucket, "badname"), NOT_FOUND);
      },
    );

    await t.step(
      "a query x-amz-meta-* in UTF-8 is kept as the same bytes sent as a header are",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const q = presigned(c, {
          method: "PUT",
          path: `/${Bucket}/by-query`,
          query: `x-amz-meta-name=${encodeURIComponent("café ☕")}`,
        });
        assertEquals((await fetch(q.url, { ...q.init, body: "x" })).status, 200);
        // The header as raw UTF-8 bytes: what a client sending "café ☕" sends.
        const raw = [...new TextEncoder().encode("café ☕")].map((b) => String.fromCharCode(b))
          .join("");
        const h = signed(c, {
          method: "PUT",
          path: `/${Bucket}/by-header`,
          headers: { "x-amz-meta-name": raw },
        });
        assertEquals((await fetch(h.url, { ...h.init, body: "x" })).status, 200);
        const head = async (Key: string) =>
          (await fetch(`${c.url}/${Bucket}/${Key}?${presignedQuery(c, `/${Bucket}/${Key}`)}`, {
            method: "HEAD",
          })).headers.get("x-amz-meta-name");
        // Both answered alike: RFC 2047-encoded, as S3 answers a value beyond ASCII.
        const encoded = `=?UTF-8?B?${btoa(raw)}?=`;
        assertEquals([await head("by-query"), await head("by-header")], [encoded, encoded]);
      },
    );

    await t.step(
      'a Version 2 presigned URL\'s x-amz-meta-* given twice is one header of both values joined with ",", signed and kept so',
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const path = `/${Bucket}/twice`;
        const expires = Math.floor(Date.now() / 1000) + 300;
        const signature = createHmac("sha1", SECRET)
          .update(`PUT\n\n\n${expires}\nx-amz-meta-a:1,2\n${path}`).digest("base64");
        const url = `${c.url}${path}?AWSAccessKeyId=${ACCESS}&Expires=${expires}` +
          `&x-amz-meta-a=1&x-amz-meta-a=2&Signature=${encodeURIComponent(signature)}`;
        // Bytes, not a string: fetch would send a Content-Type, which Version 2 signs.
        const res = await fetch(url, { method: "PUT", body: new TextEncoder().encode("x") });
        assertEquals([res.status, await res.text()], [200, ""]);
        assertEquals((await kept(s3, Bucket, "twice")).metadata, { a: "1,2" });
      },
    );

    await t.step(
      'a Version 4 presigned URL\'s x-amz-meta-* given twice is kept as both values joined with ","',
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const q = presigned(c, {
          method: "PUT",
          path: `/${Bucket}/twice`,
          query: "x-amz-meta-a=1&x-amz-meta-a=2",
        });
        const res = await fetch(q.url, { ...q.init, body: "x" });
        assertEquals([res.status, await res.text()], [200, ""]);
        assertEquals((await kept(s3, Bucket, "twice")).metadata, { a: "1,2" });
      },
    );
  } finally {
    s3.destroy();
    await c.stop();
  }
});

/** The query of a HEAD of `path`, presigned. */
function presignedQuery(c: Cluster, path: string): string {
  return new URL(presigned(c, { method: "HEAD", path, query: "" }).url).search.slice(1);
}
