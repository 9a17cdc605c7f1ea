// CompleteMultipartUpload against part copies gone bad on a volume (cut
// short, as a volume that crashes without fsync leaves a file, or rotted),
// and a Complete retried after its first try made the value live but died
// before ending the upload. `deno task test:faults`.
import { createHash } from "node:crypto";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Cluster, randomBytes, volumeFiles } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { openIndex } from "../../lib/open.ts";
import { where } from "./replace_faults.ts";

function client(c: Cluster): S3Client {
  return new S3Client({
    endpoint: c.url,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "x", secretAccessKey: "y" },
    maxAttempts: 1,
  });
}

function md5Hex(b: Uint8Array): string {
  return createHash("md5").update(b).digest("hex");
}

async function upload(s3: S3Client, Bucket: string, Key: string, parts: Uint8Array[]) {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
  const Parts = [];
  for (const [i, Body] of parts.entries()) {
    const PartNumber = i + 1;
    const { ETag } = await s3.send(
      new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body }),
    );
    Parts.push({ PartNumber, ETag });
  }
  return { UploadId: UploadId!, Parts };
}

/** The file of part `n` of `id` on the volume "host:port/svNN". */
async function partFile(c: Cluster, replica: string, id: string, n: number): Promise<string> {
  const [host, sv] = replica.split("/");
  const files = await volumeFiles(host, `/${sv}/`);
  const name = files.find((f) => f.includes(`/mpu.${id}.${n}.`))!;
  return `${c.volumeDir(c.volumes.indexOf(host))}${name}`;
}

Deno.test("Complete reads each part from a copy that holds it whole and unchanged", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = client(c);
  try {
    const Bucket = "parts-gone-bad";
    const Key = "object";
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(300_000)];
    const { UploadId, Parts } = await upload(s3, Bucket, Key, parts);
    // The copies read first: part 1's cut short, one byte of part 2's changed.
    const first = where(c.volumes, `/${Bucket}/${Key}`)[0];
    await Deno.truncate(await partFile(c, first, UploadId, 1), 1000);
    const rotted = await partFile(c, first, UploadId, 2);
    const bytes = await Deno.readFile(rotted);
    bytes[100] ^= 1;
    await Deno.writeFile(rotted, bytes);
    const done = await s3.send(
      new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }),
    );
    const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
    assertEquals(got.ETag, done.ETag);
    const value = await got.Body!.transformToByteArray();
    assertEquals(value.length, parts[0].length + parts[1].length);
    assertEquals(md5Hex(value), md5Hex(new Uint8Array([...parts[0], ...parts[1]])));
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("a retried Complete ends the upload its first try made live but did not end", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = client(c);
  try {
    const Bucket = "completed-not-ended";
    const Key = "object";
    await s3.send(new CreateBucketCommand({ Bucket }));
    const { UploadId, Parts } = await upload(s3, Bucket, Key, [randomBytes(1000)]);
    // As a master killed between recording the upload completed and ending it leaves it.
    const index = await openIndex(c.db);
    const etag = `"${"0".repeat(32)}-1"`;
    await index.completed(UploadId, { key: new TextEncoder().encode(`/${Bucket}/${Key}`), etag });
    index.close();
    const done = await s3.send(
      new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }),
    );
    assertEquals(done.ETag, etag);
    const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket }));
    assertEquals(listed.Uploads, undefined);
    for (const v of c.volumes) {
      assertEquals((await volumeFiles(v)).filter((f) => f.includes("mpu.")), []);
    }
  } finally {
    s3.destroy();
    await c.stop();
  }
});
