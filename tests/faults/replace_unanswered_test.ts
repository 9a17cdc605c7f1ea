// A REPLACE whose every rename goes unanswered (the volumes time out on
// its MOVEs): any of them may have renamed all the same, so the master can
// say neither "done" nor "not done". It answers 503, keeps the switch
// recorded, and the next read of the key finishes it once the volumes answer
// and the lease has run out (until then a rename may still land: one
// finishing the switch meanwhile could take a replica for not renamed).
// S3's PutObject over an existing key is a REPLACE: its 503 is
// ServiceUnavailable, which S3's clients retry.
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { Cluster, randomBytes, randomKey, status } from "../cluster.ts";
import { s3Client } from "../s3_client.ts";
import { assertEquals } from "../assert.ts";
import { assertS3Serves, assertServes, masterBehind, VolumeProxy } from "./replace_faults.ts";

/** Never answers a MOVE before `release()` (then 503, unsent); forwards from then on. */
class MoveSink extends VolumeProxy {
  #open = false;

  override release() {
    this.#open = true;
    super.release();
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== "MOVE" || this.#open) return await this.forward(req);
    await this.released;
    return new Response(null, { status: 503 });
  }
}

/** A master whose three volumes sit behind MoveSinks; -voltimeout 300ms, -lease 1s. */
async function sinkCluster(c: Cluster, extra: string[] = []) {
  const sinks = c.volumes.map((v) => new MoveSink(v));
  const flags = ["-voltimeout", "300ms", "-lease", "1s"];
  return { sinks, ...await masterBehind(c, sinks, [...flags, ...extra]) };
}

Deno.test("a REPLACE whose every rename goes unanswered answers 503; the next GET finishes it", async () => {
  const c = await Cluster.start();
  const { m, sinks, stop } = await sinkCluster(c);
  try {
    const key = randomKey();
    const before = randomBytes(2000);
    const after = randomBytes(3000);
    assertEquals(await status(m.url + key, { method: "PUT", body: before }), 201);

    const res = await fetch(m.url + key, { method: "REPLACE", body: after });
    assertEquals(res.status, 503);
    assertEquals(
      (await res.text()).endsWith(
        "(the REPLACE is finished once the volumes answer and -lease has passed)\n",
      ),
      true,
    );
    for (const s of sinks) s.release();
    await new Promise((r) => setTimeout(r, 1100)); // the switch's lease
    await assertServes(m.url, key, after);
  } finally {
    await stop();
    await c.stop();
  }
});

Deno.test("S3 PutObject over a key whose every rename goes unanswered: 503 ServiceUnavailable", async () => {
  const c = await Cluster.start();
  const { m, sinks, stop } = await sinkCluster(c, ["-s3"]);
  const s3 = s3Client(m.url);
  try {
    const Bucket = `b-${crypto.randomUUID().slice(0, 8)}`;
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "first" }));

    const failure = await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "second!" }))
      .then(() => null, (e) => ({ name: e.name, status: e.$metadata?.httpStatusCode }));
    assertEquals(failure, { name: "ServiceUnavailable", status: 503 });
    for (const s of sinks) s.release();
    await new Promise((r) => setTimeout(r, 1100)); // the switch's lease
    await assertS3Serves(s3, Bucket, "k", "second!");
  } finally {
    s3.destroy();
    await stop();
    await c.stop();
  }
});
