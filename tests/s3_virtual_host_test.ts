// Virtual-hosted-style S3 requests under -s3-domain: a Host "<bucket>.<domain>"
// names the bucket, the whole path is the key. Raw requests (Host set as
// sent), the AWS SDK for JavaScript and boto3, against a real master and
// nginx volumes. "<bucket>.s3.test" resolves nowhere: the clients send to
// 127.0.0.1 with the Host they signed, as a wildcard DNS record would.
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Cluster, randomKey, rawRequest, runMain } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { assertPythonChecks, SigV4 } from "./s3_client.ts";
import { errorXml } from "./s3_answers.ts";
import { EMPTY_SHA256 } from "../lib/s3_auth.ts";

const DOMAIN = "s3.test";

/** A middleware of the SDK's (its types are @smithy/types', not imported here). */
type Middleware = Parameters<S3Client["middlewareStack"]["addRelativeTo"]>[0];
type Send = (args: { request: unknown }) => Promise<unknown>;

/** What a middleware before signing sees of the request the SDK sends. */
interface HttpRequest {
  hostname: string;
  port?: number;
  path: string;
  headers: { [name: string]: string };
}

/** A fresh bucket name (DNS-compatible, as virtual-hosted buckets must be). */
function bucketName(): string {
  return `vh-${crypto.randomUUID().slice(0, 8)}`;
}

/** The value of a plain key through mkv's own API (its redirect followed). */
async function plainGet(c: Cluster, key: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`${c.url}${key}`);
  return { status: res.status, body: await res.text() };
}

/** The bucket names of a ListBuckets answer. */
function bucketNames(xml: string): string[] {
  return [...xml.matchAll(/<Name>([^<]*)<\/Name>/g)].map((m) => m[1]);
}

Deno.test("-s3-domain: a request to <bucket>.<domain> takes its bucket from the Host and the whole path as its key", async () => {
  const c = await Cluster.start({ flags: ["-s3", "-s3-domain", DOMAIN] });
  try {
    const bucket = bucketName();
    const host = `${bucket}.${DOMAIN}:${c.masterPort}`;
    const put = await rawRequest(c.masterPort, "PUT", "/photo.jpg", "hello", { host });
    assertEquals(put.status, 200);
    assertEquals(put.headers.get("etag"), '"5d41402abc4b2a76b9719d911017c592"');
    // The plain key of the bucket's object, as mkv's API reads it.
    assertEquals(await plainGet(c, `/${bucket}/photo.jpg`), { status: 200, body: "hello" });
    assertEquals((await plainGet(c, "/photo.jpg")).status, 404);
    // No bucket "photo.jpg" (path-style's reading of "PUT /photo.jpg").
    const buckets = await rawRequest(c.masterPort, "GET", "/?x-id=ListBuckets");
    assertEquals(buckets.status, 200);
    assertEquals(bucketNames(buckets.body).filter((b) => b === "photo.jpg"), []);
    assert(bucketNames(buckets.body).includes(bucket), buckets.body);
  } finally {
    await c.stop();
  }
});

Deno.test("-s3-domain: an unsigned GetObject through a bucket's Host reads the bucket's key (not a miss of the path's)", async () => {
  const c = await Cluster.start({ flags: ["-s3", "-s3-domain", DOMAIN] });
  try {
    const bucket = bucketName();
    const host = `${bucket}.${DOMAIN}:${c.masterPort}`;
    // Written path-style through mkv's API: the key "/photo.jpg" was never seen.
    const res = await fetch(`${c.url}/${bucket}/photo.jpg`, { method: "PUT", body: "hello" });
    assertEquals(res.status, 201);
    const got = await rawRequest(c.masterPort, "GET", "/photo.jpg", "", { host });
    assertEquals({ status: got.status, body: got.body }, { status: 200, body: "hello" });
    const missing = await rawRequest(c.masterPort, "GET", "/other.jpg", "", { host });
    assertEquals(missing.status, 404);
    assert(missing.body.includes("<Code>NoSuchKey</Code>"), missing.body);
    assert(missing.body.includes("<Key>other.jpg</Key>"), missing.body);
  } finally {
    await c.stop();
  }
});

Deno.test("-s3-domain: the bucket's Host with path / lists the bucket; its case and a final dot do not matter", async () => {
  const c = await Cluster.start({ flags: ["-s3", "-s3-domain", DOMAIN] });
  try {
    const bucket = bucketName();
    const put = await rawRequest(c.masterPort, "PUT", "/a.txt", "x", {
      host: `${bucket.toUpperCase()}.S3.Test.:${c.masterPort}`,
    });
    assertEquals(put.status, 200);
    const list = await rawRequest(c.masterPort, "GET", "/?list-type=2", "", {
      host: `${bucket}.${DOMAIN}`,
    });
    assertEquals(list.status, 200);
    assert(list.body.includes(`<Name>${bucket}</Name>`), list.body);
    assertEquals([...list.body.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]), ["a.txt"]);
  } finally {
    await c.stop();
  }
});

Deno.test("-s3-domain: a Host that is the domain itself, or not under it, stays path-style", async () => {
  const c = await Cluster.start({ flags: ["-s3", "-s3-domain", DOMAIN] });
  try {
    for (const host of [`${DOMAIN}:${c.masterPort}`, "127.0.0.1", `other-${DOMAIN}`]) {
      const key = randomKey();
      const put = await rawRequest(c.masterPort, "PUT", `${key}?x-id=PutObject`, "v", { host });
      assertEquals(put.status, 200, host);
      assertEquals(await plainGet(c, key), { status: 200, body: "v" }, host);
    }
  } finally {
    await c.stop();
  }
});

Deno.test("without -s3-domain a bucket's Host is ignored: path-style, as before", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const key = randomKey();
    const host = `media.${DOMAIN}:${c.masterPort}`;
    const put = await rawRequest(c.masterPort, "PUT", `${key}?x-id=PutObject`, "v", { host });
    assertEquals(put.status, 200);
    assertEquals(await plainGet(c, key), { status: 200, body: "v" });
  } finally {
    await c.stop();
  }
});

/**
 * The headers of a PUT with an empty body at `path`, signed with `keys` over
 * its x-amz-* headers and, unless `host` is null, over that Host.
 */
function signedPut(
  keys: { accessKey: string; secretKey: string },
  path: string,
  host: string | null,
): { [name: string]: string } {
  const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, "");
  const headers = new Headers({ "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": now });
  if (host !== null) headers.set("host", host);
  const { authorization } = new SigV4(keys, now).sign({ method: "PUT", path, query: "", headers });
  headers.delete("host");
  return { ...Object.fromEntries(headers), authorization };
}

Deno.test("-s3-domain with keys: a Signature Version 4 that leaves Host out is 403 AccessDenied naming it, so it cannot be replayed on another bucket's Host", async () => {
  const keys = { accessKey: "vh-key", secretKey: "vh-secret" };
  const c = await Cluster.start({
    flags: [
      "-s3-access-key",
      keys.accessKey,
      "-s3-secret-key",
      keys.secretKey,
      "-s3-domain",
      DOMAIN,
    ],
  });
  try {
    const [signedFor, other] = [bucketName(), bucketName()];
    for (const bucket of [signedFor, other]) {
      const host = `127.0.0.1:${c.masterPort}`;
      const made = await rawRequest(c.masterPort, "PUT", `/${bucket}`, "", {
        host,
        headers: signedPut(keys, `/${bucket}`, host),
      });
      assertEquals(made.status, 200, made.body);
    }
    // Signed for the path alone: the Host, which names the bucket, left out.
    const headers = signedPut(keys, "/obj", null);
    for (const bucket of [signedFor, other]) {
      const host = `${bucket}.${DOMAIN}:${c.masterPort}`;
      const put = await rawRequest(c.masterPort, "PUT", "/obj", "", { host, headers });
      const id = put.headers.get("x-amz-request-id");
      assertEquals({ status: put.status, body: put.body.replace(`${id}`, "ID") }, {
        status: 403,
        body: errorXml(
          "AccessDenied",
          "There were headers present in the request which were not signed",
          "<HeadersNotSigned>host</HeadersNotSigned>",
          "/obj",
        ),
      });
      assertEquals((await plainGet(c, `/${bucket}/obj`)).status, 404);
    }
  } finally {
    await c.stop();
  }
});

Deno.test("-s3-domain: the AWS SDK in virtual-hosted style (forcePathStyle false), signed: put, get, list, copy, delete", async () => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", "vh-key", "-s3-secret-key", "vh-secret", "-s3-domain", DOMAIN],
  });
  try {
    const Bucket = bucketName();
    const sent: string[] = [];
    const s3 = new S3Client({
      endpoint: `http://${DOMAIN}:${c.masterPort}`,
      region: "us-east-1",
      forcePathStyle: false,
      credentials: { accessKeyId: "vh-key", secretAccessKey: "vh-secret" },
      maxAttempts: 1,
    });
    // Signed for the bucket's Host, sent to 127.0.0.1.
    const toLoopback = (next: Send) => (args: { request: unknown }) => {
      const r = args.request as HttpRequest;
      r.headers.host = `${r.hostname}:${r.port}`;
      sent.push(`${r.headers.host}${r.path}`);
      r.hostname = "127.0.0.1";
      return next(args);
    };
    s3.middlewareStack.addRelativeTo(toLoopback as unknown as Middleware, {
      relation: "before",
      toMiddleware: "httpSigningMiddleware",
      name: "toLoopback",
    });
    const Key = "dir one/photo+1.jpg";
    const put = await s3.send(new PutObjectCommand({ Bucket, Key, Body: "hello" }));
    assertEquals(put.ETag, '"5d41402abc4b2a76b9719d911017c592"');
    const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
    assertEquals(await got.Body!.transformToString(), "hello");
    await s3.send(
      new CopyObjectCommand({ Bucket, Key: "copy.jpg", CopySource: `${Bucket}/${Key}` }),
    );
    const listed = await s3.send(new ListObjectsV2Command({ Bucket }));
    assertEquals(listed.Contents?.map((o) => o.Key), ["copy.jpg", Key]);
    await s3.send(new DeleteObjectCommand({ Bucket, Key: "copy.jpg" }));
    assertEquals(await plainGet(c, `/${Bucket}/dir one/photo+1.jpg`), {
      status: 200,
      body: "hello",
    });
    assertEquals((await plainGet(c, `/${Bucket}/copy.jpg`)).status, 404);
    // Each went to the bucket's host, the key alone in its path.
    const host = `${Bucket}.${DOMAIN}:${c.masterPort}`;
    assertEquals(sent.length, 5);
    for (const s of sent) {
      assert(s.startsWith(`${host}/`) && !s.startsWith(`${host}/${Bucket}`), s);
    }
  } finally {
    await c.stop();
  }
});

Deno.test("-s3-domain: boto3 in virtual-hosted style, Signature Version 4 and 2, presigned URLs too", async () => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", "vh-key", "-s3-secret-key", "vh-secret", "-s3-domain", DOMAIN],
  });
  try {
    const args = [String(c.masterPort), "vh-key", "vh-secret", bucketName()];
    await assertPythonChecks("boto3_virtual_check.py", args, [
      "ok put, get, list, copy, delete (Signature Version 4)",
      "ok presigned GET (Signature Version 4)",
      "ok put, get, list, copy, delete (Signature Version 2)",
      "ok presigned GET (Signature Version 2)",
      "ok virtual-hosted requests",
    ]);
  } finally {
    await c.stop();
  }
});

Deno.test("-s3-domain is refused without the gateway on, and when it is no host name", async () => {
  const base = ["server", "-db", "/tmp/unused", "-volumes", "a:1", "-replicas", "1"];
  const off = await runMain([...base, "-s3-domain", DOMAIN]);
  assertEquals(off.code, 2);
  assert(off.stderr.startsWith("-s3-domain is the S3 gateway's: turn the gateway on"), off.stderr);
  for (const bad of ["http://s3.test", "s3.test:3000", "s3..test"]) {
    const r = await runMain([...base, "-s3", "-s3-domain", bad]);
    assertEquals(r.code, 2, bad);
    assert(r.stderr.startsWith(`Bad -s3-domain "${bad}": expected a host name`), r.stderr);
  }
});
