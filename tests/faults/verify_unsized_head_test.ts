// verify through volumes whose HEAD answers carry no Content-Length (a
// proxy in front of nginx that sends them chunked). Such an answer does not
// say the replica's size: a replica cut to half its value was counted ok,
// as if its size were the recorded one, and -repair left it so.
import { Cluster, randomBytes, randomKey, runMain } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { UnsizedHead } from "./unsized_head.ts";
import { key2path } from "../../lib/keys.ts";

const enc = new TextEncoder();

/**
 * A key with both replicas behind such proxies, the second cut to half of
 * it on its disk; `check` runs with the proxies' names and the cut path.
 */
async function withHalvedReplica(
  check: (
    run: {
      args: string[];
      cut: string;
      url: string;
      value: Uint8Array;
      key: string;
      proxies: UnsizedHead[];
    },
  ) => Promise<void>,
) {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "2", "-subvolumes", "1"] });
  const proxies = c.volumes.map((v) => new UnsizedHead(v));
  try {
    await c.stopMaster();
    const volumes = proxies.map((p) => p.volume);
    const m = await c.spawnMaster(["-volumes", volumes.join(",")]);
    const key = randomKey("/unsized");
    const value = randomBytes(10_000);
    const put = await fetch(m.url + key, { method: "PUT", body: value });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    await m.stop();
    const path = key2path(enc.encode(key));
    const url = `http://${c.volumes[1]}${path}`;
    const cut = await fetch(url, { method: "PUT", body: value.subarray(0, 5000) });
    await cut.body?.cancel();
    // nginx: 204 for a file it overwrote.
    assertEquals(cut.status, 204);
    const args = ["-replicas", "2", "-subvolumes", "1", "-volumes", volumes.join(","), "-db", c.db];
    await check({ args, cut: volumes[1], url, value, key, proxies });
  } finally {
    for (const p of proxies) await p.stop();
    await c.stop();
  }
}

Deno.test("verify reads a replica whose HEAD gives no size, and names it corrupt when cut short", async () => {
  await withHalvedReplica(async ({ args, cut, key }) => {
    const out = await runMain(["verify", ...args]);
    assertEquals(out.code, 1, out.stdout + out.stderr);
    assert(
      out.stdout.includes(
        `corrupt replica: ${JSON.stringify(key)} on ${cut} (size 5000 bytes, recorded 10000; ` +
          `read in full: its HEAD answer gave no Content-Length)\n`,
      ),
      out.stdout,
    );
  });
});

Deno.test("verify -repair copies again a replica whose HEAD gives no size and that was cut short", async () => {
  await withHalvedReplica(async ({ args, cut, url, value, key }) => {
    const out = await runMain(["verify", "-repair", ...args]);
    assertEquals(out.code, 0, out.stdout + out.stderr);
    assert(
      out.stdout.includes(`corrupt replica: ${JSON.stringify(key)} on ${cut} (size 5000 bytes`),
      out.stdout,
    );
    const fixed = await fetch(url);
    assertEquals(new Uint8Array(await fixed.arrayBuffer()), value);
  });
});

Deno.test("verify names missing a replica whose HEAD gives no size and that is gone by the time it is read", async () => {
  await withHalvedReplica(async ({ args, cut, url, key, proxies }) => {
    const path = new URL(url).pathname;
    proxies[1].afterHead = async (headed) => {
      if (headed !== path) return;
      const gone = await fetch(url, { method: "DELETE" });
      await gone.body?.cancel();
      assertEquals(gone.status, 204);
    };
    const out = await runMain(["verify", ...args]);
    assertEquals(out.code, 1, out.stdout + out.stderr);
    assert(out.stdout.includes(`missing replica: ${JSON.stringify(key)} on ${cut}\n`), out.stdout);
  });
});
