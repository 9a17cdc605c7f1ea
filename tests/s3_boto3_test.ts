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

Deno.test("boto3: presigned URLs whose query carries x-amz-* headers (metadata, tags) keep them", async () => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", "boto-key", "-s3-secret-key", "boto-secret"],
  });
  try {
    const bucket = `presign-${crypto.randomUUID().slice(0, 8)}`;
    await assertPythonChecks("boto3_presign_check.py", [c.url, "boto-key", "boto-secret", bucket], [
      "ok boto3's default (Version 2) presigned put_object moves its x-amz-* headers to the query",
      "ok a Version 2 presigned put_object keeps its Metadata and Tagging from the query",
      "ok a Version 2 presigned put_object sent with another Content-Type than it signs is SignatureDoesNotMatch",
      "ok an x-amz-meta-* added to a Version 2 presigned URL after signing is SignatureDoesNotMatch",
      "ok boto3's Version 4 presigned put_object signs its headers (Content-Type too) for the uploader to send",
      "ok a Version 4 presigned put_object sent with the headers it signs keeps them",
      "ok a Version 4 presigned put_object sent with another Content-Type than it signs is SignatureDoesNotMatch",
      "ok a Version 4 presigned PutObject keeps the x-amz-meta-* and x-amz-tagging of its query",
      "ok an x-amz-meta-* added to a Version 4 presigned URL after signing is SignatureDoesNotMatch",
      "ok a query x-amz-meta-* changed after signing is SignatureDoesNotMatch",
      "ok a signed header the request sends itself wins over the query's",
    ]);
  } finally {
    await c.stop();
  }
});

Deno.test("boto3: metadata beyond ASCII is signed as the bytes sent, kept, and answered RFC 2047-encoded, Version 2 and 4", async () => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", "boto-key", "-s3-secret-key", "boto-secret"],
  });
  try {
    const bucket = `utf8-${crypto.randomUUID().slice(0, 8)}`;
    await assertPythonChecks("boto3_utf8_check.py", [c.url, "boto-key", "boto-secret", bucket], [
      "ok a Version 2 put_object with UTF-8 metadata is kept and answered RFC 2047-encoded",
      "ok the metadata answered decodes to the value sent",
      "ok a Version 2 presigned put_object with UTF-8 metadata in its query is kept so too",
      "ok a Version 4 put_object with UTF-8 metadata is kept so too",
      "ok a Version 4 presigned put_object sent with the UTF-8 header it signs is kept so too",
    ]);
  } finally {
    await c.stop();
  }
});
