// The AWS SDK's S3 client as the tests use it: path-style, one attempt (each
// answer is the master's own, not a retry's).
import { S3Client } from "@aws-sdk/client-s3";
import { Cluster } from "./cluster.ts";

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
