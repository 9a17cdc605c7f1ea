// CompleteMultipartUpload's <Location>: the URL of the new object, as S3
// answers it (http://<Host sent>/<bucket>/<key>, or virtual-hosted
// http://<bucket>.<domain>/<key>), not a path. Raw requests against a real
// master and nginx volumes, so the exact body is compared.
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { Cluster, rawRequest } from "./cluster.ts";
import { s3Client } from "./s3_client.ts";
import { assertEquals } from "./assert.ts";

const NS = "http://s3.amazonaws.com/doc/2006-03-01/";

function bucketName(): string {
  return `loc-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * A one-part upload of "hello" to `path` (as sent: escaped), completed;
 * the Complete's status and body. `host` is the Host of every request.
 */
async function completeOnePart(
  c: Cluster,
  path: string,
  host: string,
  headers: { [name: string]: string } = {},
) {
  const opts = { host, headers };
  const created = await rawRequest(c.masterPort, "POST", `${path}?uploads`, "", opts);
  assertEquals(created.status, 200, created.body);
  const id = /<UploadId>([^<]+)<\/UploadId>/.exec(created.body)![1];
  const part = await rawRequest(
    c.masterPort,
    "PUT",
    `${path}?partNumber=1&uploadId=${id}`,
    "hello",
    opts,
  );
  assertEquals(part.status, 200, part.body);
  const xml = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>` +
    `<ETag>${part.headers.get("etag")}</ETag></Part></CompleteMultipartUpload>`;
  const done = await rawRequest(c.masterPort, "POST", `${path}?uploadId=${id}`, xml, opts);
  return { status: done.status, body: done.body };
}

/** S3's CompleteMultipartUploadResult of a one-part upload of "hello" (ETag md5(md5("hello"))-1). */
function resultXml(location: string, bucket: string, key: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult xmlns="${NS}">` +
    `<Location>${location}</Location><Bucket>${bucket}</Bucket><Key>${key}</Key>` +
    `<ETag>&#34;62109206880d38a4010a98e11243924a-1&#34;</ETag></CompleteMultipartUploadResult>`;
}

Deno.test("CompleteMultipartUpload's Location is the object's URL on the Host the request named, its key escaped", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const bucket = bucketName();
    const host = `127.0.0.1:${c.masterPort}`;
    const done = await completeOnePart(c, `/${bucket}/dir/a%20b+c%C3%A9.bin`, host);
    assertEquals(done, {
      status: 200,
      body: resultXml(
        `http://${host}/${bucket}/dir/a%20b%2Bc%C3%A9.bin`,
        bucket,
        "dir/a b+cé.bin",
      ),
    });
  } finally {
    await c.stop();
  }
});

Deno.test("CompleteMultipartUpload's Location in virtual-hosted style is on the bucket's Host", async () => {
  const c = await Cluster.start({ flags: ["-s3", "-s3-domain", "s3.test"] });
  try {
    const bucket = bucketName();
    const host = `${bucket}.s3.test:${c.masterPort}`;
    const done = await completeOnePart(c, "/photos/cat.jpg", host);
    assertEquals(done, {
      status: 200,
      body: resultXml(`http://${host}/photos/cat.jpg`, bucket, "photos/cat.jpg"),
    });
  } finally {
    await c.stop();
  }
});

Deno.test("CompleteMultipartUpload's Location behind a TLS proxy has the scheme its X-Forwarded-Proto names", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const bucket = bucketName();
    const host = "store.example.com";
    const proxied = { "X-Forwarded-Proto": "https" };
    const done = await completeOnePart(c, `/${bucket}/a.bin`, host, proxied);
    assertEquals(done, {
      status: 200,
      body: resultXml(`https://${host}/${bucket}/a.bin`, bucket, "a.bin"),
    });
  } finally {
    await c.stop();
  }
});

Deno.test("an X-Forwarded-Proto other than http or https leaves Location's scheme the request's", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const bucket = bucketName();
    const host = `127.0.0.1:${c.masterPort}`;
    const done = await completeOnePart(c, `/${bucket}/a.bin`, host, {
      "X-Forwarded-Proto": "javascript",
    });
    assertEquals(done, {
      status: 200,
      body: resultXml(`http://${host}/${bucket}/a.bin`, bucket, "a.bin"),
    });
  } finally {
    await c.stop();
  }
});

Deno.test("the AWS SDK's Upload gives one Location whether it sent one PutObject or a multipart upload", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  try {
    const Bucket = bucketName();
    const Key = "dir/a b.bin";
    const small = await new Upload({ client: s3, params: { Bucket, Key, Body: "x" } }).done();
    const big = new Uint8Array(5 * 1024 * 1024 + 1);
    const parts = await new Upload({
      client: s3,
      params: { Bucket, Key, Body: big },
      partSize: 5 * 1024 * 1024,
    }).done();
    assertEquals(small.Location, `${c.url}/${Bucket}/dir/a%20b.bin`);
    assertEquals(parts.Location, small.Location);
  } finally {
    s3.destroy();
    await c.stop();
  }
});

// The SDK's own command, for what a client that reads <Location> gets.
Deno.test("CompleteMultipartUploadCommand's Location is an absolute URL", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  try {
    const Bucket = bucketName();
    const Key = "k";
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
    const { ETag } = await s3.send(
      new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: "hello" }),
    );
    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket,
        Key,
        UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag }] },
      }),
    );
    assertEquals(done.Location, `${c.url}/${Bucket}/k`);
  } finally {
    s3.destroy();
    await c.stop();
  }
});
