// An S3 read of a key that a REPLACE overwrites between the moment the
// master reads the key's record and the moment a volume opens the file: the
// bytes are then the new value's, so the answer must be the new value's too
// (its ETag, its conditions), never the old record's headers on the new
// bytes. A proxy holds the read's GET at the volume while the overwrite
// runs, then lets it through. `deno task test:faults`.
import { createHash } from "node:crypto";
import {
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import { Cluster, randomBytes } from "../cluster.ts";
import { s3Client } from "../s3_client.ts";
import { s3Fails } from "../s3_answers.ts";
import { assertEquals } from "../assert.ts";
import { FirstRequestHolder, masterBehind, VolumeProxy } from "./replace_faults.ts";

function md5Hex(b: Uint8Array): string {
  return createHash("md5").update(b).digest("hex");
}

/** A cluster's only master, on the proxies `proxy` makes of its volumes, and its S3 client. */
async function onProxies<P extends VolumeProxy>(proxy: (volume: string) => P) {
  const c = await Cluster.start({ flags: ["-s3"] });
  // Its one master (answering from its memory of the index) on the proxies.
  await c.stopMaster();
  const proxies = c.volumes.map(proxy);
  const behind = await masterBehind(c, proxies);
  return {
    s3: s3Client(behind.m.url),
    proxies,
    async stop() {
      await behind.stop();
      await c.stop();
    },
  };
}

/** The only master, on proxies of the cluster's volumes that hold the first GET of `/Bucket/Key`. */
async function heldCluster(Bucket: string, Key: string) {
  FirstRequestHolder.taken = false;
  const { s3, proxies, stop } = await onProxies((v) =>
    new FirstRequestHolder(v, btoa(`/${Bucket}/${Key}`))
  );
  /** 200 kB of fresh bytes written at the key: they and their ETag. */
  const put = async () => {
    const body = randomBytes(200_000);
    const { ETag } = await s3.send(new PutObjectCommand({ Bucket, Key, Body: body }));
    return { body, ETag };
  };
  return {
    s3,
    put,
    /** Once a proxy holds the key's GET: the key overwritten, then the GET let through; the new bytes. */
    async overwriteHeld(): Promise<Uint8Array> {
      await Promise.race(proxies.map((p) => p.held));
      const { body } = await put();
      proxies.forEach((p) => p.release());
      return body;
    },
    stop,
  };
}

Deno.test("GetObject overtaken by an overwrite before its volume opens the file: the new value with its own ETag", async () => {
  const Bucket = "read-replaced";
  const Key = "object";
  const h = await heldCluster(Bucket, Key);
  try {
    await h.put();
    const reading = h.s3.send(new GetObjectCommand({ Bucket, Key }));
    const after = await h.overwriteHeld();
    const got = await reading;
    const bytes = await got.Body!.transformToByteArray();
    assertEquals(md5Hex(bytes), md5Hex(after));
    assertEquals(got.ETag, `"${md5Hex(after)}"`);
  } finally {
    await h.stop();
  }
});

Deno.test("UploadPartCopy overtaken by an overwrite of its source: its copy-source-if-match is judged on the bytes copied", async () => {
  const Bucket = "copy-replaced";
  const Key = "source";
  const h = await heldCluster(Bucket, Key);
  try {
    const { ETag } = await h.put();
    const { UploadId } = await h.s3.send(new CreateMultipartUploadCommand({ Bucket, Key: "mpu" }));
    const copying = h.s3.send(
      new UploadPartCopyCommand({
        Bucket,
        Key: "mpu",
        UploadId,
        PartNumber: 1,
        CopySource: `${Bucket}/${Key}`,
        CopySourceIfMatch: ETag,
      }),
    );
    await h.overwriteHeld();
    assertEquals(await s3Fails(copying), { name: "PreconditionFailed", status: 412 });
  } finally {
    await h.stop();
  }
});

Deno.test("CopyObject overtaken by an overwrite of its source: the new value copied whole, with its ETag", async () => {
  const Bucket = "copyobject-replaced";
  const Key = "source";
  const h = await heldCluster(Bucket, Key);
  try {
    await h.put();
    // A destination that exists: the try overtaken leaves it as it was, the next replaces it.
    await h.s3.send(new PutObjectCommand({ Bucket, Key: "copy", Body: randomBytes(1000) }));
    const copying = h.s3.send(
      new CopyObjectCommand({ Bucket, Key: "copy", CopySource: `${Bucket}/${Key}` }),
    );
    const after = await h.overwriteHeld();
    const copied = await copying;
    assertEquals(copied.CopyObjectResult?.ETag, `"${md5Hex(after)}"`);
    const dest = await h.s3.send(new GetObjectCommand({ Bucket, Key: "copy" }));
    assertEquals(md5Hex(await dest.Body!.transformToByteArray()), md5Hex(after));
    assertEquals(dest.ETag, `"${md5Hex(after)}"`);
  } finally {
    await h.stop();
  }
});

Deno.test("CopyObject overtaken by an overwrite of its source: its copy-source-if-match is judged on the value copied", async () => {
  const Bucket = "copyobject-replaced-if";
  const Key = "source";
  const h = await heldCluster(Bucket, Key);
  try {
    const { ETag } = await h.put();
    const copying = h.s3.send(
      new CopyObjectCommand({
        Bucket,
        Key: "copy",
        CopySource: `${Bucket}/${Key}`,
        CopySourceIfMatch: ETag,
      }),
    );
    await h.overwriteHeld();
    assertEquals(await s3Fails(copying), { name: "PreconditionFailed", status: 412 });
    assertEquals(await s3Fails(h.s3.send(new GetObjectCommand({ Bucket, Key: "copy" }))), {
      name: "NoSuchKey",
      status: 404,
    });
  } finally {
    await h.stop();
  }
});

/** Runs `before` ahead of forwarding each GET of a path holding `match`, one at a time. */
class GetHook extends VolumeProxy {
  static gets = 0;
  static before: () => Promise<void> = () => Promise.resolve();

  constructor(target: string, readonly match: string) {
    super(target);
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "GET" && new URL(req.url).pathname.includes(this.match)) {
      GetHook.gets++;
      await GetHook.before();
    }
    return await this.forward(req);
  }
}

Deno.test("CopyObject of a source overwritten before every read of it: 503 ServiceUnavailable after 10 tries, nothing at the destination", async () => {
  const Bucket = "copyobject-churn";
  const Key = "source";
  GetHook.gets = 0;
  const { s3, stop } = await onProxies((v) => new GetHook(v, btoa(`/${Bucket}/${Key}`)));
  try {
    // Past 256 KiB: the destination's write streams (its replicas' PUTs opened
    // before the source is read), and each try's is cut off.
    await s3.send(new PutObjectCommand({ Bucket, Key, Body: randomBytes(400_000) }));
    GetHook.before = async () => {
      await s3.send(new PutObjectCommand({ Bucket, Key, Body: randomBytes(400_000) }));
    };
    const failed = await s3Fails(
      s3.send(new CopyObjectCommand({ Bucket, Key: "copy", CopySource: `${Bucket}/${Key}` })),
    );
    GetHook.before = () => Promise.resolve();
    assertEquals(failed, { name: "ServiceUnavailable", status: 503 });
    assertEquals(GetHook.gets, 10);
    assertEquals(await s3Fails(s3.send(new GetObjectCommand({ Bucket, Key: "copy" }))), {
      name: "NoSuchKey",
      status: 404,
    });
  } finally {
    GetHook.before = () => Promise.resolve();
    await stop();
  }
});
