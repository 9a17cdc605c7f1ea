// The rebalance tool beside a master that keeps serving: a key the master
// deletes after the tool's scan has nothing left to move, which is no
// failure of the move.
import { Cluster, type HeldServer, heldServer, MAIN, randomKey } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { openIndex } from "../lib/open.ts";
import { key2path, key2volume } from "../lib/keys.ts";

const enc = new TextEncoder();

/**
 * A "volume" that takes and gives back rebalance's marker files (its check
 * for two names of one volume) and holds the GET of `path` until released,
 * then answers it 500.
 */
function heldVolume(path: string): HeldServer {
  const files = new Map<string, ArrayBuffer>();
  return heldServer(async (req, hold) => {
    const at = new URL(req.url).pathname;
    if (at === path) {
      await hold();
      return new Response(null, { status: 500 });
    }
    if (req.method === "PUT") {
      files.set(at, await req.arrayBuffer());
      return new Response(null, { status: 201 });
    }
    if (req.method === "DELETE") {
      return new Response(null, { status: files.delete(at) ? 204 : 404 });
    }
    const file = files.get(at);
    return file ? new Response(file) : new Response(null, { status: 404 });
  });
}

Deno.test("rebalance beside a master: a key deleted after its scan is no failed move", async () => {
  const c = await Cluster.start({ volumes: 4 });
  const prefix = randomKey("/rebalance-gone");
  // Moved first (keys in order, one at a time): a key on the held volume.
  const first = `${prefix}/a`;
  const held = heldVolume(key2path(enc.encode(first)));
  try {
    const three = c.volumes.slice(0, 3);
    await c.stopMaster();
    await c.startMaster([], three);
    // Then a key that moves when the fourth volume comes in.
    let gone = "";
    for (let i = 0; !gone; i++) {
      const key = enc.encode(`${prefix}/b${i}`);
      const before = key2volume(key, three, 3, 10);
      if (key2volume(key, c.volumes, 3, 10).some((v) => !before.includes(v))) {
        gone = `${prefix}/b${i}`;
      }
    }
    const put = await fetch(c.url + gone, { method: "PUT", body: "a value" });
    assertEquals([put.status, await put.text()], [201, ""]);
    const index = await openIndex(c.db);
    await index.set(enc.encode(first), {
      state: "live",
      rvolumes: [held.name],
      hash: "",
      size: 5,
      mtime: Date.now(),
    });
    index.close();
    const rebalance = new Deno.Command(Deno.execPath(), {
      // -force: the master beside it places keys on three volumes, not four.
      args: ["run", "-A", MAIN, "rebalance", "-concurrency", "1", "-force"]
        .concat(["-volumes", c.volumes.join(","), "-db", c.db]),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // The tool has scanned both keys and is moving the first.
    await held.asked;
    const del = await fetch(c.url + gone, { method: "DELETE" });
    assertEquals([del.status, await del.text()], [204, ""]);
    held.release();
    const out = await rebalance.output();
    const [stdout, stderr] = [out.stdout, out.stderr].map((b) => new TextDecoder().decode(b));
    // Only the key whose volume failed its copy failed.
    assert(stdout.includes("rebalance: moved 0 keys, 1 failed, 1 deleted meanwhile"), stdout);
    assert(stdout.includes(`"${first}": 500 `), stdout);
    assert(!stdout.includes(gone), stdout);
    assertEquals(out.code, 1, stdout + stderr);
  } finally {
    await held.close();
    await c.stop();
  }
});
