// A CopyObject onto itself (new metadata, no bytes moved) raced by other
// writes of its key: a PutObject that overwrites it between the copy's read
// of the source and its one index write (the copy's conditions and the
// metadata it copies were the old value's, so it must read the key again
// rather than put them on the new value), another copy onto itself in the
// same millisecond, a write that holds the key past the copy's backoff.
// The copy runs in this process on the cluster's index.
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
 * x-amz-meta-v "old" (and its CRC32); `copy(headers)` runs a CopyObject of
 * it onto itself in this process, through `store` (its -voltimeout 3s: a
 * write it holds open stalls after 30 s). `afterFirstRead`, when set, runs
 * once, after the next read of the key's record and before the reader
 * goes on.
 */
async function selfCopy(Key: string) {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  const index = await openIndex(c.db);
  await joinIndex(index, "test:self-copy");
  const store = new Store(
    index,
    storeOptions(
      parseFlags(["-volumes", c.volumes.join(","), "-db", c.db, "-voltimeout", "3s"], FLAGS).flags,
    ),
  );
  const value = randomBytes(1000);
  const old = await s3.send(
    new PutObjectCommand({
      Bucket,
      Key,
      Body: value,
      ContentType: "text/old",
      Metadata: { v: "old" },
      ChecksumAlgorithm: "CRC32",
    }),
  );
  const key = enc.encode(`/${Bucket}/${Key}`);
  const h = {
    s3,
    value,
    key,
    store,
    oldETag: old.ETag!,
    oldCrc32: old.ChecksumCRC32!,
    afterFirstRead: null as (() => Promise<void>) | null,
    async copy(headers: Record<string, string>): Promise<{ status: number; code?: string }> {
      const req = new Request(`http://master/${Bucket}/${Key}`, {
        method: "PUT",
        headers: { "x-amz-copy-source": `/${Bucket}/${Key}`, ...headers },
      });
      const s3req = {
        store,
        req,
        headers: req.headers,
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
      const got = await s3.send(new GetObjectCommand({ Bucket, Key, ChecksumMode: "ENABLED" }));
      return {
        bytes: await got.Body!.transformToByteArray(),
        type: got.ContentType,
        meta: got.Metadata,
        crc32: got.ChecksumCRC32,
      };
    },
    async stop() {
      await index.membership?.leave();
      index.close();
      await c.stop();
    },
  };
  const get = index.get.bind(index);
  index.get = async (k) => {
    const e = await get(k);
    const after = h.afterFirstRead;
    h.afterFirstRead = null;
    await after?.();
    return e;
  };
  return h;
}

/**
 * selfCopy's key, and the copy's first read of it followed, before the
 * copy goes on, by a PutObject of a value "text/new" (v "new").
 */
async function racedSelfCopy(Key: string) {
  const h = await selfCopy(Key);
  const next = randomBytes(2000);
  h.afterFirstRead = async () => {
    const body = { Bucket, Key, Body: next, ContentType: "text/new", Metadata: { v: "new" } };
    await h.s3.send(new PutObjectCommand(body));
  };
  return { ...h, next };
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

Deno.test("CopyObject onto itself while another write holds the key past its backoff: 409 OperationAborted, the object as it was", async () => {
  const h = await selfCopy(randomKey("held"));
  // A REPLACE of the key whose body never comes: its claim holds the key
  // (its -voltimeout 3s stalls it after 30 s, past the copy's 10 s of waits).
  let hold!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (ctl) => void (hold = ctl) });
  const replaced = h.store.replace(h.key, body, { contentLength: null, allowEmpty: true });
  try {
    while (!(await h.store.entry(h.key))?.rec.until) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const copied = await h.copy({
      "x-amz-metadata-directive": "REPLACE",
      "content-type": "text/copied",
      "x-amz-meta-v": "copied",
    });
    assertEquals(copied, { status: 409, code: "OperationAborted" });
    hold.error(new Error("The test's REPLACE gives up"));
    assertEquals((await replaced).status, 400);
    const got = await h.read();
    assertEquals(got.bytes, h.value);
    assertEquals([got.type, got.meta, got.crc32], ["text/old", { v: "old" }, h.oldCrc32]);
  } finally {
    await h.stop();
  }
});

Deno.test("two CopyObjects onto itself in one millisecond: the last keeps what it would alone, not the other's dropped checksum", async () => {
  const h = await selfCopy(randomKey("same-ms"));
  const now = Date.now;
  const at = now();
  // One millisecond for both copies, and for the one before them whose
  // value they read: their records differ only in their metadata.
  Date.now = () => at;
  try {
    assertEquals(
      await h.copy({ "x-amz-metadata-directive": "REPLACE", "x-amz-meta-v": "first" }),
      { status: 200 },
    );
    // The last copy reads the key; then another, asking SHA-256 (which drops
    // the value's CRC32), is made whole before the last goes on.
    h.afterFirstRead = async () => {
      const other = await h.copy({
        "x-amz-metadata-directive": "REPLACE",
        "x-amz-meta-v": "other",
        "x-amz-checksum-algorithm": "SHA256",
      });
      assertEquals(other, { status: 200 });
    };
    assertEquals(
      await h.copy({ "x-amz-metadata-directive": "REPLACE", "x-amz-meta-v": "last" }),
      { status: 200 },
    );
    Date.now = now;
    const got = await h.read();
    assertEquals(got.bytes, h.value);
    // Its metadata, with the CRC32 of the value it read kept, as it keeps it alone.
    assertEquals([got.meta, got.crc32], [{ v: "last" }, h.oldCrc32]);
  } finally {
    Date.now = now;
    await h.stop();
  }
});
