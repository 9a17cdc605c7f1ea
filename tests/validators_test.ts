// A volume gives no validator that cannot tell two values apart: nginx's
// ETag and Last-Modified are a file's mtime (in seconds) and size, the same
// for a REPLACE by a value of the same size within the second. A conditional
// GET of the volume URL always gets the value the volume holds, in full.
import { Cluster, randomKey } from "./cluster.ts";
import { assertEquals } from "./assert.ts";

/** The value a key held, what nginx would have named it by, and where it is now. */
interface Replaced {
  /** The volume URL the master's GET redirects to. */
  url: string;
  /** nginx's ETag of the old value: "<mtime in hex>-<size in hex>". */
  etag: string;
  /** nginx's Last-Modified of the old value. */
  date: string;
}

/**
 * PUT "AAAA" then REPLACE "BBBB" through the master, the new file given the
 * old one's mtime: a REPLACE within the same second, without waiting on the clock.
 */
async function replacedInOneSecond(c: Cluster): Promise<Replaced> {
  const key = randomKey();
  assertEquals((await fetch(c.url + key, { method: "PUT", body: "AAAA" })).status, 201);
  const res = await fetch(c.url + key, { redirect: "manual" });
  assertEquals(res.status, 302);
  const url = new URL(res.headers.get("location")!);
  const file = `${c.volumeDir(c.volumes.indexOf(url.host))}${url.pathname}`;
  const old = (await Deno.stat(file)).mtime!;
  assertEquals((await fetch(c.url + key, { method: "REPLACE", body: "BBBB" })).status, 201);
  await Deno.utime(file, old, old);
  const seconds = Math.floor(old.getTime() / 1000);
  return {
    url: url.href,
    etag: `"${seconds.toString(16)}-4"`,
    date: new Date(seconds * 1000).toUTCString(),
  };
}

/** A GET of `url` with `headers`: status, the headers named, body. */
async function get(url: string, headers: { [name: string]: string } = {}) {
  const res = await fetch(url, { headers });
  return {
    status: res.status,
    etag: res.headers.get("etag"),
    lastModified: res.headers.get("last-modified"),
    contentRange: res.headers.get("content-range"),
    body: await res.text(),
  };
}

/** The answer every conditional GET below must get: the new value, whole. */
const WHOLE = { status: 200, etag: null, lastModified: null, contentRange: null, body: "BBBB" };

Deno.test("a volume's conditional GET after a same-second same-size REPLACE gets the new value", async (t) => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  try {
    await t.step("a volume's answer names no ETag and no Last-Modified", async () => {
      const r = await replacedInOneSecond(c);
      assertEquals(await get(r.url), WHOLE);
    });
    await t.step(
      "If-None-Match with the old value's ETag: 200 with the new value, not 304",
      async () => {
        const r = await replacedInOneSecond(c);
        assertEquals(await get(r.url, { "If-None-Match": r.etag }), WHOLE);
      },
    );
    await t.step(
      "If-Modified-Since the old value's date: 200 with the new value, not 304",
      async () => {
        const r = await replacedInOneSecond(c);
        assertEquals(await get(r.url, { "If-Modified-Since": r.date }), WHOLE);
      },
    );
    await t.step(
      "a range If-Range the old value's ETag: 200 with all the new value, not 206",
      async () => {
        const r = await replacedInOneSecond(c);
        assertEquals(await get(r.url, { "Range": "bytes=2-", "If-Range": r.etag }), WHOLE);
      },
    );
    await t.step(
      "a range If-Range the old value's date: 200 with all the new value, not 206",
      async () => {
        const r = await replacedInOneSecond(c);
        assertEquals(await get(r.url, { "Range": "bytes=2-", "If-Range": r.date }), WHOLE);
      },
    );
    await t.step("a range If-Unmodified-Since the old value's date: 412, not 206", async () => {
      const r = await replacedInOneSecond(c);
      const res = await fetch(r.url, {
        headers: { "Range": "bytes=2-", "If-Unmodified-Since": r.date },
      });
      await res.body?.cancel();
      assertEquals([res.status, res.headers.get("content-range")], [412, null]);
    });
    await t.step("a range If-Match the old value's ETag: 412, not 206", async () => {
      const r = await replacedInOneSecond(c);
      const res = await fetch(r.url, { headers: { "Range": "bytes=2-", "If-Match": r.etag } });
      await res.body?.cancel();
      assertEquals([res.status, res.headers.get("content-range")], [412, null]);
    });
    await t.step(
      "If-Match: * gets the value, If-None-Match: * a 304: each asks only whether it exists",
      async () => {
        const r = await replacedInOneSecond(c);
        assertEquals(await get(r.url, { "If-Match": "*" }), WHOLE);
        assertEquals(await get(r.url, { "If-None-Match": "*" }), {
          ...WHOLE,
          status: 304,
          body: "",
        });
      },
    );
    await t.step("a range without conditions still gets its bytes: 206", async () => {
      const r = await replacedInOneSecond(c);
      assertEquals(await get(r.url, { "Range": "bytes=2-" }), {
        ...WHOLE,
        status: 206,
        contentRange: "bytes 2-3/4",
        body: "BB",
      });
    });
  } finally {
    await c.stop();
  }
});
