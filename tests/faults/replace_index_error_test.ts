// A REPLACE whose rename failed on one replica writes the new record (the
// replicas that switched) before it cleans that one. When the index fails
// that write, the claim is given up without a write (the record held before
// has no pending switch, and replicas are renamed already): its renewal
// timer stops, its lease runs out, and the next reader finishes the switch.
import { Cluster, randomBytes, randomKey } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { withIndex } from "../temp_index.ts";
import { Store } from "../../lib/store.ts";
import { FLAGS, storeOptions } from "../../lib/config.ts";
import { parseFlags } from "../../lib/flags.ts";
import { renewing } from "../../lib/claim.ts";
import { md5, toHex } from "../../lib/keys.ts";
import { replicas, VolumeProxy } from "./replace_faults.ts";

/** Refuses every MOVE (500, unsent). */
class MoveRefuser extends VolumeProxy {
  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "MOVE") return new Response("refused", { status: 500 });
    return await this.forward(req);
  }
}

function bodyOf(bytes: Uint8Array<ArrayBuffer>): ReadableStream<Uint8Array> {
  return new Blob([bytes]).stream();
}

Deno.test("a REPLACE whose new record the index fails to take leaves its claim to run out; the next read finishes it", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  const refuser = new MoveRefuser(c.volumes[2]);
  try {
    await withIndex(async (index) => {
      const volumes = [c.volumes[0], c.volumes[1], refuser.volume];
      const args = ["-volumes", volumes.join(","), "-lease", "500ms"];
      const store = new Store(index, storeOptions(parseFlags(args, FLAGS).flags));
      const key = new TextEncoder().encode(randomKey("/replace-index-error"));
      const before = randomBytes(1000);
      const after = randomBytes(2000);
      const put = await store.put(key, bodyOf(before), { contentLength: before.length });
      assertEquals(put.status, 201);

      // The REPLACE's third index write fails: after the hold and the
      // switch noted, the new record before the cleanup.
      const cas = index.cas.bind(index);
      let writes = 0;
      index.cas = (k, expect, rec) => {
        if (++writes === 3) return Promise.reject(new Error("Index write failed"));
        return cas(k, expect, rec);
      };
      const failed = await store.replace(key, bodyOf(after), { contentLength: after.length })
        .then(() => null, (err) => err);
      index.cas = cas;
      assertEquals(failed?.message, "Index write failed");
      assertEquals(renewing(), false, "the claim is not renewed on");

      // The record held before the switch, with the switch pending.
      const held = await index.get(key);
      assert(held?.rec.next, "the switch stays recorded");
      assertEquals(held.rec.hash, toHex(md5(before)));
      await new Promise((r) => setTimeout(r, 600)); // the lease
      const read = await store.readEntry(key);
      assertEquals(read?.rec.next, undefined);
      assertEquals(read?.rec.hash, toHex(md5(after)));
      assertEquals(read?.rec.rvolumes.length, 2, "the refused replica is not named");
      const path = new TextDecoder().decode(key);
      const files = await replicas(volumes, path);
      assertEquals(files.filter((f) => f !== null && f.length === after.length).length, 2);
    });
  } finally {
    await refuser.stop();
    await c.stop();
  }
});
