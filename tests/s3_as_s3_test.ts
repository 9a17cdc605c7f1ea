// Where the gateway answers as Amazon S3 does, down to the elements of its
// errors: a presigned URL dated in the future, a request dated too far from
// the master's clock, a bucket's Object Ownership, ListBuckets' regions. A
// real master and nginx volumes; raw requests where the exact answer is
// compared.
import {
  CreateBucketCommand,
  DeleteBucketOwnershipControlsCommand,
  GetBucketOwnershipControlsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListBucketsCommand,
  PutBucketOwnershipControlsCommand,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { bucketsPageSize } from "../lib/s3_list.ts";
import { digestFor } from "../lib/s3_checksum.ts";
import { Cluster } from "./cluster.ts";
import { s3Client } from "./s3_client.ts";
import { errorAnswer, errorTime, errorXml, md5Header, s3Fails, serverTime } from "./s3_answers.ts";
import { assert, assertEquals } from "./assert.ts";

const NS = "http://s3.amazonaws.com/doc/2006-03-01/";

function bucketName(): string {
  return `as3-${crypto.randomUUID().slice(0, 8)}`;
}

/** PutBucketOwnershipControls' body with one rule per setting given. */
function ownershipXml(...settings: string[]): string {
  const rules = settings.map((s) => `<Rule><ObjectOwnership>${s}</ObjectOwnership></Rule>`);
  return `<OwnershipControls xmlns="${NS}">${rules.join("")}</OwnershipControls>`;
}

/**
 * Asserts that a request to `url` with `headers`, dated `requestTime`, is
 * 403 RequestTimeTooSkewed naming that time, the server's and the skew allowed.
 */
async function assertTooSkewed(url: string, headers: HeadersInit, requestTime: string) {
  const before = Date.now();
  const got = await errorAnswer(url, { headers });
  const server = serverTime(got.body, before, Date.now());
  assertEquals(got, {
    status: 403,
    type: "application/xml",
    body: errorXml(
      "RequestTimeTooSkewed",
      "The difference between the request time and the current time is too large.",
      `<RequestTime>${requestTime}</RequestTime><ServerTime>${server}</ServerTime>` +
        "<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>",
      new URL(url).pathname,
    ),
  });
}

/** ListBuckets' 400 InvalidArgument for a bucket-region `value` that names no region. */
function notARegion(value: string) {
  return {
    status: 400,
    type: "application/xml",
    body: errorXml(
      "InvalidArgument",
      `Argument value ${value} is not a valid AWS Region`,
      "<ArgumentName>bucket-region</ArgumentName>",
      "/",
    ),
  };
}

/** ListBuckets' 400 InvalidArgument for a max-buckets of `value` (as a number). */
function maxBucketsOutOfRange(value: string) {
  return {
    status: 400,
    type: "application/xml",
    body: errorXml(
      "InvalidArgument",
      "Argument max-buckets must be an integer between 1 and 10000",
      `<ArgumentName>max-buckets</ArgumentName><ArgumentValue>${value}</ArgumentValue>`,
      "/",
    ),
  };
}

/** 404 NoSuchBucket for `Bucket`. */
function noSuchBucket(Bucket: string) {
  return {
    status: 404,
    type: "application/xml",
    body: errorXml(
      "NoSuchBucket",
      "The specified bucket does not exist",
      `<BucketName>${Bucket}</BucketName>`,
      `/${Bucket}`,
    ),
  };
}

/** 400 InvalidRequest of a request to `Bucket` that S3 wants a Content-MD5 (or checksum) with. */
function missingContentMd5(Bucket: string) {
  return {
    status: 400,
    type: "application/xml",
    body: errorXml(
      "InvalidRequest",
      "Missing required header for this request: Content-MD5",
      "",
      `/${Bucket}`,
    ),
  };
}

Deno.test(
  "ListBuckets pages at 10,000 buckets when it names a prefix, bucket-region or continuation-token without max-buckets, as S3; else it lists all",
  () => {
    const page = (query: string) => bucketsPageSize(new Map(new URLSearchParams(query)));
    assertEquals(
      ["", "x-id=ListBuckets", "prefix=a", "bucket-region=eu-west-1", "continuation-token=YQ"]
        .map(page),
      [Infinity, Infinity, 10_000, 10_000, 10_000],
    );
    assertEquals(["max-buckets=3", "prefix=a&max-buckets=10000"].map(page), [3, 10_000]);
  },
);

Deno.test("S3's answers, element for element", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  /** Buckets `<prefix>-a-eu` (made in eu-west-1), `-b-plain` (made) and `-c-keyed` (known by a key). */
  const threeBuckets = async (prefix: string) => {
    const [eu, plain, keyed] = ["a-eu", "b-plain", "c-keyed"].map((n) => `${prefix}-${n}`);
    await s3.send(
      new CreateBucketCommand({
        Bucket: eu,
        CreateBucketConfiguration: { LocationConstraint: "eu-west-1" },
      }),
    );
    await s3.send(new CreateBucketCommand({ Bucket: plain }));
    const put = await fetch(`${c.url}/${keyed}/k`, { method: "PUT", body: "v" });
    assertEquals(put.status, 201);
    await put.body?.cancel();
    return [eu, plain, keyed];
  };
  try {
    await t.step(
      "a presigned URL dated in the future is 403 AccessDenied 'Request is not yet valid' naming its X-Amz-Date (ms), when it expires and the server's time",
      async () => {
        const Bucket = bucketName();
        const signed = Date.now() + 3_600_000;
        const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "k" }), {
          expiresIn: 900,
          signingDate: new Date(signed),
        });
        const before = Date.now();
        const got = await errorAnswer(url);
        const server = serverTime(got.body, before, Date.now());
        const at = Math.floor(signed / 1000) * 1000;
        assertEquals(got, {
          status: 403,
          type: "application/xml",
          body: errorXml(
            "AccessDenied",
            "Request is not yet valid",
            `<X-Amz-Date>${at}</X-Amz-Date><Expires>${errorTime(at + 900_000)}</Expires>` +
              `<ServerTime>${server}</ServerTime>`,
            `/${Bucket}/k`,
          ),
        });
      },
    );

    await t.step(
      "a request signed (Version 4) 16 minutes ago is 403 RequestTimeTooSkewed naming its time, the server's and the skew allowed",
      async () => {
        const date = new Date(Date.now() - 16 * 60_000).toISOString()
          .replace(/[-:]|\.\d{3}/g, "");
        const headers = {
          authorization: `AWS4-HMAC-SHA256 Credential=x/${date.slice(0, 8)}/us-east-1/s3/` +
            "aws4_request,SignedHeaders=host;x-amz-date,Signature=00",
          "x-amz-date": date,
          "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        };
        await assertTooSkewed(`${c.url}/${bucketName()}/k`, headers, date);
      },
    );

    await t.step(
      "a request signed (Version 2) with a Date 16 minutes ahead is 403 RequestTimeTooSkewed naming that Date as sent",
      async () => {
        const date = new Date(Date.now() + 16 * 60_000).toUTCString();
        const headers = { authorization: "AWS x:c2ln", date };
        await assertTooSkewed(`${c.url}/${bucketName()}/k`, headers, date);
      },
    );
    await t.step(
      "ListBuckets names each bucket's region: the one it was made in, us-east-1 for none",
      async () => {
        const prefix = bucketName();
        const [eu, plain, keyed] = await threeBuckets(prefix);
        const res = await fetch(`${c.url}/?prefix=${prefix}&x-id=ListBuckets`);
        const xml = await res.text();
        assertEquals(res.status, 200);
        const buckets = [...xml.matchAll(/<Bucket>(.*?)<\/Bucket>/g)].map((m) =>
          m[1].replace(/<CreationDate>[^<]*<\/CreationDate>/, "<CreationDate/>")
        );
        assertEquals(buckets, [
          `<Name>${eu}</Name><CreationDate/><BucketRegion>eu-west-1</BucketRegion>`,
          `<Name>${plain}</Name><CreationDate/><BucketRegion>us-east-1</BucketRegion>`,
          `<Name>${keyed}</Name><CreationDate/><BucketRegion>us-east-1</BucketRegion>`,
        ]);
        const listed = await s3.send(new ListBucketsCommand({ Prefix: prefix }));
        assertEquals(
          listed.Buckets!.map((b) => [b.Name, b.BucketRegion]),
          [[eu, "eu-west-1"], [plain, "us-east-1"], [keyed, "us-east-1"]],
        );
      },
    );

    await t.step(
      "ListBuckets with a bucket-region lists only the buckets in that region",
      async () => {
        const prefix = bucketName();
        const [eu, plain, keyed] = await threeBuckets(prefix);
        const names = async (BucketRegion: string) => {
          const out = await s3.send(new ListBucketsCommand({ Prefix: prefix, BucketRegion }));
          return out.Buckets?.map((b) => b.Name) ?? [];
        };
        assertEquals(await names("eu-west-1"), [eu]);
        assertEquals(await names("us-east-1"), [plain, keyed]);
        assertEquals(await names("ap-south-2"), []);
      },
    );

    await t.step(
      "ListBuckets with a bucket-region that is no region's name is 400 InvalidArgument naming it",
      async () => {
        assertEquals(
          await errorAnswer(`${c.url}/?bucket-region=no%20region&x-id=ListBuckets`),
          notARegion("no region"),
        );
      },
    );

    await t.step(
      "ListBuckets with an empty bucket-region is 400 InvalidArgument naming it, as S3",
      async () => {
        assertEquals(
          await errorAnswer(`${c.url}/?bucket-region=&x-id=ListBuckets`),
          notARegion(""),
        );
      },
    );

    await t.step(
      "ListBuckets with a bucket-region shaped as one but no region's (eu-east-1) is 400 InvalidArgument naming it, as S3, not an empty list",
      async () => {
        assertEquals(
          await errorAnswer(`${c.url}/?bucket-region=eu-east-1&x-id=ListBuckets`),
          notARegion("eu-east-1"),
        );
      },
    );

    await t.step(
      "ListBuckets with a bucket-region no AWS region has but a bucket here was made in lists that bucket",
      async () => {
        const Bucket = bucketName();
        const region = `garage-${crypto.randomUUID().slice(0, 8)}`;
        const made = await fetch(`${c.url}/${Bucket}?x-id=CreateBucket`, {
          method: "PUT",
          body: `<CreateBucketConfiguration xmlns="${NS}"><LocationConstraint>${region}` +
            "</LocationConstraint></CreateBucketConfiguration>",
        });
        assertEquals([made.status, await made.text()], [200, ""]);
        const out = await s3.send(new ListBucketsCommand({ BucketRegion: region }));
        assertEquals(out.Buckets?.map((b) => [b.Name, b.BucketRegion]), [[Bucket, region]]);
      },
    );

    await t.step(
      "ListBuckets with a max-buckets above 10,000 is 400 InvalidArgument naming it, as S3, not a page of 10,000",
      async () => {
        assertEquals(
          await errorAnswer(`${c.url}/?max-buckets=010001&x-id=ListBuckets`),
          maxBucketsOutOfRange("10001"),
        );
      },
    );

    await t.step(
      "ListBuckets with a max-buckets of 0 or below is the same 400, judged before its bucket-region, as S3",
      async () => {
        for (const [max, value] of [["0", "0"], ["-01", "-1"]]) {
          const url = `${c.url}/?max-buckets=${max}&bucket-region=zz&x-id=ListBuckets`;
          assertEquals(await errorAnswer(url), maxBucketsOutOfRange(value));
        }
      },
    );

    await t.step(
      "CreateBucket with Object Ownership BucketOwnerEnforced (what the gateway does) makes it",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket, ObjectOwnership: "BucketOwnerEnforced" }));
        const head = await s3.send(new HeadBucketCommand({ Bucket }));
        assertEquals(head.$metadata.httpStatusCode, 200);
      },
    );

    await t.step(
      "CreateBucket with Object Ownership ObjectWriter or BucketOwnerPreferred (ACLs kept) is 501 NotImplemented, no bucket made",
      async () => {
        for (const ownership of ["ObjectWriter", "BucketOwnerPreferred"]) {
          const Bucket = bucketName();
          assertEquals(
            await errorAnswer(`${c.url}/${Bucket}?x-id=CreateBucket`, {
              method: "PUT",
              headers: { "x-amz-object-ownership": ownership, "x-amz-acl": "public-read" },
            }),
            {
              status: 501,
              type: "application/xml",
              body: errorXml(
                "NotImplemented",
                `Object Ownership ${ownership} (x-amz-object-ownership) is not implemented by ` +
                  "this gateway: it keeps no ACLs, as S3 keeps none with BucketOwnerEnforced",
                "",
                `/${Bucket}`,
              ),
            },
          );
          assertEquals(await s3Fails(s3.send(new HeadBucketCommand({ Bucket }))), {
            name: "NotFound",
            status: 404,
          });
        }
      },
    );

    await t.step(
      "CreateBucket with an Object Ownership S3 has not is 400 InvalidArgument naming the header",
      async () => {
        const Bucket = bucketName();
        assertEquals(
          await errorAnswer(`${c.url}/${Bucket}?x-id=CreateBucket`, {
            method: "PUT",
            headers: { "x-amz-object-ownership": "Nobody" },
          }),
          {
            status: 400,
            type: "application/xml",
            body: errorXml(
              "InvalidArgument",
              "Invalid x-amz-object-ownership header: Nobody",
              "<ArgumentName>x-amz-object-ownership</ArgumentName>",
              `/${Bucket}`,
            ),
          },
        );
        assertEquals(await s3Fails(s3.send(new HeadBucketCommand({ Bucket }))), {
          name: "NotFound",
          status: 404,
        });
      },
    );

    await t.step(
      "GetBucketOwnershipControls answers BucketOwnerEnforced, for a bucket made or known by its keys",
      async () => {
        const made = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket: made }));
        const keyed = bucketName();
        const put = await fetch(`${c.url}/${keyed}/k`, { method: "PUT", body: "v" });
        await put.body?.cancel();
        for (const Bucket of [made, keyed]) {
          const res = await fetch(`${c.url}/${Bucket}?ownershipControls`);
          assertEquals(
            [res.status, res.headers.get("content-type"), await res.text()],
            [
              200,
              "application/xml",
              `<?xml version="1.0" encoding="UTF-8"?>\n<OwnershipControls xmlns="${NS}">` +
              "<Rule><ObjectOwnership>BucketOwnerEnforced</ObjectOwnership></Rule>" +
              "</OwnershipControls>",
            ],
          );
          const got = await s3.send(new GetBucketOwnershipControlsCommand({ Bucket }));
          assertEquals(got.OwnershipControls?.Rules, [{ ObjectOwnership: "BucketOwnerEnforced" }]);
        }
      },
    );

    await t.step(
      "PutBucketOwnershipControls with BucketOwnerEnforced (what the gateway does) is taken: 200, Get answers it",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const body = ownershipXml("BucketOwnerEnforced");
        const res = await fetch(`${c.url}/${Bucket}?ownershipControls`, {
          method: "PUT",
          headers: md5Header(body),
          body,
        });
        assertEquals([res.status, await res.text()], [200, ""]);
        const put = await s3.send(
          new PutBucketOwnershipControlsCommand({
            Bucket,
            OwnershipControls: { Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }] },
          }),
        );
        assertEquals(put.$metadata.httpStatusCode, 200);
        const got = await s3.send(new GetBucketOwnershipControlsCommand({ Bucket }));
        assertEquals(got.OwnershipControls?.Rules, [{ ObjectOwnership: "BucketOwnerEnforced" }]);
      },
    );

    await t.step(
      "PutBucketOwnershipControls with ObjectWriter or BucketOwnerPreferred (ACLs kept) is 501 NotImplemented",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        for (const ownership of ["ObjectWriter", "BucketOwnerPreferred"]) {
          assertEquals(
            await errorAnswer(`${c.url}/${Bucket}?ownershipControls`, {
              method: "PUT",
              headers: md5Header(ownershipXml(ownership)),
              body: ownershipXml(ownership),
            }),
            {
              status: 501,
              type: "application/xml",
              body: errorXml(
                "NotImplemented",
                `Object Ownership ${ownership} is not implemented by this gateway: it keeps no ` +
                  "ACLs, as S3 keeps none with BucketOwnerEnforced",
                "",
                `/${Bucket}`,
              ),
            },
          );
        }
      },
    );

    await t.step(
      "a DeleteObjects body that is not UTF-8 is 400 MalformedXML, not a key of U+FFFD deleted",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        await s3.send(new PutObjectCommand({ Bucket, Key: "\uFFFD", Body: "kept" }));
        const utf8 = (s: string) => new TextEncoder().encode(s);
        // <Key> holds the byte 0xFF, which no UTF-8 text has.
        const body = new Uint8Array([
          ...utf8("<Delete><Object><Key>"),
          0xff,
          ...utf8("</Key></Object></Delete>"),
        ]);
        assertEquals(
          await errorAnswer(`${c.url}/${Bucket}?delete`, {
            method: "POST",
            headers: md5Header(body),
            body,
          }),
          {
            status: 400,
            type: "application/xml",
            body: errorXml(
              "MalformedXML",
              "The XML you provided was not well-formed",
              "",
              `/${Bucket}`,
            ),
          },
        );
        const got = await s3.send(new GetObjectCommand({ Bucket, Key: "\uFFFD" }));
        assertEquals(await got.Body!.transformToString(), "kept");
      },
    );

    await t.step(
      "PutBucketOwnershipControls with an Object Ownership S3 has not, two rules or none is 400 MalformedXML",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const bodies = [
          ownershipXml("Nobody"),
          ownershipXml("BucketOwnerEnforced", "BucketOwnerEnforced"),
          ownershipXml(),
          "<OwnershipControls",
        ];
        for (const body of bodies) {
          assertEquals(
            await errorAnswer(`${c.url}/${Bucket}?ownershipControls`, {
              method: "PUT",
              headers: md5Header(body),
              body,
            }),
            {
              status: 400,
              type: "application/xml",
              body: errorXml(
                "MalformedXML",
                body === bodies[3]
                  ? "The XML you provided was not well-formed"
                  : "The XML you provided was not well-formed or did not validate against our " +
                    "published schema",
                "",
                `/${Bucket}`,
              ),
            },
          );
        }
      },
    );

    await t.step(
      "PutBucketOwnershipControls without a Content-MD5 or checksum of its body is 400 InvalidRequest, as S3",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        const url = `${c.url}/${Bucket}?ownershipControls`;
        const body = ownershipXml("BucketOwnerEnforced");
        assertEquals(await errorAnswer(url, { method: "PUT", body }), missingContentMd5(Bucket));
      },
    );

    await t.step(
      "DeleteObjects without a Content-MD5 or checksum of its body is 400 InvalidRequest, as S3, and deletes nothing",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "kept" }));
        const body = "<Delete><Object><Key>k</Key></Object></Delete>";
        assertEquals(
          await errorAnswer(`${c.url}/${Bucket}?delete`, { method: "POST", body }),
          missingContentMd5(Bucket),
        );
        assertEquals(await (await fetch(`${c.url}/${Bucket}/k`)).text(), "kept");
      },
    );

    await t.step(
      "DeleteObjects with an x-amz-checksum-crc32 of its body instead (what SDKs send since 2025) is taken",
      async () => {
        const Bucket = bucketName();
        await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "gone" }));
        const body = "<Delete><Quiet>true</Quiet><Object><Key>k</Key></Object></Delete>";
        const crc = digestFor("crc32");
        crc.update(new TextEncoder().encode(body));
        const res = await fetch(`${c.url}/${Bucket}?delete`, {
          method: "POST",
          headers: { "x-amz-checksum-crc32": crc.digest() },
          body,
        });
        assertEquals(res.status, 200);
        assert((await res.text()).endsWith("<DeleteResult" + ` xmlns="${NS}"></DeleteResult>`));
        assertEquals((await fetch(`${c.url}/${Bucket}/k`)).status, 404);
      },
    );

    await t.step("PutBucketOwnershipControls of a missing bucket is 404 NoSuchBucket", async () => {
      const Bucket = bucketName();
      assertEquals(
        await errorAnswer(`${c.url}/${Bucket}?ownershipControls`, {
          method: "PUT",
          body: ownershipXml("BucketOwnerEnforced"),
        }),
        noSuchBucket(Bucket),
      );
    });

    await t.step(
      "DeleteBucketOwnershipControls is 501 NotImplemented: without them S3 would take ACLs",
      async () => {
        const Bucket = bucketName();
        await s3.send(new CreateBucketCommand({ Bucket }));
        assertEquals(
          await errorAnswer(`${c.url}/${Bucket}?ownershipControls`, { method: "DELETE" }),
          {
            status: 501,
            type: "application/xml",
            body: errorXml(
              "NotImplemented",
              "DeleteBucketOwnershipControls is not implemented by this gateway: a bucket " +
                "without ownership controls takes ACLs (ObjectWriter), which the gateway does not keep",
              "",
              `/${Bucket}`,
            ),
          },
        );
        assertEquals(
          await s3Fails(s3.send(new DeleteBucketOwnershipControlsCommand({ Bucket }))),
          { name: "NotImplemented", status: 501 },
        );
        const got = await s3.send(new GetBucketOwnershipControlsCommand({ Bucket }));
        assertEquals(got.OwnershipControls?.Rules, [{ ObjectOwnership: "BucketOwnerEnforced" }]);
      },
    );

    await t.step("GetBucketOwnershipControls of a missing bucket is 404 NoSuchBucket", async () => {
      const Bucket = bucketName();
      assertEquals(await errorAnswer(`${c.url}/${Bucket}?ownershipControls`), noSuchBucket(Bucket));
    });
  } finally {
    s3.destroy();
    await c.stop();
  }
});
