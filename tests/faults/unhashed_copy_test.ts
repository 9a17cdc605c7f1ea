// Copies of a key whose MD5 the index does not know (rebuilt: rebuild
// reads only listings), one of whose replicas holds other bytes of the
// recorded size. Only its size was checked: verify -repair and rebalance
// copied whichever replica came first, and nothing could tell. Now the
// replicas are compared first: when they differ, none is copied (nothing
// tells which is the value); when they agree, their MD5 is recorded and
// the copies are held to it. verify -md5 names replicas that differ.
import { Cluster, randomBytes, randomKey, runMain } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { key2path, key2volume, md5, toHex } from "../../lib/keys.ts";
import { openIndex } from "../../lib/open.ts";
import type { Record } from "../../lib/record.ts";

const enc = new TextEncoder();

async function recordOf(db: string, key: string): Promise<Record> {
  const index = await openIndex(db);
  try {
    return (await index.get(enc.encode(key)))!.rec;
  } finally {
    index.close();
  }
}

async function send(url: string, init: RequestInit): Promise<number> {
  const res = await fetch(url, init);
  await res.body?.cancel();
  return res.status;
}

/** The file at `url`, null when there is none. */
async function fileAt(url: string): Promise<Uint8Array | null> {
  const res = await fetch(url);
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  return new Uint8Array(await res.arrayBuffer());
}

interface Rebuilt {
  c: Cluster;
  key: string;
  value: Uint8Array;
  /** The key's file on volume v. */
  url: (v: string) => string;
  /** -replicas, -subvolumes and -db, as the tools are given them. */
  flags: string[];
}

/**
 * A key of `replicas` replicas on `volumes` (of the cluster's), PUT then
 * rebuilt (its MD5 forgotten), handed to `check`.
 */
async function withRebuiltKey(
  opts: { volumes: number; replicas: number; on?: number; pick?: (key: string) => boolean },
  check: (r: Rebuilt) => Promise<void>,
) {
  const flags = ["-replicas", String(opts.replicas), "-subvolumes", "1"];
  const c = await Cluster.start({ volumes: opts.volumes, flags });
  try {
    await c.stopMaster();
    const on = c.volumes.slice(0, opts.on ?? opts.volumes);
    let key: string;
    do key = randomKey("/unhashed"); while (opts.pick && !opts.pick.call(c, key));
    const value = randomBytes(20_000);
    const m = await c.spawnMaster(["-volumes", on.join(",")]);
    assertEquals(await send(m.url + key, { method: "PUT", body: value }), 201);
    await m.stop();
    const tool = [...flags, "-db", c.db];
    const rebuilt = await runMain(["rebuild", "-volumes", on.join(","), ...tool]);
    assertEquals(rebuilt.code, 0, rebuilt.stdout + rebuilt.stderr);
    assertEquals((await recordOf(c.db, key)).hash, "");
    const path = key2path(enc.encode(key));
    await check({ c, key, value, url: (v) => `http://${v}${path}`, flags: tool });
  } finally {
    await c.stop();
  }
}

/** Other bytes of the value's size over its file at `url`. */
async function overwrite(url: string, value: Uint8Array): Promise<Uint8Array> {
  const other = randomBytes(value.length);
  assertEquals(await send(url, { method: "PUT", body: other }), 204);
  return other;
}

Deno.test("verify -md5 names the replicas of a key with no recorded MD5 that hold other bytes", async () => {
  await withRebuiltKey({ volumes: 3, replicas: 3 }, async ({ c, key, value, url, flags }) => {
    const rec = await recordOf(c.db, key);
    const other = await overwrite(url(rec.rvolumes[0]), value);
    const out = await runMain(["verify", "-md5", "-volumes", c.volumes.join(","), ...flags]);
    assertEquals(out.code, 1, out.stdout + out.stderr);
    const [a, b, d] = rec.rvolumes;
    const groups = [[toHex(md5(other)), a], [toHex(md5(value)), `${b}, ${d}`]]
      .sort(([x], [y]) => x < y ? -1 : 1)
      .map(([h, vs]) => `MD5 ${h} on ${vs}`);
    assert(
      out.stdout.includes(`replicas differ: ${JSON.stringify(key)} (`) &&
        groups.every((g) => out.stdout.includes(g)),
      out.stdout,
    );
  });
});

Deno.test("verify -repair copies no replica of a key with no recorded MD5 whose replicas differ", async () => {
  await withRebuiltKey({ volumes: 3, replicas: 3 }, async ({ c, key, value, url, flags }) => {
    const rec = await recordOf(c.db, key);
    // The first healthy replica, the one copied from, holds other bytes.
    await overwrite(url(rec.rvolumes[0]), value);
    assertEquals(await send(url(rec.rvolumes[2]), { method: "DELETE" }), 204);
    const out = await runMain(["verify", "-repair", "-volumes", c.volumes.join(","), ...flags]);
    assertEquals(out.code, 1, out.stdout + out.stderr);
    assert(
      out.stdout.includes(
        `missing replica: ${JSON.stringify(key)} on ${rec.rvolumes[2]} (cannot repair: ` +
          `its replicas differ (`,
      ),
      out.stdout,
    );
    assertEquals(await fileAt(url(rec.rvolumes[2])), null);
    assertEquals((await recordOf(c.db, key)).hash, "");
  });
});

Deno.test("verify -repair copies a replica of a key with no recorded MD5 whose replicas agree, and records their MD5", async () => {
  await withRebuiltKey({ volumes: 3, replicas: 3 }, async ({ c, key, value, url, flags }) => {
    const rec = await recordOf(c.db, key);
    assertEquals(await send(url(rec.rvolumes[2]), { method: "DELETE" }), 204);
    const out = await runMain(["verify", "-repair", "-volumes", c.volumes.join(","), ...flags]);
    assertEquals(out.code, 0, out.stdout + out.stderr);
    assertEquals(await fileAt(url(rec.rvolumes[2])), value);
    const now = await recordOf(c.db, key);
    assertEquals(now.hash, toHex(md5(value)));
    assertEquals(now.rvolumes, rec.rvolumes);
    assertEquals(now.until, undefined);
  });
});

/** A key that a third volume's arrival moves (of -replicas 2 on the first two). */
function moves(this: Cluster, key: string): boolean {
  return key2volume(enc.encode(key), this.volumes, 2, 1).includes(this.volumes[2]);
}

Deno.test("rebalance moves no key with no recorded MD5 whose replicas differ", async () => {
  await withRebuiltKey(
    { volumes: 3, replicas: 2, on: 2, pick: moves },
    async ({ c, key, value, url, flags }) => {
      const rec = await recordOf(c.db, key);
      // The replica the move drops is the one it copies from first.
      const dropped = rec.rvolumes.find((v) =>
        !key2volume(enc.encode(key), c.volumes, 2, 1).includes(v)
      )!;
      await overwrite(url(dropped), value);
      const out = await runMain(["rebalance", "-volumes", c.volumes.join(","), ...flags]);
      assertEquals(out.code, 1, out.stdout + out.stderr);
      assert(out.stdout.includes("moved 0 keys, 1 failed\n"), out.stdout);
      assert(!out.stderr.includes("held by another writer"), out.stdout + out.stderr);
      assert(out.stdout.includes(`${JSON.stringify(key)}: 500 Its replicas differ (`), out.stdout);
      const now = await recordOf(c.db, key);
      assertEquals(now.rvolumes, rec.rvolumes);
      assertEquals(now.hash, "");
      assertEquals(await fileAt(url(c.volumes[2])), null);
    },
  );
});

Deno.test("rebalance of a key with no recorded MD5 whose replicas agree records their MD5", async () => {
  await withRebuiltKey(
    { volumes: 3, replicas: 2, on: 2, pick: moves },
    async ({ c, key, value, url, flags }) => {
      const out = await runMain(["rebalance", "-volumes", c.volumes.join(","), ...flags]);
      assertEquals(out.code, 0, out.stdout + out.stderr);
      const now = await recordOf(c.db, key);
      assertEquals(now.hash, toHex(md5(value)));
      assertEquals(now.rvolumes, key2volume(enc.encode(key), c.volumes, 2, 1));
      assertEquals(await fileAt(url(c.volumes[2])), value);
    },
  );
});

/** `method key` on a master of `c` on `volumes` (-replicas and -subvolumes as the tools'). */
async function onMaster(
  c: Cluster,
  volumes: string[],
  call: { method: string; key: string },
): Promise<{ status: number; text: string }> {
  const m = await c.spawnMaster(["-volumes", volumes.join(",")]);
  try {
    const res = await fetch(m.url + call.key, { method: call.method });
    return { status: res.status, text: await res.text() };
  } finally {
    await m.stop();
  }
}

Deno.test("REBALANCE of a key with no recorded MD5 whose replicas differ answers 500 and copies none", async () => {
  await withRebuiltKey(
    { volumes: 3, replicas: 2, on: 2, pick: moves },
    async ({ c, key, value, url }) => {
      const rec = await recordOf(c.db, key);
      // The replica the move drops is the one it copies from first.
      const dropped = rec.rvolumes.find((v) =>
        !key2volume(enc.encode(key), c.volumes, 2, 1).includes(v)
      )!;
      await overwrite(url(dropped), value);
      const out = await onMaster(c, c.volumes, { method: "REBALANCE", key });
      assertEquals(out.status, 500);
      assert(out.text.startsWith("Its replicas differ (MD5 "), out.text);
      assertEquals(await recordOf(c.db, key), rec);
      assertEquals(await fileAt(url(c.volumes[2])), null);
    },
  );
});

Deno.test("REBALANCE copying back a lost replica of a key with no recorded MD5 whose other replicas differ answers 500 and copies none", async () => {
  await withRebuiltKey({ volumes: 3, replicas: 3 }, async ({ c, key, value, url }) => {
    const rec = await recordOf(c.db, key);
    await overwrite(url(rec.rvolumes[0]), value);
    assertEquals(await send(url(rec.rvolumes[2]), { method: "DELETE" }), 204);
    const out = await onMaster(c, c.volumes, { method: "REBALANCE", key });
    assertEquals(out.status, 500);
    assert(out.text.startsWith("Its replicas differ (MD5 "), out.text);
    assertEquals(await recordOf(c.db, key), rec);
    assertEquals(await fileAt(url(rec.rvolumes[2])), null);
  });
});

Deno.test("REBALANCE of a key with no recorded MD5 whose replicas agree moves it and records their MD5", async () => {
  await withRebuiltKey(
    { volumes: 3, replicas: 2, on: 2, pick: moves },
    async ({ c, key, value, url }) => {
      assertEquals(await onMaster(c, c.volumes, { method: "REBALANCE", key }), {
        status: 204,
        text: "",
      });
      const now = await recordOf(c.db, key);
      assertEquals(now.hash, toHex(md5(value)));
      assertEquals(now.rvolumes, key2volume(enc.encode(key), c.volumes, 2, 1));
      assertEquals(now.until, undefined);
      assertEquals(await fileAt(url(c.volumes[2])), value);
    },
  );
});
