// A master SIGKILLed in the middle of a REPLACE's renames: some replicas
// hold the new value, the index still the old record. The next master to
// read the key (a GET, any write, verify -repair) finishes the switch, so
// the MD5 served matches the bytes on every replica. One volume sits behind
// a proxy that holds its MOVEs: the kill lands exactly between renames.
import { Cluster, randomBytes, randomKey, runMain, volumeFiles } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import {
  assertNewMasterServes,
  assertServes,
  replaceUnanswered,
  replicas,
  VolumeProxy,
  where,
} from "./replace_faults.ts";

/**
 * Holds the first MOVE until `release()`: "drop" never sends it (then
 * answers 503), "late" sends it at once and answers 503 on release,
 * "delay" sends it on release and answers as the volume did.
 */
class MoveHolder extends VolumeProxy {
  readonly #moved = Promise.withResolvers<void>();
  #held = false;

  constructor(target: string, readonly mode: "drop" | "late" | "delay") {
    super(target);
  }

  /** Resolves once the first MOVE came in. */
  get moved(): Promise<void> {
    return this.#moved.promise;
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== "MOVE" || this.#held) return await this.forward(req);
    this.#held = true;
    if (this.mode === "late") await (await this.forward(req)).body?.cancel();
    this.#moved.resolve();
    await this.released; // the master dies waiting (drop, late)
    return this.mode === "delay" ? await this.forward(req) : new Response(null, { status: 503 });
  }
}

/** Writes `before`, then REPLACEs it with `after` through a master killed at the held MOVE. */
async function killedReplace(
  c: Cluster,
  holder: MoveHolder,
  key: string,
  before: Uint8Array<ArrayBuffer>,
  after: Uint8Array<ArrayBuffer>,
) {
  const volumes = [c.volumes[0], c.volumes[1], holder.volume];
  // -voltimeout 5s: the held rename outlasts a reader's wait for it.
  const flags = ["-volumes", volumes.join(","), "-lease", "1s", "-voltimeout", "5s"];
  const m = await c.spawnMaster(flags);
  try {
    const put = await fetch(m.url + key, { method: "PUT", body: before });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    replaceUnanswered(m.url, key, after);
    await holder.moved;
    // Mid-switch a replica may hold either value: after waiting 1 s for
    // the switch, the GET claims no MD5.
    const mid = await fetch(m.url + key, { redirect: "manual" });
    await mid.body?.cancel();
    assertEquals(mid.status, 302);
    assertEquals(mid.headers.get("content-md5"), null);
    // The other replicas' renames went out with the held one.
    for (let i = 0; i < 100; i++) {
      const files = await replicas(volumes, key);
      if (files.filter((f) => f?.length === after.length).length >= 2) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await m.stop("SIGKILL");
  }
  return volumes;
}

Deno.test("a master killed amid a REPLACE's renames: the next GET finishes the switch", async () => {
  const c = await Cluster.start();
  const holder = new MoveHolder(c.volumes[2], "drop");
  try {
    const key = randomKey("/replace-kill");
    const before = randomBytes(3000);
    const after = randomBytes(5000);
    const volumes = await killedReplace(c, holder, key, before, after);
    // Mixed now: two replicas renamed, the one behind the proxy not.
    const sizes = (await replicas(volumes, key)).map((f) => f?.length).sort();
    assertEquals(sizes, [before.length, after.length, after.length].sort());
    await new Promise((r) => setTimeout(r, 1100)); // the dead master's lease
    const m = await c.spawnMaster(["-volumes", volumes.join(","), "-lease", "1s"]);
    try {
      const res = await assertServes(m.url, key, after);
      assertEquals(res.headers.get("key-volumes"), where(volumes, key).join(","));
      assertEquals(await replicas(volumes, key), [after, after, after]);
      const left = (await Promise.all(c.volumes.map((v) => volumeFiles(v)))).flat();
      assertEquals(left.filter((f) => f.includes("replace.")), [], "no temporary left");
    } finally {
      await m.stop();
    }
  } finally {
    await holder.stop();
    await c.stop();
  }
});

Deno.test("a master killed after every rename but before the index switch: verify -repair finishes it", async () => {
  const c = await Cluster.start();
  const holder = new MoveHolder(c.volumes[2], "late");
  try {
    const key = randomKey("/replace-kill");
    const before = randomBytes(4000);
    const after = randomBytes(2000);
    const volumes = await killedReplace(c, holder, key, before, after);
    assertEquals(await replicas(volumes, key), [after, after, after], "renamed everywhere");
    await new Promise((r) => setTimeout(r, 1100));
    const common = ["-db", c.db, "-volumes", volumes.join(",")];
    const check = await runMain(["verify", ...common]);
    assertEquals(check.code, 1, check.stdout + check.stderr);
    assert(check.stdout.includes(`unfinished replace: "${key}"`), check.stdout);
    assert(!check.stdout.includes("corrupt"), check.stdout);
    const repair = await runMain(["verify", "-repair", ...common]);
    assertEquals(repair.code, 0, repair.stdout + repair.stderr);
    assert(repair.stdout.includes("repaired, switch finished"), repair.stdout);
    const again = await runMain(["verify", "-md5", ...common]);
    assertEquals(again.code, 0, again.stdout + again.stderr);
    assert(again.stdout.includes("verify: 1 key, 0 problems"), again.stdout);
    await assertNewMasterServes(c, ["-volumes", volumes.join(",")], key, after);
  } finally {
    await holder.stop();
    await c.stop();
  }
});

Deno.test("a GET during a REPLACE's renames waits for them and answers the new value's MD5", async () => {
  const c = await Cluster.start();
  const holder = new MoveHolder(c.volumes[2], "delay");
  try {
    const key = randomKey("/replace-wait");
    const before = randomBytes(3000);
    const after = randomBytes(3000);
    const volumes = [c.volumes[0], c.volumes[1], holder.volume];
    const m = await c.spawnMaster(["-volumes", volumes.join(",")]);
    try {
      const put = await fetch(m.url + key, { method: "PUT", body: before });
      await put.body?.cancel();
      assertEquals(put.status, 201);
      const replace = fetch(m.url + key, { method: "REPLACE", body: after });
      await holder.moved;
      // Two replicas renamed, the third's rename held: the GET waits.
      const get = assertServes(m.url, key, after);
      await new Promise((r) => setTimeout(r, 100));
      holder.release();
      await get;
      const replaced = await replace;
      await replaced.body?.cancel();
      assertEquals(replaced.status, 201);
    } finally {
      await m.stop();
    }
  } finally {
    await holder.stop();
    await c.stop();
  }
});
