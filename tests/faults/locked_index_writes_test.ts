// Writes on an index whose SQLite write lock another process holds (a stuck
// writer, a backup tool) past the master's retries: each index write waits
// 5 s on the lock and is tried again for 10 s. They answer 503 saying the
// index is locked, not 500, and leave nothing live.
import { Cluster, randomBytes, randomKey, status, uploadBegun, volumeFiles } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { deleteObjects, errorAnswer, errorXml } from "../s3_answers.ts";
import { lockIndex, whileLocked } from "../lock_index.ts";
import { s3Client } from "../s3_client.ts";
import { CreateBucketCommand, PutObjectCommand, S3ServiceException } from "@aws-sdk/client-s3";

const LOCKED = "The index stayed locked (another process holds its write lock) past 10 s of " +
  "retries: retry once it is released\n";

/** Polls `check` until it holds, or fails naming `what`. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let tries = 0; tries < 100; tries++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Gave up waiting: ${what}`);
}

async function listed(c: Cluster, view: string, key: string): Promise<boolean> {
  const res = await fetch(`${c.url}${key}?${view}`);
  return ((await res.json()).keys as string[]).includes(key);
}

Deno.test("a PUT whose claim a locked index could not renew answers 503 saying the index is locked, and leaves the key not live", async () => {
  const c = await Cluster.start({ flags: ["-lease", "3s"] });
  let unlock: (() => void) | null = null;
  const rest = Promise.withResolvers<void>();
  try {
    const key = randomKey("/locked-put");
    // A chunk every 200 ms (no body timeout), until the lock has come and gone.
    let ended = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        await Promise.race([rest.promise, new Promise((r) => setTimeout(r, 200))]);
        if (ended) return;
        ctl.enqueue(randomBytes(100));
      },
      cancel() {
        ended = true;
      },
    });
    rest.promise.then(() => ended = true);
    const put = fetch(c.url + key, { method: "PUT", body });
    await until("the key claimed", () => listed(c, "writing", key));
    unlock = lockIndex(`${c.db}/index.sqlite3`);
    const res = await put;
    assertEquals([res.status, await res.text()], [503, LOCKED]);
    rest.resolve();
    unlock();
    unlock = null;
    assertEquals(await status(c.url + key), 404);
    assertEquals(await listed(c, "list", key), false);
  } finally {
    rest.resolve();
    unlock?.();
    await c.stop();
  }
});

Deno.test("a PUT on a locked index answers 503 saying the index is locked, and the key is not live once it is released", async () => {
  const c = await Cluster.start();
  try {
    const key = randomKey("/locked-put");
    await whileLocked(c.db, async () => {
      const res = await fetch(c.url + key, { method: "PUT", body: randomBytes(1000) });
      assertEquals([res.status, await res.text()], [503, LOCKED]);
    });
    assertEquals(await status(c.url + key), 404);
    assertEquals(await status(c.url + key, { method: "PUT", body: "x" }), 201);
  } finally {
    await c.stop();
  }
});

Deno.test("a DELETE on a locked index answers 503 saying the index is locked, and the key stays live", async () => {
  const c = await Cluster.start();
  try {
    const key = randomKey("/locked-delete");
    assertEquals(await status(c.url + key, { method: "PUT", body: "kept" }), 201);
    await whileLocked(c.db, async () => {
      const res = await fetch(c.url + key, { method: "DELETE" });
      assertEquals([res.status, await res.text()], [503, LOCKED]);
    });
    assertEquals(await status(c.url + key), 302);
  } finally {
    await c.stop();
  }
});

Deno.test("an S3 PutObject on a locked index answers 503 ServiceUnavailable saying the index is locked", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  try {
    const Bucket = `locked${crypto.randomUUID().slice(0, 8)}`;
    await whileLocked(c.db, async () => {
      const err = await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "v" })).then(
        () => null,
        (err) => err,
      );
      assertEquals(err instanceof S3ServiceException, true, String(err));
      assertEquals(
        [err.$metadata.httpStatusCode, err.name, `${err.message}\n`],
        [503, "ServiceUnavailable", LOCKED],
      );
    });
    assertEquals(await status(`${c.url}/${Bucket}/k`), 404);
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("an S3 CompleteMultipartUpload on a locked index answers ServiceUnavailable saying the index is locked, the upload kept to complete once it is released", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const path = `/locked${crypto.randomUUID().slice(0, 8)}/mp`;
    const id = await uploadBegun(c, path);
    const part = await fetch(`${c.url}${path}?partNumber=1&uploadId=${id}`, {
      method: "PUT",
      body: "part one",
    });
    assertEquals(part.status, 200);
    const complete = () =>
      fetch(`${c.url}${path}?uploadId=${id}`, {
        method: "POST",
        body: `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>` +
          `<ETag>${part.headers.get("etag")}</ETag></Part></CompleteMultipartUpload>`,
      });
    await whileLocked(c.db, async () => {
      // As S3: 200 at once, spaces while it works, then the <Error>.
      const res = await complete();
      const body = await res.text();
      const requestId = body.match(/<RequestId>(\w+)<\/RequestId>/)?.[1];
      assertEquals(
        [res.status, body.replace(/>\s+</, "><").replace(`>${requestId}<`, ">ID<")],
        [
          200,
          errorXml("ServiceUnavailable", LOCKED.trimEnd(), "", path).replace(/>\n</, "><"),
        ],
      );
    });
    assertEquals(await status(c.url + path), 404, "nothing went live");
    const again = await complete();
    assertEquals(again.status, 200);
    assert((await again.text()).includes("<CompleteMultipartUploadResult"));
    assertEquals(await (await fetch(c.url + path)).text(), "part one");
  } finally {
    await c.stop();
  }
});

Deno.test("an S3 UploadPart on a locked index answers 503 ServiceUnavailable saying the index is locked, and leaves no part file on the volumes", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const path = `/locked${crypto.randomUUID().slice(0, 8)}/mp`;
    const id = await uploadBegun(c, path);
    await whileLocked(c.db, async () => {
      const got = await errorAnswer(`${c.url}${path}?partNumber=1&uploadId=${id}`, {
        method: "PUT",
        body: "part one",
      });
      assertEquals(got, {
        status: 503,
        type: "application/xml",
        body: errorXml("ServiceUnavailable", LOCKED.trimEnd(), "", path),
      });
    });
    // Its file removed, as a refused PUT's: no orphan for verify to find.
    for (const v of c.volumes) assertEquals(await volumeFiles(v), []);
  } finally {
    await c.stop();
  }
});

Deno.test("an S3 DeleteObjects on a locked index answers each key's Error ServiceUnavailable saying the index is locked, and the keys stay live", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  try {
    const bucket = `locked${crypto.randomUUID().slice(0, 8)}`;
    // Made by CreateBucket: DeleteObjects has nothing to write for the bucket.
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    assertEquals(await status(`${c.url}/${bucket}/a`, { method: "PUT", body: "kept a" }), 201);
    assertEquals(await status(`${c.url}/${bucket}/b`, { method: "PUT", body: "kept b" }), 201);
    await whileLocked(c.db, async () => {
      const deleted = await deleteObjects(`${c.url}/${bucket}`, ["a", "b"]);
      assertEquals(deleted.status, 200);
      assertEquals(
        deleted.entries,
        [
          ["Error", "a", "ServiceUnavailable", LOCKED.trimEnd()],
          ["Error", "b", "ServiceUnavailable", LOCKED.trimEnd()],
        ],
      );
    });
    assertEquals(await (await fetch(`${c.url}/${bucket}/a`)).text(), "kept a");
    assertEquals(await (await fetch(`${c.url}/${bucket}/b`)).text(), "kept b");
  } finally {
    s3.destroy();
    await c.stop();
  }
});
