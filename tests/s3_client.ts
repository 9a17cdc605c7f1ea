// The S3 clients as the tests use them: the AWS SDK's, path-style, one
// attempt (each answer is the master's own, not a retry's), alone or with a
// fresh -s3 cluster; and the Python (boto3) checks under tests/clients.
import { CreateMultipartUploadCommand, S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { Cluster } from "./cluster.ts";
import { assertEquals } from "./assert.ts";

/** A client of the master at `endpoint`; without keys, the master (-s3) checks no signature. */
export function s3Client(
  endpoint: string,
  credentials = { accessKeyId: "x", secretAccessKey: "y" },
): S3Client {
  return new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials,
    maxAttempts: 1,
  });
}

/** Runs `test` on a fresh cluster whose master serves S3 (-s3), with its client; stops both after. */
export async function withS3Cluster(
  test: (c: Cluster, s3: S3Client) => Promise<void>,
): Promise<void> {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  try {
    await test(c, s3);
  } finally {
    s3.destroy();
    await c.stop();
  }
}

/**
 * Runs the Python client check tests/clients/`script` with `args`: asserts
 * that it exits 0 having printed exactly `lines` (its "ok <name>" lines).
 */
export async function assertPythonChecks(script: string, args: string[], lines: string[]) {
  const out = await new Deno.Command("python3", {
    args: [new URL(`./clients/${script}`, import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const printed = new TextDecoder().decode(out.stdout).trim().split("\n");
  const errors = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, printed.join("\n") + "\n" + errors);
  assertEquals(printed, lines);
}

/** A multipart upload of `Key` with `parts` as its parts 1 to n: its id and the Parts to complete it. */
export async function uploadParts(
  s3: S3Client,
  Bucket: string,
  Key: string,
  parts: Uint8Array[],
): Promise<{ UploadId: string; Parts: { PartNumber: number; ETag: string }[] }> {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
  const Parts = [];
  for (const [i, Body] of parts.entries()) {
    const PartNumber = i + 1;
    const { ETag } = await s3.send(
      new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body }),
    );
    Parts.push({ PartNumber, ETag: ETag! });
  }
  return { UploadId: UploadId!, Parts };
}
