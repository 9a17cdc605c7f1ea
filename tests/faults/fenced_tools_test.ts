// The writing tools (rebalance, verify -repair, rebuild) are index members:
// a tool taken for gone by another member (paused past its heartbeat) has
// its fence removed, and its next index write fails with Fenced (nothing
// written). For rebalance and verify that fails the one key it was
// writing, never the whole run: the tool joins again, goes on with the
// other keys, and exits 1 naming it. A rebuild stops instead: what it
// listed before may be older than what masters wrote since.
import { Cluster, randomBytes, randomKey, runMain, status } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { assertServes, VolumeProxy, where } from "./replace_faults.ts";
import { key2path } from "../../lib/keys.ts";
import { openIndex } from "../../lib/open.ts";
import { REBUILD_STOPPED } from "./rebuild_faults.ts";

const FENCED =
  "Cannot write the index: this process lost its registration in it (paused past its heartbeat?)";

/** Removes the fences of the members whose id starts with `prefix`, as a member that took them for gone does. */
async function evictFences(db: string, prefix: string): Promise<number> {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  try {
    let n = 0;
    for await (const f of kv.list({ prefix: ["fences"] })) {
      if (!String(f.key[1]).startsWith(prefix)) continue;
      await kv.delete(f.key);
      n++;
    }
    return n;
  } finally {
    kv.close();
  }
}

/**
 * A volume's proxy that, before forwarding the first request `when` picks,
 * evicts the fences of members whose id starts with `prefix`: the tool
 * sending it is past its join, and its next index write is fenced. With
 * `every`, it goes on evicting them every `every` ms until stopped, as a
 * member that takes the tool for gone at every look would.
 */
class Evictor extends VolumeProxy {
  #evicted: Promise<number> | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Off while the cluster's master writes through it. */
  armed = true;

  constructor(
    target: string,
    readonly db: string,
    readonly prefix: string,
    readonly when: (req: Request) => boolean,
    readonly every = 0,
  ) {
    super(target);
  }

  /** How many fences it first evicted (0 until it has). */
  async evicted(): Promise<number> {
    return await (this.#evicted ?? 0);
  }

  protected override async handle(req: Request): Promise<Response> {
    if (this.armed && !this.#evicted && this.when(req)) {
      this.#evicted = evictFences(this.db, this.prefix);
      if (this.every > 0) {
        this.#timer = setInterval(
          () => evictFences(this.db, this.prefix).catch(() => {}),
          this.every,
        );
      }
    }
    await this.#evicted;
    return await this.forward(req);
  }

  override async stop() {
    clearInterval(this.#timer);
    await super.stop();
  }
}

/** A key folder's listing ("/sv03/ab/cd/"): rebuild records those keys next. */
const keyFolder = (req: Request) =>
  /^(\/sv[0-9a-f]{2})?\/[0-9a-f]{2}\/[0-9a-f]{2}\/$/i.test(new URL(req.url).pathname);

/** The volume-name marker every writing tool puts on each volume before its work (lib/aliases.ts). */
const marker = (req: Request) => new URL(req.url).pathname.startsWith("/mkv-volume-name.");

Deno.test("rebalance counts a key whose move the index fenced as failed, moves the others and exits 1 naming it", async () => {
  const c = await Cluster.start({ volumes: 4 });
  await c.stopMaster();
  await c.startMaster([], c.volumes.slice(0, 3));
  const evictor = new Evictor(c.volumes[3], c.db, "rebalance:", marker);
  try {
    const keys = Array.from({ length: 12 }, () => randomKey("/fenced-rebalance"));
    for (const k of keys) {
      assertEquals(await status(c.url + k, { method: "PUT", body: randomBytes(2000) }), 201);
    }
    await c.stopMaster();
    const args = ["-volumes", [...c.volumes.slice(0, 3), evictor.volume].join(","), "-db", c.db];
    const dry = await runMain(["rebalance", "-dry-run", ...args]);
    const moving = Number(/dry run: (\d+) of/.exec(dry.stdout)?.[1]);
    assert(moving >= 2, dry.stdout + dry.stderr);
    const r = await runMain(["rebalance", "-concurrency", "1", ...args]);
    assertEquals(await evictor.evicted(), 1, "the tool's fence evicted");
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(
      r.stdout.includes(`rebalance: moved ${moving - 1} key${moving === 2 ? "" : "s"}, 1 failed\n`),
      r.stdout + r.stderr,
    );
    const failed = r.stdout.split("\n").filter((l) => l.includes(FENCED));
    assertEquals(failed.length, 1, r.stdout);
    assert(/^ {2}"\/fenced-rebalance\/[0-9a-f-]+": 503 /.test(failed[0]), failed[0]);
    assert(!r.stderr.includes("    at "), `no stack trace: ${r.stderr}`);
    const again = await runMain(["rebalance", ...args]);
    assertEquals(again.code, 0, again.stdout + again.stderr);
    assert(again.stdout.includes("rebalance: moved 1 key, 0 failed\n"), again.stdout);
  } finally {
    await evictor.stop();
    await c.stop();
  }
});

Deno.test("verify -repair names the replica whose repair the index fenced, repairs the others and exits 1", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  const evictor = new Evictor(c.volumes[0], c.db, "verify:", (req) => req.method === "HEAD");
  evictor.armed = false; // the master HEADs what it writes
  const volumes = [evictor.volume, ...c.volumes.slice(1)];
  await c.startMaster([], volumes);
  try {
    const keys = [randomKey("/fenced-verify"), randomKey("/fenced-verify")];
    for (const k of keys) {
      assertEquals(await status(c.url + k, { method: "PUT", body: randomBytes(2000) }), 201);
      // One replica lost, on the volume past no proxy.
      const on = where(volumes, k).find((v) => v.startsWith(c.volumes[1]))!;
      const path = key2path(new TextEncoder().encode(k));
      assertEquals(await status(`http://${on}${path}`, { method: "DELETE" }), 204);
    }
    await c.stopMaster();
    evictor.armed = true;
    const args = ["-volumes", volumes.join(","), "-db", c.db, "-concurrency", "1"];
    const r = await runMain(["verify", "-repair", ...args]);
    assertEquals(await evictor.evicted(), 1, "the tool's fence evicted");
    assertEquals(r.code, 1, r.stdout + r.stderr);
    const lines = r.stdout.split("\n").filter((l) => l.startsWith("missing replica:"));
    assertEquals(lines.length, 2, r.stdout + r.stderr);
    const fenced = lines.filter((l) => l.includes(`(cannot repair: ${FENCED})`));
    const repaired = lines.filter((l) => l.includes(": repaired, copied from "));
    assertEquals([fenced.length, repaired.length], [1, 1], r.stdout);
    assert(r.stdout.includes("verify: 2 keys, 4 problems, 2 repaired\n"), r.stdout);
    assert(!r.stderr.includes("    at "), `no stack trace: ${r.stderr}`);
    const again = await runMain(["verify", "-repair", ...args]);
    assert(again.stdout.includes(": repaired, copied from "), again.stdout);
    const clean = await runMain(["verify", ...args]);
    assertEquals(clean.code, 0, clean.stdout + clean.stderr);
  } finally {
    await c.stop();
    await evictor.stop();
  }
});

Deno.test("verify -repair whose hold the index fenced twice at its release names the key as held and exits 1", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  // From the repair's copy on (its hold taken), the run is taken for gone
  // at every look: the release is fenced again within its join's wait.
  const evictor = new Evictor(c.volumes[0], c.db, "verify:", (req) => req.method === "PUT", 50);
  evictor.armed = false; // the master PUTs what it writes
  const volumes = [evictor.volume, ...c.volumes.slice(1)];
  await c.startMaster([], volumes);
  try {
    const k = randomKey("/fenced-release");
    assertEquals(await status(c.url + k, { method: "PUT", body: randomBytes(2000) }), 201);
    // The replica behind the proxy lost: the repair copies it back through it.
    const on = where(volumes, k).find((v) => v.startsWith(evictor.volume))!;
    const path = key2path(new TextEncoder().encode(k));
    assertEquals(await status(`http://${on}${path}`, { method: "DELETE" }), 204);
    await c.stopMaster();
    evictor.armed = true;
    const args = ["-volumes", volumes.join(","), "-db", c.db];
    const r = await runMain(["verify", "-repair", ...args]);
    assertEquals(await evictor.evicted(), 1, "the tool's fence evicted");
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(r.stdout.includes(`missing replica: "${k}" on ${on}: repaired, copied from `), r.stdout);
    assert(
      r.stdout.includes(
        `hold not released: "${k}" (the index refused it: ${FENCED}; writes of the key get ` +
          `409 until its lease runs out, within -lease 30s)\n`,
      ),
      r.stdout,
    );
    assert(r.stdout.includes("verify: 1 key, 3 problems, 2 repaired\n"), r.stdout);
    // Held indeed: the record still carries the run's lease.
    const index = await openIndex(c.db);
    const rec = (await index.get(new TextEncoder().encode(k)))!.rec;
    index.close();
    assert(rec.owner && (rec.until ?? 0) > Date.now(), JSON.stringify(rec));
  } finally {
    await c.stop();
    await evictor.stop();
  }
});

Deno.test("verify -repair whose orphan delete went through and whose hold the index fenced at its release says deleted and names the hold", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  // From the orphan's DELETE on, the run is taken for gone at every look:
  // the release of its claim is fenced again within its join's wait.
  const orphanDelete = (req: Request) => req.method === "DELETE" && !marker(req);
  const evictor = new Evictor(c.volumes[0], c.db, "verify:", orphanDelete, 50);
  const volumes = [evictor.volume, ...c.volumes.slice(1)];
  try {
    const k = randomKey("/fenced-orphan");
    const path = `/sv03${key2path(new TextEncoder().encode(k))}`;
    assertEquals(await status(`http://${c.volumes[0]}${path}`, { method: "PUT", body: "x" }), 201);
    const args = ["-volumes", volumes.join(","), "-db", c.db, "-grace", "0s"];
    const r = await runMain(["verify", "-repair", ...args]);
    assertEquals(await evictor.evicted(), 1, "the tool's fence evicted");
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assertEquals(
      r.stdout.split("\n").filter((l) =>
        l.includes(k) || l.includes(path) || l.startsWith("verify:")
      ),
      [
        `orphan file: http://${evictor.volume}${path} (no record): repaired, deleted`,
        `hold not released: "${k}" (the index refused it: ${FENCED}; writes of the key get ` +
        `409 until its lease runs out, within -lease 30s)`,
        "verify: 0 keys, 2 problems, 1 repaired",
      ],
    );
    assertEquals(await status(`http://${c.volumes[0]}${path}`), 404, "the orphan deleted");
  } finally {
    await c.stop();
    await evictor.stop();
  }
});

Deno.test("rebuild whose fence another member removed stops at its next write, exits 1 and leaves the index marked incomplete", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  const evictor = new Evictor(c.volumes[0], c.db, "rebuild:", keyFolder);
  evictor.armed = false;
  const volumes = [evictor.volume, ...c.volumes.slice(1)];
  await c.startMaster([], volumes);
  try {
    const keys = Array.from({ length: 6 }, () => randomKey("/fenced-rebuild"));
    for (const k of keys) assertEquals(await status(c.url + k, { method: "PUT", body: k }), 201);
    await c.stopMaster();
    evictor.armed = true;
    const r = await runMain(["rebuild", "-volumes", volumes.join(","), "-db", c.db]);
    assertEquals(await evictor.evicted(), 1, "the tool's fence evicted");
    const said = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("rebuild: keys "));
    assertEquals([r.code, said], [1, [REBUILD_STOPPED]], r.stdout + r.stderr);
    const index = await openIndex(c.db);
    try {
      assertEquals((await index.incomplete())?.why, "a rebuild began and has not finished");
    } finally {
      index.close();
    }
  } finally {
    await c.stop();
    await evictor.stop();
  }
});

/**
 * A volume's proxy that holds the first PUT it is armed for, unread, until
 * released (its sender is held up by backpressure), and from when it came
 * evicts the fences of members whose id starts with `prefix` every 50 ms:
 * the sender's renewals are fenced, and its hold on the key is lost.
 */
class CopyHolder extends VolumeProxy {
  armed = false;
  readonly came = Promise.withResolvers<void>();
  #taken = false;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(target: string, readonly db: string, readonly prefix: string) {
    super(target);
  }

  protected override async handle(req: Request): Promise<Response> {
    if (this.armed && !this.#taken && req.method === "PUT") {
      this.#taken = true;
      this.#timer = setInterval(() => evictFences(this.db, this.prefix).catch(() => {}), 50);
      this.came.resolve();
      await this.released;
      clearInterval(this.#timer);
    }
    return await this.forward(req);
  }

  override async stop() {
    clearInterval(this.#timer);
    await super.stop();
  }
}

Deno.test("verify -repair whose hold is lost mid-copy stops the copy: the key's next value, written meanwhile, is not overwritten", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  const holder = new CopyHolder(c.volumes[0], c.db, "verify:");
  const volumes = [holder.volume, ...c.volumes.slice(1)];
  const flags = ["-lease", "1s", "-voltimeout", "5s"];
  await c.startMaster(flags, volumes);
  let verify: Deno.ChildProcess | null = null;
  try {
    const k = randomKey("/lost-hold-copy");
    // Large enough that the copy's body waits on the held PUT's socket.
    const old = randomBytes(32 << 20);
    assertEquals(await status(c.url + k, { method: "PUT", body: old }), 201);
    const on = where(volumes, k).find((v) => v.startsWith(holder.volume))!;
    const path = key2path(new TextEncoder().encode(k));
    assertEquals(await status(`http://${on}${path}`, { method: "DELETE" }), 204);
    await c.stopMaster();
    holder.armed = true;
    verify = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../../main.ts", import.meta.url).pathname,
        "verify",
        "-repair",
        "-volumes",
        volumes.join(","),
        "-db",
        c.db,
        ...flags,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    await holder.came.promise;
    holder.armed = false;
    // The hold lost (its renewals fenced) and its lease run out: the key
    // is free, and gets its next value.
    await new Promise((r) => setTimeout(r, 2500));
    await c.startMaster(flags, volumes);
    assertEquals(await status(c.url + k, { method: "DELETE" }), 204);
    const next = randomBytes(2000);
    assertEquals(await status(c.url + k, { method: "PUT", body: next }), 201);
    holder.release();
    const out = await verify.output();
    verify = null;
    const stdout = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 1, stdout + new TextDecoder().decode(out.stderr));
    assert(
      stdout.includes(`missing replica: "${k}" on ${on} (cannot repair: ${FENCED})\n`),
      stdout,
    );
    assert(stdout.includes("verify: 1 key, 3 problems, 0 repaired\n"), stdout);
    const file = await fetch(`http://${on.replace(holder.volume, c.volumes[0])}${path}`);
    assertEquals(
      new Uint8Array(await file.arrayBuffer()),
      next,
      "the replica holds the next value",
    );
    await assertServes(c.url, k, next);
  } finally {
    holder.release();
    if (verify) {
      verify.kill();
      await verify.output();
    }
    await c.stop();
    await holder.stop();
  }
});
