// A CopyObject onto itself (new metadata, no bytes moved) whose key a
// PutObject overwrites between the copy's read of the source and its one
// index write: the copy's conditions and the metadata it copies were the
// old value's, so it must read the key again rather than put them on the new
// value. The copy runs in this process on the cluster's index, its first
// read of the key followed at once by the overwrite (through the master).
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { Cluster, randomBytes, randomKey } from "../cluster.ts";
import { s3Client } from "../s3_client.ts";
import { assertEquals } from "../assert.ts";
import { joinIndex, openIndex } from "../../lib/open.ts";
import { FLAGS, storeOptions } from "../../lib/config.ts";
import { parseFlags } from "../../lib/flags.ts";
import { Store } from "../../lib/store.ts";
import type { S3Request } from "../../lib/s3.ts";
import { copyObject } from "../../lib/s3_objects.ts";
import { S3Error } from "../../lib/s3_xml.ts";

const enc = new TextEncoder();
const Bucket = "self-copy";

/**
 * A cluster whose key `/${Bucket}/${Key}` holds a value "text/old" with
 * x-amz-meta-v "old"; `copy(headers)` runs a CopyObject of it onto itself in
 * this process, and the copy's first read of the key is followed, before
 * the copy goes on, by a PutObject of a value "text/new" (v "new").
 */
async function racedSelfCopy(Key: string) {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  const index = await openIndex(c.db);
  await joinIndex(index, "test:self-copy");
  const store = new Store(
    index,
    storeOptions(parseFlags(["-volumes", c.volumes.join(","), "-db", c.db], FLAGS).flags),
  );
  const old = await s3.send(
    new PutObjectCommand({
      Bucket,
      Key,
      Body: randomBytes(1000),
      ContentType: "text/old",
      Metadata: { v: "old" },
    }),
  );
  const next = randomBytes(2000);
  const key = enc.encode(`/${Bucket}/${Key}`);
  const get = index.get.bind(index);
  let overwritten = false;
  index.get = async (k) => {
    const e = await get(k);
    if (!overwritten) {
      overwritten = true;
      const body = { Bucket, Key, Body: next, ContentType: "text/new", Metadata: { v: "new" } };
      await s3.send(new PutObjectCommand(body));
    }
    return e;
  };
  return {
    oldETag: old.ETag!,
    next,
    async copy(headers: Record<string, string>): Promise<{ status: number; code?: string }> {
      const req = new Request(`http://master/${Bucket}/${Key}`, {
        method: "PUT",
        headers: { "x-amz-copy-source": `/${Bucket}/${Key}`, ...headers },
      });
      const s3req = {
        store,
        req,
        signal: new AbortController().signal,
        bucket: Bucket,
        object: enc.encode(Key),
        key,
        url: req.url,
        query: new Map(),
        body: () => {
          throw new Error("A copy reads no body");
        },
      } as unknown as S3Request;
      try {
        return { status: (await copyObject(s3req)).status };
      } catch (err) {
        if (err instanceof S3Error) return { status: err.status, code: err.code };
        throw err;
      }
    },
    async read() {
      const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
      return {
        bytes: await got.Body!.transformToByteArray(),
        type: got.ContentType,
        meta: got.Metadata,
      };
    },
    async stop() {
      await index.membership?.leave();
      index.close();
      await c.stop();
    },
  };
}

Deno.test("CopyObject onto itself with COPY overtaken by an overwrite: the new value keeps its own metadata", async () => {
  const h = await racedSelfCopy(randomKey("copy"));
  try {
    const copied = await h.copy({
      "x-amz-metadata-directive": "COPY",
      "x-amz-storage-class": "STANDARD",
    });
    assertEquals(copied, { status: 200 });
    const got = await h.read();
    assertEquals(got.bytes, h.next);
    assertEquals([got.type, got.meta], ["text/new", { v: "new" }]);
  } finally {
    await h.stop();
  }
});

Deno.test("CopyObject onto itself overtaken by an overwrite: its copy-source-if-match is judged on the value rewritten", async () => {
  const h = await racedSelfCopy(randomKey("if-match"));
  try {
    const copied = await h.copy({
      "x-amz-metadata-directive": "REPLACE",
      "x-amz-copy-source-if-match": h.oldETag,
      "content-type": "text/copied",
    });
    assertEquals(copied, { status: 412, code: "PreconditionFailed" });
    const got = await h.read();
    assertEquals(got.bytes, h.next);
    assertEquals([got.type, got.meta], ["text/new", { v: "new" }]);
  } finally {
    await h.stop();
  }
});
