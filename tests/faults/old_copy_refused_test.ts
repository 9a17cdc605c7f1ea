// A write that makes a key's new value live then removes the files it left
// where the key's readers are no longer sent: the old value's copies on
// volumes the key no longer hashes to (a PUT over an unlinked key placed
// otherwise, a REPLACE, S3's overwrites through the same paths) and, on a
// replica whose rename failed, the temporary and the old value's file. A
// volume that refuses such a DELETE leaves the file there, recorded
// nowhere: an orphan, which verify lists (and a rebuild before -repair
// brings back). The write is done all the same; its answer says nothing of
// it, so the master logs what it left as one warn line naming the volume,
// the DELETE's error and what to do, listed among the status page's errors.
import { Cluster, randomKey, recordOf, runMain, type SpawnedMaster } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { VolumeProxy } from "./replace_faults.ts";
import { s3Client } from "../s3_client.ts";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { key2path } from "../../lib/keys.ts";

/** Refuses the requests `refuses` picks with a 500, as a volume failing them does. */
class Refuser extends VolumeProxy {
  refuses: (req: Request) => boolean = () => false;

  protected override async handle(req: Request): Promise<Response> {
    if (this.refuses(req)) return new Response("refused", { status: 500 });
    return await this.forward(req);
  }
}

const refusingDelete = (req: Request) => req.method === "DELETE";

/** The warning of a write whose DELETE of the old copy on `volume` failed with `why`. */
function orphaned(volume: string, why: string): string {
  return `Old copy on ${volume} not deleted, an orphan that verify -repair removes (a ` +
    `rebuild before then brings the old value back): ${why}`;
}

/** The same for the temporary the new value waited in on a replica that did not switch. */
function temporaryLeft(volume: string, why: string): string {
  return `Temporary of the new value on ${volume} not deleted, an orphan that verify ` +
    `-repair removes once older than -grace: ${why}`;
}

/** A DELETE of `url` its volume answered 500, as its error says. */
function refused(url: string): string {
  return `Cannot DELETE "${url}": status 500`;
}

/**
 * The master's stderr (its volumes' own lines and its warnings at start, of
 * masters placing keys otherwise, left out) and its status page's errors.
 */
async function stopped(m: SpawnedMaster) {
  const page = await (await fetch(`${m.url}/?status`, {
    headers: { Accept: "application/json" },
  })).json();
  const errors = (page.errors as { what: string; reason: string }[])
    .filter((e) => !e.what.startsWith("volume "))
    .map((e) => [e.what, e.reason]);
  const text = new Response(m.proc.stderr).text();
  await m.stop();
  const stderr = (await text).split("\n").filter((l) =>
    l !== "" && !l.startsWith("volume ") && !l.startsWith("Warning: ")
  );
  return { stderr, errors };
}

/**
 * A cluster of two volumes (-replicas 1, with `flags`) where `key` was
 * written ("old value") by a master placing keys on volume 0 only, behind
 * `proxy`, and UNLINKed with `unlink`; the proxy refuses every DELETE from
 * then on. `file`: the old copy's path on volume 0.
 */
interface OldCopy {
  c: Cluster;
  proxy: Refuser;
  key: string;
  file: string;
}

async function withOldCopy(
  story: (o: OldCopy) => Promise<void>,
  opts: { unlink?: boolean; flags?: string[]; write?: (master: string) => Promise<string> } = {},
): Promise<void> {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "1", ...(opts.flags ?? [])] });
  const proxy = new Refuser(c.volumes[0]);
  try {
    const old = await c.spawnMaster([], {}, { volumes: [proxy.volume] });
    let key;
    try {
      key = opts.write ? await opts.write(old.url) : randomKey("/orphan");
      if (!opts.write) {
        const put = await fetch(old.url + key, { method: "PUT", body: "old value" });
        assertEquals(put.status, 201);
      }
      if (opts.unlink) assertEquals((await fetch(old.url + key, { method: "UNLINK" })).status, 204);
    } finally {
      await old.stop();
    }
    const sub = (await recordOf(c, key))!.rvolumes[0].slice(proxy.volume.length);
    proxy.refuses = refusingDelete;
    await story({ c, proxy, key, file: sub + key2path(new TextEncoder().encode(key)) });
  } finally {
    await proxy.stop();
    await c.stop();
  }
}

/** A master of `c` placing keys on volume 1 only, its stderr piped. */
function newPlacement(c: Cluster): Promise<SpawnedMaster> {
  return c.spawnMaster([], {}, { stderr: "piped", volumes: [c.volumes[1]] });
}

/** verify lists `file` on volume 0 as an orphan of `key` (exit 1: it found one). */
async function assertVerifyListsOrphan(o: OldCopy) {
  const { c, key, file } = o;
  const volumes = c.volumes.join(",");
  const found = await runMain(["verify", "-volumes", volumes, "-replicas", "1", "-db", c.db]);
  const sub = file.slice(0, file.indexOf("/", 1));
  const named = `orphan file: http://${c.volumes[0]}${file} (${JSON.stringify(key)} is not ` +
    `recorded on ${c.volumes[0]}${sub})`;
  assert(found.stdout.includes(named), found.stdout + found.stderr);
  assertEquals(found.code, 1, found.stdout + found.stderr);
}

Deno.test("a PUT over an unlinked key whose old copy's volume refuses the DELETE answers 201 and logs the orphan it left as one warn line; verify lists it", async () => {
  await withOldCopy(async (o) => {
    const { proxy, key, file } = o;
    const m = await newPlacement(o.c);
    const put = await fetch(m.url + key, { method: "PUT", body: "new value" });
    assertEquals([put.status, await put.text()], [201, ""]);
    const left = orphaned(proxy.volume, refused(`http://${proxy.volume}${file}`));
    const { stderr, errors } = await stopped(m);
    assertEquals(stderr, [`PUT ${key} 201: ${left}`]);
    assertEquals(errors, [[`PUT ${key} 201`, left]]);
    await assertVerifyListsOrphan(o);
  }, { unlink: true });
});

Deno.test("a REPLACE whose old copy's volume refuses the DELETE answers 201 and logs the orphan it left as one warn line; verify lists it", async () => {
  await withOldCopy(async (o) => {
    const { proxy, key, file } = o;
    const m = await newPlacement(o.c);
    const res = await fetch(m.url + key, { method: "REPLACE", body: "new value" });
    assertEquals([res.status, await res.text()], [201, ""]);
    const left = orphaned(proxy.volume, refused(`http://${proxy.volume}${file}`));
    const { stderr, errors } = await stopped(m);
    assertEquals(stderr, [`REPLACE ${key} 201: ${left}`]);
    assertEquals(errors, [[`REPLACE ${key} 201`, left]]);
    await assertVerifyListsOrphan(o);
  });
});

Deno.test("an S3 PutObject over a key whose old copy's volume refuses the DELETE answers 200 and logs the orphan it left as one warn line; verify lists it", async () => {
  const Bucket = `orphan${crypto.randomUUID().slice(0, 8)}`;
  const write = async (master: string) => {
    const s3 = s3Client(master);
    try {
      await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "old value" }));
    } finally {
      s3.destroy();
    }
    return `/${Bucket}/k`;
  };
  await withOldCopy(async (o) => {
    const { proxy, key, file } = o;
    const m = await newPlacement(o.c);
    const s3 = s3Client(m.url);
    try {
      const put = await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "new value" }));
      assertEquals(put.$metadata.httpStatusCode, 200);
    } finally {
      s3.destroy();
    }
    const left = orphaned(proxy.volume, refused(`http://${proxy.volume}${file}`));
    const { stderr, errors } = await stopped(m);
    assertEquals(stderr, [`S3 PUT ${key} 200: ${left}`]);
    assertEquals(errors, [[`PUT ${key}?x-id=PutObject 200`, left]]);
    await assertVerifyListsOrphan(o);
  }, { flags: ["-s3"], write });
});

Deno.test("a REPLACE whose rename and then DELETEs a replica refuses answers 500 saying the temporary and the old copy it left there", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "2"] });
  const proxy = new Refuser(c.volumes[0]);
  const m = await c.spawnMaster([], {}, {
    stderr: "piped",
    volumes: [proxy.volume, c.volumes[1]],
  });
  try {
    const key = randomKey("/orphan");
    assertEquals((await fetch(m.url + key, { method: "PUT", body: "old value" })).status, 201);
    const rec = (await recordOf(c, key))!;
    const on = rec.rvolumes.find((v) => v.startsWith(`${proxy.volume}/`))!;
    proxy.refuses = (req) => req.method === "MOVE" || req.method === "DELETE";
    const res = await fetch(m.url + key, { method: "REPLACE", body: "new value" });
    const text = await res.text();
    const path = key2path(new TextEncoder().encode(key));
    const moveRefused = "status 500 (the new value is live on 1 of 2 replicas: REBALANCE the " +
      "key to copy it back)";
    // The rename's failure names the temporary.
    const moved = text.slice(0, text.indexOf("; "));
    assert(moved.startsWith(`Cannot MOVE "http://${on}/`) && moved.endsWith(moveRefused), text);
    const tmp = moved.slice("Cannot MOVE ".length).split('"')[1];
    const reason = [
      moved,
      temporaryLeft(proxy.volume, refused(tmp)),
      orphaned(proxy.volume, refused(`http://${on}${path}`)),
    ].join("; ");
    assertEquals([res.status, text], [500, reason + "\n"]);
    const { stderr } = await stopped(m);
    assertEquals(stderr, [`REPLACE ${key} 500: ${reason}`]);
  } finally {
    await m.stop();
    await proxy.stop();
    await c.stop();
  }
});
