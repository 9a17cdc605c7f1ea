// An S3 read of a key that a REBALANCE moves between the moment the master
// reads the key's record and the moment a volume opens (or HEADs) its file:
// the copy the record named is gone by then, but the key was live all
// along, so the read must find the value where it is now, never answer
// NoSuchKey (as a GET does: its 302 follows the key's new record). A proxy
// holds the read's call to the old volume while the rebalance tool runs.
// bench/chaos.ts found it: a CopyObject's "NoSuchKey: Every replica of the
// key is missing" during "grow". `deno task test:faults`.
import {
  CopyObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { Cluster, randomBytes, runMain } from "../cluster.ts";
import { s3Client } from "../s3_client.ts";
import { assert, assertEquals } from "../assert.ts";
import { FirstRequestHolder, masterBehind } from "./replace_faults.ts";
import { key2volume, md5, toHex } from "../../lib/keys.ts";

/**
 * `/<bucket>/<key>` written with `body` on the one volume of two that the
 * hash does not put it on (-replicas 1, a master of that volume only), and
 * a master of both, on proxies that hold the first call of `method` to it.
 */
async function misplaced(bucket: string, key: string, body: Uint8Array, method: string) {
  const path = `/${bucket}/${key}`;
  FirstRequestHolder.taken = false;
  const c = await Cluster.start({ volumes: 2, flags: ["-s3", "-replicas", "1"] });
  await c.stopMaster();
  const proxies = c.volumes.map((v) => new FirstRequestHolder(v, btoa(path), method));
  const volumes = proxies.map((p) => p.volume);
  const [home] = key2volume(new TextEncoder().encode(path), volumes, 1, 10);
  const away = volumes.find((v) => !home.startsWith(`${v}/`))!;
  const writer = await c.spawnMaster(["-volumes", away]);
  await s3Client(writer.url).send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  await writer.stop();
  // A held HEAD is not taken for a volume that does not answer.
  const behind = await masterBehind(c, proxies, ["-voltimeout", "10s"]);
  return {
    s3: s3Client(behind.m.url),
    /**
     * Once a proxy holds the call: the key moved by the rebalance tool (a
     * REBALANCE of the key would share the master's held HEAD), then the call
     * let through.
     */
    async rebalanceHeld() {
      await Promise.race(proxies.map((p) => p.held));
      const flags = ["-volumes", volumes.join(","), "-replicas", "1", "-db", c.db];
      const r = await runMain(["rebalance", ...flags]);
      assertEquals(r.code, 0, r.stdout + r.stderr);
      assert(r.stdout.includes("rebalance: moved 1 key, 0 failed"), r.stdout);
      proxies.forEach((p) => p.release());
    },
    async stop() {
      await behind.stop();
      await c.stop();
    },
  };
}

Deno.test("GetObject of a key that the rebalance tool moves before its volume opens the file: the value, from where it is now", async () => {
  const Bucket = "read-rebalanced";
  const Key = "object";
  const body = randomBytes(100_000);
  const h = await misplaced(Bucket, Key, body, "GET");
  try {
    const reading = h.s3.send(new GetObjectCommand({ Bucket, Key })).then(
      async (r) => ({ etag: r.ETag, bytes: toHex(md5(await r.Body!.transformToByteArray())) }),
      (e) => ({ etag: e.name, bytes: "" }),
    );
    await h.rebalanceHeld();
    const got = await reading;
    assertEquals(got, { etag: `"${toHex(md5(body))}"`, bytes: toHex(md5(body)) });
  } finally {
    await h.stop();
  }
});

Deno.test("HeadObject of a key that the rebalance tool moves before its volume answers the HEAD: 200 with the value's length", async () => {
  const Bucket = "head-rebalanced";
  const Key = "object";
  const body = randomBytes(100_000);
  const h = await misplaced(Bucket, Key, body, "HEAD");
  try {
    const heading = h.s3.send(new HeadObjectCommand({ Bucket, Key })).then(
      (r) => ({ etag: r.ETag, length: r.ContentLength }),
      (e) => ({ etag: e.name, length: e.$metadata?.httpStatusCode }),
    );
    await h.rebalanceHeld();
    const got = await heading;
    assertEquals(got, { etag: `"${toHex(md5(body))}"`, length: body.length });
  } finally {
    await h.stop();
  }
});

Deno.test("CopyObject of a source that the rebalance tool moves before its volume opens the file: the value copied", async () => {
  const Bucket = "copy-rebalanced";
  const Key = "source";
  const body = randomBytes(100_000);
  const h = await misplaced(Bucket, Key, body, "GET");
  try {
    const copying = h.s3.send(
      new CopyObjectCommand({ Bucket, Key: "copy", CopySource: `${Bucket}/${Key}` }),
    ).then((r) => r.CopyObjectResult?.ETag, (e) => e.name);
    await h.rebalanceHeld();
    assertEquals(await copying, `"${toHex(md5(body))}"`);
    const copy = await h.s3.send(new GetObjectCommand({ Bucket, Key: "copy" }));
    assertEquals(toHex(md5(await copy.Body!.transformToByteArray())), toHex(md5(body)));
  } finally {
    await h.stop();
  }
});
