// verify -repair beside masters that keep writing: what it read of a key may
// be stale by the time it acts on it, and it must then leave the key alone.
import { Cluster, type HeldServer, heldServer, MAIN, randomKey } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { joinIndex, openIndex } from "../lib/open.ts";
import { FLAGS, storeOptions } from "../lib/config.ts";
import { parseFlags } from "../lib/flags.ts";
import { Store } from "../lib/store.ts";
import type { Index } from "../lib/index_db.ts";
import { key2path } from "../lib/keys.ts";
import { volumeUrl } from "../lib/volumes.ts";

const enc = new TextEncoder();

/**
 * A "volume" that accepts connections and never answers until released:
 * verify's check of a key recorded there waits on it, with the records it
 * read after it already in hand.
 */
function hungVolume() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const { promise: asked, resolve: reached } = Promise.withResolvers<void>();
  (async () => {
    for await (const c of listener) {
      conns.push(c);
      reached();
    }
  })().catch(() => {});
  return {
    name: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    asked,
    release() {
      for (const c of conns.splice(0)) c.close();
      try {
        listener.close();
      } catch { /* closed already */ }
    },
  };
}

/** A live key recorded on the hung volume only: verify, one key at a time, waits on it first. */
async function holdVerifyAt(index: Index, key: string, hung: { name: string }) {
  await index.set(enc.encode(key), {
    state: "live",
    rvolumes: [hung.name],
    hash: "",
    size: 5,
    mtime: Date.now(),
  });
}

/** verify (with `extra`, e.g. -repair) over the cluster, one key at a time. */
function spawnVerify(c: Cluster, extra: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "verify", ...extra, "-concurrency", "1"]
      .concat(["-volumes", c.volumes.join(","), "-db", c.db]),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

Deno.test("verify -repair does not delete the files of a PUT that took over an expired write meanwhile", async () => {
  const c = await Cluster.start();
  const index = await openIndex(c.db);
  const hung = hungVolume();
  try {
    await joinIndex(index, "test:expired");
    const flags = parseFlags(["-volumes", c.volumes.join(","), "-db", c.db], FLAGS).flags;
    const store = new Store(index, storeOptions(flags));
    const prefix = randomKey("/expired");
    // Checked first (keys in order, one at a time): a live key on the hung volume.
    await holdVerifyAt(index, `${prefix}/1`, hung);
    // A write whose master died: its lease ran out.
    const k = `${prefix}/2`;
    await index.set(enc.encode(k), {
      state: "writing",
      rvolumes: store.kvolumes(enc.encode(k)),
      hash: "",
      size: -1,
      owner: "dead-master",
      until: Date.now() - 1000,
    });
    const verify = spawnVerify(c, ["-repair"]);
    await hung.asked;
    // While verify waits on the first key, a client PUTs the second: the
    // expired write is taken over, and the value is stored.
    const put = await fetch(c.url + k, { method: "PUT", body: "the new value" });
    assertEquals([put.status, await put.text()], [201, ""]);
    hung.release();
    const out = await verify.output();
    const report = new TextDecoder().decode(out.stdout);
    // The value verify saw as an expired write is live now: still readable.
    const get = await fetch(c.url + k);
    assertEquals([get.status, await get.text()], [200, "the new value"], report);
    assert(
      report.includes(`expired write: "${k}" (owner dead-master) (changed meanwhile, kept)`),
      report,
    );
  } finally {
    hung.release();
    await index.membership?.leave();
    index.close();
    await c.stop();
  }
});

Deno.test("verify -repair copies no replica over a value written since it read the key's record", async () => {
  const c = await Cluster.start();
  const index = await openIndex(c.db);
  const hung = hungVolume();
  try {
    await joinIndex(index, "test:stale");
    const prefix = randomKey("/stale");
    await holdVerifyAt(index, `${prefix}/1`, hung);
    const k = `${prefix}/2`;
    const key = enc.encode(k);
    const put = await fetch(c.url + k, { method: "PUT", body: "old value" });
    assertEquals(put.status, 201);
    const verify = spawnVerify(c, ["-repair"]);
    // verify has read both records and waits on the first key.
    await hung.asked;
    const replace = await fetch(c.url + k, { method: "REPLACE", body: "the new value" });
    assertEquals([replace.status, await replace.text()], [201, ""]);
    // The REPLACE as it ends when the rename fails on one replica, whose old
    // copy then cannot be removed either (its volume was down a moment): the
    // new value is live on the two that took it; the third keeps the old one.
    const e = (await index.get(key))!;
    const [a, b, third] = e.rec.rvolumes;
    const left = await fetch(volumeUrl(third, key2path(key)), { method: "PUT", body: "old value" });
    await left.body?.cancel();
    assert(await index.cas(key, e.versionstamp, { ...e.rec, rvolumes: [a, b] }) !== null);
    hung.release();
    const out = await verify.output();
    const report = new TextDecoder().decode(out.stdout);
    // To the record verify read, the two new copies look corrupt (another
    // size) and the old one healthy: it must not copy the old value back.
    const get = await fetch(c.url + k);
    assertEquals([get.status, await get.text()], [200, "the new value"], report);
    // Judged against its record as it is now: two whole replicas of the new
    // value, and the old copy an orphan (younger than -grace, so kept).
    const name = JSON.stringify(k);
    assertEquals(report.split("\n").filter((l) => l.includes(name)).map((l) => l.split(" (")[0]), [
      `under-replicated: ${name} has 2 healthy of 3 replicas`,
      `orphan file: ${volumeUrl(third, key2path(key))}`,
    ]);
  } finally {
    hung.release();
    await index.membership?.leave();
    index.close();
    await c.stop();
  }
});

Deno.test("verify beside a master names no replica of a key deleted since it read its record", async () => {
  const c = await Cluster.start();
  const index = await openIndex(c.db);
  const hung = hungVolume();
  try {
    const prefix = randomKey("/gone");
    await holdVerifyAt(index, `${prefix}/1`, hung);
    const k = `${prefix}/2`;
    const put = await fetch(c.url + k, { method: "PUT", body: "a value" });
    assertEquals(put.status, 201);
    const verify = spawnVerify(c, []);
    await hung.asked;
    const del = await fetch(c.url + k, { method: "DELETE" });
    assertEquals([del.status, await del.text()], [204, ""]);
    hung.release();
    const out = await verify.output();
    const report = new TextDecoder().decode(out.stdout);
    // Only the key on the volume that never answered is a problem.
    const lines = report.split("\n").filter((l) => l.includes(prefix));
    assertEquals(lines.length, 2, report);
    assert(
      lines[0].startsWith(`unreachable replica: "${prefix}/1" on ${hung.name} (HEAD unanswered: `),
      report,
    );
    assertEquals(lines[1], `under-replicated: "${prefix}/1" has 0 healthy of 3 replicas`);
  } finally {
    hung.release();
    index.close();
    await c.stop();
  }
});

/**
 * A "volume" whose autoindex shows one key folder `/ab/cd/` (empty) and
 * answers its listing only once released: verify's walk has listed that
 * folder on the real volumes by then, and waits before it reads the index
 * about what it found there.
 */
function slowFolder(folder: string): HeldServer {
  const [ab, cd] = folder.split("/").filter(Boolean);
  const dir = (name: string) => [{ name, type: "directory", mtime: new Date().toUTCString() }];
  return heldServer(async (req, hold) => {
    const path = new URL(req.url).pathname;
    if (path === "/") return Response.json(dir(ab));
    if (path === `/${ab}/`) return Response.json(dir(cd));
    if (path !== `/${ab}/${cd}/`) return new Response(null, { status: 404 });
    await hold();
    return Response.json([]);
  });
}

Deno.test("verify beside a master names no orphan of a key deleted between its listing and its index read", async () => {
  const c = await Cluster.start();
  const k = randomKey("/listed");
  const folder = key2path(enc.encode(k)).slice(0, 7);
  const slow = slowFolder(folder);
  try {
    const put = await fetch(c.url + k, { method: "PUT", body: "a value" });
    assertEquals(put.status, 201);
    const verify = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "verify", "-volumes", [...c.volumes, slow.name].join(",")]
        .concat(["-db", c.db]),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // The key's folder is listed on the real volumes; the slow one holds it up.
    await slow.asked;
    const del = await fetch(c.url + k, { method: "DELETE" });
    assertEquals([del.status, await del.text()], [204, ""]);
    slow.release();
    const out = await verify.output();
    const report = new TextDecoder().decode(out.stdout);
    assertEquals(report.split("\n").filter((l) => l.includes(folder)), [], report);
    assertEquals(out.code, 0, report);
  } finally {
    await slow.close();
    await c.stop();
  }
});
