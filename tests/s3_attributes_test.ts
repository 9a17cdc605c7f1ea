// GetObjectAttributes (GET ?attributes): boto3's get_object_attributes
// against a master with keys, and raw requests against one without (-s3),
// the exact XML and errors compared. Real master and nginx volumes.
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { Cluster } from "./cluster.ts";
import { assertPythonChecks, crc32, SigV4, withS3Cluster } from "./s3_client.ts";
import { errorAnswer, errorXml } from "./s3_answers.ts";
import { assertEquals } from "./assert.ts";
import { createHash } from "node:crypto";

function bucketName(): string {
  return `attr-${crypto.randomUUID().slice(0, 8)}`;
}

function md5(s: string): string {
  return createHash("md5").update(s).digest("hex");
}

const NS = "http://s3.amazonaws.com/doc/2006-03-01/";
const ALL = "ETag,Checksum,ObjectParts,StorageClass,ObjectSize";

/** GET ?attributes of `path` (unsigned: -s3 takes it) asking for `attributes`. */
async function attributes(url: string, attributes: string | null, query = "") {
  const headers: Record<string, string> = attributes === null
    ? {}
    : { "x-amz-object-attributes": attributes };
  const res = await fetch(`${url}?attributes${query}`, { headers });
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    lastModified: res.headers.get("last-modified"),
    body: await res.text(),
  };
}

Deno.test("boto3's get_object_attributes: attributes, parts and paging, errors", async () => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", "attr-key", "-s3-secret-key", "attr-secret"],
  });
  try {
    await assertPythonChecks(
      "boto3_attributes_check.py",
      [c.url, "attr-key", "attr-secret", bucketName()],
      [
        "ok a PutObject's attributes: unquoted ETag, its CRC32, size, class, no parts",
        "ok only the attributes asked for",
        "ok a multipart upload's attributes: its parts by number and size, the composite CRC32 unsuffixed",
        "ok MaxParts pages the parts, PartNumberMarker goes on after one",
        "ok a multipart object with a whole-object checksum: its parts counted, not listed",
        "ok a missing key is NoSuchKey",
        "ok a missing bucket is NoSuchBucket",
        "ok an attribute S3 does not have is InvalidArgument",
        "ok a wrong secret is SignatureDoesNotMatch",
      ],
    );
  } finally {
    await c.stop();
  }
});

Deno.test("GetObjectAttributes answers S3's XML: the attributes asked for, the ETag unquoted, Last-Modified", async () => {
  await withS3Cluster(async (c, s3) => {
    const Bucket = bucketName();
    await s3.send(
      new PutObjectCommand({ Bucket, Key: "k", Body: "value", ChecksumCRC32: crc32("value") }),
    );
    const head = await fetch(`${c.url}/${Bucket}/k`, {
      method: "HEAD",
      headers: { "amz-sdk-request": "1" },
    });
    await head.body?.cancel();
    assertEquals(await attributes(`${c.url}/${Bucket}/k`, ALL), {
      status: 200,
      type: "application/xml",
      lastModified: head.headers.get("last-modified"),
      body: `<?xml version="1.0" encoding="UTF-8"?>\n<GetObjectAttributesResponse xmlns="${NS}">` +
        `<ETag>${md5("value")}</ETag><Checksum><ChecksumCRC32>${crc32("value")}</ChecksumCRC32>` +
        `<ChecksumType>FULL_OBJECT</ChecksumType></Checksum><StorageClass>STANDARD</StorageClass>` +
        `<ObjectSize>5</ObjectSize></GetObjectAttributesResponse>`,
    });
    const some = await attributes(`${c.url}/${Bucket}/k`, "ObjectSize, ETag");
    assertEquals(
      some.body,
      `<?xml version="1.0" encoding="UTF-8"?>\n<GetObjectAttributesResponse xmlns="${NS}">` +
        `<ETag>${md5("value")}</ETag><ObjectSize>5</ObjectSize></GetObjectAttributesResponse>`,
    );
  });
});

Deno.test("GetObjectAttributes without x-amz-object-attributes, or an empty one, is 400 InvalidRequest, as S3", async () => {
  await withS3Cluster(async (c, s3) => {
    const Bucket = bucketName();
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "value" }));
    const message = "The x-amz-object-attributes header specifying the attributes to be " +
      "retrieved is either missing or empty";
    for (const sent of [null, "", " , "]) {
      const got = await errorAnswer(`${c.url}/${Bucket}/k?attributes`, {
        headers: sent === null ? {} : { "x-amz-object-attributes": sent },
      });
      assertEquals(got, {
        status: 400,
        type: "application/xml",
        body: errorXml("InvalidRequest", message, "", `/${Bucket}/k`),
      }, String(sent));
    }
  });
});

Deno.test("GetObjectAttributes naming an attribute S3 does not have is 400 InvalidArgument naming it", async () => {
  await withS3Cluster(async (c, s3) => {
    const Bucket = bucketName();
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "value" }));
    const got = await errorAnswer(`${c.url}/${Bucket}/k?attributes`, {
      headers: { "x-amz-object-attributes": "ETag,etag" },
    });
    assertEquals(got, {
      status: 400,
      type: "application/xml",
      body: errorXml(
        "InvalidArgument",
        "Invalid attribute name specified.",
        "<ArgumentName>x-amz-object-attributes</ArgumentName><ArgumentValue>etag</ArgumentValue>",
        `/${Bucket}/k`,
      ),
    });
  });
});

Deno.test("GetObjectAttributes of a missing key is 404 NoSuchKey naming it, in a missing bucket NoSuchBucket", async () => {
  await withS3Cluster(async (c, s3) => {
    const Bucket = bucketName();
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "value" }));
    const init = { headers: { "x-amz-object-attributes": "ETag" } };
    assertEquals(await errorAnswer(`${c.url}/${Bucket}/gone?attributes`, init), {
      status: 404,
      type: "application/xml",
      body: errorXml(
        "NoSuchKey",
        "The specified key does not exist.",
        "<Key>gone</Key>",
        `/${Bucket}/gone`,
      ),
    });
    assertEquals(await errorAnswer(`${c.url}/${Bucket}-none/k?attributes`, init), {
      status: 404,
      type: "application/xml",
      body: errorXml(
        "NoSuchBucket",
        "The specified bucket does not exist",
        `<BucketName>${Bucket}-none</BucketName>`,
        `/${Bucket}-none/k`,
      ),
    });
  });
});

Deno.test("GetObjectAttributes takes versionId null, the one version; any other is 400 InvalidArgument", async () => {
  await withS3Cluster(async (c, s3) => {
    const Bucket = bucketName();
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "value" }));
    const got = await attributes(`${c.url}/${Bucket}/k`, "ObjectSize", "&versionId=null");
    assertEquals([
      got.status,
      got.body.endsWith("<ObjectSize>5</ObjectSize></GetObjectAttributesResponse>"),
    ], [
      200,
      true,
    ]);
    const other = await errorAnswer(`${c.url}/${Bucket}/k?attributes&versionId=v1`, {
      headers: { "x-amz-object-attributes": "ObjectSize" },
    });
    assertEquals([other.status, /<Code>(\w+)<\/Code>/.exec(other.body)?.[1]], [
      400,
      "InvalidArgument",
    ]);
  });
});

Deno.test("?attributes with any method but GET, or on a bucket, is 501 NotImplemented, the value untouched", async () => {
  await withS3Cluster(async (c, s3) => {
    const Bucket = bucketName();
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "value" }));
    const answers = [];
    for (const method of ["PUT", "DELETE", "POST"]) {
      const got = await errorAnswer(`${c.url}/${Bucket}/k?attributes`, {
        method,
        body: method === "PUT" ? "x" : undefined,
      });
      answers.push([method, got.status, got.body]);
    }
    const bucket = await errorAnswer(`${c.url}/${Bucket}?attributes`);
    assertEquals(
      answers,
      ["PUT", "DELETE", "POST"].map((method) => [
        method,
        501,
        errorXml(
          "NotImplemented",
          `${method} ?attributes is not implemented by this gateway`,
          "",
          `/${Bucket}/k`,
        ),
      ]),
    );
    assertEquals([bucket.status, bucket.body], [
      501,
      errorXml(
        "NotImplemented",
        "?attributes on a bucket is not implemented by this gateway",
        "",
        `/${Bucket}`,
      ),
    ]);
    const res = await fetch(`${c.url}/${Bucket}/k`, { headers: { "amz-sdk-request": "1" } });
    assertEquals([res.status, await res.text()], [200, "value"]);
  });
});

Deno.test("GetObjectAttributes with keys set: unsigned is 403 AccessDenied, presigned over its header is answered", async () => {
  const keys = { accessKey: "attr-key", secretKey: "attr-secret" };
  const c = await Cluster.start({
    flags: ["-s3-access-key", keys.accessKey, "-s3-secret-key", keys.secretKey],
  });
  try {
    const Bucket = bucketName();
    const host = new URL(c.url).host;
    const date = new Date().toISOString().replace(/[-:]|\.\d+/g, "");
    const signer = new SigV4(keys, date);
    const put = new Headers({
      host,
      "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
      "x-amz-date": date,
    });
    const { authorization } = signer.sign({
      method: "PUT",
      path: `/${Bucket}/k`,
      query: "",
      headers: put,
    });
    put.set("authorization", authorization);
    const stored = await fetch(`${c.url}/${Bucket}/k`, {
      method: "PUT",
      headers: put,
      body: "value",
    });
    await stored.body?.cancel();
    assertEquals(stored.status, 200);
    const unsigned = await errorAnswer(`${c.url}/${Bucket}/k?attributes`, {
      headers: { "x-amz-object-attributes": "ObjectSize" },
    });
    assertEquals([unsigned.status, /<Code>(\w+)<\/Code>/.exec(unsigned.body)?.[1]], [
      403,
      "AccessDenied",
    ]);
    const headers = new Headers({ host, "x-amz-object-attributes": "ObjectSize" });
    const query = signer.presign({
      method: "GET",
      path: `/${Bucket}/k`,
      query: "attributes=",
      headers,
    });
    const res = await fetch(`${c.url}/${Bucket}/k?${query}`, { headers });
    assertEquals([
      res.status,
      (await res.text()).endsWith("<ObjectSize>5</ObjectSize></GetObjectAttributesResponse>"),
    ], [
      200,
      true,
    ]);
  } finally {
    await c.stop();
  }
});
