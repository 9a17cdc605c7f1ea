// A REPLACE records its switch (the new record, where the value waits)
// before it renames. Once the renames are made, the index refusing the
// record that names the new value (locked past retrying, or fenced twice)
// takes nothing back: the switch stays recorded, the replicas hold the new
// value, and once the lease has run out the key's next request finishes
// the switch, finding the renames made. So the REPLACE is done: it answers
// 201, saying what it left to the next request (it answered 503 "retry",
// and a retry met 409 until the lease ran out, then wrote the value again).
import { Cluster, randomBytes, randomKey } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { withIndex } from "../temp_index.ts";
import { Store } from "../../lib/store.ts";
import { FLAGS, storeOptions } from "../../lib/config.ts";
import { parseFlags } from "../../lib/flags.ts";
import { renewing } from "../../lib/claim.ts";
import { md5, toHex } from "../../lib/keys.ts";
import { replicas, where } from "./replace_faults.ts";

const LEASE = 600;

function bodyOf(bytes: Uint8Array<ArrayBuffer>): ReadableStream<Uint8Array> {
  return new Blob([bytes]).stream();
}

/** What the REPLACE left undone, the index having refused as SQLite refuses a locked file. */
const LEFT = "The index refused the record naming the new value (the index stayed locked " +
  "(another process holds its write lock) past 10 s of retries): the switch recorded before " +
  "the renames is finished by the key's next request once -lease has passed (its writes " +
  "answer 409 until then)";

Deno.test("a REPLACE whose record naming the new value the index refuses after its renames answers 201: the switch stays recorded, and the next request after the lease finishes it", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  try {
    await withIndex(async (index) => {
      const args = ["-volumes", c.volumes.join(","), "-lease", `${LEASE}ms`];
      const store = new Store(index, storeOptions(parseFlags(args, FLAGS).flags));
      const name = randomKey("/replace-switch-refused");
      const key = new TextEncoder().encode(name);
      const before = randomBytes(100);
      const after = randomBytes(200);
      assertEquals((await store.put(key, bodyOf(before), { contentLength: 100 })).status, 201);

      // The index refuses, once, the record naming the new value with no switch.
      const cas = index.cas.bind(index);
      let refused = false;
      index.cas = (k, expect, rec, opts) => {
        if (refused || rec?.hash !== toHex(md5(after)) || rec.next) {
          return cas(k, expect, rec, opts);
        }
        refused = true;
        return Promise.reject(new Error("database is locked"));
      };
      const out = await store.replace(key, bodyOf(after), { contentLength: 200 });
      index.cas = cas;
      assertEquals([out.status, out.message], [201, LEFT]);
      assertEquals(renewing(), false, "the claim is not renewed on");
      assertEquals(await replicas(c.volumes, name), [after, after, after]);

      // The switch stays recorded, its writes held until the lease runs out.
      const held = await index.get(key);
      assert(held?.rec.next, "the switch stays recorded");
      const again = await store.replace(key, bodyOf(randomBytes(300)), { contentLength: 300 });
      assertEquals(again.status, 409, again.message);
      await new Promise((r) => setTimeout(r, LEASE + 100));
      const { mtime: _, ...rec } = (await store.readEntry(key))!.rec;
      const rvolumes = where(c.volumes, name);
      assertEquals(rec, { state: "live", rvolumes, hash: toHex(md5(after)), size: 200 });
      assertEquals(await replicas(c.volumes, name), [after, after, after]);
    });
  } finally {
    await c.stop();
  }
});
