// verify -repair beside a REPLACE whose master was SIGKILLed after it
// recorded its switch (the new record, the temporary's name) and before any
// rename landed, while that master's lease still runs: the key is skipped
// as held, and the temporaries, which the record names, are no orphans.
// Deleted, they were the new value's only copies, and the next reader that
// finished the switch took each replica (the new value's size) for renamed:
// the index recorded the new value's MD5 over the old bytes.
// So too when the REPLACE recorded its switch after verify's scan read the
// key (a scan longer than -grace): its temporaries are judged old against
// the scan's start, not the walk's.
import { Cluster, randomBytes, randomKey, runMain, volumeFiles } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { assertNewMasterServes, replaceUnanswered, VolumeProxy } from "./replace_faults.ts";

/** Holds every MOVE until released, then answers those 503 unsent; later ones go through. */
class MoveDropper extends VolumeProxy {
  readonly #moved = Promise.withResolvers<void>();
  #dropping = true;

  /** Resolves once a MOVE came in. */
  get moved(): Promise<void> {
    return this.#moved.promise;
  }

  override release() {
    this.#dropping = false;
    super.release();
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== "MOVE" || !this.#dropping) return await this.forward(req);
    this.#moved.resolve();
    await this.released; // the master dies waiting
    return new Response(null, { status: 503 });
  }
}

/** The REPLACE temporaries on the cluster's volumes. */
async function temporaries(c: Cluster): Promise<string[]> {
  const files = (await Promise.all(c.volumes.map((v) => volumeFiles(v)))).flat();
  return files.filter((f) => f.includes("replace."));
}

Deno.test("verify -repair keeps the temporaries of a REPLACE its dead master still holds", async () => {
  const c = await Cluster.start();
  const proxies = c.volumes.map((v) => new MoveDropper(v));
  try {
    const volumes = proxies.map((p) => p.volume);
    const key = randomKey("/held-switch");
    const before = randomBytes(3000);
    const after = randomBytes(3000); // the same size: only the MD5 tells them apart
    // A lease long enough that verify scans the key while it still runs.
    const m = await c.spawnMaster(["-volumes", volumes.join(","), "-lease", "8s"]);
    try {
      const put = await fetch(m.url + key, { method: "PUT", body: before });
      await put.body?.cancel();
      assertEquals(put.status, 201);
      replaceUnanswered(m.url, key, after);
      await Promise.all(proxies.map((p) => p.moved));
    } finally {
      await m.stop("SIGKILL");
    }
    assertEquals((await temporaries(c)).length, 3);
    const flags = ["-db", c.db, "-volumes", volumes.join(",")];
    const repair = await runMain(["verify", "-repair", "-grace", "0s", ...flags]);
    assert(repair.stdout.includes("1 held (not checked)"), repair.stdout + repair.stderr);
    assertEquals((await temporaries(c)).length, 3, repair.stdout);
    // Once the dead master's lease has run out, a reader finishes the switch.
    for (const p of proxies) p.release();
    await new Promise((r) => setTimeout(r, 8100));
    await assertNewMasterServes(c, ["-volumes", volumes.join(",")], key, after);
    const check = await runMain(["verify", "-md5", ...flags]);
    assertEquals(check.code, 0, check.stdout + check.stderr);
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await c.stop();
  }
});

/**
 * Forwards everything but what it is armed for: the listing of the volume's
 * root (verify's walk starts there) is held until released; MOVEs are
 * dropped as MoveDropper's.
 */
class WalkHolder extends MoveDropper {
  readonly #listed = Promise.withResolvers<void>();
  readonly #walk = Promise.withResolvers<void>();
  holdWalk = false;
  dropMoves = false;

  /** Resolves once the root's listing came in (armed). */
  get listed(): Promise<void> {
    return this.#listed.promise;
  }

  releaseWalk() {
    this.#walk.resolve();
  }

  protected override async handle(req: Request): Promise<Response> {
    if (this.holdWalk && req.method === "GET" && new URL(req.url).pathname === "/") {
      this.#listed.resolve();
      await this.#walk.promise;
      return await this.forward(req);
    }
    if (req.method === "MOVE" && !this.dropMoves) return await this.forward(req);
    return await super.handle(req);
  }
}

Deno.test("verify -repair keeps the temporaries of a REPLACE recorded after its scan read the key", async () => {
  const c = await Cluster.start();
  const proxies = c.volumes.map((v) => new WalkHolder(v));
  try {
    const volumes = proxies.map((p) => p.volume);
    const key = randomKey("/late-switch");
    const before = randomBytes(3000);
    const after = randomBytes(3000);
    const m = await c.spawnMaster(["-volumes", volumes.join(","), "-lease", "2s"]);
    const flags = ["-db", c.db, "-volumes", volumes.join(",")];
    let repair;
    try {
      const put = await fetch(m.url + key, { method: "PUT", body: before });
      await put.body?.cancel();
      assertEquals(put.status, 201);
      // verify scans the key (no switch recorded yet), then its walk waits:
      // a scan that lasts longer than -grace (a large index) as a pause.
      for (const p of proxies) p.holdWalk = true;
      const verify = runMain(["verify", "-repair", "-grace", "0s", ...flags]);
      await proxies[0].listed;
      // The volumes' mtimes are whole seconds: the temporaries' must be
      // later than the scan's start.
      await new Promise((r) => setTimeout(r, 1100));
      for (const p of proxies) p.dropMoves = true;
      replaceUnanswered(m.url, key, after);
      await Promise.all(proxies.map((p) => p.moved));
      await m.stop("SIGKILL");
      assertEquals((await temporaries(c)).length, 3);
      for (const p of proxies) p.releaseWalk();
      repair = await verify;
    } finally {
      await m.stop("SIGKILL");
    }
    assertEquals((await temporaries(c)).length, 3, repair.stdout);
    for (const p of proxies) p.release();
    await new Promise((r) => setTimeout(r, 2100)); // the dead master's lease
    await assertNewMasterServes(c, ["-volumes", volumes.join(",")], key, after);
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await c.stop();
  }
});
