// S3's object tagging: Get-, Put- and DeleteObjectTagging on ?tagging,
// x-amz-tagging on PutObject, CreateMultipartUpload and CopyObject (with
// x-amz-tagging-directive), x-amz-tagging-count on GetObject and HeadObject.
// Raw requests against a master without keys (-s3), the exact status,
// headers and XML compared; the SDK to make objects. Real master and nginx
// volumes. boto3 and the AWS CLI: tests/s3_boto3_test.ts, s3_awscli_test.ts.
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Cluster, runMain } from "./cluster.ts";
import { assertPythonChecks, s3Client, unsignedHeaders } from "./s3_client.ts";
import { errorAnswer, errorXml, md5Header } from "./s3_answers.ts";
import { assertEquals } from "./assert.ts";
import type { Record as KeyRecord } from "../lib/record.ts";
import { withIndex } from "./temp_index.ts";

const NS = "http://s3.amazonaws.com/doc/2006-03-01/";

function bucketName(): string {
  return `tag-${crypto.randomUUID().slice(0, 8)}`;
}

/** A <Tagging> document of `tags`, as PutObjectTagging sends and GetObjectTagging answers it. */
function taggingXml(tags: [string, string][], ns = false): string {
  const set = tags.map(([k, v]) => `<Tag><Key>${k}</Key><Value>${v}</Value></Tag>`).join("");
  return `<Tagging${ns ? ` xmlns="${NS}"` : ""}><TagSet>${set}</TagSet></Tagging>`;
}

/** GetObjectTagging's answer for `tags` (XML-escaped as given). */
function tagsAnswer(tags: [string, string][]): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${taggingXml(tags, true)}`;
}

/** GET ?tagging of `url` (unsigned: -s3 takes it): status, Content-Type, body. */
async function getTags(url: string, query = "") {
  const res = await fetch(`${url}?tagging${query}`);
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    version: res.headers.get("x-amz-version-id"),
    body: await res.text(),
  };
}

/** PUT ?tagging of `url` with `body` and its Content-MD5: status and body. */
async function putTags(url: string, body: string, query = "") {
  const res = await fetch(`${url}?tagging${query}`, {
    method: "PUT",
    body,
    headers: md5Header(body),
  });
  return {
    status: res.status,
    version: res.headers.get("x-amz-version-id"),
    body: await res.text(),
  };
}

/** An S3 call's headers as a HEAD (or GET) of `url` answers them: the ones named. */
async function headersOf(url: string, names: string[], method = "HEAD") {
  const res = await fetch(url, { method, headers: { "amz-sdk-request": "1" } });
  await res.body?.cancel();
  return Object.fromEntries(names.map((n) => [n, res.headers.get(n)]));
}

/** A PutObject of `body` at `url` with `headers` (unsigned, as -s3 takes it): status, body. */
async function putObject(url: string, body: string, headers: Record<string, string>) {
  const res = await fetch(url, { method: "PUT", body, headers: unsignedHeaders(headers) });
  return { status: res.status, body: await res.text() };
}

/** A CopyObject of `source` ("/bucket/key") to `url` with `headers`: status. */
async function copyObject(url: string, source: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: "PUT",
    headers: unsignedHeaders({ "x-amz-copy-source": source, ...headers }),
  });
  await res.body?.cancel();
  return res.status;
}

/** An error answer with `fields` between its Message and its Resource. */
function error(status: number, code: string, message: string, fields: string, resource: string) {
  return { status, type: "application/xml", body: errorXml(code, message, fields, resource) };
}

Deno.test("object tagging through ?tagging, no keys set (-s3)", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  const Bucket = bucketName();
  const base = `${c.url}/${Bucket}`;
  try {
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "value" }));

    await t.step(
      "an object never tagged has an empty TagSet, and no x-amz-tagging-count",
      async () => {
        assertEquals(await getTags(`${base}/k`), {
          status: 200,
          type: "application/xml",
          version: null,
          body: tagsAnswer([]),
        });
        assertEquals(await headersOf(`${base}/k`, ["x-amz-tagging-count"]), {
          "x-amz-tagging-count": null,
        });
      },
    );

    await t.step(
      "PutObjectTagging sets the tags (200, no body); GetObjectTagging gives them back in key order",
      async () => {
        const tags: [string, string][] = [["zeta", "last"], ["alpha", "a b+c=d@e:f/g_.-"], [
          "mid",
          "",
        ]];
        assertEquals(await putTags(`${base}/k`, taggingXml(tags)), {
          status: 200,
          version: null,
          body: "",
        });
        assertEquals(
          (await getTags(`${base}/k`)).body,
          tagsAnswer([["alpha", "a b+c=d@e:f/g_.-"], ["mid", ""], ["zeta", "last"]]),
        );
      },
    );

    await t.step(
      "a tagged object's GetObject and HeadObject say x-amz-tagging-count; its ETag and Last-Modified stay",
      async () => {
        const before = await headersOf(`${base}/k`, ["etag", "last-modified"]);
        await putTags(`${base}/k`, taggingXml([["a", "1"], ["b", "2"]]));
        const names = ["x-amz-tagging-count", "etag", "last-modified"];
        const want = { "x-amz-tagging-count": "2", ...before };
        assertEquals(await headersOf(`${base}/k`, names), want);
        assertEquals(await headersOf(`${base}/k`, names, "GET"), want);
      },
    );

    await t.step(
      "PutObjectTagging replaces the whole set; an empty TagSet removes it",
      async () => {
        await putTags(`${base}/k`, taggingXml([["a", "1"], ["b", "2"]]));
        await putTags(`${base}/k`, taggingXml([["c", "3"]]));
        assertEquals((await getTags(`${base}/k`)).body, tagsAnswer([["c", "3"]]));
        assertEquals((await putTags(`${base}/k`, "<Tagging><TagSet/></Tagging>")).status, 200);
        assertEquals((await getTags(`${base}/k`)).body, tagsAnswer([]));
      },
    );

    await t.step("DeleteObjectTagging removes the tags: 204, the count gone", async () => {
      await putTags(`${base}/k`, taggingXml([["a", "1"]]));
      const res = await fetch(`${base}/k?tagging`, { method: "DELETE" });
      assertEquals([res.status, await res.text()], [204, ""]);
      assertEquals((await getTags(`${base}/k`)).body, tagsAnswer([]));
      assertEquals(await headersOf(`${base}/k`, ["x-amz-tagging-count"]), {
        "x-amz-tagging-count": null,
      });
      assertEquals(
        new TextDecoder().decode(
          await (await fetch(`${base}/k`, {
            headers: { "amz-sdk-request": "1" },
          })).bytes(),
        ),
        "value",
      );
    });

    await t.step("versionId=null is the object's one version, named in the answers", async () => {
      assertEquals(
        (await putTags(`${base}/k`, taggingXml([["v", "1"]]), "&versionId=null")).version,
        "null",
      );
      assertEquals((await getTags(`${base}/k`, "&versionId=null")).version, "null");
      const res = await fetch(`${base}/k?tagging&versionId=null`, { method: "DELETE" });
      await res.body?.cancel();
      assertEquals([res.status, res.headers.get("x-amz-version-id")], [204, "null"]);
      assertEquals(
        await errorAnswer(`${base}/k?tagging&versionId=v2`),
        error(
          400,
          "InvalidArgument",
          "Invalid version id specified",
          "",
          `/${Bucket}/k`,
        ),
      );
    });

    await t.step(
      "10 tags of 128 and 256 UTF-16 units are taken (a letter past U+FFFF is 2)",
      async () => {
        const astral = "𠀀".repeat(64); // 128 units: U+20000, a letter past U+FFFF
        const tags: [string, string][] = Array.from(
          { length: 10 },
          (_, i) => [i === 0 ? astral : `${i}`.padEnd(128, "k"), "v".repeat(256)],
        );
        assertEquals((await putTags(`${base}/k`, taggingXml(tags))).status, 200);
        const got = (await getTags(`${base}/k`)).body;
        assertEquals(got, tagsAnswer(tags.toSorted(([a], [b]) => a < b ? -1 : 1)));
      },
    );

    await t.step("11 tags is 400 BadRequest, the tags as they were", async () => {
      await putTags(`${base}/k`, taggingXml([["kept", "1"]]));
      const tags = Array.from({ length: 11 }, (_, i): [string, string] => [`k${i}`, "v"]);
      const body = taggingXml(tags);
      assertEquals(
        await errorAnswer(`${base}/k?tagging`, { method: "PUT", body, headers: md5Header(body) }),
        error(400, "BadRequest", "Object tags cannot be greater than 10", "", `/${Bucket}/k`),
      );
      assertEquals((await getTags(`${base}/k`)).body, tagsAnswer([["kept", "1"]]));
    });

    await t.step("a tag S3 refuses is 400 InvalidTag naming it, in S3's words", async () => {
      const cases: [[string, string][], string, string][] = [
        [
          [["k".repeat(129), "v"]],
          "The TagKey you have provided is invalid",
          `<TagKey>${"k".repeat(129)}</TagKey>`,
        ],
        [
          [["𠀀".repeat(65), "v"]],
          "The TagKey you have provided is invalid",
          `<TagKey>${"𠀀".repeat(65)}</TagKey>`,
        ],
        [[["", "v"]], "The TagKey you have provided is invalid", "<TagKey></TagKey>"],
        [
          [["te&amp;st", "v"]],
          "The TagKey you have provided is invalid",
          "<TagKey>te&#38;st</TagKey>",
        ],
        [
          [["key", "v".repeat(257)]],
          "The TagValue you have provided is invalid",
          `<TagKey>key</TagKey><TagValue>${"v".repeat(257)}</TagValue>`,
        ],
        [
          [["key", "inv,alid"]],
          "The TagValue you have provided is invalid",
          "<TagKey>key</TagKey><TagValue>inv,alid</TagValue>",
        ],
        [
          [["key", "a"], ["key", "b"]],
          "Cannot provide multiple Tags with the same key",
          "<TagKey>key</TagKey>",
        ],
        [[["aws:owner", "me"]], "Your TagKey cannot be prefixed with aws:", ""],
      ];
      for (const [tags, message, fields] of cases) {
        const body = taggingXml(tags);
        assertEquals(
          await errorAnswer(`${base}/k?tagging`, { method: "PUT", body, headers: md5Header(body) }),
          error(400, "InvalidTag", message, fields, `/${Bucket}/k`),
          message,
        );
      }
    });

    await t.step("a body S3's schema refuses is 400 MalformedXML", async () => {
      const message =
        "The XML you provided was not well-formed or did not validate against our published schema";
      for (
        const body of [
          "<Tagging></Tagging>",
          "<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
          "<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
          "<Tagging><TagSet><Tag><Key>k</Key><Key>j</Key><Value>v</Value></Tag></TagSet></Tagging>",
          "<Other><TagSet/></Other>",
        ]
      ) {
        assertEquals(
          await errorAnswer(`${base}/k?tagging`, { method: "PUT", body, headers: md5Header(body) }),
          error(400, "MalformedXML", message, "", `/${Bucket}/k`),
          body,
        );
      }
    });

    await t.step(
      "PutObjectTagging without a Content-MD5 or checksum is 400 InvalidRequest",
      async () => {
        assertEquals(
          await errorAnswer(`${base}/k?tagging`, { method: "PUT", body: taggingXml([["a", "b"]]) }),
          error(
            400,
            "InvalidRequest",
            "Missing required header for this request: Content-MD5",
            "",
            `/${Bucket}/k`,
          ),
        );
      },
    );

    await t.step(
      "tagging calls on a missing key are NoSuchKey, in a missing bucket NoSuchBucket",
      async () => {
        const body = taggingXml([["a", "b"]]);
        const gone = error(
          404,
          "NoSuchKey",
          "The specified key does not exist.",
          "<Key>gone</Key>",
          `/${Bucket}/gone`,
        );
        assertEquals(await errorAnswer(`${base}/gone?tagging`), gone);
        assertEquals(
          await errorAnswer(`${base}/gone?tagging`, {
            method: "PUT",
            body,
            headers: md5Header(body),
          }),
          gone,
        );
        assertEquals(await errorAnswer(`${base}/gone?tagging`, { method: "DELETE" }), gone);
        const other = bucketName();
        assertEquals(
          await errorAnswer(`${c.url}/${other}/k?tagging`),
          error(
            404,
            "NoSuchBucket",
            "The specified bucket does not exist",
            `<BucketName>${other}</BucketName>`,
            `/${other}/k`,
          ),
        );
      },
    );

    await t.step("?tagging on a bucket, or with POST, is 501 NotImplemented", async () => {
      assertEquals(
        await errorAnswer(`${base}?tagging`),
        error(
          501,
          "NotImplemented",
          "?tagging on a bucket is not implemented by this gateway",
          "",
          `/${Bucket}`,
        ),
      );
      assertEquals(
        await errorAnswer(`${base}/k?tagging`, { method: "POST" }),
        error(
          501,
          "NotImplemented",
          "POST ?tagging is not implemented by this gateway",
          "",
          `/${Bucket}/k`,
        ),
      );
    });
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("x-amz-tagging on PutObject, CreateMultipartUpload and CopyObject (-s3)", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  const Bucket = bucketName();
  const base = `${c.url}/${Bucket}`;
  try {
    await s3.send(new PutObjectCommand({ Bucket, Key: "seed", Body: "seed" }));

    await t.step(
      "PutObject's x-amz-tagging (a URL query: + a space, %XX UTF-8, a name alone the empty value) is kept",
      async () => {
        const put = await putObject(`${base}/p`, "v", {
          "x-amz-tagging": "z=1&&caf%C3%A9=na+me&empty&blank=",
        });
        assertEquals(put, { status: 200, body: "" });
        assertEquals(
          (await getTags(`${base}/p`)).body,
          tagsAnswer([["blank", ""], ["café", "na me"], ["empty", ""], ["z", "1"]]),
        );
        assertEquals(await headersOf(`${base}/p`, ["x-amz-tagging-count"]), {
          "x-amz-tagging-count": "4",
        });
      },
    );

    await t.step("an overwrite without x-amz-tagging has no tags, as S3's", async () => {
      await putObject(`${base}/o`, "v1", { "x-amz-tagging": "a=1" });
      await putObject(`${base}/o`, "v2", {});
      assertEquals((await getTags(`${base}/o`)).body, tagsAnswer([]));
    });

    await t.step(
      "an x-amz-tagging that is no URL query, or names a tag twice, is 400 InvalidArgument, nothing stored",
      async () => {
        const message =
          "The header &#39;x-amz-tagging&#39; shall be encoded as UTF-8 then URLEncoded " +
          "URL query parameters without tag name duplicates.";
        for (const tagging of ["TagSet=[{Key=a,Value=b}]", "a=1&a=2", "a=%zz", "a=%FF"]) {
          const got = await errorAnswer(`${base}/bad`, {
            method: "PUT",
            body: "v",
            headers: unsignedHeaders({ "x-amz-tagging": tagging }),
          });
          assertEquals(got, error(400, "InvalidArgument", message, "", `/${Bucket}/bad`), tagging);
        }
        const tooMany = Array.from({ length: 11 }, (_, i) => `k${i}=v`).join("&");
        assertEquals(
          await errorAnswer(`${base}/bad`, {
            method: "PUT",
            body: "v",
            headers: unsignedHeaders({ "x-amz-tagging": tooMany }),
          }),
          error(400, "BadRequest", "Object tags cannot be greater than 10", "", `/${Bucket}/bad`),
        );
        assertEquals(
          await errorAnswer(`${base}/bad`, {
            method: "PUT",
            body: "v",
            headers: unsignedHeaders({ "x-amz-tagging": "a%5Bb=1" }),
          }),
          error(
            400,
            "InvalidTag",
            "The TagKey you have provided is invalid",
            "<TagKey>a[b</TagKey>",
            `/${Bucket}/bad`,
          ),
        );
        const head = await fetch(`${base}/bad`, {
          method: "HEAD",
          headers: { "amz-sdk-request": "1" },
        });
        await head.body?.cancel();
        assertEquals(head.status, 404);
      },
    );

    await t.step("CreateMultipartUpload's x-amz-tagging is the object's at Complete", async () => {
      const Key = "mpu";
      const { UploadId } = await s3.send(
        new CreateMultipartUploadCommand({ Bucket, Key, Tagging: "project=mkv&tier=hot" }),
      );
      const { ETag } = await s3.send(
        new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: "part" }),
      );
      await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket,
          Key,
          UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag }] },
        }),
      );
      assertEquals(
        (await getTags(`${base}/${Key}`)).body,
        tagsAnswer([["project", "mkv"], ["tier", "hot"]]),
      );
    });

    await t.step(
      "CopyObject copies the source's tags by default (COPY), with either metadata directive",
      async () => {
        await putObject(`${base}/src`, "v", { "x-amz-tagging": "a=1", "x-amz-meta-m": "1" });
        assertEquals(await copyObject(`${base}/copy1`, `/${Bucket}/src`), 200);
        assertEquals(
          await copyObject(`${base}/copy2`, `/${Bucket}/src`, {
            "x-amz-metadata-directive": "REPLACE",
            "x-amz-tagging": "ignored=1",
          }),
          200,
        );
        assertEquals((await getTags(`${base}/copy1`)).body, tagsAnswer([["a", "1"]]));
        assertEquals((await getTags(`${base}/copy2`)).body, tagsAnswer([["a", "1"]]));
        assertEquals(await headersOf(`${base}/copy2`, ["x-amz-meta-m"]), { "x-amz-meta-m": null });
      },
    );

    await t.step(
      "CopyObject with x-amz-tagging-directive REPLACE takes x-amz-tagging's, or none",
      async () => {
        await putObject(`${base}/src2`, "v", { "x-amz-tagging": "a=1", "x-amz-meta-m": "1" });
        const replace = { "x-amz-tagging-directive": "REPLACE" };
        assertEquals(
          await copyObject(`${base}/r1`, `/${Bucket}/src2`, { ...replace, "x-amz-tagging": "b=2" }),
          200,
        );
        assertEquals(await copyObject(`${base}/r2`, `/${Bucket}/src2`, replace), 200);
        assertEquals((await getTags(`${base}/r1`)).body, tagsAnswer([["b", "2"]]));
        assertEquals((await getTags(`${base}/r2`)).body, tagsAnswer([]));
        // The metadata is still COPY's.
        assertEquals(await headersOf(`${base}/r2`, ["x-amz-meta-m"]), { "x-amz-meta-m": "1" });
      },
    );

    await t.step("a copy onto itself with new metadata keeps its tags (tagging COPY)", async () => {
      await putObject(`${base}/self`, "v", { "x-amz-tagging": "a=1" });
      assertEquals(
        await copyObject(`${base}/self`, `/${Bucket}/self`, {
          "x-amz-metadata-directive": "REPLACE",
          "x-amz-meta-new": "1",
        }),
        200,
      );
      assertEquals((await getTags(`${base}/self`)).body, tagsAnswer([["a", "1"]]));
    });

    await t.step(
      "an x-amz-tagging-directive S3 does not have is 400 InvalidArgument naming it, nothing copied",
      async () => {
        const got = await errorAnswer(`${base}/d`, {
          method: "PUT",
          headers: unsignedHeaders({
            "x-amz-copy-source": `/${Bucket}/seed`,
            "x-amz-tagging-directive": "MERGE",
          }),
        });
        assertEquals(
          got,
          error(
            400,
            "InvalidArgument",
            "Unknown tagging directive.",
            "<ArgumentName>x-amz-tagging-directive</ArgumentName><ArgumentValue>MERGE</ArgumentValue>",
            `/${Bucket}/d`,
          ),
        );
        const head = await fetch(`${base}/d`, {
          method: "HEAD",
          headers: { "amz-sdk-request": "1" },
        });
        await head.body?.cancel();
        assertEquals(head.status, 404);
      },
    );
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("boto3's tagging calls: Tagging on uploads and copies, get/put/delete_object_tagging, errors", async () => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", "tag-key", "-s3-secret-key", "tag-secret"],
  });
  try {
    await assertPythonChecks(
      "boto3_tagging_check.py",
      [c.url, "tag-key", "tag-secret", bucketName()],
      [
        "ok put_object's Tagging is kept, in key order; head_object and get_object count it",
        "ok put_object_tagging replaces the tags (200, no version named)",
        "ok delete_object_tagging removes them (204); the object has no TagCount then",
        "ok copy_object copies the source's tags, or TaggingDirective REPLACE's",
        "ok a multipart upload_fileobj's Tagging is the object's once completed",
        "ok 11 tags is BadRequest",
        "ok a key with a character S3 refuses is InvalidTag",
        "ok a key given twice is InvalidTag",
        "ok put_object's Tagging naming a tag twice is InvalidArgument",
        "ok get_object_tagging of a missing key is NoSuchKey",
        "ok signed with Signature Version 2 (?tagging in its resource)",
        "ok a wrong secret is SignatureDoesNotMatch, the tags as they were",
      ],
    );
  } finally {
    await c.stop();
  }
});

Deno.test("rebuild recreates a key without its S3 metadata and tags, which only the index held", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const path = `/${bucketName()}/k`;
    await putObject(c.url + path, "value", {
      "content-type": "text/plain",
      "x-amz-meta-m": "1",
      "x-amz-tagging": "a=1",
    });
    await c.stopMaster();
    const r = await runMain(["rebuild", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 0, r.stderr);
    await c.startMaster();
    const url = c.url + path;
    assertEquals(
      await headersOf(url, [
        "content-type",
        "x-amz-meta-m",
        "x-amz-tagging-count",
        "content-length",
      ]),
      {
        "content-type": "binary/octet-stream",
        "x-amz-meta-m": null,
        "x-amz-tagging-count": null,
        "content-length": "5",
      },
    );
    assertEquals((await getTags(url)).body, tagsAnswer([]));
  } finally {
    await c.stop();
  }
});

Deno.test("a REPLACE's record, both values' metadata and tags at S3's limits, fits Deno KV", async () => {
  // Content-Type and the standard headers up to 8 KiB with x-amz-meta-*'s
  // 2 KB (metaFrom), 500 runs of part sizes, 10 tags of 128 + 256 UTF-16
  // units each of two bytes ("ж"): what a record holds at most, twice over.
  const one: KeyRecord = {
    state: "live",
    rvolumes: ["volume-1.example:3001/sv0A", "volume-2.example:3002/sv0B"],
    hash: "0123456789abcdef0123456789abcdef",
    size: 5e12,
    mtime: Date.now(),
    meta: {
      type: "t".repeat(4096),
      etag: "0123456789abcdef0123456789abcdef-10000",
      parts: Array.from({ length: 500 }, (_, i): [number, number] => [5_000_000_000 - i, 20]),
      amz: [["m", "v".repeat(2047)]],
      std: [["cache-control", "c".repeat(2048)]],
      checksum: { alg: "sha256", value: `${"x".repeat(44)}-10000` },
      tags: Array.from({ length: 10 }, (_, i): [string, string] => [
        "ж".repeat(127) + i,
        "ж".repeat(256),
      ]),
    },
  };
  const rec: KeyRecord = {
    ...one,
    owner: "host.example:12345:abcdef01",
    until: Date.now(),
    next: { rec: one, tmp: "/ab/cd/replace.0b8e0e1c-43a1-4a2e-9a58-a1bf1b8de8d3" },
  };
  await withIndex(async (index) => {
    // The longest key the index takes: 2,043 bytes.
    const key = new Uint8Array(2043).fill(0x61);
    await index.set(key, rec);
    assertEquals((await index.get(key))?.rec, rec);
  });
});
