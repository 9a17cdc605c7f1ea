// A REPLACE records its switch (the new record, where the value waits)
// before it renames, so that whoever takes the key over once its lease has
// run out (its master died, or was paused past it) finishes the switch.
// A master paused past its lease once its renames have landed, before it
// records the new value live, finds the key taken by such a request: the
// new value went live all the same, and the REPLACE answers so (201).
import { Cluster, randomBytes, randomKey, recordOf } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { assertServes, masterBehind, replicas, VolumeProxy, where } from "./replace_faults.ts";
import { md5, toHex } from "../../lib/keys.ts";

/**
 * Forwards the first MOVE (a REPLACE's rename) and holds its answer until
 * released; `landed` resolves once the volume has made it.
 */
class HeldMoveAnswer extends VolumeProxy {
  readonly #landed = Promise.withResolvers<void>();
  #taken = false;

  get landed(): Promise<void> {
    return this.#landed.promise;
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== "MOVE" || this.#taken) return await this.forward(req);
    this.#taken = true;
    const res = await this.forward(req);
    this.#landed.resolve();
    await this.released;
    return res;
  }
}

Deno.test("a REPLACE whose master is paused past its lease once its renames landed answers 201: the next reader finished its switch and was served the new value", async () => {
  const c = await Cluster.start({ flags: ["-lease", "2s"] });
  const proxies = c.volumes.map((v) => new HeldMoveAnswer(v));
  const paused = await masterBehind(c, proxies, ["-lease", "2s"]);
  try {
    const key = randomKey("/replace-paused");
    const after = randomBytes(200);
    const put = await fetch(paused.m.url + key, { method: "PUT", body: randomBytes(100) });
    assertEquals([put.status, await put.text()], [201, ""]);
    const replacing = fetch(paused.m.url + key, { method: "REPLACE", body: after });
    await Promise.all(proxies.map((p) => p.landed));
    const pid = paused.m.proc.pid;
    Deno.kill(pid, "SIGSTOP");
    try {
      // Past the lease (2 s) and heartbeats: a read on the other master finishes the switch.
      await new Promise((r) => setTimeout(r, 2600));
      await assertServes(c.url, key, after);
      for (const p of proxies) p.release();
    } finally {
      Deno.kill(pid, "SIGCONT");
    }
    const res = await replacing;
    assertEquals([res.status, await res.text()], [201, ""]);
    const volumes = proxies.map((p) => p.volume);
    const { mtime: _, ...rec } = (await recordOf(c, key))!;
    assertEquals(rec, {
      state: "live",
      rvolumes: where(volumes, key),
      hash: toHex(md5(after)),
      size: after.length,
    });
    assertEquals(await replicas(volumes, key), [after, after, after]);
    await assertServes(paused.m.url, key, after);
  } finally {
    await paused.stop();
    await c.stop();
  }
});
