// rebuild runs with the masters stopped, and refuses to start while one is
// registered. A master paused (SIGSTOP) past its heartbeat looks stopped:
// rebuild empties the index and refills it from the volumes, and the master,
// resumed meanwhile, answered from that half-filled index (404 for acknowledged
// keys, found by a helper). It answers 503 until the rebuild is done.
import { Cluster, randomBytes, randomKey, runMain, status } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { VolumeProxy } from "./replace_faults.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
    await sleep(3500); // its heartbeat lapses
    const rebuild = runMain(["rebuild", "-db", c.db, "-volumes", volumes]);
    await sleep(300);
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
