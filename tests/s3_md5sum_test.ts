// -md5sum=false and the S3 gateway: mkv's PUT stores no MD5, but an S3
// write still computes its value's (its ETag, which S3 clients compare with
// the MD5 of what they sent), as the README's flag table says.
import { createHash } from "node:crypto";
import { HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { Cluster } from "./cluster.ts";
import { s3Client } from "./s3_client.ts";
import { assertEquals } from "./assert.ts";

function bucketName(): string {
  return `md5-${crypto.randomUUID().slice(0, 8)}`;
}

function md5Hex(s: string): string {
  return createHash("md5").update(s).digest("hex");
}

Deno.test("-md5sum=false: an S3 PutObject still stores its MD5 (its ETag); mkv's GET of the key answers it", async () => {
  const c = await Cluster.start({ flags: ["-s3", "-md5sum=false"] });
  const s3 = s3Client(c.url);
  try {
    const Bucket = bucketName();
    const put = await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "hello" }));
    assertEquals(put.ETag, `"${md5Hex("hello")}"`);
    const get = await fetch(`${c.url}/${Bucket}/k`, { redirect: "manual" });
    await get.body?.cancel();
    assertEquals(get.status, 302);
    assertEquals(get.headers.get("content-md5"), md5Hex("hello"));
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("-md5sum=false: a value put by mkv's PUT has no MD5, so HeadObject answers no ETag", async () => {
  const c = await Cluster.start({ flags: ["-s3", "-md5sum=false"] });
  const s3 = s3Client(c.url);
  try {
    const Bucket = bucketName();
    const put = await fetch(`${c.url}/${Bucket}/k`, { method: "PUT", body: "hello" });
    assertEquals(put.status, 201);
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key: "k" }));
    assertEquals([head.ContentLength, head.ETag], [5, undefined]);
  } finally {
    s3.destroy();
    await c.stop();
  }
});
