// rebuild and verify walk every key folder of every volume. A volume that
// stops answering midway must not cost a timeout per folder (65,536 of them
// on a full volume, 10 s each: hours with the master stopped): once one of
// its listings went unanswered, its other folders are not asked for.
import { heldServer, runMain } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { openIndex } from "../lib/open.ts";

/**
 * A "volume" whose root and "/ab/" list 40 key folders, each of whose
 * listings is never answered (until close).
 */
function hungMidWalk() {
  const folders = Array.from({ length: 40 }, (_, i) => i.toString(16).padStart(2, "0"));
  const dir = (name: string) => ({ name, type: "directory", mtime: new Date().toUTCString() });
  let asked = 0;
  const server = heldServer(async (req, hold) => {
    const path = new URL(req.url).pathname;
    if (path === "/") return Response.json([dir("ab")]);
    if (path === "/ab/") return Response.json(folders.map(dir));
    asked++;
    await hold();
    return Response.json([]);
  });
  return { name: server.name, folders: () => asked, close: server.close };
}

for (const tool of ["rebuild", "verify"]) {
  Deno.test(`${tool}: a volume that stops answering midway is not asked for each of its folders`, async () => {
    const hung = hungMidWalk();
    const db = await Deno.makeTempDir({ prefix: "mkv-walk-hung-" });
    // verify reads an existing index (an empty one here); rebuild makes it.
    if (tool === "verify") (await openIndex(db)).close();
    try {
      const r = await runMain([
        tool,
        "-concurrency",
        "4",
        "-replicas",
        "1",
        "-volumes",
        hung.name,
        "-db",
        db,
      ]);
      assertEquals(r.code, 1, r.stdout + r.stderr);
      // The folders asked for at once when the first went unanswered, no more.
      assert(hung.folders() <= 4, `${hung.folders()} folders asked for`);
      const out = r.stdout + r.stderr;
      assert(out.includes(`${hung.name} stopped answering; its other folders were not read`), out);
    } finally {
      await hung.close();
      await Deno.remove(db, { recursive: true });
    }
  });
}
