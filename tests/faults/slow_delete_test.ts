// Removing a value's file may take a volume longer than -voltimeout:
// unlinking a large file that was written recently waits for its pages
// under writeback (12 DELETEs of 256 MiB values at once, on one disk: six
// took over 1 s). Such DELETEs get the stall bound of value transfers (10x
// -voltimeout, at least 2 s); taken for unanswered they failed with a 500,
// and the key stayed "writing", kept from writers until its lease ran out.
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { Cluster, randomBytes, randomKey, status } from "../cluster.ts";
import { s3Client } from "../s3_client.ts";
import { assertEquals } from "../assert.ts";
import { assertServes, masterBehind, VolumeProxy } from "./replace_faults.ts";

/** -voltimeout of these masters; their stall bound is then 2 s. */
const VOLTIMEOUT_MS = 200;
/** How long each DELETE's answer is held: well past -voltimeout, well within the stall bound. */
const DELETE_DELAY_MS = 1000;

/** Carries out each DELETE at once and answers it (as the volume did) DELETE_DELAY_MS later. */
class SlowDelete extends VolumeProxy {
  protected override async handle(req: Request): Promise<Response> {
    const res = await this.forward(req);
    if (req.method === "DELETE") await new Promise((r) => setTimeout(r, DELETE_DELAY_MS));
    return res;
  }
}

/** A master whose three volumes sit behind SlowDeletes. */
function slowDeleteCluster(c: Cluster, extra: string[] = []) {
  const proxies = c.volumes.map((v) => new SlowDelete(v));
  return masterBehind(c, proxies, ["-voltimeout", `${VOLTIMEOUT_MS}ms`, ...extra]);
}

Deno.test("a DELETE whose volumes answer after -voltimeout answers 204; the key can be written again at once", async () => {
  const c = await Cluster.start();
  const { m, stop } = await slowDeleteCluster(c);
  try {
    const key = randomKey();
    assertEquals(await status(m.url + key, { method: "PUT", body: randomBytes(2000) }), 201);

    const del = await fetch(m.url + key, { method: "DELETE" });
    assertEquals([del.status, await del.text()], [204, ""]);
    assertEquals(await status(m.url + key), 404);
    const writing = await (await fetch(`${m.url}/?writing`)).json();
    assertEquals(writing, { next: "", keys: [] });
    const value = randomBytes(3000);
    assertEquals(await status(m.url + key, { method: "PUT", body: value }), 201);
    await assertServes(m.url, key, value);
  } finally {
    await stop();
    await c.stop();
  }
});

Deno.test("S3 DeleteObject whose volumes answer after -voltimeout: 204, and the key takes a PutObject at once", async () => {
  const c = await Cluster.start();
  const { m, stop } = await slowDeleteCluster(c, ["-s3"]);
  const s3 = s3Client(m.url);
  try {
    const Bucket = `b-${crypto.randomUUID().slice(0, 8)}`;
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "first" }));

    const del = await s3.send(new DeleteObjectCommand({ Bucket, Key: "k" }));
    assertEquals(del.$metadata.httpStatusCode, 204);
    const put = await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "second" }));
    assertEquals(put.$metadata.httpStatusCode, 200);
    const got = await s3.send(new GetObjectCommand({ Bucket, Key: "k" }));
    assertEquals(await got.Body!.transformToString(), "second");
  } finally {
    s3.destroy();
    await stop();
    await c.stop();
  }
});
