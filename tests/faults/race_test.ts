// Many clients racing on one key through two masters: one writer wins each
// round, and afterwards the index and the volumes agree.
import { Cluster, randomKey, status, volumeFiles } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { key2path } from "../../lib/keys.ts";

const enc = new TextEncoder();

function count(xs: number[], s: number): number {
  return xs.filter((x) => x === s).length;
}

Deno.test("racing PUT/DELETE/UNLINK of one key: one winner per round, index and volumes agree", async () => {
  const c = await Cluster.start({ flags: ["-subvolumes", "1"] });
  const second = await c.spawnMaster();
  try {
    const masters = [c.url, second.url];
    const prefix = randomKey("/race");
    const call = (url: string, method: string, body?: string) => status(url, { method, body });
    for (let round = 0; round < 15; round++) {
      const key = `${prefix}/${round}`;
      // 16 PUTs at once: exactly one stores its value.
      const puts = await Promise.all(
        Array.from({ length: 16 }, (_, i) => call(masters[i % 2] + key, "PUT", `writer ${i}`)),
      );
      assertEquals(count(puts, 201), 1, `round ${round} PUTs: ${puts}`);
      assert(puts.every((s) => [201, 403, 409].includes(s)), `round ${round} PUTs: ${puts}`);
      // Then DELETEs, UNLINKs and PUTs at once. A PUT may succeed once the
      // key is unlinked or deleted, and then a second UNLINK or DELETE: at
      // most one of each per value the key held (its first, and each PUT's).
      const ops = Array.from({ length: 18 }, (_, i) => ["DELETE", "UNLINK", "PUT"][i % 3]);
      const got = await Promise.all(
        ops.map((m, i) => call(masters[i % 2] + key, m, m === "PUT" ? "again" : undefined)),
      );
      const wins = (m: string, s: number) => got.filter((g, i) => ops[i] === m && g === s).length;
      const values = 1 + wins("PUT", 201);
      const story = `round ${round}: ${ops.map((m, i) => m + " " + got[i])}`;
      assert(wins("DELETE", 204) <= values, story);
      assert(wins("UNLINK", 204) <= values, story);
      assert(wins("PUT", 201) <= wins("DELETE", 204) + wins("UNLINK", 204), story);
      assert(got.every((s) => [201, 204, 403, 404, 409].includes(s)), `round ${round}: ${got}`);
    }
    // Index and volumes agree: every live or unlinked key has all its
    // files; no file belongs to a key the index does not hold; no key is
    // left mid-write.
    const live: string[] = (await fetch(`${c.url}${prefix}/?list`).then((r) => r.json())).keys;
    const unlinked: string[] = (await fetch(`${c.url}${prefix}/?unlinked`).then((r) =>
      r.json()
    )).keys;
    const writing: string[] = (await fetch(`${c.url}${prefix}/?writing`).then((r) =>
      r.json()
    )).keys;
    assertEquals(writing, []);
    const expected = new Set<string>();
    for (const k of [...live, ...unlinked]) {
      const res = await fetch(c.url + k, { method: "HEAD", redirect: "manual" });
      await res.body?.cancel();
      if (live.includes(k)) assertEquals(res.status, 302, `live ${k} has a replica`);
      for (const v of c.volumes) expected.add(`${v}${key2path(enc.encode(k))}`);
    }
    const found = new Set<string>();
    for (const v of c.volumes) for (const f of await volumeFiles(v)) found.add(`${v}${f}`);
    assertEquals(
      [...found].sort(),
      [...expected].sort(),
      "files on the volumes = files of the index",
    );
  } finally {
    await second.stop();
    await c.stop();
  }
});
