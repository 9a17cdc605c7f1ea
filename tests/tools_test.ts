// rebuild and rebalance against real nginx volumes, and the thrash tool's flags.
import { Cluster, freePort, randomBytes, randomKey, runMain, status } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { openIndex } from "../lib/open.ts";
import type { Entry } from "../lib/index_db.ts";
import { key2name, key2path, key2volume, md5, toHex } from "../lib/keys.ts";
import { plural } from "../lib/progress.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function snapshot(db: string): Promise<Map<string, Entry>> {
  const index = await openIndex(db);
  const out = new Map<string, Entry>();
  for await (const [k, e] of index.entries()) out.set(dec.decode(k), e);
  index.close();
  return out;
}

/** Keys of every kind the layout has: plain, unicode, base64 with "/", long. */
function keysOfEveryKind(prefix: string): string[] {
  const keys = [`${prefix}/plain`, `${prefix}/ünï 鍵`];
  // Names over 255 bytes are cut into nested segments: 250 bytes is one
  // segment after base64, 600 and 1,500 several.
  for (const n of [150, 250, 600, 1500]) {
    keys.push(`${prefix}/` + "L".repeat(n - prefix.length - 1));
  }
  for (let i = 0; keys.length < 8; i++) {
    const k = `${prefix}/s${"x".repeat(i % 3)}${String.fromCodePoint(0xf0 + i % 16)}ÿ`;
    if (key2name(enc.encode(k)).includes("_")) keys.push(k);
  }
  return keys;
}

async function putAll(c: Cluster, keys: string[]): Promise<Map<string, string>> {
  const md5s = new Map<string, string>();
  for (const k of keys) {
    const value = randomBytes(1000 + Math.floor(Math.random() * 5000));
    const res = await fetch(c.url + encodeURI(k), { method: "PUT", body: value });
    assertEquals(res.status, 201, `PUT ${k}`);
    md5s.set(k, toHex(md5(value)));
  }
  return md5s;
}

async function readMd5(c: Cluster, key: string): Promise<{ md5: string; balance: string | null }> {
  const res = await fetch(c.url + encodeURI(key), { redirect: "manual" });
  await res.body?.cancel();
  assertEquals(res.status, 302, `GET ${key}`);
  const file = await fetch(res.headers.get("location")!);
  return {
    md5: toHex(md5(new Uint8Array(await file.arrayBuffer()))),
    balance: res.headers.get("key-balance"),
  };
}

Deno.test("rebuild recreates the index from the volumes, entry for entry", async () => {
  const c = await Cluster.start();
  try {
    const prefix = randomKey("/rebuild");
    const keys = [...keysOfEveryKind(prefix)];
    for (let i = 0; i < 40; i++) keys.push(`${prefix}/k${i}`);
    const md5s = await putAll(c, keys);
    await c.stopMaster();
    const live = await snapshot(c.db);
    const fresh = `${c.dir}/rebuilt`;
    const r = await runMain(["rebuild", "-volumes", c.volumes.join(","), "-db", fresh]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.includes(`rebuild: ${keys.length} keys recorded from `), r.stdout);
    const rebuilt = await snapshot(fresh);
    assertEquals([...rebuilt.keys()].sort(), [...live.keys()].sort());
    for (const [k, e] of live) {
      const got = rebuilt.get(k)!;
      assertEquals(got.rec.state, "live", k);
      assertEquals(got.rec.rvolumes, e.rec.rvolumes, `volumes of ${k}`);
      assertEquals(got.rec.size, e.rec.size, `size of ${k}`);
      // nginx lists times to the second: the file was written within it.
      assert(Math.abs(got.rec.mtime! - e.rec.mtime!) < 2_000, `mtime of ${k}`);
    }
    // The master runs on the rebuilt index and every value reads back.
    await c.startMaster(["-db", fresh]);
    for (const k of keys) assertEquals((await readMd5(c, k)).md5, md5s.get(k), k);
  } finally {
    await c.stop();
  }
});

/** The index's incomplete mark (null when complete). */
async function incompleteMark(db: string) {
  const index = await openIndex(db);
  try {
    return await index.incomplete();
  } finally {
    index.close();
  }
}

/**
 * A cluster of one replica a key holding `n` keys (each on one volume), its
 * master stopped and volume 1 down; `fn` gets the keys and the -volumes and
 * -db flags a tool is given.
 */
async function withVolumeDown(
  n: number,
  fn: (c: Cluster, keys: string[], args: string[]) => Promise<void>,
): Promise<void> {
  const c = await Cluster.start({ flags: ["-replicas", "1"] });
  try {
    const keys = Array.from({ length: n }, () => randomKey("/partial"));
    for (const k of keys) assertEquals(await status(c.url + k, { method: "PUT", body: k }), 201);
    await c.stopMaster();
    await c.stopVolume(1);
    await fn(c, keys, ["-volumes", c.volumes.join(","), "-db", c.db, "-replicas", "1"]);
  } finally {
    await c.stop();
  }
}

Deno.test("rebuild with a volume's root unreadable exits 1 naming it, and leaves the index as it was", async () => {
  await withVolumeDown(12, async (c, _keys, args) => {
    const before = await snapshot(c.db);
    const r = await runMain(["rebuild", ...args]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    const lines = r.stdout.split("\n");
    const at = lines.indexOf(
      "rebuild: 1 volume's root could not be read; the index was not changed (a rebuild " +
        "without it would drop the keys held only there): run rebuild again once every volume " +
        "answers, or with -skip-unreadable to rebuild from the others and leave the index " +
        "marked incomplete:",
    );
    assert(at >= 0, r.stdout);
    // Named once: a volume whose root cannot be listed is not walked further.
    const named = lines.slice(at + 1).filter((l) => l.startsWith("  "));
    assertEquals(named.length, 1, r.stdout);
    assert(named[0].startsWith(`  Cannot list "http://${c.volumes[1]}/": `), r.stdout);
    assertEquals(await snapshot(c.db), before);
    assertEquals(await incompleteMark(c.db), null);
  });
});

Deno.test("rebuild -skip-unreadable records the keys of the volumes it reads and leaves the index marked incomplete, naming the volume it skipped", async () => {
  await withVolumeDown(12, async (c, keys, args) => {
    const on1 = keys.filter((k) => key2volume(enc.encode(k), c.volumes, 1, 1)[0] === c.volumes[1]);
    assert(on1.length > 0 && on1.length < keys.length, "keys on volume 1 and elsewhere");
    const r = await runMain(["rebuild", ...args, "-skip-unreadable"]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(
      r.stdout.includes(
        "rebuild: skipped 1 volume whose root could not be read (-skip-unreadable); the index " +
          "is incomplete: keys held only there are missing (run rebuild again once every volume " +
          `answers; until then verify -repair deletes no orphans):\n  Cannot list "http://${
            c.volumes[1]
          }/": `,
      ),
      r.stdout,
    );
    assertEquals(
      [...(await snapshot(c.db)).keys()].sort(),
      keys.filter((k) => !on1.includes(k)).sort(),
    );
    assertEquals(
      (await incompleteMark(c.db))?.why,
      `a rebuild skipped 1 volume it could not read (${c.volumes[1]})`,
    );
    // Once the volume is back, a rebuild records every key and clears the mark.
    await c.startVolume(1);
    assertEquals((await runMain(["rebuild", ...args])).code, 0);
    assertEquals([...(await snapshot(c.db)).keys()].sort(), [...keys].sort());
    assertEquals(await incompleteMark(c.db), null);
  });
});

/**
 * Writes `keys` through `c`'s master, stops it, and rebuilds a new index
 * (`db`) from c's volumes and `wrong`: another service where a volume was
 * meant, answering every request with `answer()`; `flags` are rebuild's.
 */
async function rebuildWithWrongVolume(
  c: Cluster,
  keys: string[],
  opts: { answer: () => Response; flags?: string[] },
) {
  const other = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, opts.answer);
  try {
    for (const k of keys) assertEquals(await status(c.url + k, { method: "PUT", body: k }), 201);
    await c.stopMaster();
    const wrong = `127.0.0.1:${other.addr.port}`;
    const db = `${c.dir}/rebuilt`;
    const volumes = [...c.volumes, wrong].join(",");
    const r = await runMain(["rebuild", "-volumes", volumes, "-db", db, ...opts.flags ?? []]);
    return { r, wrong, db };
  } finally {
    await other.shutdown();
  }
}

Deno.test("rebuild refuses a -volumes entry whose root answers 404 (no volume there), naming it, and records nothing", async () => {
  const c = await Cluster.start();
  try {
    // It has no root folder.
    const { r, wrong, db } = await rebuildWithWrongVolume(c, [randomKey("/rebuild-404")], {
      answer: () => new Response("not here", { status: 404 }),
    });
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(
      r.stdout.includes(
        "rebuild: 1 volume's root could not be read; the index was not changed (a rebuild " +
          "without it would drop the keys held only there): run rebuild again once every " +
          "volume answers, or with -skip-unreadable to rebuild from the others and leave the " +
          "index marked incomplete:\n" +
          `  Cannot list "http://${wrong}/": status 404 (no volume's root: is -volumes right?)\n`,
      ),
      r.stdout,
    );
    assertEquals((await snapshot(db)).size, 0);
    assertEquals(await incompleteMark(db), null);
  } finally {
    await c.stop();
  }
});

Deno.test("rebuild -skip-unreadable names a volume whose root listing is JSON but no listing, reads the others and marks the index incomplete", async () => {
  const c = await Cluster.start();
  try {
    const keys = [randomKey("/rebuild-json"), randomKey("/rebuild-json")];
    const { r, wrong, db } = await rebuildWithWrongVolume(c, keys, {
      answer: () => Response.json({ error: "not a volume" }),
      flags: ["-skip-unreadable"],
    });
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(
      r.stdout.includes(`  Cannot list "http://${wrong}/": not an nginx JSON listing\n`),
      r.stdout,
    );
    const got = await snapshot(db);
    for (const k of keys) assertEquals(got.get(k)?.rec.rvolumes.length, 3, k);
    assertEquals(
      (await incompleteMark(db))?.why,
      `a rebuild skipped 1 volume it could not read (${wrong})`,
    );
  } finally {
    await c.stop();
  }
});

Deno.test("rebuild whose -volumes name no readable volume exits 1 and leaves the index unchanged", async () => {
  const c = await Cluster.start();
  // Other services (a root answering 404, one answering JSON that is no
  // listing) and a port nobody listens on.
  const serve = (answer: () => Response) =>
    Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, answer);
  const others = [
    serve(() => new Response("not here", { status: 404 })),
    serve(() => Response.json({ error: "not a volume" })),
  ];
  try {
    const key = randomKey("/rebuild-wrong");
    assertEquals(await status(c.url + key, { method: "PUT", body: key }), 201);
    await c.stopMaster();
    const before = await snapshot(c.db);
    const wrong = [...others.map((o) => `127.0.0.1:${o.addr.port}`), `127.0.0.1:${freePort()}`];
    const r = await runMain(["rebuild", "-volumes", wrong.join(","), "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    const lines = r.stdout.split("\n");
    const at = lines.indexOf(
      "rebuild: no volume's root could be read (is -volumes right?); the index was not changed:",
    );
    assert(at >= 0, r.stdout);
    const named = lines.slice(at + 1).filter((l) => l.startsWith("  ")).sort();
    assertEquals(
      named,
      [
        `  Cannot list "http://${wrong[0]}/": status 404 (no volume's root: is -volumes right?)`,
        `  Cannot list "http://${wrong[1]}/": not an nginx JSON listing`,
        `  Cannot list "http://${wrong[2]}/": client error (Connect): tcp connect error: ` +
        `Connection refused (os error 111) (${wrong[2]} stopped answering; its other folders ` +
        `were not read)`,
      ].sort(),
    );
    assertEquals(await snapshot(c.db), before);
    const index = await openIndex(c.db);
    try {
      assertEquals(await index.incomplete(), null);
    } finally {
      index.close();
    }
  } finally {
    for (const o of others) await o.shutdown();
    await c.stop();
  }
});

Deno.test("rebuild refused for its volumes leaves a -db that did not exist not made", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  try {
    const db = `${dir}/indexdb`;
    const volumes = [freePort(), freePort(), freePort()].map((p) => `127.0.0.1:${p}`).join(",");
    const r = await runMain(["rebuild", "-volumes", volumes, "-db", db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(
      r.stdout.includes(
        "rebuild: no volume's root could be read (is -volumes right?); the index was not changed:",
      ),
      r.stdout,
    );
    assertEquals([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A key written through `c`'s master (then stopped) and, on its first
 * volume, a file of each key `<that key>/<end repeated 2,100 times>`: too
 * long for the index, as Go mkv (no limit on keys) would have stored them.
 */
async function keyAndTooLong(c: Cluster, prefix: string, ends: string[]) {
  const k = randomKey(prefix);
  assertEquals(await status(c.url + k, { method: "PUT", body: k }), 201);
  await c.stopMaster();
  const long = ends.map((end) => `${k}/${end.repeat(2100)}`);
  const files = long.map((l) => `http://${c.volumes[0]}${key2path(enc.encode(l))}`);
  for (const file of files) {
    assertEquals(await status(file, { method: "PUT", body: "long key" }), 201);
  }
  return { k, long, files };
}

Deno.test("rebuild counts the keys it recorded, and apart those it found too long for the index", async () => {
  const c = await Cluster.start({ flags: ["-replicas", "1", "-subvolumes", "1"] });
  try {
    await keyAndTooLong(c, "/rebuild-count", ["x", "y"]);
    const r = await runMain(["rebuild", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(
      /^rebuild: 1 key recorded from 3 \(sub\)volumes in \d+\.\ds; 2 more keys found, not recorded \(2 too long for the index\)$/m
        .test(r.stdout),
      r.stdout,
    );
  } finally {
    await c.stop();
  }
});

Deno.test("rebuild names a key too long for the index apart and leaves the index complete: verify -repair still deletes orphans", async () => {
  const c = await Cluster.start({ flags: ["-replicas", "1", "-subvolumes", "1"] });
  try {
    const { k, long: [long], files: [file] } = await keyAndTooLong(c, "/rebuild-long", ["x"]);
    const args = ["-volumes", c.volumes.join(","), "-db", c.db, "-replicas", "1"];
    const r = await runMain(["rebuild", ...args]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(
      r.stdout.includes(
        "rebuild: 1 key found is too long for the index (at most 2043 bytes, a zero byte counting twice) and left " +
          "unrecorded; no master serves them, and verify names their files:\n" +
          `  ${JSON.stringify(long)} on ${c.volumes[0]}\n`,
      ),
      r.stdout,
    );
    assert(!r.stdout.includes("the index is incomplete"), r.stdout);
    // Left by a write that failed after the rebuild.
    const orphan = `http://${c.volumes[1]}${key2path(enc.encode(randomKey("/rebuild-long")))}`;
    assertEquals(await status(orphan, { method: "PUT", body: "nobody's" }), 201);
    const v = await runMain(["verify", ...args, "-repair", "-grace", "0s"]);
    assertEquals(v.code, 1, v.stdout + v.stderr);
    assert(v.stdout.includes(`orphan file: ${orphan} (no record): repaired, deleted\n`), v.stdout);
    assert(v.stdout.includes(`unrecordable file: ${file} `), v.stdout);
    assertEquals(await status(orphan), 404);
    assertEquals(await status(file), 200);
    await c.startMaster();
    assertEquals(await (await fetch(c.url + k)).text(), k);
  } finally {
    await c.stop();
  }
});

Deno.test("after a rebuild that missed a volume, verify -repair deletes none of its files; a full rebuild clears that", async () => {
  const c = await Cluster.start({ flags: ["-replicas", "1"] });
  try {
    const keys = Array.from({ length: 12 }, () => randomKey("/partial"));
    for (const k of keys) assertEquals(await status(c.url + k, { method: "PUT", body: k }), 201);
    await c.stopMaster();
    await c.stopVolume(2);
    const args = ["-volumes", c.volumes.join(","), "-db", c.db, "-replicas", "1"];
    assertEquals((await runMain(["rebuild", ...args, "-skip-unreadable"])).code, 1);
    await c.startVolume(2);
    const v = await runMain(["verify", ...args, "-repair", "-grace", "0s"]);
    assertEquals(v.code, 1, v.stdout + v.stderr);
    const why = `a rebuild skipped 1 volume it could not read (${c.volumes[2]})`;
    assert(
      v.stdout.split("\n").some((l) =>
        l.startsWith(`index incomplete: ${why} (`) && l.endsWith("); run rebuild again")
      ),
      v.stdout,
    );
    assert(v.stdout.includes("(no record) (kept: the index is incomplete)"), v.stdout);
    assert(!v.stdout.includes("repaired, deleted"), v.stdout);
    const r = await runMain(["rebuild", ...args]);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    const clean = await runMain(["verify", ...args]);
    assertEquals(clean.code, 0, clean.stdout + clean.stderr);
    await c.startMaster();
    for (const k of keys) assertEquals(await (await fetch(c.url + k)).text(), k, k);
  } finally {
    await c.stop();
  }
});

Deno.test("rebuild refuses an index a running master uses, and the master keeps its keys", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/inuse");
    const put = await fetch(c.url + k, { method: "PUT", body: "still here" });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    const r = await runMain(["rebuild", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 1);
    assertEquals(
      r.stderr,
      "rebuild: 1 master or tool is using this index; stop them first " +
        "(rebuild empties the index before it reads the volumes)\n",
    );
    assertEquals(await (await fetch(c.url + k)).text(), "still here");
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance 5 -> 3 -> 5 volumes: every key readable, balanced, byte-identical", async () => {
  const c = await Cluster.start({ volumes: 5 });
  try {
    const prefix = randomKey("/rebalance");
    const keys = [...keysOfEveryKind(prefix)];
    for (let i = 0; i < 30; i++) keys.push(`${prefix}/k${i}`);
    const md5s = await putAll(c, keys);
    await c.stopMaster();
    const rebalanceTo = async (vols: string[]) => {
      const r = await runMain(["rebalance", "-volumes", vols.join(","), "-db", c.db]);
      assertEquals(r.code, 0, r.stderr);
    };
    // Drop two volumes: every key must end up on the other three.
    const three = c.volumes.slice(0, 3);
    await rebalanceTo(three);
    await c.stopVolume(3);
    await c.stopVolume(4);
    await c.startMaster([], three);
    for (const k of keys) {
      assertEquals(await readMd5(c, k), { md5: md5s.get(k)!, balance: "balanced" }, k);
    }
    await c.stopMaster();
    await c.startVolume(3);
    await c.startVolume(4);
    await rebalanceTo(c.volumes);
    await c.startMaster();
    for (const k of keys) {
      assertEquals(await readMd5(c, k), { md5: md5s.get(k)!, balance: "balanced" }, k);
    }
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance -dry-run reports on stdout and ends its progress with the counters' line, as the runs do", async () => {
  const c = await Cluster.start();
  try {
    const prefix = randomKey("/dry");
    for (const k of ["a", "b", "c"]) {
      assertEquals(await status(`${c.url}${prefix}/${k}`, { method: "PUT", body: "value" }), 201);
    }
    await c.stopMaster();
    // Two replicas where the records name three: every key would move.
    const flags = ["-volumes", c.volumes.join(","), "-db", c.db, "-replicas", "2"];
    const r = await runMain(["rebalance", "-dry-run", ...flags]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout, "rebalance: dry run: 3 of 3 keys would move, 15 bytes\n");
    // Nothing moved: no key counted.
    assert(/^rebalance: keys 0, scanned 3, 0 keys\/s, in \d+\.\ds\n$/.test(r.stderr), r.stderr);
  } finally {
    await c.stop();
  }
});

Deno.test("REBALANCE /key on the running master moves one key where the hash puts it", async () => {
  const c = await Cluster.start({ volumes: 4 });
  try {
    // Written with three volumes, then read by a master that has four.
    await c.stopMaster();
    await c.startMaster([], c.volumes.slice(0, 3));
    const prefix = randomKey("/online");
    const keys = Array.from({ length: 20 }, (_, i) => `${prefix}/${i}`);
    const md5s = await putAll(c, keys);
    await c.stopMaster();
    await c.startMaster();
    const moved = [];
    for (const k of keys) {
      if ((await readMd5(c, k)).balance === "balanced") continue;
      const res = await fetch(c.url + k, { method: "REBALANCE" });
      await res.body?.cancel();
      assertEquals(res.status, 204, k);
      moved.push(k);
    }
    assert(moved.length > 0, "some key lands on the new volume");
    for (const k of keys) {
      assertEquals(await readMd5(c, k), { md5: md5s.get(k)!, balance: "balanced" }, k);
    }
    const missing = await fetch(c.url + randomKey(), { method: "REBALANCE" });
    await missing.body?.cancel();
    assertEquals(missing.status, 404);
  } finally {
    await c.stop();
  }
});

Deno.test("REBALANCE /key copies a lost replica of a balanced key back, as mkv's; with none left it answers 500", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/heal");
    const value = randomBytes(3000);
    assertEquals(await status(c.url + k, { method: "PUT", body: value }), 201);
    const head = await fetch(c.url + k, { method: "HEAD", redirect: "manual" });
    const rvolumes = head.headers.get("key-volumes")!.split(",");
    const path = key2path(enc.encode(k));
    assertEquals(await status(`http://${rvolumes[0]}${path}`, { method: "DELETE" }), 204);
    const res = await fetch(c.url + k, { method: "REBALANCE" });
    assertEquals([res.status, await res.text()], [204, ""]);
    const back = await fetch(`http://${rvolumes[0]}${path}`);
    assertEquals(back.status, 200);
    assertEquals(new Uint8Array(await back.arrayBuffer()), value);
    const again = await fetch(c.url + k, { method: "HEAD", redirect: "manual" });
    assertEquals(again.headers.get("key-volumes"), rvolumes.join(","));
    assertEquals(again.headers.get("key-balance"), "balanced");
    // Every file gone: nothing to copy from, and the record stays as it was.
    for (const v of rvolumes) {
      assertEquals(await status(`http://${v}${path}`, { method: "DELETE" }), 204);
    }
    const lost = await fetch(c.url + k, { method: "REBALANCE" });
    assertEquals(
      [lost.status, await lost.text()],
      [500, "No replica of the key holds its file (data lost)\n"],
    );
    assertEquals(await status(c.url + k), 410);
  } finally {
    await c.stop();
  }
});

Deno.test("REBALANCE /key with a replica the hash keeps on a volume that does not answer: 503, then 204 once it is up", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/silent");
    assertEquals(await status(c.url + k, { method: "PUT", body: "value" }), 201);
    // -replicas 3 of 3 volumes: every volume keeps a replica.
    const down = c.volumes[0];
    await c.stopVolume(0);
    const res = await fetch(c.url + k, { method: "REBALANCE" });
    assertEquals([res.status, await res.text()], [
      503,
      `Volume ${down} did not say whether it holds the key's file: REBALANCE again once it answers\n`,
    ]);
    await c.startVolume(0);
    assertEquals(await status(c.url + k, { method: "REBALANCE" }), 204);
  } finally {
    await c.stop();
  }
});

Deno.test("REBALANCE /key moving a key off a volume that does not answer moves it (204); the copy there is left, recorded", async () => {
  const c = await Cluster.start({ volumes: 4 });
  try {
    // Written on volumes 0-2 (-replicas 2), then read by a master with all four.
    await c.stopMaster();
    await c.startMaster(["-replicas", "2"], c.volumes.slice(0, 3));
    const prefix = randomKey("/leave");
    const keys = Array.from({ length: 40 }, (_, i) => `${prefix}/${i}`);
    await putAll(c, keys);
    await c.stopMaster();
    await c.startMaster(["-replicas", "2"]);
    const enc = new TextEncoder();
    // A key on volume 0 that the hash now puts elsewhere.
    const volumesOf = (replicas: string[]) => replicas.map((r) => r.split("/")[0]);
    const [k, replica] = await (async () => {
      for (const k of keys) {
        const head = await fetch(c.url + k, { method: "HEAD", redirect: "manual" });
        const from = head.headers.get("key-volumes")!.split(",");
        const to = volumesOf(key2volume(enc.encode(k), c.volumes, 2, 10));
        const i = volumesOf(from).indexOf(c.volumes[0]);
        if (i >= 0 && !to.includes(c.volumes[0])) return [k, from[i]];
      }
      throw new Error("No key leaves volume 0");
    })();
    const kvolumes = key2volume(enc.encode(k), c.volumes, 2, 10);
    await c.stopVolume(0);
    const res = await fetch(c.url + k, { method: "REBALANCE" });
    assertEquals([res.status, await res.text()], [204, ""]);
    const head = await fetch(c.url + k, { method: "HEAD", redirect: "manual" });
    assertEquals(head.headers.get("key-volumes"), [...kvolumes, replica].join(","));
    assertEquals(head.headers.get("key-balance"), "unbalanced");
    await c.startVolume(0);
    const left = await fetch(`http://${replica}${key2path(enc.encode(k))}`);
    await left.body?.cancel();
    assertEquals(left.status, 200, "the copy on the volume that was down is still there");
  } finally {
    await c.stop();
  }
});

Deno.test("rebuild reads volumes written the way Go mkv writes them", async () => {
  const c = await Cluster.start();
  try {
    await c.stopMaster();
    // Files put straight on nginx at mkv's paths (key2volume, key2path are
    // mkv's, checked against its vectors), as a Go mkv cluster leaves them.
    const keys = Array.from({ length: 25 }, (_, i) => `/mkv/written/${i}`);
    for (const k of keys) {
      const key = enc.encode(k);
      for (const v of key2volume(key, c.volumes, 3, 10)) {
        const res = await fetch(`http://${v}${key2path(key)}`, { method: "PUT", body: `go ${k}` });
        await res.body?.cancel();
        assertEquals(res.status, 201);
      }
    }
    const r = await runMain(["rebuild", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 0, r.stderr);
    await c.startMaster();
    const listed: string[] = (await fetch(`${c.url}/mkv/written/?list`).then((x) => x.json())).keys;
    assertEquals(listed, keys.slice().sort());
    for (const k of keys) {
      const res = await fetch(c.url + k, { redirect: "manual" });
      await res.body?.cancel();
      assertEquals(res.headers.get("key-balance"), "balanced", k);
      assertEquals(await (await fetch(c.url + k)).text(), `go ${k}`);
    }
  } finally {
    await c.stop();
  }
});

Deno.test("progress: one line rewritten in place on a terminal, plain lines otherwise", async () => {
  const { Progress } = await import("../lib/progress.ts");
  const tty: string[] = [];
  const p = new Progress("rebuild", { main: "keys", tty: true, write: (s) => tty.push(s) });
  p.total = 10;
  p.add("keys", 4);
  p.add("folders", 2);
  p.show();
  const summary = p.done();
  assert(tty[0].startsWith("\rrebuild: keys 4/10, folders 2, "), tty[0]);
  assert(/ETA \d+s/.test(tty[0]), tty[0]);
  assert(tty[1].startsWith("\r") && tty[1].endsWith("\n"), tty[1]);
  assert(summary.startsWith("rebuild: keys 4, folders 2, ") && / in \d/.test(summary), summary);
  const plain: string[] = [];
  const q = new Progress("verify", { main: "keys", tty: false, write: (s) => plain.push(s) });
  q.add("keys");
  q.show();
  q.done();
  assert(plain.every((l) => !l.includes("\r") && l.endsWith("\n")), JSON.stringify(plain));
});

Deno.test("rebuild -concurrency 1 recovers every key; bad -concurrency is refused", async () => {
  const c = await Cluster.start();
  try {
    const prefix = randomKey("/conc");
    const keys = Array.from({ length: 12 }, (_, i) => `${prefix}/k${i}`);
    await putAll(c, keys);
    await c.stopMaster();
    const args = ["rebuild", "-volumes", c.volumes.join(","), "-db", `${c.dir}/one`];
    const r = await runMain([...args, "-concurrency", "1"]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.includes(`rebuild: ${keys.length} keys recorded from `), r.stdout);
    assert(r.stderr.includes(`rebuild: keys ${keys.length}, `), r.stderr);
    const bad = await runMain([...args, "-concurrency=-1"]);
    assertEquals(bad.code, 2, bad.stderr);
    assert(bad.stderr.includes("-concurrency must be at least 1"), bad.stderr);
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance refuses a second name for a volume the index names, and moves nothing", async () => {
  const c = await Cluster.start();
  try {
    const prefix = randomKey("/alias");
    const keys = Array.from({ length: 10 }, (_, i) => `${prefix}/k${i}`);
    const md5s = await putAll(c, keys);
    await c.stopMaster();
    // The same three nginx, named "localhost" where the index says "127.0.0.1":
    // every copy would land on the file it was read from, then be deleted.
    const renamed = c.volumes.map((v) => v.replace("127.0.0.1", "localhost"));
    const r = await runMain(["rebalance", "-volumes", renamed.join(","), "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(r.stderr.includes(`${renamed[0]} and ${c.volumes[0]}`), r.stderr);
    assert(r.stderr.includes("nothing moved"), r.stderr);
    await c.startMaster();
    for (const k of keys) {
      assertEquals(await readMd5(c, k), { md5: md5s.get(k)!, balance: "balanced" }, k);
    }
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance refuses an mkv master named in -volumes, and moves nothing", async () => {
  // It went on: each copy "to" that volume was a PUT the other master took
  // for a key of its own, and the index then named that master as a replica.
  const c = await Cluster.start();
  const other = await Cluster.start();
  try {
    const prefix = randomKey("/master-as-volume");
    const keys = Array.from({ length: 10 }, (_, i) => `${prefix}/k${i}`);
    const md5s = await putAll(c, keys);
    await c.stopMaster();
    const master = new URL(other.url).host;
    const volumes = [c.volumes[0], c.volumes[1], master].join(",");
    const r = await runMain(["rebalance", "-volumes", volumes, "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assertEquals(
      r.stderr.trimEnd().split("\n").at(-1),
      `rebalance: An mkv master answers at ${master}, not a volume: -volumes names nginx ` +
        `volumes (deno task volume DIR); check -volumes; nothing moved`,
    );
    const metrics = await (await fetch(`${other.url}/?metrics`)).text();
    assert(!metrics.includes('mkv_requests_total{method="PUT",status="201"}'), metrics);
    await c.startMaster();
    for (const k of keys) {
      assertEquals(await readMd5(c, k), { md5: md5s.get(k)!, balance: "balanced" }, k);
    }
  } finally {
    await other.stop();
    await c.stop();
  }
});

Deno.test("rebalance off a volume still up logs no failure of it: its 404 for the other names' marker is the answer looked for", async () => {
  // The check for two names of one nginx reads each name's marker through
  // the volumes the index names beside -volumes: the dropped volume answers
  // 404 (another nginx), which was logged as a volume failure ("get error")
  // on a run where nothing failed.
  const c = await Cluster.start({ volumes: 4 });
  try {
    const prefix = randomKey("/drop-up");
    await putAll(c, Array.from({ length: 10 }, (_, i) => `${prefix}/k${i}`));
    await c.stopMaster();
    const three = c.volumes.slice(0, 3);
    const r = await runMain(["rebalance", "-volumes", three.join(","), "-db", c.db]);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    assertEquals(r.stderr.split("\n").filter((l) => l.startsWith("volume ")), [], r.stderr);
  } finally {
    await c.stop();
  }
});

Deno.test("rebuild refuses two names for one volume, and changes nothing: each file would be recorded as two replicas", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/rebuild-alias");
    await putAll(c, [k]);
    const where = async () => {
      const res = await fetch(c.url + k, { redirect: "manual" });
      await res.body?.cancel();
      return [res.status, res.headers.get("key-volumes")];
    };
    const before = await where();
    await c.stopMaster();
    const alias = c.volumes[0].replace("127.0.0.1", "localhost");
    const volumes = [c.volumes[0], alias, c.volumes[1], c.volumes[2]].join(",");
    const r = await runMain(["rebuild", "-volumes", volumes, "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assertEquals(
      r.stderr.trimEnd().split("\n").at(-1),
      `rebuild: Two names reach the same volume (${alias} and ${c.volumes[0]}): name each ` +
        `volume one way, or one file would be recorded as two replicas of its key; nothing was ` +
        `changed`,
    );
    await c.startMaster();
    assertEquals(before[0], 302);
    assertEquals(await where(), before);
  } finally {
    await c.stop();
  }
});

Deno.test("rebuild keeps keys at a volume's root beside its svNN folders (a -subvolumes change half rebalanced)", async () => {
  const c = await Cluster.start();
  try {
    const prefix = randomKey("/mixed");
    const inSv = `${prefix}/in-subvolume`;
    await putAll(c, [inSv]);
    await c.stopMaster();
    // Written by a -subvolumes 1 cluster: at the root of each volume.
    const atRoot = `${prefix}/at-root`;
    const path = key2path(enc.encode(atRoot));
    for (const v of c.volumes) {
      const res = await fetch(`http://${v}${path}`, { method: "PUT", body: "from the root" });
      await res.body?.cancel();
      assertEquals(res.status, 201);
    }
    const r = await runMain(["rebuild", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.includes("rebuild: 2 keys recorded from "), r.stdout);
    await c.startMaster();
    const listed = (await fetch(`${c.url}${prefix}/?list`).then((x) => x.json())).keys;
    assertEquals(listed, [atRoot, inSv]);
    assertEquals(await (await fetch(c.url + atRoot)).text(), "from the root");
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance copies from a replica of the recorded size, not from a truncated one", async () => {
  const c = await Cluster.start({ volumes: 4 });
  try {
    await c.stopMaster();
    await c.startMaster([], c.volumes.slice(0, 3));
    const prefix = randomKey("/truncated");
    const keys = Array.from({ length: 30 }, (_, i) => `${prefix}/k${i}`);
    const md5s = await putAll(c, keys);
    await c.stopMaster();
    // On each key that moves, the copy it is read from first (on a volume
    // it leaves) lost its tail, as a file nginx wrote can after a power loss.
    const index = await openIndex(c.db);
    const moving: string[] = [];
    for (const k of keys) {
      const key = enc.encode(k);
      const { rvolumes } = (await index.get(key))!.rec;
      const leaving = rvolumes.find((v) => !key2volume(key, c.volumes, 3, 10).includes(v));
      if (!leaving) continue;
      const res = await fetch(`http://${leaving}${key2path(key)}`, { method: "PUT", body: "cut" });
      await res.body?.cancel();
      moving.push(k);
    }
    index.close();
    assert(moving.length > 0, "some key moves to the new volume");
    const r = await runMain(["rebalance", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    // Every replica of every moved key holds the value as written.
    const after = await openIndex(c.db);
    for (const k of moving) {
      const key = enc.encode(k);
      for (const v of (await after.get(key))!.rec.rvolumes) {
        const file = await fetch(`http://${v}${key2path(key)}`);
        assertEquals(
          toHex(md5(new Uint8Array(await file.arrayBuffer()))),
          md5s.get(k),
          `${k} on ${v}`,
        );
      }
    }
    after.close();
  } finally {
    await c.stop();
  }
});

Deno.test("rebuild keeps the newest value of a key whose copies differ, and names the key", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/differ");
    await putAll(c, [k]);
    await c.stopMaster();
    const before = (await snapshot(c.db)).get(k)!.rec.rvolumes;
    // A REPLACE that renamed its new value over two replicas of three, a
    // second later (nginx lists times to the second).
    await new Promise((r) => setTimeout(r, 1100));
    const path = key2path(enc.encode(k));
    for (const v of before.slice(0, 2)) {
      const res = await fetch(`http://${v}${path}`, { method: "PUT", body: "the new value" });
      await res.body?.cancel();
      assertEquals(res.status, 204);
    }
    const r = await runMain(["rebuild", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 0, r.stdout);
    assert(r.stdout.includes(`rebuild: 1 key has copies of different sizes`), r.stdout);
    assert(r.stdout.includes(`${JSON.stringify(k)}: kept the newest on 2 of 3`), r.stdout);
    const rec = (await snapshot(c.db)).get(k)!.rec;
    assertEquals(rec.rvolumes, before.slice(0, 2));
    assertEquals(rec.size, "the new value".length);
    await c.startMaster();
    for (let i = 0; i < 5; i++) {
      assertEquals(await (await fetch(c.url + k)).text(), "the new value");
    }
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance off a dead volume counts its keys as moved and names the copies left on it", async () => {
  const c = await Cluster.start({ volumes: 4 });
  try {
    const prefix = randomKey("/dead-volume");
    const keys = Array.from({ length: 20 }, (_, i) => `${prefix}/k${i}`);
    const md5s = await putAll(c, keys);
    await c.stopMaster();
    const onDead = [...(await snapshot(c.db)).entries()]
      .filter(([k, e]) =>
        k.startsWith(prefix) && e.rec.rvolumes.some((v) => v.startsWith(c.volumes[3]))
      )
      .length;
    assert(onDead > 0, "some key has a replica on the volume that dies");
    // Its disk died: the operator drops it from -volumes and rebalances.
    await c.stopVolume(3);
    const three = c.volumes.slice(0, 3);
    const r = await runMain(["rebalance", "-volumes", three.join(","), "-db", c.db]);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    assert(r.stdout.includes(`rebalance: moved ${onDead} keys, 0 failed`), r.stdout);
    assert(
      r.stdout.includes(`rebalance: ${onDead} old copies could not be deleted (each named: `),
      r.stdout,
    );
    // The copies are named right after that line, on the same stream.
    const after = r.stdout.split("\n").slice(-(onDead + 1), -1);
    assertEquals(after.length, onDead, r.stdout);
    for (const l of after) {
      assert(l.startsWith(`  "${prefix}/k`), r.stdout);
      assert(l.includes(`: Old copy on ${c.volumes[3]} not deleted, an orphan (its volume`), l);
    }
    await c.startMaster([], three);
    for (const k of keys) {
      assertEquals(await readMd5(c, k), { md5: md5s.get(k)!, balance: "balanced" }, k);
    }
  } finally {
    await c.stop();
  }
});

// The throttle holds back a volume's failures for up to a second, and a
// tool that ended within it dropped them: of 20 deletes refused, one line.
Deno.test("rebalance off a dead volume logs every delete that failed, those held back counted at its exit", async () => {
  const c = await Cluster.start({ volumes: 4 });
  try {
    const prefix = randomKey("/dead-log");
    await putAll(c, Array.from({ length: 20 }, (_, i) => `${prefix}/k${i}`));
    await c.stopMaster();
    const onDead = [...(await snapshot(c.db)).values()]
      .filter((e) => e.rec.rvolumes.some((v) => v.startsWith(c.volumes[3]))).length;
    assert(onDead > 1, "keys have a replica on the volume that dies");
    await c.stopVolume(3);
    const three = c.volumes.slice(0, 3);
    const r = await runMain([
      "rebalance",
      "-volumes",
      three.join(","),
      "-db",
      c.db,
      "-log",
      "json",
    ]);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    const deletes = r.stderr.split("\n").filter(Boolean).map((l) => JSON.parse(l))
      .filter((l) => l.volume === c.volumes[3] && l.call === "delete");
    const counted = deletes.reduce((n, l) => n + 1 + l.suppressed, 0);
    assertEquals(counted, onDead, r.stderr);
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance names a key it could not move quoted, on one line, whatever bytes it holds", async () => {
  const c = await Cluster.start({ flags: ["-replicas", "1"] });
  try {
    const k = `${randomKey("/odd")}\nnext%`;
    const put = await fetch(`${c.url}${k.replace("\n", "%0A").replace(/%$/, "%25")}`, {
      method: "PUT",
      body: "v",
    });
    assertEquals(put.status, 201);
    await c.stopMaster();
    // Its only volume now one that is not running: the move fails.
    const dead = `127.0.0.1:${freePort()}`;
    const r = await runMain(["rebalance", "-replicas", "1", "-volumes", dead, "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(r.stdout.includes("rebalance: moved 0 keys, 1 failed\n"), r.stdout);
    const named = r.stdout.split("\n").filter((l) => l.startsWith("  "));
    assertEquals(named.length, 1, r.stdout);
    assert(named[0].startsWith(`  ${JSON.stringify(k)}: 500 Cannot PUT `), r.stdout);
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance names the first 50 keys it could not move and says how many more", async () => {
  const c = await Cluster.start();
  try {
    // A volume added to -volumes that is not running: every key placed on
    // it fails to move. 53 such keys, found by their placement.
    const dead = `127.0.0.1:${freePort()}`;
    const four = [...c.volumes, dead];
    const keys: string[] = [];
    while (keys.length < 53) {
      const k = randomKey("/unmoved");
      if (key2volume(enc.encode(k), four, 3, 10).some((v) => v.startsWith(`${dead}/`))) {
        keys.push(k);
      }
    }
    for (const k of keys) assertEquals(await status(c.url + k, { method: "PUT", body: "v" }), 201);
    await c.stopMaster();
    const r = await runMain(["rebalance", "-volumes", four.join(","), "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(r.stdout.includes("rebalance: moved 0 keys, 53 failed\n"), r.stdout);
    const named = r.stdout.split("\n").filter((l) => l.startsWith('  "/unmoved/'));
    assertEquals(named.length, 50, r.stdout);
    assert(r.stdout.includes("\n  ... and 3 more\n"), r.stdout);
  } finally {
    await c.stop();
  }
});

Deno.test("thrash: a negative -seconds or a -cycles below 1 is a flag error, not a run of nothing", async () => {
  const thrash = new URL("../tools/thrash.ts", import.meta.url).pathname;
  for (
    const [flag, value, message] of [
      ["-seconds", "-5", "-seconds must not be negative"],
      ["-cycles", "0", "-cycles must be at least 1"],
    ]
  ) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", thrash, "-master", "http://127.0.0.1:1", flag, value],
      stdin: "null",
    }).output();
    const stderr = dec.decode(out.stderr);
    assertEquals(out.code, 2, stderr);
    assert(stderr.startsWith(`${message}\n`), stderr);
    assertEquals(dec.decode(out.stdout), "", "no run reported");
  }
});

Deno.test("thrash and bench: -h or --help prints their usage on stdout and exit 0, running nothing", async () => {
  // `deno task thrash --help` crashed with an uncaught error (exit 1): the
  // tools caught only FlagError, not the HelpRequested that parseFlags throws.
  for (
    const [tool, title, flag] of [["thrash", "-master", "--help"], ["bench", "-seconds", "-h"]]
  ) {
    const path = new URL(`../tools/${tool}.ts`, import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", path, flag],
      stdin: "null",
    }).output();
    const stdout = dec.decode(out.stdout);
    assertEquals(dec.decode(out.stderr), "", `${tool} ${flag}`);
    assertEquals(out.code, 0, `${tool} ${flag}`);
    assert(stdout.startsWith(`Usage: deno task ${tool} [flags]\n`), stdout);
    assert(stdout.includes(`\n  ${title} `), stdout);
  }
});

Deno.test("the bench scripts with flags: -h prints their usage (exit 0), a wrong flag its reason and usage (exit 2)", async () => {
  // They crashed with an uncaught HelpRequested or FlagError (exit 1).
  const scripts: [string, string, string][] = [
    ["scale", "deno run -A bench/scale.ts [flags]", "-keys"],
    ["forward_master", "deno run -A bench/forward_master.ts [flags]", "-port"],
    ["mkv_rebuild", "deno run -A bench/mkv_rebuild.ts -volumes a,b,c -db DIR", "-volumes"],
    ["mkv_rebalance", "deno run -A bench/mkv_rebalance.ts -volumes a,b,c -db DIR", "-volumes"],
  ];
  for (const [script, command, flag] of scripts) {
    const path = new URL(`../bench/${script}.ts`, import.meta.url).pathname;
    const run = (arg: string) =>
      new Deno.Command(Deno.execPath(), { args: ["run", "-A", path, arg], stdin: "null" })
        .output();
    const help = await run("-h");
    const stdout = dec.decode(help.stdout);
    assertEquals([help.code, dec.decode(help.stderr)], [0, ""], script);
    assert(stdout.startsWith(`Usage: ${command}\n`), stdout);
    assert(stdout.includes(`\n  ${flag} `), stdout);
    const wrong = await run("-no-such-flag");
    assertEquals([wrong.code, dec.decode(wrong.stdout)], [2, ""], script);
    assert(dec.decode(wrong.stderr).includes(`\n\nUsage: ${command}\n`), script);
  }
});

Deno.test("thrash: -master as host:port is the master at http://host:port, every cycle checked", async () => {
  const c = await Cluster.start();
  try {
    const thrash = new URL("../tools/thrash.ts", import.meta.url).pathname;
    const hostPort = c.url.replace("http://", "");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", thrash, "-master", hostPort, "-cycles", "3", "-clients", "1"],
      stdin: "null",
    }).output();
    const stdout = dec.decode(out.stdout);
    assertEquals(out.code, 0, stdout + dec.decode(out.stderr));
    assert(stdout.startsWith(`3 cycles against ${hostPort} in `), stdout);
    assert(stdout.endsWith(" cycles/s, 0 failures\n"), stdout);
  } finally {
    await c.stop();
  }
});

Deno.test("the tools' counts: one of a thing, or its plural (0 keys, 1 key, 1 old copy, 2 old copies)", () => {
  assertEquals(plural(0, "key"), "0 keys");
  assertEquals(plural(1, "key"), "1 key");
  assertEquals(plural(2, "problem"), "2 problems");
  assertEquals(plural(1, "old copy", "old copies"), "1 old copy");
  assertEquals(plural(3, "old copy", "old copies"), "3 old copies");
  assertEquals(plural(1, "master or tool is", "masters or tools are"), "1 master or tool is");
});

/**
 * What a REPLACE leaves when it moved a key to volume 1 and volume 0 did not
 * answer the removal of the old copy, and then a rebuild with volume 1 down
 * (-skip-unreadable): the index, marked incomplete, records the old value
 * on volume 0; volume 1, back, holds `newer`, the key's newest value, which
 * the index lacks. (-replicas 1: the hash puts the key on volume 1 of the
 * two.) The key, and the URLs of its files on volumes 0 and 1.
 */
async function newestUnindexed(c: Cluster, newer: string): Promise<{ key: string; at: string[] }> {
  const placed = (k: string, vols: string[]) => key2volume(enc.encode(k), vols, 1, 10)[0];
  let key;
  do key = randomKey("/unindexed-newest"); while (
    !placed(key, c.volumes).startsWith(`${c.volumes[1]}/`)
  );
  const path = key2path(enc.encode(key));
  const at = [placed(key, c.volumes.slice(0, 1)), placed(key, c.volumes)].map((v) =>
    `http://${v}${path}`
  );
  await c.stopMaster();
  for (const [url, value] of [[at[0], "the old value"], [at[1], newer]]) {
    const put = await fetch(url, { method: "PUT", body: value });
    await put.body?.cancel();
    assertEquals(put.status, 201, url);
  }
  await c.stopVolume(1);
  const args = ["-volumes", c.volumes.join(","), "-replicas", "1", "-db", c.db];
  const rebuilt = await runMain(["rebuild", "-skip-unreadable", ...args]);
  assertEquals(rebuilt.code, 1, rebuilt.stdout + rebuilt.stderr);
  await c.startVolume(1);
  return { key, at };
}

Deno.test("rebalance on an incomplete index copies no value over another one the index lacks at the key's place, and names the key", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "1"] });
  try {
    const { key, at } = await newestUnindexed(c, "the newest value");
    const args = ["-volumes", c.volumes.join(","), "-replicas", "1", "-db", c.db];
    const r = await runMain(["rebalance", ...args]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(
      r.stdout.includes(
        `\n  ${JSON.stringify(key)}: 500 ${c.volumes[1]} holds a file at the key's path that is ` +
          `not its value (or could not be read) while the index is incomplete (a rebuild has ` +
          `not finished): it may be a value the index lacks, so it was not copied over; run ` +
          `rebuild\n`,
      ),
      r.stdout,
    );
    assertEquals(await (await fetch(at[1])).text(), "the newest value");
    assertEquals(await (await fetch(at[0])).text(), "the old value");
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance on an incomplete index moves a key whose file at its place holds its value already (a move killed after its copy)", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "1"] });
  try {
    const { at } = await newestUnindexed(c, "the old value");
    const args = ["-volumes", c.volumes.join(","), "-replicas", "1", "-db", c.db];
    const r = await runMain(["rebalance", ...args]);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    assertEquals(await (await fetch(at[1])).text(), "the old value");
    assertEquals((await fetch(at[0], { method: "HEAD" })).status, 404);
  } finally {
    await c.stop();
  }
});
