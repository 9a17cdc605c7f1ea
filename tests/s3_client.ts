// The AWS SDK's S3 client as the tests use it: path-style, one attempt (each
// answer is the master's own, not a retry's).
import { S3Client } from "@aws-sdk/client-s3";

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
