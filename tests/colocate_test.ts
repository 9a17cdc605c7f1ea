// -colocate: keys sharing a folder share their volumes.
import { Cluster, randomKey } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";

async function volumesOf(c: Cluster, key: string): Promise<string> {
  const res = await fetch(c.url + key, { method: "HEAD", redirect: "manual" });
  await res.body?.cancel();
  assertEquals(res.status, 302, key);
  return res.headers.get("key-volumes")!;
}

async function placements(c: Cluster, folder: string, n: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const key = `${folder}/file-${i}`;
    const put = await fetch(c.url + key, { method: "PUT", body: key });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    seen.add(await volumesOf(c, key));
  }
  return seen;
}

Deno.test("-colocate: every key of a folder lands on the same volumes and subvolume", async () => {
  const c = await Cluster.start({ volumes: 5, flags: ["-replicas", "2", "-colocate"] });
  try {
    const a = await placements(c, randomKey("/colo"), 20);
    assertEquals(a.size, 1, [...a].join(" | "));
    // Other folders are placed by their own hash: across 8 folders, more
    // than one placement (all alike by chance: about 1 in 10^20).
    const folders = new Set<string>();
    for (let i = 0; i < 8; i++) {
      for (const p of await placements(c, randomKey("/colo"), 1)) folders.add(p);
    }
    assert(folders.size > 1, [...folders].join(" | "));
  } finally {
    await c.stop();
  }
});

Deno.test("without -colocate, the keys of one folder spread over the volumes", async () => {
  const c = await Cluster.start({ volumes: 5, flags: ["-replicas", "2"] });
  try {
    const a = await placements(c, randomKey("/spread"), 20);
    assert(a.size > 1, [...a].join(" | "));
  } finally {
    await c.stop();
  }
});
