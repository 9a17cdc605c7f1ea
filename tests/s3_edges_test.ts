// The S3 gateway against requests at the edges of what it takes, each
// checked end to end against a real master and nginx volumes: signed
// trailers, checksums in presigned URLs, browser form uploads, Signature
// Version 4A, copies onto themselves, ListBuckets' paging.
import {
  CopyObjectCommand,
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { Cluster, rawRequest } from "./cluster.ts";
import { sha256Hex } from "../lib/s3_auth.ts";
import { chunkedUpload, crc32, s3Client, SigV4 } from "./s3_client.ts";
import { errorAnswer, errorXml } from "./s3_answers.ts";
import { assertEquals } from "./assert.ts";

const ACCESS = "edge-access";
const SECRET = "edge-secret";

function bucketName(): string {
  return `e-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * A PUT of `value` (ASCII) as a signed aws-chunked body with a signed CRC32
 * trailer (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, as the AWS SDK for
 * Java sends over HTTP), signed step by step as AWS documents it
 * (chunkedUpload). `sentCrc` replaces the trailer's checksum after it was
 * signed (a tamperer's).
 */
function signedTrailerPut(url: string, path: string, value: string, sentCrc?: string) {
  const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, "");
  const signer = new SigV4({ accessKey: ACCESS, secretKey: SECRET }, now);
  const { req, body } = chunkedUpload(signer, {
    host: new URL(url).host,
    path,
    payload: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    value,
  });
  const { headers } = req;
  headers.delete("host");
  const crc = crc32(value);
  const sent = body.replace(`crc32:${crc}\r\n`, `crc32:${sentCrc ?? crc}\r\n`);
  return fetch(url + path, { method: "PUT", headers, body: new TextEncoder().encode(sent) });
}

Deno.test("S3 requests at the edges of what the gateway takes", async (t) => {
  const c = await Cluster.start({ flags: ["-s3-access-key", ACCESS, "-s3-secret-key", SECRET] });
  const s3 = s3Client(c.url, { accessKeyId: ACCESS, secretAccessKey: SECRET });
  try {
    await t.step("a signed trailer whose signature holds stores the value", async () => {
      const Bucket = bucketName();
      const value = "signed trailer value";
      const res = await signedTrailerPut(c.url, `/${Bucket}/k`, value);
      assertEquals([res.status, await res.text()], [200, ""]);
      assertEquals(res.headers.get("x-amz-checksum-crc32"), crc32(value));
      const got = await s3.send(new GetObjectCommand({ Bucket, Key: "k" }));
      assertEquals(await got.Body!.transformToString(), "signed trailer value");
    });

    await t.step(
      "a signed trailer changed after signing is 403 SignatureDoesNotMatch, nothing stored",
      async () => {
        const Bucket = bucketName();
        const value = "signed trailer value";
        const tampered = crc32("other bytes");
        const res = await signedTrailerPut(c.url, `/${Bucket}/k`, value, tampered);
        const id = res.headers.get("x-amz-request-id");
        assertEquals(
          { status: res.status, body: (await res.text()).replace(`${id}`, "ID") },
          {
            status: 403,
            body: errorXml(
              "SignatureDoesNotMatch",
              "The x-amz-trailer-signature does not match the trailer",
              "",
              `/${Bucket}/k`,
            ),
          },
        );
        assertEquals((await fetch(`${c.url}/${Bucket}/k`, { redirect: "manual" })).status, 404);
      },
    );

    await t.step(
      "the JS SDK's presigned PutObject (a CRC32 of no bytes in its query) stores the body, as S3 does",
      async () => {
        // Since 3.729 the SDK signs into every presigned PutObject the CRC32 of
        // the body it had then (none). S3 ignores a checksum in the query.
        const Bucket = bucketName();
        const url = await getSignedUrl(s3, new PutObjectCommand({ Bucket, Key: "up" }));
        assertEquals(new URL(url).searchParams.get("x-amz-checksum-crc32"), "AAAAAA==");
        const res = await fetch(url, { method: "PUT", body: "presigned body" });
        assertEquals([res.status, await res.text()], [200, ""]);
        assertEquals(res.headers.get("x-amz-checksum-crc32"), null);
        const got = await s3.send(new GetObjectCommand({ Bucket, Key: "up" }));
        assertEquals(await got.Body!.transformToString(), "presigned body");
      },
    );

    await t.step(
      "a presigned PutObject sent with an unsigned x-amz-copy-source is 403 AccessDenied, nothing copied",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        await s3.send(new PutObjectCommand({ Bucket, Key: "private", Body: "not for the URL" }));
        // A URL that lets its holder write "dst", not read "private".
        const url = await getSignedUrl(s3, new PutObjectCommand({ Bucket, Key: "dst" }));
        const headers = { "x-amz-copy-source": `/${Bucket}/private` };
        const path = new URL(url).pathname;
        assertEquals(await errorAnswer(url, { method: "PUT", headers }), {
          status: 403,
          type: "application/xml",
          body: errorXml(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            "<HeadersNotSigned>x-amz-copy-source</HeadersNotSigned>",
            path,
          ),
        });
        assertEquals((await fetch(`${c.url}/${Bucket}/dst`, { redirect: "manual" })).status, 404);
      },
    );

    await t.step(
      "a browser form upload (POST Object) is 501 NotImplemented in S3's XML",
      async () => {
        const Bucket = bucketName();
        const form = new FormData();
        form.set("key", "from-form");
        form.set("file", new Blob(["form body"]), "f.txt");
        assertEquals(
          await errorAnswer(`${c.url}/${Bucket}`, { method: "POST", body: form }),
          {
            status: 501,
            type: "application/xml",
            body: errorXml(
              "NotImplemented",
              "Browser form upload (POST Object) is not implemented by this gateway",
              "",
              `/${Bucket}`,
            ),
          },
        );
        assertEquals((await fetch(`${c.url}/${Bucket}/from-form`)).status, 404);
      },
    );

    await t.step("a POST that is no form and no S3 call stays mkv's 405", async () => {
      const res = await fetch(`${c.url}/${bucketName()}/k`, { method: "POST", body: "x" });
      assertEquals([res.status, await res.text()], [405, "Method POST not allowed\n"]);
    });

    await t.step(
      "a Signature Version 4A PutObject is 501 NotImplemented, not mkv's PUT",
      async () => {
        const Bucket = bucketName();
        const headers = {
          authorization: `AWS4-ECDSA-P256-SHA256 Credential=${ACCESS}/20261125/s3/aws4_request, ` +
            "SignedHeaders=host;x-amz-date;x-amz-region-set, Signature=3045",
          "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
          "x-amz-date": "20261125T120000Z",
          "x-amz-region-set": "*",
        };
        assertEquals(
          await errorAnswer(`${c.url}/${Bucket}/k`, { method: "PUT", headers, body: "value" }),
          {
            status: 501,
            type: "application/xml",
            body: errorXml(
              "NotImplemented",
              "Signature Version 4A (AWS4-ECDSA-P256-SHA256) is not implemented by this gateway",
              "",
              `/${Bucket}/k`,
            ),
          },
        );
        assertEquals((await fetch(`${c.url}/${Bucket}/k`)).status, 404);
      },
    );

    await t.step(
      "a copy onto itself that names only a storage class keeps the object, as S3",
      async () => {
        // `aws s3 cp s3://b/k s3://b/k --storage-class STANDARD`: S3 takes a
        // copy onto itself that names one; STANDARD is the only one kept
        // (tests/s3_limits_test.ts).
        const Bucket = bucketName();
        await s3.send(
          new PutObjectCommand({
            Bucket,
            Key: "k",
            Body: "kept",
            ContentType: "text/x-kept",
            Metadata: { owner: "alice" },
          }),
        );
        const copy = new CopyObjectCommand({
          Bucket,
          Key: "k",
          CopySource: `${Bucket}/k`,
          StorageClass: "STANDARD",
        });
        assertEquals((await s3.send(copy)).$metadata.httpStatusCode, 200);
        const head = await s3.send(new HeadObjectCommand({ Bucket, Key: "k" }));
        assertEquals([head.ContentType, head.Metadata], ["text/x-kept", { owner: "alice" }]);
        const got = await s3.send(new GetObjectCommand({ Bucket, Key: "k" }));
        assertEquals(await got.Body!.transformToString(), "kept");
      },
    );

    await t.step(
      "a copy onto itself that changes nothing is 400 InvalidRequest, in S3's words",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "same" }));
        const copy = new CopyObjectCommand({ Bucket, Key: "k", CopySource: `${Bucket}/k` });
        const err = await s3.send(copy).then(() => null, (e) => e);
        assertEquals([err?.name, err?.$metadata?.httpStatusCode, err?.message], [
          "InvalidRequest",
          400,
          "This copy request is illegal because it is trying to copy an object to itself without " +
          "changing the object's metadata, storage class, website redirect location or encryption " +
          "attributes.",
        ]);
      },
    );

    await t.step(
      "ListBuckets takes a prefix, and max-buckets a page with a continuation token",
      async () => {
        const prefix = `lb-${crypto.randomUUID().slice(0, 8)}-`;
        for (const name of ["c", "a", "b"]) {
          await s3.send(new CreateBucketCommand({ Bucket: prefix + name }));
        }
        await s3.send(new CreateBucketCommand({ Bucket: bucketName() }));
        const names = (out: { Buckets?: { Name?: string }[] }) => out.Buckets?.map((b) => b.Name);
        const all = await s3.send(new ListBucketsCommand({ Prefix: prefix }));
        assertEquals([names(all), all.Prefix, all.ContinuationToken], [
          [prefix + "a", prefix + "b", prefix + "c"],
          prefix,
          undefined,
        ]);
        const first = await s3.send(new ListBucketsCommand({ Prefix: prefix, MaxBuckets: 2 }));
        assertEquals(names(first), [prefix + "a", prefix + "b"]);
        const rest = await s3.send(
          new ListBucketsCommand({
            Prefix: prefix,
            MaxBuckets: 2,
            ContinuationToken: first.ContinuationToken,
          }),
        );
        assertEquals([names(rest), rest.ContinuationToken], [[prefix + "c"], undefined]);
      },
    );

    await t.step(
      "a signed PutObject whose Host no URL can hold (port 99999) is stored, not a 500",
      async () => {
        // The Host is the client's; Deno could make no URL of it.
        const host = "127.0.0.1:99999";
        const path = `/${bucketName()}/k`;
        const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, "");
        const headers = new Headers({
          host,
          "x-amz-content-sha256": sha256Hex("odd host"),
          "x-amz-date": now,
        });
        const req = { method: "PUT", path, query: "", headers };
        const { authorization } = new SigV4({ accessKey: ACCESS, secretKey: SECRET }, now)
          .sign(req);
        headers.delete("host");
        const put = await rawRequest(c.masterPort, "PUT", path, "odd host", {
          host,
          headers: { ...Object.fromEntries(headers), authorization },
        });
        assertEquals([put.status, put.body], [200, ""]);
        const got = await fetch(c.url + path);
        assertEquals([got.status, await got.text()], [200, "odd host"]);
      },
    );

    await t.step(
      "a response-* value no header can hold is 400 InvalidArgument naming it, not a 500",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "v" }));
        const cases = [
          {
            param: "response-content-type",
            value: "text/plain\r\nSet-Cookie: a=1",
            message: "Header value cannot hold a line break or NUL.",
            sent: "text/plain&#13;\nSet-Cookie: a=1",
          },
          {
            param: "response-content-disposition",
            value: 'attachment; filename="\u20ac.txt"',
            message: "Header value cannot be represented using ISO-8859-1.",
            sent: "attachment; filename=&#34;\u20ac.txt&#34;",
          },
        ];
        for (const { param, value, message, sent } of cases) {
          const url = await getSignedUrl(
            s3,
            new GetObjectCommand({
              Bucket,
              Key: "k",
              ...(param === "response-content-type"
                ? { ResponseContentType: value }
                : { ResponseContentDisposition: value }),
            }),
          );
          assertEquals(await errorAnswer(url), {
            status: 400,
            type: "application/xml",
            body: errorXml(
              "InvalidArgument",
              message,
              `<ArgumentName>${param}</ArgumentName><ArgumentValue>${sent}</ArgumentValue>`,
              `/${Bucket}/k`,
            ),
          });
        }
      },
    );
  } finally {
    await c.stop();
  }
});
