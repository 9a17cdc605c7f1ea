// verify against real nginx volumes: missing, corrupt and orphan files are
// found, -repair fixes them, and a clean cluster verifies clean.
import {
  Cluster,
  randomBytes,
  randomKey,
  runMain,
  uploadWithPart,
  volumeFiles,
} from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { joinIndex, openIndex } from "../lib/open.ts";
import { key2path, md5, toHex, volumeOfReplica } from "../lib/keys.ts";
import { FLAGS, storeOptions } from "../lib/config.ts";
import { parseFlags } from "../lib/flags.ts";
import { Store } from "../lib/store.ts";
import { volumeUrl } from "../lib/volumes.ts";
import type { Record as KeyRecord } from "../lib/record.ts";

const enc = new TextEncoder();

/** Stops `c`'s master and reads key `k`'s record from its index. */
async function recordOnceStopped(c: Cluster, k: string): Promise<KeyRecord> {
  await c.stopMaster();
  const index = await openIndex(c.db);
  try {
    return (await index.get(enc.encode(k)))!.rec;
  } finally {
    index.close();
  }
}

Deno.test("verify -md5 sees a large replica overwritten with other bytes of its size, and repairs it", async () => {
  const c = await Cluster.start();
  try {
    // Past 8 MiB: hashed on the MD5 threads (lib/md5_stream.ts).
    const k = randomKey("/verify-large");
    const value = randomBytes((9 << 20) + 3);
    assertEquals((await fetch(c.url + k, { method: "PUT", body: value })).status, 201);
    const rec = await recordOnceStopped(c, k);
    const over = `http://${rec.rvolumes[2]}${key2path(enc.encode(k))}`;
    const other = randomBytes(value.length);
    const put = await fetch(over, { method: "PUT", body: other });
    await put.body?.cancel();
    const args = ["verify", "-md5", "-volumes", c.volumes.join(","), "-db", c.db];
    const bad = await runMain(args);
    assertEquals(bad.code, 1, bad.stdout + bad.stderr);
    const why = `MD5 ${toHex(md5(other))}, recorded ${toHex(md5(value))}`;
    assert(
      bad.stdout.includes(`corrupt replica: "${k}" on ${rec.rvolumes[2]} (${why})\n`),
      bad.stdout,
    );
    for (const v of rec.rvolumes.slice(0, 2)) assert(!bad.stdout.includes(` on ${v}`), bad.stdout);
    const fix = await runMain([...args, "-repair"]);
    assertEquals(fix.code, 0, fix.stdout + fix.stderr);
    assertEquals(new Uint8Array(await (await fetch(over)).arrayBuffer()), value);
  } finally {
    await c.stop();
  }
});

Deno.test("verify finds missing, corrupt and orphan files; -repair fixes them", async () => {
  const c = await Cluster.start();
  try {
    const prefix = randomKey("/verify");
    const keys = Array.from({ length: 20 }, (_, i) => `${prefix}/k${i}`);
    for (const k of keys) {
      const res = await fetch(c.url + k, {
        method: "PUT",
        body: randomBytes(2000 + 97 * keys.indexOf(k)),
      });
      assertEquals(res.status, 201, k);
    }
    await c.stopMaster();
    const args = ["verify", "-volumes", c.volumes.join(","), "-db", c.db];
    const clean = await runMain(args);
    assertEquals(clean.code, 0, clean.stdout + clean.stderr);
    assert(clean.stdout.includes("verify: 20 keys, 0 problems"), clean.stdout);

    const index = await openIndex(c.db);
    const rec = async (k: string) => (await index.get(enc.encode(k)))!.rec;
    const gone = await rec(keys[0]);
    const bent = await rec(keys[1]);
    index.close();
    // One replica deleted, one overwritten with other bytes of the same size
    // (only -md5 sees it), and a stray file with no record.
    const del = `http://${gone.rvolumes[1]}${key2path(enc.encode(keys[0]))}`;
    assertEquals((await fetch(del, { method: "DELETE" })).status, 204);
    const over = `http://${bent.rvolumes[0]}${key2path(enc.encode(keys[1]))}`;
    const put = await fetch(over, { method: "PUT", body: randomBytes(bent.size) });
    await put.body?.cancel();
    const stray = `${prefix}/stray`;
    const orphan = `http://${c.volumes[2]}/sv03${key2path(enc.encode(stray))}`;
    const o = await fetch(orphan, { method: "PUT", body: "nobody's" });
    await o.body?.cancel();

    const bad = await runMain([...args, "-md5"]);
    assertEquals(bad.code, 1, bad.stdout + bad.stderr);
    assert(bad.stdout.includes(`missing replica: "${keys[0]}" on ${gone.rvolumes[1]}`), bad.stdout);
    assert(bad.stdout.includes(`corrupt replica: "${keys[1]}" on ${bent.rvolumes[0]}`), bad.stdout);
    assert(bad.stdout.includes(`orphan file: ${orphan} (no record)`), bad.stdout);
    assert(bad.stdout.includes(`under-replicated: "${keys[0]}" has 2 healthy of 3`), bad.stdout);

    // Without -md5 the same-size overwrite goes unseen; the rest does not.
    const quick = await runMain(args);
    assertEquals(quick.code, 1);
    assert(!quick.stdout.includes("corrupt replica"), quick.stdout);

    const fix = await runMain([...args, "-repair", "-md5", "-grace", "0s"]);
    assertEquals(fix.code, 0, fix.stdout + fix.stderr);
    assert(fix.stdout.includes("repaired"), fix.stdout);

    const again = await runMain([...args, "-md5"]);
    assertEquals(again.code, 0, again.stdout + again.stderr);
    assertEquals((await fetch(orphan)).status === 404, true);

    // Every value reads back through the master.
    await c.startMaster();
    for (const k of keys.slice(0, 2)) {
      const res = await fetch(c.url + k);
      assertEquals(res.status, 200, k);
      await res.body?.cancel();
    }
  } finally {
    await c.stop();
  }
});

Deno.test("verify -repair keeps orphans younger than -grace and exits 1", async () => {
  const c = await Cluster.start();
  try {
    await c.stopMaster();
    const orphan = `http://${c.volumes[0]}${key2path(enc.encode(randomKey("/young")))}`;
    const o = await fetch(orphan, { method: "PUT", body: "young" });
    await o.body?.cancel();
    const r = await runMain([
      "verify",
      "-volumes",
      c.volumes.join(","),
      "-db",
      c.db,
      "-repair",
      "-grace",
      "1h",
    ]);
    assertEquals(r.code, 1, r.stdout);
    assert(r.stdout.includes("younger than -grace"), r.stdout);
    const still = await fetch(orphan);
    await still.body?.cancel();
    assertEquals(still.status, 200);
  } finally {
    await c.stop();
  }
});

Deno.test("verify: a negative -grace is a flag error (it would delete the files of writes in flight)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mkv-grace-" });
  try {
    const args = ["verify", "-volumes", "127.0.0.1:1", "-replicas", "1", "-db", dir, "-repair"];
    const r = await runMain([...args, "-grace", "-1h"]);
    assertEquals(r.code, 2, r.stderr);
    assert(r.stderr.startsWith("-grace must not be negative\n"), r.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verify -repair removes a write whose lease ran out, with its files", async () => {
  const c = await Cluster.start();
  try {
    await c.stopMaster();
    const key = enc.encode(randomKey("/dead"));
    const vol = `${c.volumes[1]}/sv02`;
    const file = `http://${vol}${key2path(key)}`;
    const p = await fetch(file, { method: "PUT", body: "half" });
    await p.body?.cancel();
    const index = await openIndex(c.db);
    await index.set(key, {
      state: "writing",
      rvolumes: [vol],
      hash: "",
      size: -1,
      owner: "dead-master",
      until: Date.now() - 1000,
    });
    index.close();
    const args = ["verify", "-volumes", c.volumes.join(","), "-db", c.db];
    const r = await runMain(args);
    assertEquals(r.code, 1, r.stdout);
    assert(r.stdout.includes("expired write"), r.stdout);
    const fix = await runMain([...args, "-repair"]);
    assertEquals(fix.code, 0, fix.stdout + fix.stderr);
    const gone = await fetch(file);
    await gone.body?.cancel();
    assertEquals(gone.status, 404);
    const index2 = await openIndex(c.db);
    assertEquals(await index2.get(key), null);
    index2.close();
    assertEquals((await runMain(args)).code, 0);
  } finally {
    await c.stop();
  }
});

Deno.test("verify -repair on an index marked incomplete removes an expired write's record but keeps its files", async () => {
  const c = await Cluster.start();
  try {
    const name = randomKey("/dead-refusal");
    const key = enc.encode(name);
    const value = randomBytes(1000);
    const put = await fetch(c.url + name, { method: "PUT", body: value });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    await c.stopMaster();
    // A master killed amid a refused PUT on an incomplete index: its claim
    // (a "writing" record) over the files of a value the index lacked.
    const index = await openIndex(c.db);
    const rvolumes = (await index.get(key))!.rec.rvolumes;
    await index.markIncomplete({ at: Date.now(), why: "a rebuild began and has not finished" });
    await index.set(key, {
      state: "writing",
      rvolumes,
      hash: "",
      size: -1,
      owner: "dead-master",
      until: Date.now() - 1000,
    });
    index.close();
    const args = ["verify", "-volumes", c.volumes.join(","), "-db", c.db, "-repair"];
    const r = await runMain(args);
    assertEquals(r.code, 1, r.stdout);
    assert(
      r.stdout.includes(
        `expired write: ${JSON.stringify(name)} (owner dead-master): repaired, record removed, ` +
          `files kept (the index is incomplete: they may hold a value it lacks; run rebuild)\n`,
      ),
      r.stdout,
    );
    for (const v of rvolumes) {
      const res = await fetch(volumeUrl(v, key2path(key)));
      assertEquals([res.status, await res.bytes()], [200, value], v);
    }
    const index2 = await openIndex(c.db);
    assertEquals(await index2.get(key), null, "the record removed");
    index2.close();
  } finally {
    await c.stop();
  }
});

Deno.test("verify: parts of a live multipart upload are kept; dead parts and REPLACE temps are orphans", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    // A multipart upload in progress (unsigned: -s3 without keys).
    await uploadWithPart(c);
    await c.stopMaster();
    const args = ["verify", "-volumes", c.volumes.join(","), "-db", c.db];
    const clean = await runMain(args);
    assertEquals(clean.code, 0, clean.stdout + clean.stderr);

    // A part no upload records, and a REPLACE temporary, written straight to a volume.
    const deadPart = `http://${c.volumes[0]}/sv01/ab/cd/mpu.${"0".repeat(32)}.3.1234abcd`;
    const temp = `http://${c.volumes[1]}/sv02/ab/cd/replace.${crypto.randomUUID()}`;
    for (const url of [deadPart, temp]) {
      const r = await fetch(url, { method: "PUT", body: "left behind" });
      await r.body?.cancel();
      assertEquals(r.status, 201);
    }
    const found = await runMain([...args, "-grace", "0s"]);
    assertEquals(found.code, 1, found.stdout + found.stderr);
    assert(
      found.stdout.includes(
        `orphan file: ${deadPart} (multipart part that no upload in progress records)`,
      ),
      found.stdout,
    );
    assert(
      found.stdout.includes(
        `orphan file: ${temp} (REPLACE temporary left by a failed REPLACE or PUT over an unlinked key)`,
      ),
      found.stdout,
    );
    // Within -grace a temporary may belong to a REPLACE under way: not reported.
    const young = await runMain(args);
    assert(!young.stdout.includes(temp), young.stdout);

    const fix = await runMain([...args, "-repair", "-grace", "0s"]);
    assertEquals(fix.code, 0, fix.stdout + fix.stderr);
    for (const url of [deadPart, temp]) {
      const r = await fetch(url, { method: "HEAD" });
      assertEquals(r.status, 404, url);
    }
    assertEquals((await runMain(args)).code, 0);
  } finally {
    await c.stop();
  }
});

Deno.test("verify -repair deletes no live file when -volumes names the index's volumes another way", async () => {
  const c = await Cluster.start();
  try {
    const keys = Array.from({ length: 5 }, () => randomKey("/renamed"));
    for (const k of keys) {
      const res = await fetch(c.url + k, { method: "PUT", body: randomBytes(3000) });
      await res.body?.cancel();
      assertEquals(res.status, 201, k);
    }
    await c.stopMaster();
    const renamed = c.volumes.map((v) => v.replace("127.0.0.1", "localhost"));
    const r = await runMain([
      "verify",
      "-volumes",
      renamed.join(","),
      "-db",
      c.db,
      "-repair",
      "-grace",
      "0s",
    ]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(r.stdout.includes(`${renamed[0]} and ${c.volumes[0]}`), r.stdout);
    assert(!r.stdout.includes("repaired, deleted"), r.stdout);
    await c.startMaster();
    for (const k of keys) {
      const res = await fetch(c.url + k);
      await res.body?.cancel();
      assertEquals(res.status, 200, k);
    }
  } finally {
    await c.stop();
  }
});

/** Runs verify beside the cluster's master; true if it ever registered as an index writer. */
async function verifyRegisters(c: Cluster, extra: string[]): Promise<boolean> {
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, "verify"]
      .concat(["-volumes", c.volumes.join(","), "-db", c.db, ...extra]),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const index = await openIndex(c.db);
  let seen = false;
  let ended = false;
  const status = proc.status.then((s) => {
    ended = true;
    return s;
  });
  try {
    while (!ended) {
      seen ||= (await index.kv.get(["members", `verify:${proc.pid}`])).value !== null;
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    index.close();
  }
  assertEquals((await status).code, 0);
  return seen;
}

Deno.test("a plain verify reads the index without registering as a writer; -repair registers", async () => {
  const c = await Cluster.start();
  try {
    const res = await fetch(c.url + randomKey("/plain"), { method: "PUT", body: "x" });
    await res.body?.cancel();
    assertEquals(res.status, 201);
    // Registering would make the running master drop its caches for nothing.
    assertEquals(await verifyRegisters(c, []), false);
    assertEquals(await verifyRegisters(c, ["-repair"]), true);
  } finally {
    await c.stop();
  }
});

Deno.test("an orphan is deleted under a claim on its key: a PUT of the key meanwhile gets 409, then writes", async () => {
  const c = await Cluster.start();
  // verify -repair's own Store, beside the master, on the same index.
  const index = await openIndex(c.db);
  try {
    await joinIndex(index, "test:orphans");
    const args = ["-volumes", c.volumes.join(","), "-db", c.db, "-voltimeout", "30s"];
    const store = new Store(index, storeOptions(parseFlags(args, FLAGS).flags));
    const k = randomKey("/orphan");
    const key = enc.encode(k);
    // A file of the key on a volume, with no record: an orphan.
    const v = store.kvolumes(key)[0];
    const file = volumeUrl(v, key2path(key));
    const put = await fetch(file, { method: "PUT", body: "orphan" });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    // The volume hangs, so the deletion holds the claim until it is resumed.
    const i = c.volumes.findIndex((name) => v.startsWith(name));
    await c.pauseVolume(i);
    const removing = store.removeOrphan(key, v);
    try {
      while ((await index.kv.get(["k", key])).value === null) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const res = await fetch(c.url + k, { method: "PUT", body: "new value" });
      const text = await res.text();
      assertEquals(res.status, 409);
      assert(
        /^Another write of this key is in progress \(or its writer stopped mid-write: retry once its lease runs out, in \d+ s\)\n$/
          .test(text),
        text,
      );
    } finally {
      await c.resumeVolume(i);
    }
    assertEquals((await removing).status, 204);
    assertEquals((await index.kv.get(["k", key])).value, null);
    assertEquals((await fetch(file)).status, 404);
    // Then the PUT goes through, and its file stays.
    const res = await fetch(c.url + k, { method: "PUT", body: "new value" });
    await res.body?.cancel();
    assertEquals(res.status, 201);
    assertEquals(await (await fetch(c.url + k)).text(), "new value");
  } finally {
    await index.membership?.leave();
    index.close();
    await c.stop();
  }
});

Deno.test("verify with a volume down names each of its keys' replicas there and its root once", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/verify-down");
    const put = await fetch(c.url + k, { method: "PUT", body: randomBytes(1500) });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    await c.stopMaster();
    await c.stopVolume(1);
    const r = await runMain(["verify", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    const down = c.volumes[1];
    const lines = r.stdout.trimEnd().split("\n");
    assertEquals(lines.length, 4, r.stdout);
    assert(
      /^unreachable replica: "[^"]+" on [^ ]+ \(HEAD unanswered: .+\)$/.test(lines[0]),
      r.stdout,
    );
    assert(lines[0].startsWith(`unreachable replica: "${k}" on ${down}/sv`), r.stdout);
    assertEquals(lines[1], `under-replicated: "${k}" has 2 healthy of 3 replicas`);
    assert(lines[2].startsWith(`unreadable folder: Cannot list "http://${down}/": `), r.stdout);
    assertEquals(lines[3], "verify: 1 key, 3 problems");
    // The last progress line (stderr) counts the unreadable folder too.
    const last = r.stderr.trimEnd().split("\n").filter((l) => l.startsWith("verify: keys")).at(-1);
    assert(last?.includes("problems 3,"), r.stderr);
  } finally {
    await c.stop();
  }
});

Deno.test("verify -repair without -md5 copies a missing replica from a copy holding the recorded MD5, not one of its size only", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/repair-source");
    const key = enc.encode(k);
    const value = randomBytes(5000);
    assertEquals((await fetch(c.url + k, { method: "PUT", body: value })).status, 201);
    const [first, second, third] = (await recordOnceStopped(c, k)).rvolumes;
    // The first replica (verify's first choice of source) lost its bytes but
    // kept its size; the third is gone.
    const other = randomBytes(value.length);
    const over = await fetch(volumeUrl(first, key2path(key)), { method: "PUT", body: other });
    assertEquals(over.status, 204);
    const gone = await fetch(volumeUrl(third, key2path(key)), { method: "DELETE" });
    assertEquals(gone.status, 204);
    const args = ["verify", "-volumes", c.volumes.join(","), "-db", c.db];
    const fix = await runMain([...args, "-repair"]);
    // The copy is the value as written, from the second replica.
    const copied = await fetch(volumeUrl(third, key2path(key)));
    assertEquals(new Uint8Array(await copied.arrayBuffer()), value, fix.stdout);
    assert(
      fix.stdout.includes(`missing replica: "${k}" on ${third}: repaired, copied from ${second}`),
      fix.stdout,
    );
    // The first one, found corrupt on the way, is named (a -md5 run repairs it).
    const why = `MD5 ${toHex(md5(other))}, recorded ${toHex(md5(value))}`;
    assert(fix.stdout.includes(`corrupt replica: "${k}" on ${first} (${why})\n`), fix.stdout);
    assertEquals(fix.code, 1, fix.stdout + fix.stderr);
  } finally {
    await c.stop();
  }
});

Deno.test("verify -repair and rebalance refuse a -db that holds no index: no index is made and no file deleted", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/typo-db");
    assertEquals((await fetch(c.url + k, { method: "PUT", body: "kept" })).status, 201);
    await c.stopMaster();
    const before = (await Promise.all(c.volumes.map((v) => volumeFiles(v)))).flat().sort();
    assertEquals(before.length, 3);
    // A mistyped path, and a folder without index.sqlite3 in it.
    const empty = `${c.dir}/empty`;
    await Deno.mkdir(empty);
    for (const db of [`${c.dir}/indexdbb`, empty]) {
      const volumes = ["-volumes", c.volumes.join(",")];
      const verify = await runMain(["verify", "-repair", "-grace", "0s", ...volumes, "-db", db]);
      assertEquals(verify.code, 1, verify.stdout + verify.stderr);
      assertEquals(
        verify.stderr,
        `No index at "${db}" (-db): verify reads an existing index (rebuild makes one from ` +
          `the volumes)\n`,
      );
      assertEquals(verify.stdout, "");
      const rebalance = await runMain(["rebalance", ...volumes, "-db", db]);
      assertEquals(rebalance.code, 1, rebalance.stdout + rebalance.stderr);
      assertEquals(
        rebalance.stderr,
        `No index at "${db}" (-db): rebalance reads an existing index (rebuild makes one from ` +
          `the volumes)\n`,
      );
    }
    assertEquals(await exists(`${c.dir}/indexdbb`), false);
    assertEquals(await exists(`${empty}/index.sqlite3`), false);
    const after = (await Promise.all(c.volumes.map((v) => volumeFiles(v)))).flat().sort();
    assertEquals(after, before);
  } finally {
    await c.stop();
  }
});

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("verify counts in words that agree with the number: 1 key, 1 problem, 1 replica", async () => {
  const c = await Cluster.start({ flags: ["-replicas", "1"] });
  try {
    const k = randomKey("/verify-one");
    assertEquals((await fetch(c.url + k, { method: "PUT", body: "one" })).status, 201);
    const [replica] = (await recordOnceStopped(c, k)).rvolumes;
    assertEquals(
      (await fetch(volumeUrl(replica, key2path(enc.encode(k))), { method: "DELETE" })).status,
      204,
    );
    const args = ["verify", "-replicas", "1", "-volumes", c.volumes.join(","), "-db", c.db];
    const r = await runMain(args);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assertEquals(
      r.stdout,
      `missing replica: "${k}" on ${replica}\n` +
        `under-replicated: "${k}" has 0 healthy of 1 replica\n` +
        "verify: 1 key, 2 problems\n",
    );
    const fixed = await runMain([...args, "-repair"]);
    assertEquals(fixed.code, 1, fixed.stdout + fixed.stderr);
    assert(fixed.stdout.endsWith("verify: 1 key, 2 problems, 0 repaired\n"), fixed.stdout);
    // The replica back, and one file of no key's record: one problem.
    const back = await fetch(volumeUrl(replica, key2path(enc.encode(k))), {
      method: "PUT",
      body: "one",
    });
    assertEquals(back.status, 201);
    const stray = randomKey("/verify-one-stray");
    const orphan = volumeUrl(replica, key2path(enc.encode(stray)));
    assertEquals((await fetch(orphan, { method: "PUT", body: "x" })).status, 201);
    const one = await runMain(args);
    assertEquals(one.code, 1, one.stdout + one.stderr);
    assertEquals(one.stdout, `orphan file: ${orphan} (no record)\nverify: 1 key, 1 problem\n`);
  } finally {
    await c.stop();
  }
});

Deno.test("verify names the file of a key too long for the index, leaves it with -repair, and checks the rest", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/verify-long");
    assertEquals((await fetch(c.url + k, { method: "PUT", body: "short key" })).status, 201);
    const rec = await recordOnceStopped(c, k);
    const lost = `http://${rec.rvolumes[1]}${key2path(enc.encode(k))}`;
    assertEquals((await fetch(lost, { method: "DELETE" })).status, 204);
    // As Go mkv, which has no limit on keys, would have stored it.
    const long = enc.encode(`${k}/${"x".repeat(2100)}`);
    const file = `http://${rec.rvolumes[0]}${key2path(long)}`;
    const put = await fetch(file, { method: "PUT", body: "long key" });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    const named = `unrecordable file: ${file} (its key of ${long.length} bytes is ` +
      `too long for the index, at most 2043 bytes, a zero byte counting twice; left alone)`;
    const args = ["verify", "-volumes", c.volumes.join(","), "-db", c.db];
    const r = await runMain(args);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assertEquals(r.stdout.trimEnd().split("\n"), [
      `missing replica: "${k}" on ${rec.rvolumes[1]}`,
      `under-replicated: "${k}" has 2 healthy of 3 replicas`,
      named,
      "verify: 1 key, 3 problems",
    ]);
    const fix = await runMain([...args, "-repair", "-grace", "0s"]);
    assertEquals(fix.code, 1, fix.stdout + fix.stderr);
    assert(fix.stdout.includes(`${named}\n`), fix.stdout);
    assert(fix.stdout.includes("verify: 1 key, 3 problems, 2 repaired\n"), fix.stdout);
    assertEquals(await (await fetch(file)).text(), "long key");
    assertEquals(await (await fetch(lost)).text(), "short key");
  } finally {
    await c.stop();
  }
});

Deno.test("verify says why a replica is corrupt: its size against the recorded one", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/verify-why");
    assertEquals((await fetch(c.url + k, { method: "PUT", body: randomBytes(2000) })).status, 201);
    const rec = await recordOnceStopped(c, k);
    const cut = await fetch(volumeUrl(rec.rvolumes[1], key2path(enc.encode(k))), {
      method: "PUT",
      body: randomBytes(1999),
    });
    assertEquals(cut.status, 204);
    const r = await runMain(["verify", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assertEquals(r.stdout.trimEnd().split("\n"), [
      `corrupt replica: "${k}" on ${rec.rvolumes[1]} (size 1999 bytes, recorded 2000)`,
      `under-replicated: "${k}" has 2 healthy of 3 replicas`,
      "verify: 1 key, 2 problems",
    ]);
  } finally {
    await c.stop();
  }
});

Deno.test("verify names the keys a write in flight holds as not checked, and its summary says so", async () => {
  const c = await Cluster.start();
  try {
    const prefix = randomKey("/verify-held");
    const [replaced, written, lingering, plain] = ["replaced", "written", "lingering", "plain"]
      .map((n) => `${prefix}/${n}`);
    for (const k of [replaced, lingering, plain]) {
      assertEquals((await fetch(c.url + k, { method: "PUT", body: "held" })).status, 201, k);
    }
    await c.stopMaster();
    // Each replica gone: a check would name them all missing.
    const index = await openIndex(c.db);
    const until = Date.now() + 3_600_000;
    for (const [k, owner] of [[replaced, "verify:1"], [lingering, ""]]) {
      const e = (await index.get(enc.encode(k)))!;
      for (const v of e.rec.rvolumes) {
        const del = await fetch(volumeUrl(v, key2path(enc.encode(k))), { method: "DELETE" });
        assertEquals(del.status, 204, v);
      }
      await index.set(enc.encode(k), { ...e.rec, owner, until });
    }
    await index.set(enc.encode(written), {
      state: "writing",
      rvolumes: c.volumes.slice(0, 3),
      hash: "",
      size: -1,
      owner: "master-a",
      until,
    });
    index.close();
    const r = await runMain(["verify", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 0, r.stdout + r.stderr);
    const held = r.stdout.replace(/lease ends in \d+s/g, "lease ends in Ns");
    assertEquals(
      held,
      "verify: 4 keys, 0 problems, 3 held (not checked)\n" +
        "verify: 3 keys were held by a write in flight and not checked (a hold lasts until its " +
        "write ends, or its lease runs out, within -lease 30s): run verify again then:\n" +
        [
          `"${lingering}" (held until a volume answers a call of its last write; lease ends in Ns)`,
          `"${replaced}" (held by verify:1; lease ends in Ns)`,
          `"${written}" (being written by master-a; lease ends in Ns)`,
        ].map((l) => `  ${l}\n`).join(""),
    );
  } finally {
    await c.stop();
  }
});

Deno.test("verify -repair copies a lost replica of an unlinked key again, and the key stays unlinked", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/verify-unlinked");
    const value = randomBytes(3000);
    assertEquals((await fetch(c.url + k, { method: "PUT", body: value })).status, 201);
    const unlinked = await fetch(c.url + k, { method: "UNLINK" });
    assertEquals(unlinked.status, 204);
    const rec = await recordOnceStopped(c, k);
    const lost = `http://${rec.rvolumes[1]}${key2path(enc.encode(k))}`;
    assertEquals((await fetch(lost, { method: "DELETE" })).status, 204);
    const args = ["verify", "-volumes", c.volumes.join(","), "-db", c.db];
    const bad = await runMain(args);
    assertEquals(bad.code, 1, bad.stdout + bad.stderr);
    assert(
      bad.stdout.includes(`missing replica: "${k}" (unlinked) on ${rec.rvolumes[1]}\n`),
      bad.stdout,
    );
    const fix = await runMain([...args, "-repair"]);
    assertEquals(fix.code, 0, fix.stdout + fix.stderr);
    assertEquals(new Uint8Array(await (await fetch(lost)).arrayBuffer()), value);
    const after = await openIndex(c.db);
    const now = (await after.get(enc.encode(k)))!.rec;
    after.close();
    assertEquals(now.state, "unlinked");
    assertEquals(now.rvolumes, rec.rvolumes);
    assertEquals(now.until, undefined);
  } finally {
    await c.stop();
  }
});

Deno.test("verify names a replica whose path is a folder as such, and -repair leaves the folder", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/verify-folder");
    assertEquals((await fetch(c.url + k, { method: "PUT", body: randomBytes(2000) })).status, 201);
    const rec = await recordOnceStopped(c, k);
    const at = volumeUrl(rec.rvolumes[1], key2path(enc.encode(k)));
    assertEquals((await fetch(at, { method: "DELETE" })).status, 204);
    // nginx answers the file's path with 301 to "path/" now.
    const inside = await fetch(`${at}/inside`, { method: "PUT", body: "in a folder" });
    await inside.body?.cancel();
    assertEquals(inside.status, 201);
    const r = await runMain([
      "verify",
      "-repair",
      "-volumes",
      c.volumes.join(","),
      "-db",
      c.db,
    ]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(
      r.stdout.includes(
        `corrupt replica: "${k}" on ${rec.rvolumes[1]} (a folder stands at its path: HEAD ` +
          `answered 301) (cannot repair: remove the folder first)\n`,
      ),
      r.stdout,
    );
    assert(r.stdout.includes(`under-replicated: "${k}" has 2 healthy of 3 replicas\n`), r.stdout);
    assert(r.stdout.includes(`unknown file: "${at}/inside" (not a key's; left alone)\n`), r.stdout);
    assertEquals(await (await fetch(`${at}/inside`)).text(), "in a folder");
  } finally {
    await c.stop();
  }
});

Deno.test("verify names every file outside a key folder an unknown file, and -repair leaves them", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/verify-unknown");
    assertEquals((await fetch(c.url + k, { method: "PUT", body: "a key" })).status, 201);
    const rec = await recordOnceStopped(c, k);
    const sv = rec.rvolumes[0];
    const root = volumeOfReplica(sv);
    const [, ab, cd] = key2path(enc.encode(k)).split("/");
    const strays = [
      `http://${root}/at-root`,
      `http://${root}/zz/in-a-root-folder`,
      `http://${sv}/${ab}/in-a-top-folder`,
      `http://${sv}/zz/in-no-hex-folder`,
      // Named as a REPLACE's temporary, but no key folder's.
      `http://${sv}/${ab}/${cd}/ef/replace.${crypto.randomUUID()}`,
    ];
    for (const url of strays) {
      const put = await fetch(url, { method: "PUT", body: "nobody's" });
      await put.body?.cancel();
      assertEquals(put.status, 201, url);
    }
    const r = await runMain([
      "verify",
      "-repair",
      "-grace",
      "0s",
      "-volumes",
      c.volumes.join(","),
      "-db",
      c.db,
    ]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assertEquals(
      r.stdout.trimEnd().split("\n").sort(),
      [
        ...strays.map((url) => `unknown file: "${url}" (not a key's; left alone)`),
        "verify: 1 key, 5 problems, 0 repaired",
      ].sort(),
    );
    for (const url of strays) assertEquals(await (await fetch(url)).text(), "nobody's", url);
  } finally {
    await c.stop();
  }
});

Deno.test("verify quotes the name of an unknown file, so that one with spaces or a newline stays on its line", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/verify-quoted");
    assertEquals((await fetch(c.url + k, { method: "PUT", body: "a key" })).status, 201);
    const rec = await recordOnceStopped(c, k);
    const names = ["two words", "a\nnewline", `say "hi"`, "a folder?/#inside"];
    for (const name of names) {
      const path = name.split("/").map(encodeURIComponent).join("/");
      const put = await fetch(`http://${rec.rvolumes[0]}/zz/${path}`, {
        method: "PUT",
        body: "nobody's",
      });
      await put.body?.cancel();
      assertEquals(put.status, 201, name);
    }
    const r = await runMain(["verify", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assertEquals(
      r.stdout.trimEnd().split("\n").sort(),
      [
        ...names.map((name) =>
          `unknown file: ${
            JSON.stringify(`http://${rec.rvolumes[0]}/zz/${name}`)
          } (not a key's; left alone)`
        ),
        "verify: 1 key, 4 problems",
      ].sort(),
    );
  } finally {
    await c.stop();
  }
});

Deno.test("verify passes over lost+found at a volume's root (a mount point's, unreadable to nginx)", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey("/verify-lost-found");
    assertEquals((await fetch(c.url + k, { method: "PUT", body: "a key" })).status, 201);
    await recordOnceStopped(c, k);
    const lost = `${c.volumeDir(0)}/lost+found`;
    await Deno.mkdir(lost, { mode: 0o700 });
    await Deno.writeTextFile(`${lost}/#1234`, "the filesystem's");
    await Deno.chmod(lost, 0o700);
    const r = await runMain(["verify", "-volumes", c.volumes.join(","), "-db", c.db]);
    assertEquals([r.code, r.stdout], [0, "verify: 1 key, 0 problems\n"], r.stderr);
  } finally {
    await c.stop();
  }
});
