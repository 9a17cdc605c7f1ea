// A multipart upload created in a bucket while DeleteBucket runs: after its
// list of the bucket's uploads, before it removes the bucket's record. The
// upload survived the bucket (listed, its parts kept); it goes with it now,
// as every upload made before the bucket was gone. The master's bucket
// commit is held (tests/commit_log.ts) while the upload is made.
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  ListMultipartUploadsCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Cluster, commitSent, volumeFiles } from "./cluster.ts";
import { s3Client } from "./s3_client.ts";
import { s3Fails } from "./s3_answers.ts";
import { assertEquals } from "./assert.ts";

Deno.test("an upload created while DeleteBucket runs goes with the bucket, its parts too", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const log = `${c.dir}/commits.log`;
  const hold = `${c.dir}/hold`;
  const m = await c.spawnMaster([], {}, { commitLog: log, commitHold: hold });
  const s3 = s3Client(m.url);
  try {
    const Bucket = `race-${crypto.randomUUID().slice(0, 8)}`;
    await s3.send(new CreateBucketCommand({ Bucket }));
    await Deno.writeTextFile(hold, `bucket ${Bucket}\n`);
    const deleted = s3.send(new DeleteBucketCommand({ Bucket }));
    // DeleteBucket has read the bucket's keys and uploads; its removal of
    // the bucket's record waits.
    await commitSent(log, `bucket ${Bucket}`);
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: "late" }));
    await s3.send(
      new UploadPartCommand({ Bucket, Key: "late", UploadId, PartNumber: 1, Body: "part" }),
    );
    const parts = async () =>
      (await Promise.all(c.volumes.map((v) => volumeFiles(v))))
        .flat().filter((f) => f.includes(`mpu.${UploadId}.`));
    assertEquals((await parts()).length, 3);
    await Deno.remove(hold);
    assertEquals((await deleted).$metadata.httpStatusCode, 204);
    assertEquals(
      await s3Fails(s3.send(new ListMultipartUploadsCommand({ Bucket }))),
      { name: "NoSuchBucket", status: 404 },
    );
    assertEquals(await parts(), []);
    const again = new UploadPartCommand({
      Bucket,
      Key: "late",
      UploadId,
      PartNumber: 2,
      Body: "again",
    });
    assertEquals(await s3Fails(s3.send(again)), { name: "NoSuchUpload", status: 404 });
  } finally {
    s3.destroy();
    await m.stop();
    await c.stop();
  }
});
