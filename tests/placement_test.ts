// Two real masters on one index with different -volumes: each says so, in
// its log and on its status page (lib/membership.ts Placement), and goes on
// serving (restarting masters one by one with a new -volumes is how volumes
// are added).
import { Cluster, randomKey, status } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import type { OtherPlacement } from "../lib/membership.ts";

/** The other masters a master's ?status names as placing keys otherwise, once it names one. */
async function otherPlacements(url: string): Promise<OtherPlacement[]> {
  while (true) {
    const res = await fetch(`${url}/?status`, { headers: { Accept: "application/json" } });
    const { index } = await res.json() as { index: { placements: OtherPlacement[] } };
    if (index.placements.length > 0) return index.placements;
    await new Promise((r) => setTimeout(r, 100));
  }
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
