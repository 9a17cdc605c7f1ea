// CompleteMultipartUpload's If-None-Match: * and If-Match, when another
// write of the key lands after the Complete checked them (its 200 sent,
// the parts not yet joined): the conditions, passed again to the write,
// fail the Complete as the value would go live, and the other write's
// value stays. The Complete's master holds the answer of its read of the
// key (tests/commit_log.ts) while the other write goes through another
// master.
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Cluster, commitSent, randomBytes } from "./cluster.ts";
import { s3Client } from "./s3_client.ts";
import { errorXml } from "./s3_answers.ts";
import { assertEquals } from "./assert.ts";

/**
 * Completes an upload of one part into a key with If-None-Match: * (`create`,
 * the key new) or If-Match (`match`, naming the key's value), another
 * PutObject of the key landing once the Complete has read the key for its
 * check; the Complete's answer (its status and body, the keep-alive spaces
 * and the RequestId taken out) and the value the key then reads.
 */
async function completeRacedBy(condition: "create" | "match") {
  const c = await Cluster.start({ flags: ["-s3"] });
  const log = `${c.dir}/commits.log`;
  const hold = `${c.dir}/hold`;
  const m = await c.spawnMaster([], {}, { commitLog: log, commitHold: hold });
  const s3 = s3Client(c.url);
  try {
    const Bucket = `race-${crypto.randomUUID().slice(0, 8)}`;
    const Key = "object";
    await s3.send(new CreateBucketCommand({ Bucket }));
    const cond: [string, string] = condition === "create"
      ? ["if-none-match", "*"]
      : ["if-match", (await s3.send(new PutObjectCommand({ Bucket, Key, Body: "before" }))).ETag!];
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
    const part = await s3.send(
      new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: randomBytes(1000) }),
    );
    const key = `/${Bucket}/${Key}`;
    await Deno.writeTextFile(hold, `read ${key}\n`);
    const headers = new Headers({
      // A V2 signature: the master (-s3, no keys) checks none.
      Authorization: "AWS anyone:c2lnbmF0dXJl",
      Date: new Date().toUTCString(),
    });
    headers.set(...cond);
    const body = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>" +
      `<ETag>${part.ETag}</ETag></Part></CompleteMultipartUpload>`;
    const complete = fetch(`${m.url}${key}?uploadId=${UploadId}`, {
      method: "POST",
      headers,
      body,
    });
    // The Complete's check has read the key: the other write lands now.
    await commitSent(log, `read ${key}`);
    const other = randomBytes(500);
    await s3.send(new PutObjectCommand({ Bucket, Key, Body: other }));
    await Deno.remove(hold);
    const res = await complete;
    const text = (await res.text())
      .replace(/^(<\?xml[^>]*\?>\n) +/, "$1")
      .replace(/<RequestId>[^<]*<\/RequestId>/, "<RequestId>ID</RequestId>");
    const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
    const value = await got.Body!.transformToByteArray();
    return { answer: { status: res.status, body: text }, key, other, value };
  } finally {
    s3.destroy();
    await m.stop();
    await c.stop();
  }
}

const PRECONDITION_FAILED = "At least one of the preconditions you specified did not hold";

Deno.test("a Complete with If-None-Match: * whose key another write creates after its check: PreconditionFailed after its 200, the other value kept", async () => {
  const { answer, key, other, value } = await completeRacedBy("create");
  assertEquals(answer, {
    status: 200,
    body: errorXml("PreconditionFailed", PRECONDITION_FAILED, "", key),
  });
  assertEquals(value, other);
});

Deno.test("a Complete with If-Match whose value another write replaces after its check: PreconditionFailed after its 200, the other value kept", async () => {
  const { answer, key, other, value } = await completeRacedBy("match");
  assertEquals(answer, {
    status: 200,
    body: errorXml("PreconditionFailed", PRECONDITION_FAILED, "", key),
  });
  assertEquals(value, other);
});
