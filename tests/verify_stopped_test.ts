// verify whose scan of the index fails midway (an index read refused: here
// the SQLite file damaged under it) reports what it found until then, says
// where and why it stopped, and exits 1.
import { assert, assertEquals } from "./assert.ts";
import { openIndex } from "../lib/open.ts";
import type { Record } from "../lib/record.ts";
import { key2path } from "../lib/keys.ts";
import { runMain } from "./cluster.ts";

const enc = new TextEncoder();

/**
 * A volume that holds the HEAD of `gate`'s file until it has cut the index
 * file at `db` short (the pages verify has not read yet are gone: its next
 * read of the index fails), then answers it: 5 bytes, as recorded. Every
 * other file is missing, every folder empty.
 */
function cuttingVolume(gate: string, db: string) {
  const path = key2path(enc.encode(gate));
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    if (req.method === "HEAD" && url.pathname === path) {
      await Deno.truncate(`${db}/index.sqlite3`, 8192);
      return new Response("hello");
    }
    if (url.pathname.endsWith("/")) return Response.json([]);
    return new Response(null, { status: 404 });
  });
}

Deno.test("verify whose index scan fails midway reports the problems found before, says why it stopped, exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mkv-verify-stopped-" });
  const db = `${dir}/indexdb`;
  const id = crypto.randomUUID();
  // Keys in this order: expired writes (a problem each, judged without a
  // read), the key whose check cuts the index, then many more expired writes.
  const before = Array.from({ length: 50 }, (_, i) => `/${id}/a${String(i).padStart(4, "0")}`);
  const gate = `/${id}/b`;
  const after = Array.from({ length: 2000 }, (_, i) => `/${id}/c${String(i).padStart(4, "0")}`);
  const volume = cuttingVolume(gate, db);
  const name = `127.0.0.1:${volume.addr.port}`;
  try {
    const index = await openIndex(db);
    const expired: Record = { state: "writing", rvolumes: [name], hash: "", size: 5, until: 1 };
    await Promise.all([...before, ...after].map((k) => index.set(enc.encode(k), expired)));
    await index.set(enc.encode(gate), { state: "live", rvolumes: [name], hash: "", size: 5 });
    index.close();

    const out = await runMain(
      ["verify", "-volumes", name, "-db", db, "-replicas", "1", "-concurrency", "1"],
    );
    assertEquals(out.code, 1, out.stdout + out.stderr);
    for (const k of before) {
      assert(out.stdout.includes(`expired write: "${k}" (a failed write)\n`), out.stdout);
    }
    const reported = after.filter((k) => out.stdout.includes(`"${k}"`)).length;
    assert(reported < after.length, `${reported} of the keys after the cut reported`);
    assert(
      out.stdout.includes(
        "verify stopped while scanning the index's keys: database disk image is malformed; " +
          "the problems above are those found until then, the rest was not checked\n",
      ),
      out.stdout,
    );
    const checked = 1 + before.length + reported;
    assert(
      out.stdout.endsWith(
        `verify: ${checked} keys, ${before.length + reported} problems, stopped\n`,
      ),
      out.stdout,
    );
    assertEquals(out.stderr.includes("malformed"), false, out.stderr);
  } finally {
    await volume.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
