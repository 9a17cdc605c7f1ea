// A rebuild paused (SIGSTOP) past its heartbeat, with a master on the index:
// the master takes it for stopped and writes again, and a key it writes may
// be one the rebuild had already listed. Resumed, the rebuild recorded that
// key from its stale listing over the master's record (the old size, no
// MD5), since a fenced write of its joined the index again and was sent
// once more. It now stops at the fence, the index left marked incomplete.
// Paused before it marked the index, it marked and emptied it once resumed
// (neither write was fenced), under the master writing again: both are
// fenced now, and it exits 1 with the index as the master left it.
import { Cluster, MAIN, randomBytes, randomKey, type SpawnedMaster } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { VolumeProxy } from "./replace_faults.ts";
import { REBUILD_STOPPED, REBUILD_STOPPED_UNCHANGED } from "./rebuild_faults.ts";
import { key2path, key2volume } from "../../lib/keys.ts";
import { toRecord } from "../../lib/record.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const encoder = new TextEncoder();

/**
 * Reads one folder's listing from the volume at once, and answers it only
 * once released: what a rebuild lists there is from before the release.
 * `skip`: listings of the folder answered at once before the one held.
 */
class HeldListing extends VolumeProxy {
  readonly fetched = Promise.withResolvers<void>();

  /** The folder held: its path's end ("/ab/cd/"). */
  folder = "";
  #skip: number;

  constructor(target: string, folder = "", opts: { skip?: number } = {}) {
    super(target);
    this.folder = folder;
    this.#skip = opts.skip ?? 0;
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== "GET" || !new URL(req.url).pathname.endsWith(this.folder)) {
      return await this.forward(req);
    }
    if (this.#skip > 0) {
      this.#skip--;
      return await this.forward(req);
    }
    const res = await this.forward(req);
    const body = await res.arrayBuffer();
    this.fetched.resolve();
    await this.released;
    return new Response(body, { status: res.status, headers: res.headers });
  }
}

/** The key's record in the index at `db`, read straight from Deno KV. */
async function recordOf(db: string, key: string) {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  try {
    return toRecord((await kv.get(["k", encoder.encode(key)])).value);
  } finally {
    kv.close();
  }
}

/** The incomplete mark of the index at `db`, read straight from Deno KV (null: none). */
async function markOf(db: string): Promise<unknown> {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  try {
    return (await kv.get(["rebuild"])).value;
  } finally {
    kv.close();
  }
}

/** The rebuild's stderr less its progress lines ("rebuild: keys 1, volumes 3, ..."). */
function errors(stderr: Uint8Array): string[] {
  return new TextDecoder().decode(stderr).split("\n").filter((l) =>
    l !== "" && !l.startsWith("rebuild: keys ")
  );
}

/**
 * A fresh key that a master on `proxied` (each in front of the volume of
 * `direct` at its index) puts in another subvolume of each volume than a
 * master on `direct` does, the defaults' 3 replicas in 10 subvolumes: a PUT
 * of it through the proxies, on an index marked incomplete, finds no file
 * where it writes (it would answer 409) once it was written directly.
 */
function keyPlacedApart(direct: string[], proxied: string[]): string {
  const subvolumeOf = (volumes: string[], key: string, i: number) =>
    key2volume(encoder.encode(key), volumes, 3, 10).find((v) => v.startsWith(`${volumes[i]}/`));
  while (true) {
    const key = randomKey("/rebuild-paused");
    const apart = direct.every((d, i) =>
      subvolumeOf(direct, key, i)!.slice(d.length) !==
        subvolumeOf(proxied, key, i)!.slice(proxied[i].length)
    );
    if (apart) return key;
  }
}

/** PUTs until the master stops answering 503 (a rebuild running), up to 15 s. */
async function putOnceServed(url: string, body: Uint8Array<ArrayBuffer>): Promise<number> {
  for (let i = 0; i < 60; i++) {
    const res = await fetch(url, { method: "PUT", body });
    await res.body?.cancel();
    if (res.status !== 503) return res.status;
    await sleep(250);
  }
  return 503;
}

/**
 * A rebuild of `c`'s index through `proxies` (its master stopped), paused
 * (SIGSTOP) once each proxy has fetched its held listing; then, the proxies
 * released, a master on them PUTs `key` (2,000 bytes) once it serves (201),
 * `whilePaused` runs, and the rebuild is resumed: its exit code and errors.
 */
async function pausedRebuild(
  c: Cluster,
  proxies: HeldListing[],
  key: string,
  whilePaused: () => Promise<void> = async () => {},
): Promise<[number, string[]]> {
  const volumes = proxies.map((p) => p.volume).join(",");
  let m: SpawnedMaster | null = null;
  let proc: Deno.ChildProcess | null = null;
  try {
    proc = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "rebuild", "-db", c.db, "-volumes", volumes],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    await Promise.all(proxies.map((p) => p.fetched.promise));
    proc.kill("SIGSTOP");
    for (const p of proxies) p.release();
    m = await c.spawnMaster(["-volumes", volumes]);
    // Served once the master has watched the paused rebuild's heartbeat stand still.
    assertEquals(await putOnceServed(m.url + key, randomBytes(2000)), 201);
    await whilePaused();
    proc.kill("SIGCONT");
    const out = await proc.output();
    proc = null;
    return [out.code, errors(out.stderr)];
  } finally {
    proc?.kill("SIGCONT");
    proc?.kill("SIGKILL");
    await proc?.status;
    await m?.stop();
  }
}

Deno.test("a rebuild resumed after masters took it for stopped exits 1 and records nothing over their writes", async () => {
  const c = await Cluster.start();
  const proxies = c.volumes.map((v) => new HeldListing(v));
  const key = keyPlacedApart(c.volumes, proxies.map((p) => p.volume));
  const folder = key2path(encoder.encode(key)).split("/").slice(0, 3).join("/") + "/";
  for (const p of proxies) p.folder = folder;
  try {
    const res = await fetch(c.url + key, { method: "PUT", body: randomBytes(1000) });
    assertEquals(res.status, 201);
    await res.body?.cancel();
    await c.stopMaster();
    // The rebuild has read the key's folder (the 1,000-byte value) on every volume.
    const resumed = await pausedRebuild(c, proxies, key, async () => {
      assertEquals((await recordOf(c.db, key))?.size, 2000);
    });
    assertEquals(resumed, [1, [REBUILD_STOPPED]]);
    assertEquals((await recordOf(c.db, key))?.size, 2000, "the master's record stands");
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await c.stop();
  }
});

Deno.test("a rebuild taken for stopped before it marked the index exits 1 and neither marks nor empties it", async () => {
  const c = await Cluster.start();
  const before = randomKey("/rebuild-paused");
  const after = randomKey("/rebuild-paused");
  // Every listing ends with "/": the first two each volume gets are its
  // root's, read before the rebuild registers, then again after it removed
  // the other members' fences, before it marks the index.
  const proxies = c.volumes.map((v) => new HeldListing(v, "/", { skip: 1 }));
  try {
    const res = await fetch(c.url + before, { method: "PUT", body: randomBytes(1000) });
    assertEquals(res.status, 201);
    await res.body?.cancel();
    await c.stopMaster();
    const resumed = await pausedRebuild(c, proxies, after);
    assertEquals(resumed, [1, [REBUILD_STOPPED_UNCHANGED]]);
    assertEquals(
      [(await recordOf(c.db, before))?.size, (await recordOf(c.db, after))?.size],
      [1000, 2000],
      "the index is not emptied",
    );
    assertEquals(await markOf(c.db), null, "the index is not marked incomplete");
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await c.stop();
  }
});
