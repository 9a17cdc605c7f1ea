// REPLACE: overwriting a live key, readers never see a 404 or a mix.
import { call, Cluster, randomKey, volumeFiles } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { key2path, md5, toHex } from "../lib/keys.ts";

const enc = new TextEncoder();

Deno.test("REPLACE against real nginx volumes", async (t) => {
  const c = await Cluster.start();
  try {
    await t.step(
      "REPLACE of a live key answers 201; GET then gives the new bytes and MD5",
      async () => {
        const key = randomKey();
        assertEquals((await call(c, key, "PUT", "old value")).status, 201);
        assertEquals((await call(c, key, "REPLACE", "new value!")).status, 201);
        const got = await call(c, key, "GET");
        assertEquals(got.status, 302);
        assertEquals(got.headers.get("content-md5"), toHex(md5("new value!")));
        assertEquals(await (await fetch(c.url + key)).text(), "new value!");
      },
    );

    await t.step(
      "REPLACE of a missing or unlinked key answers 404; PUT of a live key stays 403",
      async () => {
        const key = randomKey();
        assertEquals((await call(c, key, "REPLACE", "x")).status, 404);
        assertEquals((await call(c, key, "PUT", "v")).status, 201);
        assertEquals((await call(c, key, "PUT", "v2")).status, 403);
        assertEquals((await call(c, key, "UNLINK")).status, 204);
        assertEquals((await call(c, key, "REPLACE", "x")).status, 404);
        assertEquals((await call(c, randomKey(), "REPLACE", "")).status, 411);
      },
    );

    await t.step(
      "readers during a slow REPLACE get the old or the new value, never 404 or a mix",
      async () => {
        const key = randomKey();
        const oldValue = "O".repeat(50_000);
        const newValue = "N".repeat(50_000);
        assertEquals((await call(c, key, "PUT", oldValue)).status, 201);
        let ctl!: ReadableStreamDefaultController<Uint8Array>;
        const body = new ReadableStream<Uint8Array>({ start: (cc) => void (ctl = cc) });
        ctl.enqueue(enc.encode(newValue.slice(0, 20_000)));
        const replacing = fetch(c.url + key, { method: "REPLACE", body });
        let stop = false;
        const seen = new Map<string, number>();
        const reader = (async () => {
          while (!stop) {
            const res = await fetch(c.url + key);
            const text = await res.text();
            const what = res.status !== 200
              ? `status ${res.status}`
              : text === oldValue
              ? "old"
              : text === newValue
              ? "new"
              : "mix";
            seen.set(what, (seen.get(what) ?? 0) + 1);
          }
        })();
        await new Promise((r) => setTimeout(r, 200));
        assertEquals((await call(c, key, "REPLACE", "other")).status, 409, "one REPLACE at a time");
        assertEquals((await call(c, key, "DELETE")).status, 409);
        ctl.enqueue(enc.encode(newValue.slice(20_000)));
        ctl.close();
        const res = await replacing;
        await res.body?.cancel();
        assertEquals(res.status, 201);
        await new Promise((r) => setTimeout(r, 100));
        stop = true;
        await reader;
        assert(
          [...seen.keys()].every((k) => k === "old" || k === "new"),
          JSON.stringify([...seen]),
        );
        assert(seen.has("old") && seen.has("new"), JSON.stringify([...seen]));
      },
    );

    await t.step(
      "a REPLACE that a volume refuses keeps the old value and leaves no temp file",
      async () => {
        const key = randomKey("/replfail");
        assertEquals((await call(c, key, "PUT", "keep me")).status, 201);
        await c.stopVolume(1);
        try {
          const r = await call(c, key, "REPLACE", "never");
          assertEquals(r.status, 500);
          assert(r.text.startsWith("Cannot PUT"), r.text);
        } finally {
          await c.startVolume(1);
        }
        assertEquals(await (await fetch(c.url + key)).text(), "keep me");
        for (const v of c.volumes) {
          const temps = (await volumeFiles(v)).filter((f) => f.includes("/replace."));
          assertEquals(temps, [], `temp files on ${v}`);
        }
        assertEquals(
          (await call(c, key, "REPLACE", "now")).status,
          201,
          "the key is not left claimed",
        );
      },
    );

    await t.step(
      "a REPLACE whose rename fails on every replica keeps the old value and frees the key",
      async () => {
        const key = longKey("/movefail");
        assertEquals((await call(c, key, "PUT", "keep me")).status, 201);
        const folders = await segmentFolders(c, key);
        await Promise.all(folders.map((f) => Deno.chmod(f, 0o555)));
        try {
          const r = await call(c, key, "REPLACE", "never live");
          assertEquals(r.status, 500);
          assert(r.text.includes("Cannot MOVE"), r.text);
          assert(r.text.endsWith("(the old value stays)\n"), r.text);
        } finally {
          await Promise.all(folders.map((f) => Deno.chmod(f, 0o755)));
        }
        const got = await call(c, key, "GET");
        assertEquals(got.headers.get("content-md5"), toHex(md5("keep me")));
        assertEquals(await (await fetch(c.url + key)).text(), "keep me");
        await assertNoTemps(c);
        // Not left claimed: the next write of the key goes through at once.
        assertEquals((await call(c, key, "DELETE")).status, 204);
      },
    );

    await t.step(
      "a REPLACE whose rename fails on one replica is live on the others; REBALANCE restores it",
      async () => {
        const key = longKey("/movesome");
        assertEquals((await call(c, key, "PUT", "old value")).status, 201);
        const [first, ...others] = await segmentFolders(c, key);
        await Deno.chmod(first, 0o555);
        try {
          const r = await call(c, key, "REPLACE", "new value");
          assertEquals(r.status, 500);
          assert(r.text.includes("the new value is live on 2 of 3 replicas"), r.text);
        } finally {
          await Deno.chmod(first, 0o755);
        }
        const got = await call(c, key, "GET");
        assertEquals(got.status, 302);
        assertEquals(got.headers.get("content-md5"), toHex(md5("new value")));
        assertEquals(got.headers.get("key-volumes")!.split(",").length, 2);
        assertEquals(got.headers.get("key-balance"), "unbalanced");
        for (let i = 0; i < 6; i++) {
          assertEquals(await (await fetch(c.url + key)).text(), "new value", "never the old one");
        }
        await assertNoTemps(c);
        assertEquals((await call(c, key, "REBALANCE")).status, 204);
        const after = await call(c, key, "GET");
        assertEquals(after.headers.get("key-volumes")!.split(",").length, 3);
        for (const folder of [first, ...others]) {
          const [name] = [...Deno.readDirSync(folder)].map((e) => e.name);
          const file = `${folder}/${name}`;
          assertEquals(await Deno.readTextFile(file), "new value", file);
        }
      },
    );

    await t.step(
      "REPLACE of a key whose last name segment is near 255 bytes (temp names stay short)",
      async () => {
        // 165 bytes: a 220-byte base64 name, too long for a suffix of 45.
        const fresh = randomKey("/longname");
        const key = fresh + "r".repeat(165 - fresh.length);
        assertEquals((await call(c, key, "PUT", "short")).status, 201);
        assertEquals((await call(c, key, "REPLACE", "replaced")).status, 201);
        assertEquals(await (await fetch(c.url + key)).text(), "replaced");
      },
    );
  } finally {
    await c.stop();
  }
});

/**
 * A key long enough that its file sits in a folder of its own (a 255-byte
 * name segment): that folder made read-only fails the rename into it, not
 * the temporary file's write (which goes to the key's "/ab/cd/" folder).
 */
function longKey(prefix: string): string {
  const fresh = randomKey(prefix);
  return fresh + "x".repeat(300 - fresh.length);
}

/** The folder holding the key's file on each of its volumes, on disk. */
async function segmentFolders(c: Cluster, key: string): Promise<string[]> {
  const res = await fetch(c.url + key, { method: "HEAD", redirect: "manual" });
  const rvolumes = res.headers.get("key-volumes")!.split(",");
  const path = key2path(enc.encode(key));
  return rvolumes.map((rv) => {
    const slash = rv.indexOf("/");
    const i = c.volumes.indexOf(slash < 0 ? rv : rv.slice(0, slash));
    const sv = slash < 0 ? "" : rv.slice(slash);
    return c.volumeDir(i) + sv + path.slice(0, path.lastIndexOf("/"));
  });
}

async function assertNoTemps(c: Cluster) {
  for (const v of c.volumes) {
    const temps = (await volumeFiles(v)).filter((f) => f.includes("/replace."));
    assertEquals(temps, [], `temp files on ${v}`);
  }
}

/** The master's volume calls of `call` so far, over every volume and outcome. */
async function volumeCalls(c: Cluster, call: string): Promise<number> {
  const text = await (await fetch(`${c.url}/?metrics`)).text();
  let n = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("mkv_volume_calls_total{") && line.includes(`call="${call}"`)) {
      n += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return n;
}

Deno.test("a REPLACE refused for an empty chunked body asks no volume to delete a temporary", async () => {
  // Its body ended before any byte went out, so no volume can hold the
  // temporary: the DELETE each was sent only logged "No such file" on every nginx.
  const c = await Cluster.start();
  try {
    const key = randomKey();
    assertEquals((await call(c, key, "PUT", "old value")).status, 201);
    const before = await volumeCalls(c, "delete");
    const empty = new ReadableStream<Uint8Array>({ start: (ctl) => ctl.close() });
    const res = await call(c, key, "REPLACE", empty);
    assertEquals([res.status, res.text], [411, "A value must not be empty\n"]);
    assertEquals(await volumeCalls(c, "delete"), before);
    assertEquals(await (await fetch(c.url + key)).text(), "old value");
  } finally {
    await c.stop();
  }
});
