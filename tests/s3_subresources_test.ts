// Unsigned requests naming one of S3's sub-resources (?retention,
// ?legal-hold, ?website, ...) or parameters (?versionId, ?response-*) are
// S3's, answered in S3's XML, never taken for mkv's own API of the same
// path. A real master and nginx volumes; raw requests, the exact answer
// compared.
import { RenameObjectCommand } from "@aws-sdk/client-s3";
import { Cluster } from "./cluster.ts";
import { s3Client } from "./s3_client.ts";
import { errorAnswer, errorXml, s3Fails } from "./s3_answers.ts";
import { assertEquals } from "./assert.ts";

function bucketName(): string {
  return `sub-${crypto.randomUUID().slice(0, 8)}`;
}

/** mkv's plain PUT of `value` at `path`: 201. */
async function mkvPut(c: Cluster, path: string, value: string) {
  const res = await fetch(`${c.url}${path}`, { method: "PUT", body: value });
  await res.body?.cancel();
  assertEquals(res.status, 201);
}

/** mkv's plain GET of `path`, its redirect followed: status and value. */
async function mkvGet(c: Cluster, path: string): Promise<[number, string]> {
  const res = await fetch(`${c.url}${path}`);
  return [res.status, await res.text()];
}

/** S3's sub-resources on an object (the rest are a bucket's). */
const OBJECT_SUBRESOURCES = [
  "retention",
  "legal-hold",
  "torrent",
  "restore",
  "select",
];

/** S3's sub-resources on a bucket that the gateway has no part of. */
const BUCKET_SUBRESOURCES = [
  "object-lock",
  "website",
  "encryption",
  "lifecycle",
  "replication",
  "policy",
  "policyStatus",
  "cors",
  "logging",
  "notification",
  "requestPayment",
  "analytics",
  "inventory",
  "metrics",
  "intelligent-tiering",
  "accelerate",
  "publicAccessBlock",
  "abac",
  "metadataConfiguration",
  "metadataTable",
  "metadataInventoryTable",
  "metadataJournalTable",
  "session",
];

Deno.test("unsigned requests with S3's sub-resources, no keys set (-s3)", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    await t.step(
      "an unsigned GET ?retention of an object is S3's 501 NotImplemented, not mkv's API",
      async () => {
        const path = `/${bucketName()}/k`;
        await mkvPut(c, path, "kept");
        assertEquals(await errorAnswer(`${c.url}${path}?retention`), {
          status: 501,
          type: "application/xml",
          body: errorXml(
            "NotImplemented",
            "?retention is not implemented by this gateway",
            "",
            path,
          ),
        });
      },
    );

    await t.step(
      "an unsigned PUT ?retention or ?legal-hold is S3's 501 NotImplemented, the key's value untouched",
      async () => {
        for (const name of ["retention", "legal-hold"]) {
          const path = `/${bucketName()}/k`;
          await mkvPut(c, path, "kept");
          assertEquals(
            await errorAnswer(`${c.url}${path}?${name}`, { method: "PUT", body: "<Retention/>" }),
            {
              status: 501,
              type: "application/xml",
              body: errorXml(
                "NotImplemented",
                `?${name} is not implemented by this gateway`,
                "",
                path,
              ),
            },
          );
          assertEquals(await mkvGet(c, path), [200, "kept"]);
        }
      },
    );

    await t.step(
      "an unsigned PUT ?retention of a missing key stores nothing",
      async () => {
        const path = `/${bucketName()}/k`;
        const got = await errorAnswer(`${c.url}${path}?retention`, { method: "PUT", body: "v" });
        assertEquals(got.status, 501);
        assertEquals(await mkvGet(c, path), [404, ""]);
      },
    );

    await t.step(
      "every S3 sub-resource the gateway has no part of is S3's 501 unsigned, on an object or a bucket",
      async () => {
        const bucket = bucketName();
        await mkvPut(c, `/${bucket}/k`, "kept");
        const paths = [
          ...OBJECT_SUBRESOURCES.map((name) => [`/${bucket}/k`, name]),
          ...BUCKET_SUBRESOURCES.map((name) => [`/${bucket}`, name]),
        ];
        const answers = [];
        for (const [path, name] of paths) {
          const got = await errorAnswer(`${c.url}${path}?${name}`);
          answers.push([name, got.status, /<Code>([^<]*)<\/Code>/.exec(got.body)?.[1]]);
        }
        assertEquals(answers, paths.map(([, name]) => [name, 501, "NotImplemented"]));
        assertEquals(await mkvGet(c, `/${bucket}/k`), [200, "kept"]);
      },
    );

    await t.step(
      "a RenameObject (PUT ?renameObject, S3 Express's) is 501 NotImplemented, not a PutObject of nothing over the key",
      async () => {
        const Bucket = bucketName();
        await mkvPut(c, `/${Bucket}/k`, "kept");
        await mkvPut(c, `/${Bucket}/src`, "source");
        const s3 = s3Client(c.url);
        try {
          const rename = new RenameObjectCommand({ Bucket, Key: "k", RenameSource: "src" });
          assertEquals(await s3Fails(s3.send(rename)), { name: "NotImplemented", status: 501 });
        } finally {
          s3.destroy();
        }
        assertEquals(await mkvGet(c, `/${Bucket}/k`), [200, "kept"]);
        assertEquals(await mkvGet(c, `/${Bucket}/src`), [200, "source"]);
      },
    );

    await t.step(
      "a bucket's ?metrics is S3's 501, while /?metrics stays the master's metrics page",
      async () => {
        const bucket = bucketName();
        assertEquals(await errorAnswer(`${c.url}/${bucket}?metrics&id=all`), {
          status: 501,
          type: "application/xml",
          body: errorXml(
            "NotImplemented",
            "?metrics is not implemented by this gateway",
            "",
            `/${bucket}`,
          ),
        });
        const res = await fetch(`${c.url}/?metrics`);
        await res.body?.cancel();
        assertEquals(
          [res.status, res.headers.get("content-type")],
          [200, "text/plain; version=0.0.4; charset=utf-8"],
        );
      },
    );

    await t.step(
      "an unsigned GET with versionId=null or response-content-type is S3's GetObject",
      async () => {
        const path = `/${bucketName()}/k`;
        await mkvPut(c, path, "value");
        const res = await fetch(`${c.url}${path}?versionId=null&response-content-type=text/x-mkv`);
        assertEquals(
          [res.status, res.headers.get("content-type"), await res.text()],
          [200, "text/x-mkv", "value"],
        );
      },
    );
  } finally {
    await c.stop();
  }
});

Deno.test("unsigned requests with S3's sub-resources, keys set", async (t) => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", "sub-access", "-s3-secret-key", "sub-secret"],
  });
  try {
    await t.step(
      "an unsigned GET or PUT ?retention is S3's 403 AccessDenied, the key's value untouched",
      async () => {
        const path = `/${bucketName()}/k`;
        await mkvPut(c, path, "kept");
        for (const method of ["GET", "PUT"]) {
          const body = method === "PUT" ? "<Retention/>" : undefined;
          assertEquals(await errorAnswer(`${c.url}${path}?retention`, { method, body }), {
            status: 403,
            type: "application/xml",
            body: errorXml("AccessDenied", "Anonymous requests are not allowed", "", path),
          });
        }
        assertEquals(await mkvGet(c, path), [200, "kept"]);
      },
    );
  } finally {
    await c.stop();
  }
});
