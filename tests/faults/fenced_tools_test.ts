// The writing tools (rebalance, verify -repair, rebuild) are index members:
// a tool taken for gone by another member (paused past its heartbeat) has
// its fence removed, and its next index write fails with Fenced (nothing
// written). That fails the one key it was writing, never the whole run:
// the tool joins again, goes on with the other keys, and exits 1 naming it.
import { Cluster, randomBytes, randomKey, runMain, status } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { VolumeProxy } from "./replace_faults.ts";

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
 * sending it is past its join, and its next index write is fenced.
 */
class Evictor extends VolumeProxy {
  #evicted: Promise<number> | null = null;

  constructor(
    target: string,
    readonly db: string,
    readonly prefix: string,
    readonly when: (req: Request) => boolean,
  ) {
    super(target);
  }

  /** How many fences it evicted (0 until it has). */
  async evicted(): Promise<number> {
    return await (this.#evicted ?? 0);
  }

  protected override async handle(req: Request): Promise<Response> {
    if (!this.#evicted && this.when(req)) this.#evicted = evictFences(this.db, this.prefix);
    await this.#evicted;
    return await this.forward(req);
  }
}

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
      r.stdout.includes(`rebalance: moved ${moving - 1} keys, 1 failed\n`),
      r.stdout + r.stderr,
    );
    const failed = r.stderr.split("\n").filter((l) => l.includes(FENCED));
    assertEquals(failed.length, 1, r.stderr);
    assert(/^ {2}\/fenced-rebalance\/[0-9a-f-]+: 503 /.test(failed[0]), failed[0]);
    assert(!r.stderr.includes("    at "), `no stack trace: ${r.stderr}`);
    const again = await runMain(["rebalance", ...args]);
    assertEquals(again.code, 0, again.stdout + again.stderr);
    assert(again.stdout.includes("rebalance: moved 1 keys, 0 failed\n"), again.stdout);
  } finally {
    await evictor.stop();
    await c.stop();
  }
});
