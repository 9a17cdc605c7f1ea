// ListObjectVersions (`aws s3api list-object-versions`, and tools that
// empty a bucket version by version) on buckets that were never versioned:
// as S3 answers for one, every object is its one version, "null", the latest.
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Cluster } from "./cluster.ts";
import { s3Client } from "./s3_client.ts";
import { assertEquals } from "./assert.ts";

async function putAll(s3: S3Client, bucket: string, keys: string[]) {
  for (const Key of keys) {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }));
  }
}

/** The error code and status a call failed with. */
async function failure(call: Promise<unknown>): Promise<[string, number]> {
  try {
    await call;
  } catch (err) {
    if (err instanceof S3ServiceException) return [err.name, err.$metadata.httpStatusCode ?? 0];
    throw err;
  }
  throw new Error("The call succeeded");
}

Deno.test("ListObjectVersions on an unversioned bucket", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  try {
    await t.step("lists every object as its one version, null and latest", async () => {
      const Bucket = `v-${crypto.randomUUID().slice(0, 8)}`;
      await putAll(s3, Bucket, ["a", "d/x", "d/y", "e f"]);
      const out = await s3.send(new ListObjectVersionsCommand({ Bucket, Delimiter: "/" }));
      assertEquals(
        out.Versions?.map((v) => [v.Key, v.VersionId, v.IsLatest, v.ETag, v.Size, v.StorageClass]),
        [
          ["a", "null", true, '"0cc175b9c0f1b6a831c399e269772661"', 1, "STANDARD"],
          ["e f", "null", true, '"4f74e0553d9631b69b381f5e26175a7e"', 3, "STANDARD"],
        ],
      );
      assertEquals(out.CommonPrefixes, [{ Prefix: "d/" }]);
      assertEquals(out.DeleteMarkers, undefined);
      assertEquals([out.Name, out.MaxKeys, out.IsTruncated], [Bucket, 1000, false]);
    });

    await t.step("pages by key-marker and version-id-marker", async () => {
      const Bucket = `v-${crypto.randomUUID().slice(0, 8)}`;
      await putAll(s3, Bucket, ["k1", "k2", "k3"]);
      const first = await s3.send(new ListObjectVersionsCommand({ Bucket, MaxKeys: 2 }));
      assertEquals(first.Versions?.map((v) => v.Key), ["k1", "k2"]);
      assertEquals(
        [first.IsTruncated, first.NextKeyMarker, first.NextVersionIdMarker],
        [true, "k2", "null"],
      );
      const second = await s3.send(
        new ListObjectVersionsCommand({
          Bucket,
          MaxKeys: 2,
          KeyMarker: first.NextKeyMarker,
          VersionIdMarker: first.NextVersionIdMarker,
        }),
      );
      assertEquals(second.Versions?.map((v) => v.Key), ["k3"]);
      assertEquals([second.KeyMarker, second.VersionIdMarker], ["k2", "null"]);
      assertEquals([second.IsTruncated, second.NextKeyMarker], [false, undefined]);
    });

    await t.step("a version-id-marker other than null is 400 InvalidArgument", async () => {
      const Bucket = `v-${crypto.randomUUID().slice(0, 8)}`;
      await putAll(s3, Bucket, ["k"]);
      const call = s3.send(
        new ListObjectVersionsCommand({ Bucket, KeyMarker: "k", VersionIdMarker: "v1" }),
      );
      assertEquals(await failure(call), ["InvalidArgument", 400]);
    });

    await t.step("a version-id-marker without a key-marker is 400 InvalidArgument", async () => {
      const Bucket = `v-${crypto.randomUUID().slice(0, 8)}`;
      await putAll(s3, Bucket, ["k"]);
      const call = s3.send(new ListObjectVersionsCommand({ Bucket, VersionIdMarker: "null" }));
      assertEquals(await failure(call), ["InvalidArgument", 400]);
    });

    await t.step("DeleteObjects names the version null a key was deleted by", async () => {
      const Bucket = `v-${crypto.randomUUID().slice(0, 8)}`;
      await putAll(s3, Bucket, ["k1", "k2"]);
      const out = await s3.send(
        new DeleteObjectsCommand({
          Bucket,
          Delete: { Objects: [{ Key: "k1", VersionId: "null" }, { Key: "k2" }] },
        }),
      );
      assertEquals(out.Deleted, [{ Key: "k1", VersionId: "null" }, { Key: "k2" }]);
    });

    await t.step("DeleteObject of version null answers x-amz-version-id null", async () => {
      const Bucket = `v-${crypto.randomUUID().slice(0, 8)}`;
      await putAll(s3, Bucket, ["k"]);
      const out = await s3.send(new DeleteObjectCommand({ Bucket, Key: "k", VersionId: "null" }));
      assertEquals([out.$metadata.httpStatusCode, out.VersionId], [204, "null"]);
    });

    await t.step("a bucket that does not exist is 404 NoSuchBucket", async () => {
      const Bucket = `v-${crypto.randomUUID().slice(0, 8)}`;
      const call = s3.send(new ListObjectVersionsCommand({ Bucket }));
      assertEquals(await failure(call), ["NoSuchBucket", 404]);
    });
  } finally {
    s3.destroy();
    await c.stop();
  }
});
