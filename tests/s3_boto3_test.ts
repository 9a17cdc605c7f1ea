// The S3 gateway driven by a second real client, boto3 (Python), against a
// real master and nginx volumes: each check prints "ok <name>".
import { Cluster } from "./cluster.ts";
import { assertPythonChecks } from "./s3_client.ts";

Deno.test("boto3: objects, listings, multipart, copy, presigned URLs (v2 and v4), errors", async () => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", "boto-key", "-s3-secret-key", "boto-secret"],
  });
  try {
    const bucket = `boto-${crypto.randomUUID().slice(0, 8)}`;
    await assertPythonChecks("boto3_check.py", [c.url, "boto-key", "boto-secret", bucket], [
      "ok get",
      "ok head",
      "ok range",
      "ok list",
      "ok delimiter",
      "ok multipart",
      "ok multipart with a whole-object checksum",
      "ok checksum mode answers the whole-object CRC32",
      "ok a wrong CRC64NVME is BadDigest",
      "ok managed copy (UploadPartCopy)",
      "ok copy",
      "ok presigned (Signature Version 2, boto3's default)",
      "ok presigned (Signature Version 4)",
      "ok presigned PutObject with a signed checksum: BadDigest for other bytes",
      "ok refused 8 MiB put answers PreconditionFailed",
      "ok Signature Version 2 bucket calls",
      "ok delete objects",
      "ok no such key",
      "ok copy of a missing source names its key",
      "ok copy from a missing bucket: NoSuchBucket, named",
      "ok part copy of a missing source names its key",
      "ok part copy from a missing bucket: NoSuchBucket, named",
      "ok no such bucket names it",
      "ok wrong secret refused",
    ]);
  } finally {
    await c.stop();
  }
});
