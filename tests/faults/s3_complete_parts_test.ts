// CompleteMultipartUpload against part copies gone bad on a volume (cut
// short, as a volume that crashes without fsync leaves a file, or rotted),
// and a Complete retried after its first try made the value live but died
// before ending the upload. `deno task test:faults`.
import { createHash } from "node:crypto";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import { Cluster, randomBytes, volumeFiles } from "../cluster.ts";
import { s3Client, uploadParts, withS3Cluster } from "../s3_client.ts";
import { s3Fails } from "../s3_answers.ts";
import { assertEquals } from "../assert.ts";
import { openIndex } from "../../lib/open.ts";
import { key2path } from "../../lib/keys.ts";
import { masterBehind, VolumeProxy, where } from "./replace_faults.ts";

function md5Hex(b: Uint8Array): string {
  return createHash("md5").update(b).digest("hex");
}

/** UploadPartCopy of `Bucket/source` (`range` of it) as part 1 of a new upload of "mpu". */
async function copyPart(s3: S3Client, Bucket: string, range?: string) {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: "mpu" }));
  return await s3.send(
    new UploadPartCopyCommand({
      Bucket,
      Key: "mpu",
      UploadId,
      PartNumber: 1,
      CopySource: `${Bucket}/source`,
      CopySourceRange: range,
    }),
  );
}

/** CopyObject of `Bucket/source` to `Key`. */
function copySource(s3: S3Client, Bucket: string, Key: string) {
  return s3.send(new CopyObjectCommand({ Bucket, Key, CopySource: `${Bucket}/source` }));
}

/** The file of part `n` of `id` on the volume "host:port/svNN". */
async function partFile(c: Cluster, replica: string, id: string, n: number): Promise<string> {
  const [host, sv] = replica.split("/");
  const files = await volumeFiles(host, `/${sv}/`);
  const name = files.find((f) => f.includes(`/mpu.${id}.${n}.`))!;
  return `${c.volumeDir(c.volumes.indexOf(host))}${name}`;
}

Deno.test("Complete reads each part from a copy that holds it whole and unchanged", async () => {
  await withS3Cluster(async (c, s3) => {
    const Bucket = "parts-gone-bad";
    const Key = "object";
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(300_000)];
    const { UploadId, Parts } = await uploadParts(s3, Bucket, Key, parts);
    // The copies read first: part 1's cut short, one byte of part 2's changed.
    const first = where(c.volumes, `/${Bucket}/${Key}`)[0];
    await Deno.truncate(await partFile(c, first, UploadId, 1), 1000);
    const rotted = await partFile(c, first, UploadId, 2);
    const bytes = await Deno.readFile(rotted);
    bytes[100] ^= 1;
    await Deno.writeFile(rotted, bytes);
    const done = await s3.send(
      new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }),
    );
    const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
    assertEquals(got.ETag, done.ETag);
    const value = await got.Body!.transformToByteArray();
    assertEquals(value.length, parts[0].length + parts[1].length);
    assertEquals(md5Hex(value), md5Hex(new Uint8Array([...parts[0], ...parts[1]])));
  });
});

Deno.test("a retried Complete ends the upload its first try made live but did not end", async () => {
  await withS3Cluster(async (c, s3) => {
    const Bucket = "completed-not-ended";
    const Key = "object";
    await s3.send(new CreateBucketCommand({ Bucket }));
    const { UploadId, Parts } = await uploadParts(s3, Bucket, Key, [randomBytes(1000)]);
    // As a master killed between recording the upload completed and ending it leaves it.
    const index = await openIndex(c.db);
    const etag = `"${"0".repeat(32)}-1"`;
    await index.completed(UploadId, { key: new TextEncoder().encode(`/${Bucket}/${Key}`), etag });
    index.close();
    const done = await s3.send(
      new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }),
    );
    assertEquals(done.ETag, etag);
    const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket }));
    assertEquals(listed.Uploads, undefined);
    for (const v of c.volumes) {
      assertEquals((await volumeFiles(v)).filter((f) => f.includes("mpu.")), []);
    }
  });
});

Deno.test("CopyObject and UploadPartCopy from a source cut short on every volume: NoSuchKey, as its GetObject, the target intact", async () => {
  await withS3Cluster(async (c, s3) => {
    const Bucket = "copy-cut-short";
    await s3.send(new CreateBucketCommand({ Bucket }));
    const source = randomBytes(300_000);
    const target = randomBytes(1000);
    await s3.send(new PutObjectCommand({ Bucket, Key: "source", Body: source }));
    await s3.send(new PutObjectCommand({ Bucket, Key: "target", Body: target }));
    // Every replica of the source holds half of it now (a crash without
    // fsync leaves such a file): each is passed over for its size, as a
    // GetObject passes them over (tests/cut_short_test.ts), and no replica
    // holds the value: NoSuchKey. (Before reads checked sizes, the copy
    // read fewer bytes than recorded: InternalError.)
    const path = key2path(new TextEncoder().encode(`/${Bucket}/source`));
    for (const replica of where(c.volumes, `/${Bucket}/source`)) {
      const [host, sv] = replica.split("/");
      await Deno.truncate(`${c.volumeDir(c.volumes.indexOf(host))}/${sv}${path}`, 150_000);
    }
    assertEquals(await s3Fails(copySource(s3, Bucket, "target")), {
      name: "NoSuchKey",
      status: 404,
    });
    const got = await s3.send(new GetObjectCommand({ Bucket, Key: "target" }));
    assertEquals(md5Hex(await got.Body!.transformToByteArray()), md5Hex(target));

    assertEquals(await s3Fails(copyPart(s3, Bucket)), { name: "NoSuchKey", status: 404 });
  });
});

/** Cuts every GET of a file whose path holds `match` after its first 64 KiB (the stream errors). */
class GetCutter extends VolumeProxy {
  constructor(target: string, readonly match: string) {
    super(target);
  }

  protected override async handle(req: Request): Promise<Response> {
    const res = await this.forward(req);
    if (req.method !== "GET" || !new URL(req.url).pathname.includes(this.match)) return res;
    const reader = res.body!.getReader();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        const r = await reader.read();
        if (r.done || sent >= 65536) {
          await reader.cancel();
          return ctl.error(new Error("cut"));
        }
        sent += r.value.length;
        ctl.enqueue(r.value);
      },
    });
    return new Response(body, { status: res.status, headers: res.headers });
  }
}

Deno.test("UploadPartCopy and CopyObject from a source whose volumes break off mid-body: InternalError", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const Bucket = "copy-broken-off";
  const name = btoa(`/${Bucket}/source`);
  const cutters = c.volumes.map((v) => new GetCutter(v, name));
  const behind = await masterBehind(c, cutters, ["-s3"]);
  const s3 = s3Client(behind.m.url);
  try {
    await s3.send(new CreateBucketCommand({ Bucket }));
    await s3.send(new PutObjectCommand({ Bucket, Key: "source", Body: randomBytes(1_000_000) }));
    assertEquals(await s3Fails(copyPart(s3, Bucket)), { name: "InternalError", status: 500 });
    assertEquals(await s3Fails(copySource(s3, Bucket, "copy")), {
      name: "InternalError",
      status: 500,
    });
  } finally {
    s3.destroy();
    await behind.stop();
    await c.stop();
  }
});

/** Notes how each PUT of a multipart part came framed: its Content-Length, or "chunked". */
class PartPutFraming extends VolumeProxy {
  readonly framing: string[] = [];

  protected override handle(req: Request): Promise<Response> {
    if (req.method === "PUT" && new URL(req.url).pathname.includes("/mpu.")) {
      const length = req.headers.get("content-length");
      this.framing.push(length ?? req.headers.get("transfer-encoding") ?? "none");
    }
    return this.forward(req);
  }
}

// Sent chunked (each chunk copied into a new array to frame it, then), a
// 1 GiB UploadPartCopy grew the master's peak memory by 53-62 MiB; with its
// length, as CopyObject, 7-9 MiB.
Deno.test("UploadPartCopy sends its part to the volumes with the range's Content-Length", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const Bucket = "part-copy-sized";
  const proxies = c.volumes.map((v) => new PartPutFraming(v));
  const behind = await masterBehind(c, proxies, ["-s3"]);
  const s3 = s3Client(behind.m.url);
  try {
    await s3.send(new CreateBucketCommand({ Bucket }));
    const source = randomBytes(1_000_000);
    await s3.send(new PutObjectCommand({ Bucket, Key: "source", Body: source }));
    const part = await copyPart(s3, Bucket, "bytes=1000-600999");
    assertEquals(part.CopyPartResult!.ETag, `"${md5Hex(source.subarray(1000, 601000))}"`);
    assertEquals(proxies.flatMap((p) => p.framing), ["600000", "600000", "600000"]);
  } finally {
    s3.destroy();
    await behind.stop();
    await c.stop();
  }
});
