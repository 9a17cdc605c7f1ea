// A REPLACE's renames (WebDAV MOVE) may take longer than -voltimeout: on
// ext4, renaming over a large file flushes the new one's data first (a
// 1 GiB value's MOVE took 0.5-0.7 s alone, over 1 s with its three
// replicas on one disk). They get the stall bound of value transfers (10x
// -voltimeout, at least 2 s), as nginx's rename of a PUT's temp file does:
// a slow rename is no unanswered one (503, which S3 clients retry by
// sending the whole value again).
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { Cluster, randomBytes, randomKey, status } from "../cluster.ts";
import { s3Client } from "../s3_client.ts";
import { assertEquals } from "../assert.ts";
import { assertS3Serves, assertServes, masterBehind, VolumeProxy } from "./replace_faults.ts";

/** -voltimeout of these masters; their stall bound is then 2 s. */
const VOLTIMEOUT_MS = 200;
/** How long each MOVE is held: well past -voltimeout, well within the stall bound. */
const MOVE_DELAY_MS = 1000;

/** Answers each MOVE (as the volume does) only after MOVE_DELAY_MS. */
class SlowMove extends VolumeProxy {
  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "MOVE") await new Promise((r) => setTimeout(r, MOVE_DELAY_MS));
    return await this.forward(req);
  }
}

/** A master whose three volumes sit behind SlowMoves. */
function slowMoveCluster(c: Cluster, extra: string[] = []) {
  const proxies = c.volumes.map((v) => new SlowMove(v));
  return masterBehind(c, proxies, ["-voltimeout", `${VOLTIMEOUT_MS}ms`, ...extra]);
}

Deno.test("a REPLACE whose renames take longer than -voltimeout answers 201", async () => {
  const c = await Cluster.start();
  const { m, stop } = await slowMoveCluster(c);
  try {
    const key = randomKey();
    const before = randomBytes(2000);
    const after = randomBytes(3000);
    assertEquals(await status(m.url + key, { method: "PUT", body: before }), 201);

    const res = await fetch(m.url + key, { method: "REPLACE", body: after });
    assertEquals([res.status, await res.text()], [201, ""]);
    const served = await assertServes(m.url, key, after);
    assertEquals(served.headers.get("key-balance"), "balanced");
  } finally {
    await stop();
    await c.stop();
  }
});

Deno.test("S3 PutObject over a key whose renames take longer than -voltimeout: 200", async () => {
  const c = await Cluster.start();
  const { m, stop } = await slowMoveCluster(c, ["-s3"]);
  const s3 = s3Client(m.url);
  try {
    const Bucket = `b-${crypto.randomUUID().slice(0, 8)}`;
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "first" }));

    const put = await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "second!" }));
    assertEquals(put.$metadata.httpStatusCode, 200);
    await assertS3Serves(s3, Bucket, "k", "second!");
  } finally {
    s3.destroy();
    await stop();
    await c.stop();
  }
});
