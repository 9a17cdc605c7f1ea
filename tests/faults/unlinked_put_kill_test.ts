// A master SIGKILLed amid a PUT over an unlinked key. The PUT writes its
// value beside the unlinked one and renames it over only once every
// replica has it, the switch recorded first (as REPLACE). Killed while
// writing, nothing was renamed: the key stays unlinked (it was left
// "writing" over files some of which held the new value, and verify
// -repair removed them with the record: the unlinked value was gone). Killed
// amid the renames, the next request of the key finishes the switch: the
// new value goes live on every replica, never a mix of the two.
import { Cluster, randomBytes, randomKey, runMain } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { assertServes, replicas, VolumeProxy } from "./replace_faults.ts";

/** Once `armed`, holds the first `method` (never sent) until `release()`, then answers 503. */
class Holder extends VolumeProxy {
  readonly #came = Promise.withResolvers<void>();
  #held = false;
  armed = false;

  constructor(target: string, readonly method: string) {
    super(target);
  }

  /** Resolves once that request came in. */
  get came(): Promise<void> {
    return this.#came.promise;
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== this.method || !this.armed || this.#held) return await this.forward(req);
    this.#held = true;
    this.#came.resolve();
    await this.released; // the master dies waiting
    await req.body?.cancel();
    return new Response(null, { status: 503 });
  }
}

const LEASE = ["-lease", "1s"];

/**
 * Writes `key` as `old`, UNLINKs it, then PUTs `value` through a master
 * killed once `holder` holds its request; the volumes' names after.
 */
async function killedPut(
  c: Cluster,
  holder: Holder,
  key: string,
  values: { old: Uint8Array<ArrayBuffer>; value: Uint8Array<ArrayBuffer> },
): Promise<string[]> {
  const volumes = [c.volumes[0], c.volumes[1], holder.volume];
  const m = await c.spawnMaster(["-volumes", volumes.join(","), ...LEASE]);
  try {
    const put = await fetch(m.url + key, { method: "PUT", body: values.old });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    const unlink = await fetch(m.url + key, { method: "UNLINK" });
    await unlink.body?.cancel();
    assertEquals(unlink.status, 204);
    holder.armed = true;
    const answered = fetch(m.url + key, { method: "PUT", body: values.value }).then(
      (r) => r.body?.cancel().then(() => r.status),
      () => 0,
    );
    const first = await Promise.race([holder.came.then(() => "held"), answered]);
    assertEquals(first, "held", "the PUT's request to the volume was held");
  } finally {
    await m.stop("SIGKILL");
  }
  await new Promise((r) => setTimeout(r, 1100)); // the dead master's lease
  return volumes;
}

async function keys(url: string): Promise<string[]> {
  return (await fetch(url).then((r) => r.json())).keys;
}

Deno.test("a master killed while a PUT over an unlinked key writes leaves the key unlinked, RELINK brings its value back, verify -repair removes the temporaries", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  const holder = new Holder(c.volumes[2], "PUT");
  try {
    const key = randomKey("/unlinked-put-kill");
    const old = randomBytes(3000);
    const volumes = await killedPut(c, holder, key, { old, value: randomBytes(5000) });
    const common = ["-db", c.db, "-volumes", volumes.join(",")];
    const repair = await runMain(["verify", "-repair", "-grace", "0s", ...common]);
    assertEquals(repair.code, 0, repair.stdout + repair.stderr);
    assert(!repair.stdout.includes("expired write"), repair.stdout);
    assertEquals(await replicas(volumes, key), [old, old, old]);
    const m = await c.spawnMaster(["-volumes", volumes.join(","), ...LEASE]);
    try {
      assertEquals(await keys(`${m.url}${key}?unlinked`), [key]);
      const relink = await fetch(m.url + key, { method: "RELINK" });
      assertEquals([relink.status, await relink.text()], [204, ""]);
      await assertServes(m.url, key, old);
    } finally {
      await m.stop();
    }
    const again = await runMain(["verify", "-md5", ...common]);
    assertEquals(again.code, 0, again.stdout + again.stderr);
    assert(again.stdout.includes("verify: 1 key, 0 problems"), again.stdout);
  } finally {
    await holder.stop();
    await c.stop();
  }
});

Deno.test("a master killed amid the renames of a PUT over an unlinked key: the next GET finishes it, the new value live on every replica", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  const holder = new Holder(c.volumes[2], "MOVE");
  try {
    const key = randomKey("/unlinked-put-kill");
    const value = randomBytes(5000);
    const volumes = await killedPut(c, holder, key, { old: randomBytes(3000), value });
    const m = await c.spawnMaster(["-volumes", volumes.join(","), ...LEASE]);
    try {
      await assertServes(m.url, key, value);
      assertEquals(await replicas(volumes, key), [value, value, value]);
      assertEquals(await keys(`${m.url}${key}?unlinked`), []);
      assertEquals(await keys(`${m.url}${key}?list`), [key]);
    } finally {
      await m.stop();
    }
    const check = await runMain(["verify", "-md5", "-db", c.db, "-volumes", volumes.join(",")]);
    assertEquals(check.code, 0, check.stdout + check.stderr);
    assert(check.stdout.includes("verify: 1 key, 0 problems"), check.stdout);
  } finally {
    await holder.stop();
    await c.stop();
  }
});

Deno.test("verify -repair finishes a PUT over an unlinked key whose master was killed amid its renames", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  const holder = new Holder(c.volumes[2], "MOVE");
  try {
    const key = randomKey("/unlinked-put-kill");
    const value = randomBytes(5000);
    const volumes = await killedPut(c, holder, key, { old: randomBytes(3000), value });
    const common = ["-db", c.db, "-volumes", volumes.join(",")];
    const check = await runMain(["verify", ...common]);
    assertEquals(check.code, 1, check.stdout + check.stderr);
    assert(
      check.stdout.includes(`unfinished PUT over the unlinked value: "${key}" (unlinked)`),
      check.stdout,
    );
    const repair = await runMain(["verify", "-repair", ...common]);
    assertEquals(repair.code, 0, repair.stdout + repair.stderr);
    assert(repair.stdout.includes("repaired, switch finished"), repair.stdout);
    assertEquals(await replicas(volumes, key), [value, value, value]);
    const m = await c.spawnMaster(["-volumes", volumes.join(",")]);
    try {
      await assertServes(m.url, key, value);
    } finally {
      await m.stop();
    }
  } finally {
    await holder.stop();
    await c.stop();
  }
});
