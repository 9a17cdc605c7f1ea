// verify -md5 compares the replicas of a key with no recorded MD5 (a
// rebuilt one) with each other. A REPLACE of the key (with a value of the
// same size) between its reads of two replicas makes them differ: that is
// the key written meanwhile, no fault, as a replica judged missing or corrupt
// is no fault when the record changed since the scan read it (checked
// again against the record as it is now). `deno task test:faults`.
import { Cluster, randomBytes, randomKey, runMain } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { HeldVolume } from "../hung_volume.ts";
import { openIndex } from "../../lib/open.ts";

const enc = new TextEncoder();

async function send(url: string, init: RequestInit): Promise<number> {
  const res = await fetch(url, init);
  await res.body?.cancel();
  return res.status;
}

Deno.test("verify -md5 does not name as differing the replicas of a key with no recorded MD5 replaced between its reads of them", async () => {
  const flags = ["-replicas", "2", "-subvolumes", "1"];
  const c = await Cluster.start({ volumes: 2, flags });
  // Volume 1 behind a proxy that holds verify's read of the key's file there.
  const held = new HeldVolume(c.volumes[1]);
  try {
    await c.stopMaster();
    const volumes = [c.volumes[0], held.volume];
    const key = randomKey("/unhashed");
    const tool = [...flags, "-volumes", volumes.join(","), "-db", c.db];
    const m = await c.spawnMaster(["-volumes", volumes.join(",")]);
    try {
      assertEquals(await send(m.url + key, { method: "PUT", body: randomBytes(20_000) }), 201);
      await m.stop();
      // Rebuilt: the key's MD5 is forgotten.
      const rebuilt = await runMain(["rebuild", ...tool]);
      assertEquals(rebuilt.code, 0, rebuilt.stdout + rebuilt.stderr);
      const index = await openIndex(c.db);
      try {
        assertEquals((await index.get(enc.encode(key)))!.rec.hash, "");
      } finally {
        index.close();
      }
      const master = await c.spawnMaster(["-volumes", volumes.join(",")]);
      try {
        held.holdOn("GET", key);
        const verify = runMain(["verify", "-md5", ...tool]);
        // verify has read (or is reading) the old value on volume 0, and
        // waits on volume 1's: the key is replaced meanwhile.
        await held.arrived;
        const replaced = await send(master.url + key, {
          method: "REPLACE",
          body: randomBytes(20_000),
        });
        assertEquals(replaced, 201);
        held.letGo();
        const out = await verify;
        assert(!out.stdout.includes("replicas differ"), out.stdout);
        assertEquals(out.code, 0, out.stdout + out.stderr);
      } finally {
        await master.stop();
      }
    } finally {
      await m.stop();
    }
  } finally {
    await held.stop();
    await c.stop();
  }
});
