// A PUT over an unlinked key writes the key's paths, where the unlinked
// value's files are. One that failed after some replicas took the new value
// (a volume's disk full, 507; a volume refusing, 500) had those replicas
// lose the unlinked value, its clean-up removed the copies, and the key was
// gone: no longer listed by ?unlinked, RELINK impossible. A failed write
// leaves nothing live and takes nothing away: the key stays unlinked, its
// value whole on every replica, RELINK brings it back.
import { Cluster, randomBytes, randomKey } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { key2path, md5, toHex } from "../../lib/keys.ts";
import { masterBehind, replicas, VolumeProxy } from "./replace_faults.ts";
import { unsignedHeaders } from "../s3_client.ts";

/** Reads each PUT's whole body, then answers it `refusing` (0: forwards it). */
class PutRefuser extends VolumeProxy {
  refusing = 0;

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== "PUT" || this.refusing === 0) return await this.forward(req);
    await req.arrayBuffer();
    return new Response("refused", { status: this.refusing });
  }
}

async function keys(url: string): Promise<string[]> {
  return (await fetch(url).then((r) => r.json())).keys;
}

/** The key's folder on every volume: the files there (its own, temporaries). */
async function filesBeside(volumes: string[], key: string): Promise<string[]> {
  const path = key2path(new TextEncoder().encode(key));
  const folder = path.slice(0, path.lastIndexOf("/") + 1);
  const out: string[] = [];
  for (const v of volumes) {
    for (const sv of ["", ...Array.from({ length: 10 }, (_, i) => `/sv0${i}`)]) {
      const res = await fetch(`http://${v}${sv}${folder}`);
      if (res.status !== 200) {
        await res.body?.cancel();
        continue;
      }
      const entries = await res.json() as { name: string }[];
      out.push(...entries.map((e) => `${v}${sv}${folder}${e.name}`));
    }
  }
  return out.sort();
}

/**
 * A master (-s3) behind proxies (the last one a PutRefuser) with `key` PUT
 * as `old` and UNLINKed; `test` runs, then everything stops. `key`'s first
 * name is a bucket, for S3.
 */
async function withUnlinked(
  old: Uint8Array<ArrayBuffer>,
  test: (ctx: { url: string; key: string; refuser: PutRefuser; volumes: string[] }) => Promise<
    void
  >,
) {
  const c = await Cluster.start();
  await c.stopMaster();
  const refuser = new PutRefuser(c.volumes[2]);
  const proxies = [new VolumeProxy(c.volumes[0]), new VolumeProxy(c.volumes[1]), refuser];
  const { m, stop } = await masterBehind(c, proxies, ["-s3"]);
  try {
    const bucket = `/${crypto.randomUUID().slice(0, 8)}`;
    const made = await fetch(m.url + bucket, { method: "PUT", headers: unsignedHeaders() });
    await made.body?.cancel();
    assertEquals(made.status, 200);
    const key = randomKey(`${bucket}/unlinked-put-refused`);
    const put = await fetch(m.url + key, { method: "PUT", body: old });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    const unlink = await fetch(m.url + key, { method: "UNLINK" });
    await unlink.body?.cancel();
    assertEquals(unlink.status, 204);
    await test({ url: m.url, key, refuser, volumes: proxies.map((p) => p.volume) });
  } finally {
    await stop();
    await c.stop();
  }
}

/** The key is unlinked with `old` on every replica, nothing else beside it, and RELINK serves it. */
async function assertKeptUnlinked(
  ctx: { url: string; key: string; volumes: string[] },
  old: Uint8Array<ArrayBuffer>,
) {
  const { url, key, volumes } = ctx;
  assertEquals(await keys(`${url}${key}?unlinked`), [key]);
  assertEquals(await keys(`${url}${key}?writing`), []);
  assertEquals(await replicas(volumes, key), [old, old, old]);
  assertEquals((await filesBeside(volumes, key)).length, 3, "no temporary left");
  const relink = await fetch(url + key, { method: "RELINK" });
  assertEquals([relink.status, await relink.text()], [204, ""]);
  const got = await fetch(url + key);
  assertEquals(new Uint8Array(await got.arrayBuffer()), old);
}

for (const refusing of [507, 500]) {
  Deno.test(`a PUT over an unlinked key that one volume refuses (${refusing}) after the others took it keeps the key unlinked, its value whole`, async () => {
    const old = randomBytes(1000);
    await withUnlinked(old, async (ctx) => {
      ctx.refuser.refusing = refusing;
      const put = await fetch(ctx.url + ctx.key, { method: "PUT", body: randomBytes(2000) });
      await put.body?.cancel();
      assertEquals(put.status, refusing);
      ctx.refuser.refusing = 0;
      await assertKeptUnlinked(ctx, old);
    });
  });
}

Deno.test("a streamed PUT over an unlinked key that one volume refuses after the others took it keeps the key unlinked, its value whole", async () => {
  const old = randomBytes(1000);
  await withUnlinked(old, async (ctx) => {
    ctx.refuser.refusing = 500;
    const body = new Blob([randomBytes(600_000)]).stream();
    const put = await fetch(ctx.url + ctx.key, { method: "PUT", body });
    await put.body?.cancel();
    assertEquals(put.status, 500);
    ctx.refuser.refusing = 0;
    await assertKeptUnlinked(ctx, old);
  });
});

Deno.test("an S3 PutObject over a key unlinked through mkv's API that one volume refuses keeps the key unlinked, its value whole", async () => {
  const old = randomBytes(1000);
  await withUnlinked(old, async (ctx) => {
    ctx.refuser.refusing = 500;
    const put = await fetch(ctx.url + ctx.key, {
      method: "PUT",
      body: randomBytes(2000),
      headers: unsignedHeaders(),
    });
    const text = await put.text();
    assertEquals(put.status, 500, text);
    ctx.refuser.refusing = 0;
    await assertKeptUnlinked(ctx, old);
  });
});

Deno.test("an S3 PutObject over a key unlinked through mkv's API makes the new value live, its ETag its MD5", async () => {
  await withUnlinked(randomBytes(1000), async (ctx) => {
    const value = randomBytes(2000);
    const put = await fetch(ctx.url + ctx.key, {
      method: "PUT",
      body: value,
      headers: unsignedHeaders(),
    });
    await put.body?.cancel();
    assertEquals(put.status, 200);
    assertEquals(put.headers.get("etag"), `"${toHex(md5(value))}"`);
    assertEquals(await keys(`${ctx.url}${ctx.key}?unlinked`), []);
    assertEquals(await replicas(ctx.volumes, ctx.key), [value, value, value]);
    assertEquals((await filesBeside(ctx.volumes, ctx.key)).length, 3, "no temporary left");
    const got = await fetch(ctx.url + ctx.key, { headers: unsignedHeaders() });
    assertEquals(new Uint8Array(await got.arrayBuffer()), value);
  });
});
