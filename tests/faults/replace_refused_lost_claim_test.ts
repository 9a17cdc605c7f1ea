// A REPLACE whose renames every volume refused keeps the old value: it
// writes the old record back, without the switch it noted, and removes its
// temporaries. When that write finds the claim lost (this master paused
// past its lease, the key taken), the switch is still recorded and the key
// is another's: whoever took it finishes the switch (#settle), renaming
// again, and the new value goes live if the volumes take it now. So the
// REPLACE cannot say the old value stays: it answers 503, the outcome
// unknown, and a retry of it is safe (it finishes the switch first, then
// writes the value again). A SIGSTOP cannot land in that window (no volume
// call marks it): here the index write of the old record returns only once
// the lease has run out and another store has finished the switch.
import { Cluster, randomBytes, randomKey, volumeFiles } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { withIndex } from "../temp_index.ts";
import { Store } from "../../lib/store.ts";
import { FLAGS, storeOptions } from "../../lib/config.ts";
import { parseFlags } from "../../lib/flags.ts";
import type { Index } from "../../lib/index_db.ts";
import type { Record } from "../../lib/record.ts";
import { md5, toHex } from "../../lib/keys.ts";
import { replicas, VolumeProxy, where } from "./replace_faults.ts";

const LEASE = 600;

/** Refuses every MOVE (500, unsent) while `refusing`. */
class MoveRefuser extends VolumeProxy {
  refusing = true;

  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "MOVE" && this.refusing) return new Response("refused", { status: 500 });
    return await this.forward(req);
  }
}

function bodyOf(bytes: Uint8Array<ArrayBuffer>): ReadableStream<Uint8Array> {
  return new Blob([bytes]).stream();
}

/**
 * Runs `write` with the index's write of a record naming the MD5 `hash`
 * without a switch or a lease (a REPLACE giving its key back, its old
 * value kept) made only once the lease has run out and `take` has run
 * (another writer taking the key).
 */
async function takenBeforeKept(
  index: Index,
  hash: string,
  run: { write: () => Promise<unknown>; take: () => Promise<unknown> },
): Promise<unknown> {
  const cas = index.cas.bind(index);
  let taken = false;
  const keptBack = (rec: Record | null) =>
    rec?.hash === hash && rec.next === undefined && rec.until === undefined;
  index.cas = async (key, expect, rec, opts) => {
    if (!taken && keptBack(rec)) {
      taken = true;
      await new Promise((r) => setTimeout(r, LEASE + 100));
      await run.take();
    }
    return await cas(key, expect, rec, opts);
  };
  try {
    return await run.write();
  } finally {
    index.cas = cas;
  }
}

/** What the REPLACE's 503 says after the reason of the first refused rename. */
const LOST = "(every volume refused the rename; then the claim on the key was lost to the " +
  "key's next request, which renames again: the new value goes live if the volumes take it " +
  "now, else the old one stays): retry to be sure";

Deno.test("a REPLACE whose renames were all refused, its claim then lost to a request that finished the switch, answers 503 (not a 500 saying the old value stays): the new value is live", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  const refusers = c.volumes.map((v) => new MoveRefuser(v));
  try {
    await withIndex(async (index) => {
      const volumes = refusers.map((r) => r.volume);
      const args = ["-volumes", volumes.join(","), "-lease", `${LEASE}ms`];
      const store = new Store(index, storeOptions(parseFlags(args, FLAGS).flags));
      const next = new Store(index, storeOptions(parseFlags(args, FLAGS).flags));
      const key = new TextEncoder().encode(randomKey("/replace-refused-lost"));
      const before = randomBytes(100);
      const after = randomBytes(200);
      assertEquals((await store.put(key, bodyOf(before), { contentLength: 100 })).status, 201);
      const out = await takenBeforeKept(index, toHex(md5(before)), {
        write: () => store.replace(key, bodyOf(after), { contentLength: 200 }),
        take: async () => {
          for (const r of refusers) r.refusing = false;
          // The key's next reader: the switch recorded, its lease run out.
          await next.readEntry(key);
        },
      }) as { status: number; message: string };
      assertEquals(out.status, 503, out.message);
      assert(out.message.startsWith("Cannot MOVE "), out.message);
      assert(out.message.endsWith(` ${LOST}`), out.message);
      const { mtime: _, ...rec } = (await index.get(key))!.rec;
      const rvolumes = where(volumes, new TextDecoder().decode(key));
      assertEquals(rec, { state: "live", rvolumes, hash: toHex(md5(after)), size: 200 });
      const path = new TextDecoder().decode(key);
      assertEquals(await replicas(volumes, path), [after, after, after]);
      // Nothing else is left: the temporaries were renamed.
      for (const v of c.volumes) assertEquals((await volumeFiles(v)).length, 1, v);
    });
  } finally {
    await Promise.all(refusers.map((r) => r.stop()));
    await c.stop();
  }
});
