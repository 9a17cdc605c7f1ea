// A REPLACE whose renames every volume refuses (a status: the old value
// stays) removes its temporaries and only then clears the switch it had
// recorded. A master killed between the two left a recorded switch whose
// temporaries were gone: the next reader took "gone" for "renamed" when the
// old file had the new value's size (the new MD5 served over the old bytes),
// and otherwise could never finish the switch (503, verify -repair exit 1).
import { Cluster, randomKey, runMain } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import {
  assertNewMasterServes,
  replaceUnanswered,
  replicas,
  VolumeProxy,
} from "./replace_faults.ts";

/**
 * While `refuse`: answers MOVE 403 without sending it on, and sends on a
 * DELETE of a REPLACE temporary but never answers it (the master is killed
 * waiting).
 */
class Refuser extends VolumeProxy {
  refuse = true;
  deleted = Promise.withResolvers<void>();

  protected override async handle(req: Request): Promise<Response> {
    if (!this.refuse) return await this.forward(req);
    if (req.method === "MOVE") return new Response(null, { status: 403 });
    const res = await this.forward(req);
    if (req.method === "DELETE" && new URL(req.url).pathname.includes("/replace.")) {
      await res.body?.cancel();
      this.deleted.resolve();
      await this.released;
    }
    return res;
  }
}

async function refusedThenKilled(beforeSize: number, afterSize: number) {
  const c = await Cluster.start();
  const proxies = c.volumes.map((v) => new Refuser(v));
  const volumes = proxies.map((p) => p.volume);
  const flags = ["-volumes", volumes.join(","), "-lease", "1s"];
  const key = randomKey("/replace-refused");
  const before = new Uint8Array(beforeSize).fill(1);
  const after = new Uint8Array(afterSize).fill(2);
  try {
    for (const p of proxies) p.refuse = false;
    const m = await c.spawnMaster(flags);
    try {
      const put = await fetch(m.url + key, { method: "PUT", body: before });
      await put.body?.cancel();
      assertEquals(put.status, 201);
      for (const p of proxies) p.refuse = true;
      replaceUnanswered(m.url, key, after);
      // Every rename refused: the temporaries are being removed.
      await Promise.all(proxies.map((p) => p.deleted.promise));
    } finally {
      await m.stop("SIGKILL");
    }
    for (const p of proxies) p.refuse = false;
    await new Promise((r) => setTimeout(r, 1200)); // the dead master's lease
    // The REPLACE was refused everywhere: the old value, under its own MD5.
    await assertNewMasterServes(c, flags, key, before);
    const common = ["-db", c.db, "-volumes", volumes.join(",")];
    const repair = await runMain(["verify", "-md5", "-repair", ...common]);
    const again = await runMain(["verify", "-md5", ...common]);
    assertEquals(again.code, 0, repair.stdout + again.stdout + again.stderr);
    assertEquals(await replicas(volumes, key), [before, before, before]);
  } finally {
    await Promise.all(proxies.map((p) => p.stop()));
    await c.stop();
  }
}

Deno.test("a REPLACE refused by every volume, its master killed amid its cleanup: same sizes keep the old MD5", async () => {
  await refusedThenKilled(3000, 3000);
});

Deno.test("a REPLACE refused by every volume, its master killed amid its cleanup: the key does not stay unfinished", async () => {
  await refusedThenKilled(3000, 5000);
});
