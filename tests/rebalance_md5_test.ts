// rebalance reads each moving key from a copy about to go first. When that
// copy has its recorded size but other bytes (a disk's silent corruption),
// the record's MD5 says so: the move must read another copy rather than
// spread the bad bytes to the new volumes and delete a good copy.
import { Cluster, randomBytes, randomKey, runMain } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { openIndex } from "../lib/open.ts";
import { key2path, key2volume, md5, toHex } from "../lib/keys.ts";

const enc = new TextEncoder();

/**
 * A cluster of 4 volumes whose keys were written on the first 3: `small`
 * keys of 3 KiB (copied through memory) and `large` ones of 2 MiB
 * (streamed), each of which moves when rebalanced onto all 4. Each key's
 * copies on the volumes it leaves (read first) keep their size and lose
 * their bytes; with `allBad`, every copy does.
 */
async function corruptCluster(
  opts: { small: number; large: number; allBad: boolean },
): Promise<{ c: Cluster; values: Map<string, Uint8Array> }> {
  const c = await Cluster.start({ volumes: 4 });
  const three = c.volumes.slice(0, 3);
  await c.stopMaster();
  await c.startMaster([], three);
  const prefix = randomKey("/corrupt-source");
  const values = new Map<string, Uint8Array>();
  const want = [...Array(opts.small).fill(3000), ...Array(opts.large).fill(2 << 20)];
  for (let i = 0; want.length > 0; i++) {
    const k = `${prefix}/k${i}`;
    const key = enc.encode(k);
    const before = key2volume(key, three, 3, 10);
    if (key2volume(key, c.volumes, 3, 10).every((v) => before.includes(v))) continue;
    const value = randomBytes(want.pop()!);
    const res = await fetch(c.url + k, { method: "PUT", body: value });
    await res.body?.cancel();
    assertEquals(res.status, 201, k);
    values.set(k, value);
  }
  await c.stopMaster();
  for (const [k, value] of values) {
    const key = enc.encode(k);
    const after = key2volume(key, c.volumes, 3, 10);
    for (const v of key2volume(key, three, 3, 10)) {
      if (!opts.allBad && after.includes(v)) continue;
      const url = `http://${v}${key2path(key)}`;
      const res = await fetch(url, { method: "PUT", body: randomBytes(value.length) });
      await res.body?.cancel();
      assertEquals(res.status, 204, url);
    }
  }
  return { c, values };
}

Deno.test("rebalance copies no replica whose bytes differ from the recorded MD5, small or streamed", async () => {
  const { c, values } = await corruptCluster({ small: 4, large: 2, allBad: false });
  try {
    const r = await runMain(["rebalance", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    assert(r.stdout.includes("rebalance: moved 6 keys, 0 failed"), r.stdout);
    // Every replica of every moved key holds the value as written.
    const index = await openIndex(c.db);
    try {
      for (const [k, value] of values) {
        const key = enc.encode(k);
        const { rvolumes } = (await index.get(key))!.rec;
        assertEquals(rvolumes, key2volume(key, c.volumes, 3, 10), k);
        for (const v of rvolumes) {
          const file = await fetch(`http://${v}${key2path(key)}`);
          assertEquals(
            toHex(md5(new Uint8Array(await file.arrayBuffer()))),
            toHex(md5(value)),
            `${k} on ${v}`,
          );
        }
      }
    } finally {
      index.close();
    }
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance of a key whose every copy fails its MD5 moves nothing and stores no copy", async () => {
  const { c, values } = await corruptCluster({ small: 1, large: 1, allBad: true });
  try {
    const r = await runMain(["rebalance", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(r.stdout.includes("rebalance: moved 0 keys, 2 failed"), r.stdout);
    const index = await openIndex(c.db);
    try {
      for (const k of values.keys()) {
        const key = enc.encode(k);
        assert(r.stdout.includes(`"${k}": 500 `), r.stdout);
        assert(r.stdout.includes("holds other bytes than the recorded MD5"), r.stdout);
        // The record as it was; the new volume got no file of the key.
        const { rvolumes } = (await index.get(key))!.rec;
        assertEquals(rvolumes, key2volume(key, c.volumes.slice(0, 3), 3, 10), k);
        for (const v of key2volume(key, c.volumes, 3, 10)) {
          if (rvolumes.includes(v)) continue;
          const res = await fetch(`http://${v}${key2path(key)}`, { method: "HEAD" });
          await res.body?.cancel();
          assertEquals(res.status, 404, `${k} on ${v}`);
        }
      }
    } finally {
      index.close();
    }
  } finally {
    await c.stop();
  }
});
