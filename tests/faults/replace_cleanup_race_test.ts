// A REPLACE whose rename fails on one replica deletes the old value's file
// there. That volume is one of the key's own, where the key's next writer
// writes too: a DELETE landing after the next writer's file would remove a
// live replica. So the cleanup happens while the key is still held, and a
// writer on another master meanwhile gets 409 rather than a file that is
// about to be deleted. (Found by bench/chaos.ts: a GET then answered 410.)
import { Cluster, randomBytes, randomKey } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { assertServes, replicas, VolumeProxy } from "./replace_faults.ts";
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
