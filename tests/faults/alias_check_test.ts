// The check for two names of one volume (lib/aliases.ts), which masters,
// rebalance and verify make at their start, with a volume that does not
// answer: seen in chaos runs (bench/chaos.ts), where masters restarted while
// a volume was SIGSTOPped left a marker file on it each.
import { assert, assertEquals } from "../assert.ts";
import { Cluster, randomKey, runMain, volumeFiles } from "../cluster.ts";
import { VolumeProxy } from "./replace_faults.ts";
import { aliasesOf } from "../../lib/aliases.ts";

/** A volume that takes connections and never answers (SIGSTOPped, or hung). */
function hungVolume(): { volume: string; close: () => void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) conns.push(conn);
  })().catch(() => {});
  return {
    volume: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close() {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

Deno.test("two names of one volume are found when a volume named before them does not answer", async () => {
  // Every marker's PUT shared one timeout: the hung volume's PUT used it up,
  // the PUTs after it were aborted at once, and the aliases went unseen.
  const c = await Cluster.start();
  const hung = hungVolume();
  try {
    const alias = c.volumes[0].replace("127.0.0.1", "localhost");
    const found = await aliasesOf([hung.volume, c.volumes[0], alias, c.volumes[1]], [], 300);
    assertEquals(found, [`${alias} and ${c.volumes[0]}`]);
  } finally {
    hung.close();
    await c.stop();
  }
});

/** Stores a PUT at once, and answers it only once released (a volume paused mid-answer). */
class LateAnswer extends VolumeProxy {
  protected override async handle(req: Request): Promise<Response> {
    const res = await this.forward(req);
    if (req.method !== "PUT") return res;
    await res.body?.cancel();
    await this.released;
    return new Response(null, { status: res.status });
  }
}

Deno.test("a marker whose PUT went unanswered is removed too: it may have landed", async () => {
  // Only markers whose PUT was answered were removed: one answered late
  // stayed at the volume's root for good (no walk of the tools lists it).
  const c = await Cluster.start();
  const late = new LateAnswer(c.volumes[0]);
  try {
    assertEquals(await aliasesOf([late.volume, c.volumes[1]], [], 300), []);
    assertEquals(await volumeFiles(c.volumes[0]), []);
    assertEquals(await volumeFiles(c.volumes[1]), []);
  } finally {
    await late.stop();
    await c.stop();
  }
});

/** verify -repair -grace 0s of `c`'s index over `volumes`: exit code and output. */
function repairedWithNoGrace(c: Cluster, volumes: string) {
  return runMain(["verify", "-repair", "-grace", "0s", "-db", c.db, "-volumes", volumes]);
}

Deno.test("verify -repair removes a marker of the check left at a volume's root", async () => {
  // A marker whose PUT a paused volume carried out after its DELETE stays:
  // no walk of the tools looked at the root, so nothing ever removed it.
  const c = await Cluster.start();
  try {
    const marker = `/mkv-volume-name.${crypto.randomUUID()}`;
    const put = await fetch(`http://${c.volumes[1]}${marker}`, { method: "PUT", body: "x" });
    assertEquals(put.status, 201);
    const volumes = c.volumes.join(",");
    const kept = await runMain(["verify", "-repair", "-db", c.db, "-volumes", volumes]);
    assertEquals(kept.code, 0, "younger than -grace: a check may be under way");
    assertEquals(await volumeFiles(c.volumes[1]), [marker]);
    const r = await repairedWithNoGrace(c, volumes);
    assertEquals(r.code, 0);
    assertEquals(
      r.stdout.split("\n")[0],
      `orphan file: http://${c.volumes[1]}${marker} (marker of a master's or tool's check of ` +
        `-volumes): repaired, deleted`,
    );
    assertEquals(await volumeFiles(c.volumes[1]), []);
  } finally {
    await c.stop();
  }
});

Deno.test("verify -repair given an mkv master in -volumes says so and deletes nothing there", async () => {
  const c = await Cluster.start();
  const other = await Cluster.start();
  try {
    const key = randomKey("/kept-on-other");
    const put = await fetch(other.url + key, { method: "PUT", body: "theirs" });
    assertEquals(put.status, 201);
    const master = new URL(other.url).host;
    const volumes = [...c.volumes, master].join(",");
    const r = await repairedWithNoGrace(c, volumes);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(
      r.stdout.includes(
        `An mkv master answers at ${master}, not a volume: -volumes names nginx volumes ` +
          `(deno task volume DIR); check -volumes; orphans not deleted\n`,
      ),
      r.stdout,
    );
    const got = await fetch(other.url + key);
    assertEquals([got.status, await got.text()], [200, "theirs"]);
  } finally {
    await other.stop();
    await c.stop();
  }
});

/** A volume whose disk is full: a PUT of any byte answers 507, as ours do; an empty one is taken. */
class FullDisk extends VolumeProxy {
  protected override async handle(req: Request): Promise<Response> {
    const length = req.headers.get("content-length");
    if (req.method !== "PUT" || length === "0" || length === null) return await this.forward(req);
    await req.body?.cancel();
    return new Response("No space left on device", { status: 507 });
  }
}

Deno.test("a master refuses two names for one volume whose disk is full", async () => {
  // The marker held the name it was written through: the full volume
  // refused it (507) through both names, and was compared with none.
  const c = await Cluster.start();
  const names = [new FullDisk(c.volumes[0]), new FullDisk(c.volumes[0])];
  try {
    await c.stopMaster();
    const [a, b] = names.map((n) => n.volume);
    const volumes = [a, b, c.volumes[1]].join(",");
    // Killed if it starts (it did, and ran on).
    const signal = AbortSignal.timeout(30_000);
    const r = await runMain(["server", "-port", "0", "-db", c.db, "-volumes", volumes], { signal });
    assertEquals(r.code, 1, r.stderr);
    assertEquals(
      r.stderr,
      `Two names reach the same volume (${b} and ${a}): name each volume ` +
        `one way, or two replicas of a key would be one file\n`,
    );
    assertEquals(await volumeFiles(c.volumes[0]), [], "no marker left");
  } finally {
    await Promise.all(names.map((n) => n.stop()));
    await c.stop();
  }
});

Deno.test("verify -repair deletes no orphan through a second name of a volume whose disk is full", async () => {
  // Every file of the key recorded on one name looked an orphan of the other.
  const c = await Cluster.start({ flags: ["-replicas", "1"] });
  const names = [new FullDisk(c.volumes[0]), new FullDisk(c.volumes[0])];
  try {
    const key = randomKey("/full-alias");
    await c.stopMaster();
    await c.startMaster([], [c.volumes[0]]);
    const put = await fetch(c.url + key, { method: "PUT", body: "value" });
    assertEquals(put.status, 201);
    await c.stopMaster();
    const [a, b] = names.map((n) => n.volume);
    const r = await runMain([
      "verify",
      "-repair",
      "-grace",
      "0s",
      "-replicas",
      "1",
      "-db",
      c.db,
      "-volumes",
      [a, b].join(","),
    ]);
    assertEquals(r.code, 1, r.stdout + r.stderr);
    assert(r.stdout.includes(`Two names reach the same volume (${b} and ${a}`), r.stdout);
    assert(r.stdout.includes("orphans not deleted"), r.stdout);
    await c.startMaster([], [c.volumes[0]]);
    assertEquals(await (await fetch(c.url + key)).text(), "value");
  } finally {
    await Promise.all(names.map((n) => n.stop()));
    await c.stop();
  }
});
