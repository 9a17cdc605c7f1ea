// The states a user can see: live, unlinked, writing; RELINK; 410 vs 404.
import { Cluster, randomKey, rawRequest } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { key2path } from "../lib/keys.ts";

const enc = new TextEncoder();

async function req(c: Cluster, key: string, method = "GET", body?: string) {
  const res = await fetch(c.url + key, { method, body, redirect: "manual" });
  const text = await res.text();
  return { status: res.status, text, headers: res.headers };
}

async function keys(c: Cluster, q: string): Promise<string[]> {
  return (await fetch(c.url + q).then((r) => r.json())).keys;
}

Deno.test("states, RELINK and lost values against real nginx volumes", async (t) => {
  const c = await Cluster.start({ flags: ["-voltimeout", "300ms"] });
  try {
    await t.step(
      "a key being written is listed by ?writing only, and is live once written",
      async () => {
        const prefix = randomKey("/writing");
        const key = `${prefix}/k`;
        let ctl!: ReadableStreamDefaultController<Uint8Array>;
        const body = new ReadableStream<Uint8Array>({ start: (cc) => void (ctl = cc) });
        ctl.enqueue(enc.encode("slow "));
        const put = fetch(c.url + key, { method: "PUT", body });
        let listed: string[] = [];
        for (let i = 0; i < 200 && listed.length === 0; i++) {
          listed = await keys(c, `${prefix}?writing`);
          if (listed.length === 0) await new Promise((r) => setTimeout(r, 10));
        }
        assertEquals(listed, [key]);
        assertEquals(await keys(c, `${prefix}?list`), []);
        assertEquals(await keys(c, `${prefix}?unlinked`), []);
        ctl.enqueue(enc.encode("value"));
        ctl.close();
        const res = await put;
        await res.body?.cancel();
        assertEquals(res.status, 201);
        assertEquals(await keys(c, `${prefix}?writing`), []);
        assertEquals(await keys(c, `${prefix}?list`), [key]);
      },
    );

    await t.step(
      "RELINK undoes an UNLINK (204); of a live or missing key it answers 404",
      async () => {
        const key = randomKey();
        assertEquals((await req(c, key, "PUT", "relinked")).status, 201);
        assertEquals((await req(c, key, "RELINK")).status, 404, "a live key has nothing to relink");
        assertEquals((await req(c, key, "UNLINK")).status, 204);
        assertEquals((await req(c, key)).status, 404);
        assertEquals((await req(c, key, "RELINK")).status, 204);
        const back = await fetch(c.url + key);
        assertEquals(await back.text(), "relinked");
        assertEquals((await req(c, randomKey(), "RELINK")).status, 404);
      },
    );

    await t.step(
      "DELETE, UNLINK, RELINK and REBALANCE answer a 404 with its reason in a text body",
      async () => {
        const reason = async (key: string, method: string) => {
          const r = await req(c, key, method);
          return [r.status, r.headers.get("content-type"), r.text];
        };
        const plain = "text/plain; charset=utf-8";
        const missing = randomKey();
        assertEquals(await reason(missing, "DELETE"), [404, plain, "No such key\n"]);
        assertEquals(await reason(missing, "UNLINK"), [404, plain, "No live key to unlink\n"]);
        assertEquals(await reason(missing, "REBALANCE"), [
          404,
          plain,
          "No live key to rebalance\n",
        ]);
        const live = randomKey();
        assertEquals((await req(c, live, "PUT", "live")).status, 201);
        assertEquals(await reason(live, "RELINK"), [404, plain, "No unlinked key to relink\n"]);
      },
    );

    await t.step("RELINK answers 404 when no replica of the unlinked value remains", async () => {
      const key = randomKey();
      assertEquals((await req(c, key, "PUT", "gone")).status, 201);
      const vols = (await req(c, key)).headers.get("key-volumes")!.split(",");
      assertEquals((await req(c, key, "UNLINK")).status, 204);
      for (const v of vols) {
        await fetch(`http://${v}${key2path(enc.encode(key))}`, { method: "DELETE" }).then((r) =>
          r.body?.cancel()
        );
      }
      const r = await req(c, key, "RELINK");
      assertEquals(r.status, 404);
      assertEquals(r.text, "No replica of the unlinked key remains\n");
    });

    await t.step(
      "RELINK answers 404 when no replica of the unlinked value holds its recorded size, and the key stays unlinked",
      async () => {
        const key = randomKey();
        assertEquals((await req(c, key, "PUT", "whole value")).status, 201);
        const vols = (await req(c, key)).headers.get("key-volumes")!.split(",");
        assertEquals((await req(c, key, "UNLINK")).status, 204);
        // Cut short on every replica (a disk's fault, a copy that died midway).
        for (const v of vols) {
          const put = await fetch(`http://${v}${key2path(enc.encode(key))}`, {
            method: "PUT",
            body: "whole",
          });
          assertEquals(put.status, 204);
        }
        const r = await req(c, key, "RELINK");
        const held = vols.map((v) => `${v.split("/")[0]} holds 5 bytes`).join(", ");
        assertEquals(
          [r.status, r.text],
          [404, `No replica of the unlinked key remains whole (${held}, recorded 11)\n`],
        );
        assertEquals((await req(c, key)).status, 404);
        assertEquals(await keys(c, `${key}?unlinked`), [key]);
      },
    );

    await t.step(
      "RELINK answers 503 when no replica of the unlinked value is found and a volume does not answer, and the key stays unlinked",
      async () => {
        const key = randomKey();
        assertEquals((await req(c, key, "PUT", "unsure")).status, 201);
        const vols = (await req(c, key)).headers.get("key-volumes")!.split(",");
        assertEquals((await req(c, key, "UNLINK")).status, 204);
        const down = c.volumes.indexOf(vols[0].split("/")[0]);
        for (const v of vols.slice(1)) {
          const del = await fetch(`http://${v}${key2path(enc.encode(key))}`, { method: "DELETE" });
          assertEquals(del.status, 204);
        }
        await c.stopVolume(down);
        let r;
        try {
          r = await req(c, key, "RELINK");
        } finally {
          await c.startVolume(down);
        }
        assertEquals([r.status, r.text], [
          503,
          `No replica of the unlinked key was found whole, and ${c.volumes[down]} did not say ` +
          "whether it holds one: RELINK again once it answers\n",
        ]);
        assertEquals(await keys(c, `${key}?unlinked`), [key]);
        assertEquals((await req(c, key, "RELINK")).status, 204);
      },
    );

    await t.step(
      "a live key whose every replica lost its file answers 410 Gone; HEAD too",
      async () => {
        const key = randomKey();
        assertEquals((await req(c, key, "PUT", "lost")).status, 201);
        const vols = (await req(c, key)).headers.get("key-volumes")!.split(",");
        for (const v of vols) {
          await fetch(`http://${v}${key2path(enc.encode(key))}`, { method: "DELETE" }).then((r) =>
            r.body?.cancel()
          );
        }
        assertEquals((await req(c, key)).status, 410);
        assertEquals((await req(c, key, "HEAD")).status, 410);
        assertEquals((await req(c, randomKey())).status, 404, "a key that never was: 404");
        assertEquals((await req(c, key, "DELETE")).status, 204, "DELETE clears a lost key");
        assertEquals((await req(c, key)).status, 404);
      },
    );

    await t.step(
      "a lost key's 410 says what was lost and what to run in a text body; HEAD has none",
      async () => {
        const key = randomKey();
        assertEquals((await req(c, key, "PUT", "lost")).status, 201);
        const vols = (await req(c, key)).headers.get("key-volumes")!;
        for (const v of vols.split(",")) {
          await fetch(`http://${v}${key2path(enc.encode(key))}`, { method: "DELETE" }).then((r) =>
            r.body?.cancel()
          );
        }
        const reason = "Value lost: the index has the key live but every replica answered that " +
          "it has no such file; run verify to list every such key, then restore the file or " +
          "DELETE the key\n";
        const port = Number(new URL(c.url).port);
        for (const method of ["GET", "HEAD"]) {
          const r = await rawRequest(port, method, key);
          r.headers.delete("date");
          assertEquals([r.status, r.body], [410, method === "GET" ? reason : ""], method);
          assertEquals([...r.headers], [
            ["connection", "close"],
            ["content-length", String(enc.encode(reason).length)],
            ["content-md5", "1c9a44eb2e8eaf3da1eb551da310cce7"],
            ["content-type", "text/plain; charset=utf-8"],
            ["key-balance", "balanced"],
            ["key-volumes", vols],
          ], method);
        }
        assertEquals((await req(c, key, "DELETE")).status, 204, "DELETE clears a lost key");
        assertEquals((await req(c, key)).status, 404);
      },
    );

    await t.step("a live key whose replicas are all unreachable answers 503, not 410", async () => {
      const key = randomKey();
      assertEquals((await req(c, key, "PUT", "unreachable")).status, 201);
      await Promise.all([0, 1, 2].map((i) => c.stopVolume(i)));
      try {
        const r = await req(c, key);
        assertEquals(r.status, 503);
      } finally {
        await Promise.all([0, 1, 2].map((i) => c.startVolume(i)));
      }
      assertEquals((await req(c, key)).status, 302);
    });

    await t.step(
      "a write that fails while a volume is down leaves nothing live, and DELETE works after",
      async () => {
        const key = randomKey();
        await c.stopVolume(0);
        try {
          const r = await req(c, key, "PUT", "fails");
          assertEquals(r.status, 500);
          assert(r.text.startsWith("Cannot PUT"), r.text);
        } finally {
          await c.startVolume(0);
        }
        assertEquals((await req(c, key)).status, 404);
        const del = await req(c, key, "DELETE");
        assert(
          del.status === 404 || del.status === 204,
          `DELETE after a failed write: ${del.status}`,
        );
        assertEquals((await req(c, key, "PUT", "works")).status, 201);
      },
    );
  } finally {
    await c.stop();
  }
});

Deno.test("a GET that races a DELETE of its key answers 404, not 410", async () => {
  // One replica, and a voltimeout long enough to hold the GET's HEAD on a
  // paused volume (instead of counting the volume as down).
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-voltimeout", "5s"] });
  try {
    const key = randomKey();
    assertEquals((await req(c, key, "PUT", "raced")).status, 201);
    const sv = (await req(c, key, "HEAD")).headers.get("key-volumes")!.split("/")[1];
    const file = `${c.volumeDir(0)}/${sv}${key2path(enc.encode(key))}`;
    await c.pauseVolume(0);
    let get, del;
    try {
      // The GET has read the live record and waits on its HEAD...
      get = req(c, key);
      await new Promise((r) => setTimeout(r, 200));
      // ...while the DELETE marks the key and waits to remove the file.
      del = req(c, key, "DELETE");
      for (let i = 0; i < 200 && !(await keys(c, `${key}?writing`)).length; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assertEquals(await keys(c, `${key}?writing`), [key], "the DELETE holds the key");
      // The file goes first, as if nginx ran the DELETE before the HEAD.
      await Deno.remove(file);
    } finally {
      await c.resumeVolume(0);
    }
    assertEquals((await get).status, 404, "the key was deleted, not lost");
    assertEquals((await del).status, 204);
  } finally {
    await c.stop();
  }
});
