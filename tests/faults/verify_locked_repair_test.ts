// verify -repair on an index whose SQLite write lock another process takes
// midway and holds (a stuck writer, a backup tool): the drop of an ended
// upload's part record waits on the lock past its retries. verify reports
// what it found until then, says where and why it stopped, and exits 1.
import { assert, assertEquals } from "../assert.ts";
import { openIndex } from "../../lib/open.ts";
import type { Part } from "../../lib/index_db.ts";
import { key2path } from "../../lib/keys.ts";
import { lockIndex } from "../lock_index.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const enc = new TextEncoder();

/**
 * A volume that holds the HEAD of `gate`'s file until it has taken the
 * write lock of the index at `db` (verify has opened and joined it by then,
 * and scans its keys), then answers it: 5 bytes, as recorded. Every other
 * file is missing, every folder empty. `unlock()` releases the lock.
 */
function lockingVolume(gate: string, db: string) {
  const path = key2path(enc.encode(gate));
  let release: (() => void) | null = null;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    if (req.method === "HEAD" && url.pathname === path) {
      release ??= lockIndex(`${db}/index.sqlite3`);
      return new Response("hello");
    }
    if (url.pathname.endsWith("/")) return Response.json([]);
    return new Response(null, { status: 404 });
  });
  return {
    name: `127.0.0.1:${server.addr.port}`,
    get locked() {
      return release !== null;
    },
    unlock() {
      release?.();
      release = null;
    },
    stop: () => server.shutdown(),
  };
}

Deno.test("verify -repair whose drop of an ended upload's part the locked index refuses reports what it found, says it stopped and why, exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mkv-verify-locked-" });
  const db = `${dir}/indexdb`;
  const gate = `/${crypto.randomUUID()}/gate`;
  const upload = crypto.randomUUID().replaceAll("-", "");
  const volume = lockingVolume(gate, db);
  let safety: ReturnType<typeof setTimeout> | undefined;
  try {
    const index = await openIndex(db);
    await index.set(enc.encode(gate), {
      state: "live",
      rvolumes: [volume.name],
      hash: "",
      size: 5,
    });
    // A part recorded for an upload that has ended (no upload record): a
    // master killed inside its Complete or Abort leaves it.
    const part: Part = { path: "/mpu/x", volumes: [volume.name], md5: "", size: 5, mtime: 0 };
    await index.kv.set(["mp", upload, 1], part);
    index.close();

    const proc = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MAIN,
        "verify",
        "-repair",
        "-grace",
        "0s",
        "-replicas",
        "1",
        "-volumes",
        volume.name,
        "-db",
        db,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Stopped after two minutes all the same, the lock released.
    safety = setTimeout(() => {
      proc.kill("SIGKILL");
      volume.unlock();
    }, 120_000);
    const out = await proc.output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(volume.locked, true, "the lock was released before verify ended");
    volume.unlock();
    assertEquals(out.code, 1, stdout + stderr);
    const lines = stdout.split("\n").filter(Boolean);
    assertEquals(lines, [
      `index: part 1 of ended upload ${upload} still recorded`,
      "verify stopped while checking the parts of ended uploads: the index stayed locked " +
      "(another process holds its write lock) past 10 s of retries; the problems above are " +
      "those found until then, the rest was not checked",
      "verify: 1 key, 1 problem, 0 repaired, stopped",
    ], stderr);
    const after = await Deno.openKv(`${db}/index.sqlite3`);
    const left = await after.get(["mp", upload, 1]);
    after.close();
    assert(left.versionstamp !== null, "the part's record is still there");
  } finally {
    clearTimeout(safety);
    volume.unlock();
    await volume.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
