// A volume whose disk is full: what writes answer (507, not nginx's 500),
// what they leave, and that freeing space is all it takes. Each cluster's
// volume 0 is on a tmpfs disk filled to its last byte: mounting takes root.
import { Cluster, randomBytes, randomKey, runMain, status, volumeFiles } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { key2path } from "../lib/keys.ts";
import { errorAnswer, errorXml } from "./s3_answers.ts";
import { unsignedHeaders } from "./s3_client.ts";

const ROOT = Deno.uid() === 0;
const enc = new TextEncoder();

async function mountCmd(args: string[]) {
  const out = await new Deno.Command(args[0], { args: args.slice(1), stderr: "piped" }).output();
  if (!out.success) throw new Error(`${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

/** A file beside volume 0's values (a dot file: never listed) filling its disk. */
interface Filler {
  /** Removes it: the disk has room again. */
  free(): Promise<void>;
}

/**
 * Runs `test` on a cluster of three volumes, every key on each
 * (-replicas 3, -subvolumes 1: a key's file is at key2path), volume 0's
 * folder a 2 MiB tmpfs filled by a file; unmounted and stopped after.
 */
async function withFullVolume(
  test: (c: Cluster, filler: Filler) => Promise<void>,
  flags: string[] = [],
) {
  const c = await Cluster.start({ flags: ["-subvolumes", "1", ...flags] });
  const disk = c.volumeDir(0);
  let mounted = false;
  try {
    await c.stopVolume(0);
    await mountCmd(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk]);
    mounted = true;
    await c.startVolume(0);
    const path = `${disk}/.filler`;
    await fill(path);
    await test(c, { free: () => Deno.remove(path) });
  } finally {
    await c.stopVolume(0);
    if (mounted) await mountCmd(["umount", "-l", disk]);
    await c.stop();
  }
}

/** Writes zeros to `path` until its disk has no byte left. */
async function fill(path: string) {
  const file = await Deno.open(path, { write: true, create: true });
  try {
    const chunk = new Uint8Array(64 * 1024);
    for (;;) await file.write(chunk);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.includes("No space left on device")) throw err;
  } finally {
    file.close();
  }
}

/** What the master answers a write that volume 0 refused for its full disk. */
function fullMessage(c: Cluster, path: string): string {
  const v = c.volumes[0];
  return `Cannot PUT "http://${v}${path}": status 507: the disk of volume ${v} is full ` +
    `(free space there, or add volumes)\n`;
}

/** The files of `path` (a key's file, or a temporary beside it) on every volume. */
async function filesAt(c: Cluster, path: string): Promise<string[]> {
  const folder = path.slice(0, path.lastIndexOf("/") + 1);
  const all = await Promise.all(c.volumes.map((v) => volumeFiles(v).catch(() => [])));
  return all.flat().filter((f) => f.startsWith(folder));
}

Deno.test({
  name:
    "a PUT whose replica's disk is full answers 507 naming the volume, leaves no copy, and stores once space is freed",
  ignore: !ROOT,
  async fn() {
    await withFullVolume(async (c, filler) => {
      const key = randomKey();
      const path = key2path(enc.encode(key));
      const value = randomBytes(300_000);
      const res = await fetch(c.url + key, { method: "PUT", body: value });
      assertEquals([res.status, await res.text()], [507, fullMessage(c, path)]);
      assertEquals(await status(c.url + key), 404);
      assertEquals(await filesAt(c, path), [], "the copies the other volumes took are removed");
      assertEquals(await (await fetch(`${c.url}/?writing`)).json(), { next: "", keys: [] });
      await filler.free();
      assertEquals(await status(c.url + key, { method: "PUT", body: value }), 201);
      const back = await fetch(c.url + key);
      assertEquals(new Uint8Array(await back.arrayBuffer()), value);
    });
  },
});

Deno.test({
  name:
    "a streamed PUT that fills a disk midway answers 507, and no part of it is left in nginx's temp folder",
  ignore: !ROOT,
  async fn() {
    await withFullVolume(async (c) => {
      const key = randomKey();
      const path = key2path(enc.encode(key));
      // Chunked, so the master streams it (no Content-Length to hold it to).
      const body = ReadableStream.from([randomBytes(1 << 20), randomBytes(1 << 20)]);
      const res = await fetch(c.url + key, { method: "PUT", body });
      assertEquals(
        [res.status, await res.text()],
        [507, fullMessage(c, path)],
      );
      assertEquals(await filesAt(c, path), []);
      const parts = await new Deno.Command("find", {
        args: [`${c.volumeDir(0)}/.mkv-nginx/body`, "-type", "f"],
      }).output();
      assertEquals(new TextDecoder().decode(parts.stdout), "");
    });
  },
});

Deno.test({
  name: "a REPLACE onto a full disk answers 507 and the key keeps its old value",
  ignore: !ROOT,
  async fn() {
    await withFullVolume(async (c, filler) => {
      const key = randomKey();
      await filler.free();
      assertEquals(await status(c.url + key, { method: "PUT", body: "old value" }), 201);
      await fill(`${c.volumeDir(0)}/.filler`);
      const res = await fetch(c.url + key, { method: "REPLACE", body: randomBytes(300_000) });
      const path = key2path(enc.encode(key));
      const body = await res.text();
      // The new value's temporary, beside the old one (a random name).
      const tmp = /"http:\/\/[^/]+(\/[^"]+)"/.exec(body)?.[1] ?? "";
      assert(tmp.startsWith(`${path.slice(0, path.lastIndexOf("/"))}/replace.`), body);
      assertEquals([res.status, body], [507, fullMessage(c, tmp)]);
      assertEquals(await (await fetch(c.url + key)).text(), "old value");
      assertEquals(await filesAt(c, path), c.volumes.map(() => path), "no temporary left");
    });
  },
});

Deno.test({
  name: "an S3 PutObject onto a full disk answers 507 InsufficientStorage, which SDKs do not retry",
  ignore: !ROOT,
  async fn() {
    await withFullVolume(async (c) => {
      assertEquals(
        await status(`${c.url}/full`, { method: "PUT", headers: unsignedHeaders() }),
        200,
      );
      const key = `/full/${crypto.randomUUID()}`;
      const answer = await errorAnswer(c.url + key, {
        method: "PUT",
        headers: unsignedHeaders(),
        body: randomBytes(300_000),
      });
      const message = fullMessage(c, key2path(enc.encode(key))).trimEnd()
        .replaceAll('"', "&#34;");
      assertEquals(answer, {
        status: 507,
        type: "application/xml",
        body: errorXml("InsufficientStorage", message, "", key),
      });
    }, ["-s3"]);
  },
});

/** A key stored on every volume whose file volume 0 then lost (deleted straight there), its disk full. */
async function keyMissingOnFullVolume(c: Cluster, filler: Filler): Promise<string> {
  const key = randomKey();
  await filler.free();
  assertEquals(await status(c.url + key, { method: "PUT", body: "value" }), 201);
  const url = `http://${c.volumes[0]}${key2path(enc.encode(key))}`;
  assertEquals(await status(url, { method: "DELETE" }), 204);
  await fill(`${c.volumeDir(0)}/.filler`);
  return key;
}

Deno.test({
  name:
    "a REBALANCE copying onto a full disk answers 507 and the key stays readable from its other replicas",
  ignore: !ROOT,
  async fn() {
    await withFullVolume(async (c, filler) => {
      const key = await keyMissingOnFullVolume(c, filler);
      const res = await fetch(c.url + key, { method: "REBALANCE" });
      assertEquals(
        [res.status, await res.text()],
        [507, fullMessage(c, key2path(enc.encode(key)))],
      );
      assertEquals(await (await fetch(c.url + key)).text(), "value");
    });
  },
});

Deno.test({
  name: "verify -repair names a copy onto a full disk as such and fixes it once space is freed",
  ignore: !ROOT,
  async fn() {
    await withFullVolume(async (c, filler) => {
      const key = await keyMissingOnFullVolume(c, filler);
      const args = ["verify", "-volumes", c.volumes.join(","), "-db", c.db, "-subvolumes", "1"];
      const full = await runMain([...args, "-repair"]);
      const path = key2path(enc.encode(key));
      const cannot = `missing replica: "${key}" on ${c.volumes[0]} (cannot repair: ` +
        `${fullMessage(c, path).trimEnd()})`;
      assert(full.stdout.includes(cannot), full.stdout);
      await filler.free();
      const again = await runMain([...args, "-repair"]);
      const repaired = `missing replica: "${key}" on ${c.volumes[0]}: repaired, copied from `;
      assert(again.stdout.includes(repaired), again.stdout);
      assertEquals(await Deno.readTextFile(`${c.volumeDir(0)}${path}`), "value");
    });
  },
});

/** The master's status JSON once its probe has read volume 0's disk as `free` bytes free. */
async function statusOnceProbed(c: Cluster, free: number) {
  for (let tries = 0;; tries++) {
    const s = await (await fetch(`${c.url}/?status`, {
      headers: { accept: "application/json" },
    })).json();
    if (s.volumes[0].free === free || tries === 100) return s;
    // Probes come every 2 s: the next one reads the disk as filled.
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test({
  name:
    "a full volume is said at the top of the status page, and its disk's size and free bytes in ?status and ?metrics",
  ignore: !ROOT,
  async fn() {
    await withFullVolume(async (c) => {
      const s = await statusOnceProbed(c, 0);
      const v = c.volumes[0];
      assertEquals([s.volumes[0].size, s.volumes[0].free], [2 * 1024 * 1024, 0]);
      const html = await (await fetch(`${c.url}/?status`)).text();
      const line = `<li class="problem">Volume ${v} nearly full: 0.0 MB free of 2.1 MB (0%); ` +
        `writes onto it answer 507 once it is full: free space there, or add volumes</li>`;
      assert(html.includes(line), html);
      const metrics = await (await fetch(`${c.url}/?metrics`)).text();
      assert(metrics.includes(`\nmkv_volume_size_bytes{volume="${v}"} 2097152\n`), metrics);
      assert(metrics.includes(`\nmkv_volume_free_bytes{volume="${v}"} 0\n`), metrics);
    });
  },
});
