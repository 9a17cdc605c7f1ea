// A master started on an index that holds no key while its volumes hold
// files (a new or emptied -db): it says so, in its log and on ?status,
// instead of answering 404 for every key silently (lib/unindexed.ts).
import { Cluster, randomKey, status } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { openIndex } from "../lib/open.ts";
import { lookForUnindexed, lookForUnknownVolumes } from "../lib/unindexed.ts";
import { key2path } from "../lib/keys.ts";

/** Runs `fn` with a new, empty index in `c`'s folder. */
async function withNewIndex(
  c: Cluster,
  fn: (index: Awaited<ReturnType<typeof openIndex>>) => Promise<void>,
) {
  const index = await openIndex(`${c.dir}/new-${crypto.randomUUID()}`);
  try {
    await fn(index);
  } finally {
    index.close();
  }
}

/** Where `key`'s replicas are, as the master says (Key-Volumes: host:port/svNN). */
async function replicasOf(c: Cluster, key: string): Promise<string[]> {
  const res = await fetch(c.url + key, { method: "HEAD", redirect: "manual" });
  assertEquals(res.status, 302);
  return res.headers.get("key-volumes")!.split(",");
}

Deno.test("an empty index beside volumes holding a key's file: each such volume is named, with the file", async () => {
  const c = await Cluster.start({ volumes: 3, flags: ["-replicas", "2"] });
  try {
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "v" }), 201);
    const replicas = await replicasOf(c, k);
    const path = key2path(new TextEncoder().encode(k));
    await withNewIndex(c, async (index) => {
      const found = await lookForUnindexed(index, c.volumes, { timeout: 1000 });
      const expected = c.volumes.flatMap((volume) => {
        const replica = replicas.find((r) => r.startsWith(`${volume}/`));
        return replica ? [{ volume, file: replica + path }] : [];
      });
      assertEquals(found?.volumes, expected);
    });
  } finally {
    await c.stop();
  }
});

Deno.test("an index holding a key: nothing is said of the volumes", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "2"] });
  try {
    assertEquals(await status(c.url + randomKey(), { method: "PUT", body: "v" }), 201);
    await c.stopMaster();
    const index = await openIndex(c.db);
    try {
      assertEquals(await lookForUnindexed(index, c.volumes, { timeout: 1000 }), null);
    } finally {
      index.close();
    }
  } finally {
    await c.stop();
  }
});

Deno.test("volumes holding only the empty key folders deletes leave are not taken for holding files", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "2"] });
  try {
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "v" }), 201);
    assertEquals(await status(c.url + k, { method: "DELETE" }), 204);
    await withNewIndex(c, async (index) => {
      assertEquals(await lookForUnindexed(index, c.volumes, { timeout: 1000 }), null);
    });
  } finally {
    await c.stop();
  }
});

Deno.test("a stopped volume holds up nothing: the others holding files are still named", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "2"] });
  try {
    assertEquals(await status(c.url + randomKey(), { method: "PUT", body: "v" }), 201);
    await c.stopVolume(1);
    await withNewIndex(c, async (index) => {
      const found = await lookForUnindexed(index, c.volumes, { timeout: 1000 });
      assertEquals(found?.volumes.map((v) => v.volume), [c.volumes[0]]);
    });
  } finally {
    await c.stop();
  }
});

Deno.test("a master started on a new index beside volumes holding files warns and says so on ?status", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "2"] });
  try {
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "v" }), 201);
    await c.stopMaster();
    const db = `${c.dir}/new-index`;
    const m = await c.spawnMaster(["-db", db], {}, { stderr: "piped" });
    try {
      let seen = "";
      for await (const chunk of m.proc.stderr.pipeThrough(new TextDecoderStream())) {
        seen += chunk;
        if (seen.includes("\n") && seen.includes("Warning: the index holds no key")) break;
      }
      const line = seen.split("\n").find((l) => l.includes("Warning: the index holds no key"))!;
      assert(
        line.startsWith(
          `Warning: the index holds no key while volumes hold files (${
            c.volumes.join(", ")
          }; e.g. `,
        ),
        line,
      );
      assert(line.endsWith("): their keys answer 404: run rebuild (master stopped)"), line);
      const res = await fetch(`${m.url}/?status`, { headers: { Accept: "application/json" } });
      const { index } = await res.json() as {
        index: { unindexed: { volumes: { volume: string }[] } | null };
      };
      assertEquals(index.unindexed?.volumes.map((v) => v.volume), c.volumes);
      assertEquals(await status(m.url + k), 404);
    } finally {
      await m.stop();
    }
  } finally {
    await c.stop();
  }
});

Deno.test("an index whose keys name a volume that -volumes does not: it is named, with how many of the keys looked at", async () => {
  const c = await Cluster.start({ volumes: 3, flags: ["-replicas", "3"] });
  try {
    for (let i = 0; i < 2; i++) {
      assertEquals(await status(c.url + randomKey(), { method: "PUT", body: "v" }), 201);
    }
    await c.stopMaster();
    const index = await openIndex(c.db);
    try {
      assertEquals(await lookForUnknownVolumes(index, c.volumes), null);
      assertEquals(await lookForUnknownVolumes(index, c.volumes.slice(0, 2)), {
        volumes: [{ volume: c.volumes[2], keys: 2 }],
        looked: 2,
      });
    } finally {
      index.close();
    }
  } finally {
    await c.stop();
  }
});

Deno.test("a master started with -volumes missing a volume its keys were written to warns, naming it", async () => {
  const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "2"] });
  try {
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "v" }), 201);
    await c.stopMaster();
    // Gone from -volumes and not answering (renamed, say).
    await c.stopVolume(1);
    const m = await c.spawnMaster(["-volumes", c.volumes[0], "-replicas", "1"], {}, {
      stderr: "piped",
    });
    try {
      const marker = "Warning: the index's only key names volumes";
      let seen = "";
      for await (const chunk of m.proc.stderr.pipeThrough(new TextDecoderStream())) {
        seen += chunk;
        if (seen.includes(marker) && seen.split(marker)[1].includes("\n")) break;
      }
      const line = seen.split("\n").find((l) => l.includes(marker))!;
      assertEquals(
        line,
        `Warning: the index's only key names volumes that -volumes does not ` +
          `(${c.volumes[1]}): their replicas there are read only while those ` +
          `volumes answer at those names, a key with no other replica answers 503 until then: ` +
          `give -volumes the names its keys were written with (the same PORT for deno task ` +
          `up), or, for a volume gone for good, rebalance onto -volumes`,
      );
      // The replica on the volume it has is read.
      const read = await fetch(m.url + k, { redirect: "manual" });
      await read.body?.cancel();
      assertEquals(read.status, 302);
      const location = read.headers.get("location")!;
      assert(location.startsWith(`http://${c.volumes[0]}/`), location);
    } finally {
      await m.stop();
    }
  } finally {
    await c.stop();
  }
});
