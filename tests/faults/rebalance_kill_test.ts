// rebalance killed (SIGKILL) midway, once its progress shows keys moved, then
// run again: it finishes, no key is lost, none points at a missing file, and
// every key reads back byte-identical and balanced.
import { Cluster, randomKey, runMain } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { openIndex } from "../../lib/open.ts";
import { key2path, md5, toHex } from "../../lib/keys.ts";
import { pool } from "../../lib/pool.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const enc = new TextEncoder();

Deno.test("rebalance killed midway and run again loses no key", async () => {
  const c = await Cluster.start({ volumes: 4, flags: ["-replicas", "2"] });
  try {
    // Written on the first three volumes; rebalanced onto all four.
    await c.stopMaster();
    const three = c.volumes.slice(0, 3);
    await c.startMaster([], three);
    const prefix = randomKey("/kill");
    const md5s = new Map<string, string>();
    const keys = Array.from({ length: 600 }, (_, i) => `${prefix}/k${i}`);
    await pool(keys, 32, async (k) => {
      const value = enc.encode(`${k} `.repeat(1 + (k.length * 37) % 50));
      const res = await fetch(c.url + k, { method: "PUT", body: value });
      await res.body?.cancel();
      assertEquals(res.status, 201, k);
      md5s.set(k, toHex(md5(value)));
    });
    await c.stopMaster();

    // A short lease: the holds the killed run leaves block its keys for 2 s, not 30.
    const args = ["-replicas", "2", "-lease", "2s", "-volumes", c.volumes.join(","), "-db", c.db];
    const dry = await runMain(["rebalance", "-dry-run", ...args]);
    assertEquals(dry.code, 0, dry.stderr);
    const m = /dry run: (\d+) of 600 keys would move, (\d+) bytes/.exec(dry.stdout);
    assert(m !== null && Number(m[1]) > 50, dry.stdout);

    // Run it slowly, progress every 20 ms, and kill it once keys moved.
    const proc = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "rebalance", "-concurrency", "2", ...args],
      env: { MKV_PROGRESS_MS: "20" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let seen = "";
    const dec = new TextDecoder();
    let killedAt = -1;
    for await (const chunk of proc.stderr) {
      seen += dec.decode(chunk);
      const moved = [...seen.matchAll(/rebalance: keys (\d+)\//g)].map((x) => Number(x[1]));
      const last = moved.at(-1) ?? 0;
      if (last >= 10 && killedAt < 0) {
        killedAt = last;
        proc.kill("SIGKILL");
      }
    }
    const st = await proc.status;
    assert(killedAt >= 10 && st.signal === "SIGKILL", `killed midway: ${seen.slice(-300)}`);
    assert(killedAt < Number(m![1]), "killed before it finished");

    const again = await runMain(["rebalance", ...args]);
    assertEquals(again.code, 0, again.stdout + again.stderr);

    // Copies the killed run left behind are orphans; verify -repair removes them.
    const verify = ["verify", ...args, "-md5"];
    const fix = await runMain([...verify, "-repair", "-grace", "0s"]);
    assertEquals(fix.code, 0, fix.stdout + fix.stderr);
    const clean = await runMain(verify);
    assertEquals(clean.code, 0, clean.stdout + clean.stderr);
    assert(clean.stdout.includes("600 keys, 0 problems"), clean.stdout);

    // The index holds every key, on existing files only.
    const index = await openIndex(c.db);
    let n = 0;
    for await (const [key, e] of index.entries()) {
      n++;
      assertEquals(e.rec.state, "live");
      assertEquals(e.rec.rvolumes.length, 2);
      for (const v of e.rec.rvolumes) {
        const res = await fetch(`http://${v}${key2path(key)}`, { method: "HEAD" });
        await res.body?.cancel();
        assertEquals(res.status, 200, `${v}${key2path(key)}`);
      }
    }
    index.close();
    assertEquals(n, keys.length);

    await c.startMaster(["-replicas", "2"]);
    await pool(keys, 16, async (k) => {
      const res = await fetch(c.url + k, { redirect: "manual" });
      await res.body?.cancel();
      assertEquals(res.status, 302, k);
      assertEquals(res.headers.get("key-balance"), "balanced", k);
      const file = await fetch(res.headers.get("location")!);
      assertEquals(toHex(md5(new Uint8Array(await file.arrayBuffer()))), md5s.get(k), k);
    });
  } finally {
    await c.stop();
  }
});
