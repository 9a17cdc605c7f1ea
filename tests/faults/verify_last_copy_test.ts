// verify -repair and a key whose every recorded replica has lost its file,
// while a copy of it sits on a volume its record does not name (an orphan:
// a rebalance that switched the index, then could not delete the old copy
// from a volume that was down). That copy may be the value's last: it must
// be kept, and said to be. It was deleted as any orphan older than -grace;
// and so it still was for an unlinked key (verify did not check unlinked
// keys' replicas), whose value RELINK can bring back.
import { Cluster, randomBytes, randomKey, runMain } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { key2path } from "../../lib/keys.ts";
import { openIndex } from "../../lib/open.ts";
import { HeldVolume } from "../hung_volume.ts";

const enc = new TextEncoder();

/**
 * A key (unlinked first with `unlink`) whose one recorded replica lost its
 * file while a copy sits on the other volume; verify -repair is run and
 * must keep that copy.
 */
async function keepsLastCopy(opts: { unlink: boolean }) {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "1", "-subvolumes", "1"] });
  try {
    const key = randomKey("/last");
    const value = randomBytes(10_000);
    const put = await fetch(c.url + key, { method: "PUT", body: value });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    if (opts.unlink) {
      const unlinked = await fetch(c.url + key, { method: "UNLINK" });
      await unlinked.body?.cancel();
      assertEquals(unlinked.status, 204);
    }
    await c.stopMaster();
    const index = await openIndex(c.db);
    const [recorded] = (await index.get(enc.encode(key)))!.rec.rvolumes;
    index.close();
    const other = c.volumes.find((v) => v !== recorded)!;
    const path = key2path(enc.encode(key));
    // The value's copy left on the other volume; the recorded one lost.
    const copy = await fetch(`http://${other}${path}`, { method: "PUT", body: value });
    await copy.body?.cancel();
    assertEquals(copy.status, 201);
    const lost = await fetch(`http://${recorded}${path}`, { method: "DELETE" });
    await lost.body?.cancel();
    assertEquals(lost.status, 204);

    const flags = [
      "-replicas",
      "1",
      "-subvolumes",
      "1",
      "-volumes",
      c.volumes.join(","),
      "-db",
      c.db,
    ];
    const repair = await runMain(["verify", "-repair", "-grace", "0s", ...flags]);
    assertEquals(repair.code, 1, repair.stdout + repair.stderr);
    const name = JSON.stringify(key) + (opts.unlink ? " (unlinked)" : "");
    assert(repair.stdout.includes(`missing replica: ${name} on ${recorded}\n`), repair.stdout);
    await assertOrphanKept(repair.stdout, { key, value, other, path });
  } finally {
    await c.stop();
  }
}

Deno.test("verify -repair keeps the orphan copy of a key whose recorded replicas all lost their file", async () => {
  await keepsLastCopy({ unlink: false });
});

Deno.test("verify -repair keeps the orphan copy of an unlinked key whose recorded replicas all lost their file", async () => {
  await keepsLastCopy({ unlink: true });
});

// The health of the recorded replicas was judged by the scan of the keys,
// which on a large index ends hours before the walk reaches the key's
// folder: a recorded replica lost meanwhile (its disk gone) left the orphan
// copy the value's last, and the walk deleted it as any orphan.
Deno.test("verify -repair keeps the orphan copy of a key whose recorded replica lost its file after the scan", async () => {
  const flags = ["-replicas", "1", "-subvolumes", "1"];
  const c = await Cluster.start({ volumes: 2, flags });
  // The volume of the orphan copy behind a proxy that holds the walk's
  // first listing (its root): the scan of the keys is over by then.
  const held = new HeldVolume(c.volumes[1]);
  try {
    await c.stopMaster();
    const volumes = [c.volumes[0], held.volume];
    const m = await c.spawnMaster(["-volumes", volumes.join(",")]);
    const key = randomKey("/last");
    const value = randomBytes(10_000);
    try {
      const put = await fetch(m.url + key, { method: "PUT", body: value });
      await put.body?.cancel();
      assertEquals(put.status, 201);
    } finally {
      await m.stop();
    }
    const index = await openIndex(c.db);
    const [recorded] = (await index.get(enc.encode(key)))!.rec.rvolumes;
    index.close();
    const other = volumes.find((v) => v !== recorded)!;
    const path = key2path(enc.encode(key));
    const copy = await fetch(`http://${other}${path}`, { method: "PUT", body: value });
    await copy.body?.cancel();
    assertEquals(copy.status, 201);

    held.holdWhen((req) => req.method === "GET" && new URL(req.url).pathname === "/");
    const repair = runMain([
      "verify",
      "-repair",
      "-grace",
      "0s",
      ...flags,
      "-volumes",
      volumes.join(","),
      "-db",
      c.db,
    ]);
    await held.arrived;
    const lost = await fetch(`http://${recorded}${path}`, { method: "DELETE" });
    await lost.body?.cancel();
    assertEquals(lost.status, 204);
    held.letGo();
    const out = await repair;
    assertEquals(out.code, 1, out.stdout + out.stderr);
    await assertOrphanKept(out.stdout, { key, value, other, path });
  } finally {
    await held.stop();
    await c.stop();
  }
});

/** verify's report kept the orphan copy on `other` as maybe the last, and the file is still whole. */
async function assertOrphanKept(
  stdout: string,
  o: { key: string; value: Uint8Array; other: string; path: string },
) {
  const { key, value, other, path } = o;
  assert(
    stdout.includes(
      `orphan file: http://${other}${path} (${JSON.stringify(key)} is not recorded on ${other}) ` +
        `(kept: no recorded replica of the key is healthy; this may be its last copy)`,
    ),
    stdout,
  );
  const kept = await fetch(`http://${other}${path}`);
  assertEquals(kept.status, 200);
  assertEquals(new Uint8Array(await kept.arrayBuffer()), value);
}
