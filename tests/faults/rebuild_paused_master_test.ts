// rebuild runs with the masters stopped, and refuses to start while one is
// registered. A master paused (SIGSTOP) past its heartbeat looks stopped:
// rebuild empties the index and refills it from the volumes, and the master,
// resumed meanwhile, answered from that half-filled index (404 for acknowledged
// keys, found by a helper). It answers 503 until the rebuild is done.
import { Cluster, randomBytes, randomKey, runMain, status } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { VolumeProxy } from "./replace_faults.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until a member whose id starts with `prefix` has a heartbeat record in the index. */
async function registered(db: string, prefix: string): Promise<void> {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  try {
    for (let i = 0; i < 200; i++) {
      for await (const e of kv.list({ prefix: ["members"] })) {
        if (String(e.key[1]).startsWith(prefix)) return;
      }
      await sleep(50);
    }
    throw new Error(`No member "${prefix}..." registered within 10 s`);
  } finally {
    kv.close();
  }
}

/** Answers each folder listing 1 s late: a rebuild that takes seconds. */
class SlowListing extends VolumeProxy {
  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "GET" && new URL(req.url).pathname.endsWith("/")) await sleep(1000);
    return await this.forward(req);
  }
}

Deno.test("a master resumed while a rebuild runs answers 503 until it is done", async () => {
  const c = await Cluster.start();
  await c.stopMaster();
  const proxies = c.volumes.map((v) => new SlowListing(v));
  const volumes = proxies.map((p) => p.volume).join(",");
  const m = await c.spawnMaster(["-volumes", volumes]);
  try {
    const key = randomKey("/rebuild-paused");
    assertEquals(await status(m.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    m.proc.kill("SIGSTOP");
    // The rebuild watches the master's heartbeat record lapse (3 s), then registers.
    const rebuild = runMain(["rebuild", "-db", c.db, "-volumes", volumes]);
    await registered(c.db, "rebuild:");
    m.proc.kill("SIGCONT");
    await sleep(1500); // a heartbeat: it sees the rebuild
    const res = await fetch(m.url + key, { redirect: "manual" });
    assertEquals(
      [res.status, await res.text()],
      [503, "A rebuild of the index is running: retry once it is done\n"],
    );
    assertEquals(await status(`${m.url}/?status`), 200, "the status page still answers");
    const done = await rebuild;
    assertEquals(done.code, 0, done.stdout + done.stderr);
    await sleep(2500); // a heartbeat: the rebuild has gone
    assertEquals(await status(m.url + key), 302);
  } finally {
    m.proc.kill("SIGCONT");
    await m.stop();
    await Promise.all(proxies.map((p) => p.stop()));
    await c.stop();
  }
});
