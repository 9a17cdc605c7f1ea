// Two real masters on one index with different -volumes: each says so, in
// its log and on its status page (lib/membership.ts Placement), and goes on
// serving (restarting masters one by one with a new -volumes is how volumes
// are added).
import { Cluster, MAIN, randomKey, runMain, status, volumeFiles } from "./cluster.ts";
import { HungVolume } from "./hung_volume.ts";
import { assert, assertEquals } from "./assert.ts";
import type { OtherPlacement } from "../lib/membership.ts";

/**
 * The other members a master's ?status names as placing keys otherwise,
 * once it names one (a failure, not a hang, when none is named in 30 s).
 */
async function otherPlacements(url: string): Promise<OtherPlacement[]> {
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    const res = await fetch(`${url}/?status`, { headers: { Accept: "application/json" } });
    const { index } = await res.json() as { index: { placements: OtherPlacement[] } };
    if (index.placements.length > 0) return index.placements;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url}/?status named no member placing keys otherwise within 30 s`);
}

/** Reads `stderr` until a line holds `text`; returns that line. */
async function lineWith(stderr: ReadableStream<Uint8Array>, text: string): Promise<string> {
  let seen = "";
  for await (const chunk of stderr.pipeThrough(new TextDecoderStream())) {
    seen += chunk;
    const line = seen.split("\n").find((l) => l.includes(text));
    if (line) return line;
  }
  throw new Error(`stderr ended without "${text}": ${seen}`);
}

Deno.test("a master started beside a live one with another -volumes warns, both status pages name the other, and both serve", async () => {
  const c = await Cluster.start({ volumes: 3, flags: ["-replicas", "2"] });
  const grown = c.volumes.slice(0, 2);
  const b = await c.spawnMaster(["-volumes", grown.join(",")], {}, { stderr: "piped" });
  try {
    const a = { volumes: c.volumes, replicas: 2, subvolumes: 10, colocate: false };
    const bPlaced = { ...a, volumes: grown };
    const warning = await lineWith(b.proc.stderr, "Warning: master ");
    const aPid = c.masterProcess!.pid;
    assert(warning.includes(`:${aPid}:`), warning);
    assert(
      warning.includes(
        `places keys by -volumes ${c.volumes.join(",")} -replicas 2 -subvolumes 10 ` +
          `-colocate=false, this master by -volumes ${grown.join(",")} -replicas 2`,
      ),
      warning,
    );
    const seenByA = await otherPlacements(c.url);
    assertEquals(seenByA.map((o) => o.placement), [bPlaced]);
    assert(seenByA[0].id.includes(`:${b.proc.pid}:`), seenByA[0].id);
    const seenByB = await otherPlacements(b.url);
    assertEquals(seenByB.map((o) => o.placement), [a]);
    assert(seenByB[0].id.includes(`:${aPid}:`), seenByB[0].id);
    const k = randomKey();
    assertEquals(await status(b.url + k, { method: "PUT", body: "placed by b" }), 201);
    assertEquals(await (await fetch(c.url + k)).text(), "placed by b");
  } finally {
    await b.stop();
    await c.stop();
  }
});

/** A key PUT on a live master of `c`, and the volume files it made. */
async function putOne(c: Cluster): Promise<{ key: string; files: string[][] }> {
  const key = randomKey("/placed");
  assertEquals(await status(c.url + key, { method: "PUT", body: "value" }), 201);
  return { key, files: await Promise.all(c.volumes.map((v) => volumeFiles(v))) };
}

/** The rebalance tool on `c`'s index with `flags` (then -db): exit code and output. */
function rebalanceOn(c: Cluster, ...flags: string[]) {
  return runMain(["rebalance", ...flags, "-db", c.db]);
}

Deno.test("rebalance refuses while a live master places keys by another -replicas: exit 1, the flag named, nothing moved", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "2"] });
  try {
    const { key, files } = await putOne(c);
    const r = await rebalanceOn(c, "-volumes", c.volumes.join(","), "-replicas", "1");
    assertEquals(r.code, 1, r.stderr);
    assert(r.stderr.includes(`rebalance: live master `), r.stderr);
    assert(r.stderr.includes(`:${c.masterProcess!.pid}:`), r.stderr);
    assert(r.stderr.includes("this rebalance by -replicas 1 (2 there)"), r.stderr);
    assert(r.stderr.includes("nothing moved"), r.stderr);
    assertEquals(await Promise.all(c.volumes.map((v) => volumeFiles(v))), files);
    assertEquals(await (await fetch(c.url + key)).text(), "value");
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance -dry-run refuses too while a live master places keys by another -volumes", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "1"] });
  try {
    const one = c.volumes.slice(0, 1);
    const r = await rebalanceOn(c, "-dry-run", "-volumes", one[0], "-replicas", "1");
    assertEquals(r.code, 1, r.stderr);
    assert(
      r.stderr.includes(`this rebalance by -volumes ${one[0]} (${c.volumes.join(",")} there)`),
      r.stderr,
    );
    assert(r.stderr.includes("nothing counted"), r.stderr);
  } finally {
    await c.stop();
  }
});

Deno.test("rebalance -force beside a live master placing keys otherwise warns and moves", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "2"] });
  try {
    const { key } = await putOne(c);
    const r = await rebalanceOn(c, "-force", "-volumes", c.volumes.join(","), "-replicas", "1");
    assertEquals(r.code, 0, r.stderr);
    assert(r.stderr.includes("Warning: rebalance: live master "), r.stderr);
    assert(r.stderr.includes("-force: keys are moved"), r.stderr);
    assert(r.stdout.includes("moved 1 key"), r.stdout);
    const left = (await Promise.all(c.volumes.map((v) => volumeFiles(v)))).flat();
    assertEquals(left.length, 1);
    assertEquals(await (await fetch(c.url + key)).text(), "value");
  } finally {
    await c.stop();
  }
});

Deno.test("a master's ?status names a running rebalance that places keys otherwise", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "1"] });
  const hung = new HungVolume(c.volumes[1]);
  let tool: Deno.ChildProcess | null = null;
  try {
    // Every key on volume 0 alone; the rebalance puts copies on volume 1,
    // through a proxy that holds them: it runs until released.
    await c.stopMaster();
    await c.startMaster([], c.volumes.slice(0, 1));
    await putOne(c);
    hung.holds = (req) => req.method === "PUT" && !req.url.includes("mkv-");
    const volumes = [c.volumes[0], hung.volume];
    tool = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MAIN,
        "rebalance",
        "-force",
        "-volumes",
        volumes.join(","),
        "-replicas",
        "2",
        "-db",
        c.db,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await hung.arrived;
    const seen = await otherPlacements(c.url);
    assertEquals(seen, [{
      id: `rebalance:${tool.pid}`,
      placement: { volumes, replicas: 2, subvolumes: 10, colocate: false },
    }]);
    const page = await (await fetch(`${c.url}/?status`)).text();
    assert(page.includes(`Tool rebalance:${tool.pid} on this index places keys by`), page);
  } finally {
    hung.release();
    await tool?.status;
    await hung.stop();
    await c.stop();
  }
});
