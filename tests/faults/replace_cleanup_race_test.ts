// A REPLACE whose rename fails on one replica deletes the old value's file
// there. That volume is one of the key's own, where the key's next writer
// writes too: a DELETE landing after the next writer's file would remove a
// live replica. So the cleanup happens while the key is still held, and a
// writer on another master meanwhile gets 409 rather than a file that is
// about to be deleted. (Found by bench/chaos.ts: a GET then answered 410.)
import { Cluster, randomBytes, randomKey, status } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { assertServes, replicas, VolumeProxy, where } from "./replace_faults.ts";
import { key2path } from "../../lib/keys.ts";

/** Refuses the first MOVE (500, unsent); holds the first DELETE of `path` until `release()`. */
class RefuseThenHold extends VolumeProxy {
  readonly #held = Promise.withResolvers<void>();
  #refused = false;
  #holding = false;

  constructor(target: string, readonly path: string) {
    super(target);
  }

  /** Resolves once the DELETE of `path` came in. */
  get held(): Promise<void> {
    return this.#held.promise;
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "MOVE" && !this.#refused) {
      this.#refused = true;
      return new Response("refused", { status: 500 });
    }
    if (
      req.method === "DELETE" && new URL(req.url).pathname.endsWith(this.path) && !this.#holding
    ) {
      this.#holding = true;
      this.#held.resolve();
      await this.released;
    }
    return await this.forward(req);
  }
}

Deno.test("a REPLACE cleans a replica that did not switch before another master may write the key", async () => {
  const c = await Cluster.start();
  const key = randomKey("/replace-cleanup");
  const proxy = new RefuseThenHold(c.volumes[2], key2path(new TextEncoder().encode(key)));
  const volumes = [c.volumes[0], c.volumes[1], proxy.volume];
  const flags = ["-volumes", volumes.join(","), "-voltimeout", "5s"];
  const a = await c.spawnMaster(flags);
  const b = await c.spawnMaster(flags);
  try {
    const put = await fetch(a.url + key, { method: "PUT", body: randomBytes(1000) });
    await put.body?.cancel();
    assertEquals(put.status, 201);

    // a's rename is refused on the proxied volume; its DELETE of the old
    // value there is held.
    const first = fetch(a.url + key, { method: "REPLACE", body: randomBytes(2000) });
    await proxy.held;
    const second = randomBytes(3000);
    const early = await fetch(b.url + key, { method: "REPLACE", body: second });
    await early.body?.cancel();
    assertEquals(early.status, 409, "the key is still a's");

    proxy.release();
    const firstRes = await first;
    assertEquals(firstRes.status, 500);
    assertEquals(
      (await firstRes.text()).endsWith(
        "live on 2 of 3 replicas: REBALANCE the key to copy it back)\n",
      ),
      true,
    );
    const again = await fetch(b.url + key, { method: "REPLACE", body: second });
    await again.body?.cancel();
    assertEquals(again.status, 201);
    assertEquals(await replicas(volumes, key), [second, second, second]);
    await assertServes(b.url, key, second);
  } finally {
    await a.stop();
    await b.stop();
    await proxy.stop();
    await c.stop();
  }
});

/** The key's file on each of `volumes`, in their order (null: none). */
async function filesOn(volumes: string[], key: string): Promise<(Uint8Array | null)[]> {
  const files = await replicas(volumes, key);
  const at = where(volumes, key);
  return volumes.map((v) => files[at.findIndex((r) => r.startsWith(`${v}/`))]);
}

/** Refuses MOVEs while `refuseMoves`; holds DELETEs while `holdDeletes`, until `release()`. */
class Switchable extends VolumeProxy {
  refuseMoves = false;
  holdDeletes = false;
  readonly #held = Promise.withResolvers<void>();

  /** Resolves once a DELETE is held. */
  get held(): Promise<void> {
    return this.#held.promise;
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "MOVE" && this.refuseMoves) return new Response("refused", { status: 500 });
    if (req.method === "DELETE" && this.holdDeletes) {
      this.#held.resolve();
      await this.released;
    }
    return await this.forward(req);
  }
}

Deno.test("a GET during a REPLACE's cleanup is sent to a replica that switched, not to one being cleaned", async () => {
  const c = await Cluster.start();
  const [a, b, cc] = c.volumes.map((v) => new Switchable(v));
  const volumes = [a.volume, b.volume, cc.volume];
  const m = await c.spawnMaster(["-volumes", volumes.join(","), "-voltimeout", "5s"]);
  try {
    const key = randomKey("/replace-cleanup");
    const put = await fetch(m.url + key, { method: "PUT", body: randomBytes(1000) });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    // The key's only replica is on the third volume.
    a.refuseMoves = b.refuseMoves = true;
    const first = await fetch(m.url + key, { method: "REPLACE", body: randomBytes(2000) });
    assertEquals(first.status, 500);
    assert((await first.text()).includes("live on 1 of 3 replicas"));
    assertEquals((await filesOn(volumes, key)).map((f) => f !== null), [false, false, true]);

    // Switched on the first volume only; the third's old file is cleaned
    // while the second's cleanup is held.
    a.refuseMoves = false;
    cc.refuseMoves = true;
    b.holdDeletes = true;
    const value = randomBytes(3000);
    const second = fetch(m.url + key, { method: "REPLACE", body: value });
    await b.held;
    for (let i = 0; i < 100 && (await filesOn(volumes, key))[2] !== null; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assertEquals((await filesOn(volumes, key))[2], null, "the third volume's file is gone");
    const res = await assertServes(m.url, key, value);
    assertEquals(res.headers.get("location")!.startsWith(`http://${a.volume}/`), true);

    b.release();
    const secondRes = await second;
    assertEquals(secondRes.status, 500);
    assert((await secondRes.text()).includes("live on 1 of 3 replicas"));
    await assertServes(m.url, key, value);
  } finally {
    await m.stop();
    await Promise.all([a, b, cc].map((p) => p.stop()));
    await c.stop();
  }
});

Deno.test("a REPLACE whose cleanup DELETE goes unanswered keeps the key from writers for its lease", async () => {
  const c = await Cluster.start();
  const key = randomKey("/replace-linger");
  const proxy = new RefuseThenHold(c.volumes[2], key2path(new TextEncoder().encode(key)));
  const volumes = [c.volumes[0], c.volumes[1], proxy.volume];
  const flags = ["-volumes", volumes.join(","), "-voltimeout", "300ms", "-lease", "2s"];
  const m = await c.spawnMaster(flags);
  try {
    const put = await fetch(m.url + key, { method: "PUT", body: randomBytes(1000) });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    // The rename is refused on the proxied volume, and the DELETE of its old
    // file there is held past -voltimeout: the volume may still carry it out.
    const first = await fetch(m.url + key, { method: "REPLACE", body: randomBytes(2000) });
    assertEquals(first.status, 500);
    assert((await first.text()).includes("live on 2 of 3 replicas"));
    const second = randomBytes(3000);
    const early = await fetch(m.url + key, { method: "REPLACE", body: second });
    assertEquals(early.status, 409, "writers wait while that DELETE may land");
    assertEquals(
      (await early.text()).replace(/ \(in \d+ s\)\n$/, " (in N s)\n"),
      "A volume has yet to answer for this key's last write: retry once -lease has passed (in N s)\n",
    );
    const read = await fetch(m.url + key, { redirect: "manual" });
    await read.body?.cancel();
    assertEquals(read.status, 302, "readers do not");
    // Nor UNLINK and RELINK, which write no file: the lease stays with the key.
    assertEquals(await status(m.url + key, { method: "UNLINK" }), 204);
    assertEquals(await status(m.url + key), 404);
    assertEquals(await status(m.url + key, { method: "RELINK" }), 204);
    const still = await fetch(m.url + key, { method: "REPLACE", body: second });
    assertEquals(still.status, 409, "writers still wait");
    await still.body?.cancel();

    proxy.release(); // it lands now, on the old value's file
    await new Promise((r) => setTimeout(r, 2100)); // the lease
    const late = await fetch(m.url + key, { method: "REPLACE", body: second });
    await late.body?.cancel();
    assertEquals(late.status, 201);
    assertEquals(await replicas(volumes, key), [second, second, second]);
  } finally {
    await m.stop();
    await proxy.stop();
    await c.stop();
  }
});
