// Masters placing keys otherwise (another -volumes, as while volumes are
// added one master at a time) share keys: a write on one that leaves the
// key's old copies on a volume it no longer places the key on removes them
// once the new value is live. Another master places the key on that very
// volume: a removal that lands after its write there (a DELETE slow to be
// carried out) took its acknowledged value. The key stays held until those
// removals are answered.
import { Cluster, randomBytes, randomKey, status } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { assertServes, VolumeProxy } from "./replace_faults.ts";
import { key2path } from "../../lib/keys.ts";

/** Holds each DELETE of `path`, unsent, until released; `seen` resolves when the first comes. */
class HeldDelete extends VolumeProxy {
  readonly #seen = Promise.withResolvers<void>();
  path = "";

  get seen(): Promise<void> {
    return this.#seen.promise;
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "DELETE" && this.path && new URL(req.url).pathname.endsWith(this.path)) {
      this.#seen.resolve();
      await this.released;
    }
    return await this.forward(req);
  }
}

Deno.test("a PUT over an unlinked key placed elsewhere holds the key until its old copy is removed: another master's value written there meanwhile stays", async () => {
  const c = await Cluster.start();
  const held = new HeldDelete(c.volumes[0]);
  const flags = ["-replicas", "1", "-voltimeout", "200ms"];
  // The old placement writes through the proxy; the new one to another volume.
  const old = await c.spawnMaster(flags, {}, { volumes: [held.volume] });
  const now = await c.spawnMaster(flags, {}, { volumes: [c.volumes[1]] });
  try {
    const key = randomKey();
    held.path = key2path(new TextEncoder().encode(key));
    assertEquals(await status(old.url + key, { method: "PUT", body: randomBytes(100) }), 201);
    assertEquals(await status(old.url + key, { method: "UNLINK" }), 204);
    // Written where `now` places it, its old copy's DELETE held.
    const put = fetch(now.url + key, { method: "PUT", body: randomBytes(200) });
    await held.seen;
    let last = null;
    if (await status(old.url + key, { method: "DELETE" }) === 204) {
      // The key's new value is on a volume of its own: the old master puts its next one back.
      last = randomBytes(300);
      assertEquals(await status(old.url + key, { method: "PUT", body: last }), 201);
    }
    held.release();
    assertEquals((await put).status, 201);
    if (last === null) {
      assertEquals(await status(old.url + key, { method: "DELETE" }), 204);
      last = randomBytes(300);
      assertEquals(await status(old.url + key, { method: "PUT", body: last }), 201);
    }
    await assertServes(old.url, key, last);
  } finally {
    await now.stop();
    await old.stop();
    await held.stop();
    await c.stop();
  }
});
