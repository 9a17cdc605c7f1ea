// mkv's HTTP API against real nginx volumes and a real master process.
import { Buffer } from "node:buffer";
import { Cluster, randomBytes, randomKey, rawRequest } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { key2name, key2path, md5, toHex } from "../lib/keys.ts";

const enc = new TextEncoder();

async function put(c: Cluster, key: string, body: BodyInit, method = "PUT") {
  const res = await fetch(c.url + key, { method, body });
  return { status: res.status, text: await res.text() };
}

async function req(c: Cluster, key: string, method = "GET") {
  const res = await fetch(c.url + key, { method, redirect: "manual" });
  await res.body?.cancel();
  return res;
}

async function read(c: Cluster, key: string): Promise<Uint8Array> {
  const res = await fetch(c.url + key);
  assertEquals(res.status, 200, `GET ${key} following the redirect`);
  return new Uint8Array(await res.arrayBuffer());
}

async function list(c: Cluster, q: string) {
  const res = await fetch(c.url + q);
  return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
}

/**
 * A key whose standard base64 holds "/" inside, or at the end when `atEnd`
 * (non-ASCII characters: ASCII rarely gives six one-bits in a row).
 */
function slashKey(atEnd: boolean): string {
  for (let i = 0;; i++) {
    const pad = "x".repeat(i % 3);
    const k = `/slash/${crypto.randomUUID().slice(0, 8)}${pad}${
      String.fromCodePoint(0xf0 + (i % 16))
    }ÿ`;
    const stripped = btoa(String.fromCharCode(...enc.encode(k))).replace(/=+$/, "");
    if (atEnd ? stripped.endsWith("/") : stripped.slice(0, -1).includes("/")) return k;
  }
}

/**
 * Status and body of a request sent with this Host header (fetch sets its
 * own Host); Deno builds the request's URL as "http://" + Host + path.
 */
async function withHost(c: Cluster, method: string, path: string, host: string, body = "") {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: c.masterPort });
  const head = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n` +
    `Content-Length: ${enc.encode(body).length}\r\n\r\n`;
  await conn.write(enc.encode(head + body));
  const text = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
  return { status: Number(text.slice(9, 12)), body: text.slice(text.indexOf("\r\n\r\n") + 4) };
}

/** What each volume holds at the key's path: 200 or 404 per volume. */
async function onVolumes(c: Cluster, key: string): Promise<number[]> {
  const res = await req(c, encodeURI(key), "HEAD");
  const vols = (res.headers.get("key-volumes") ?? "").split(",").filter(Boolean);
  const out = [];
  for (const v of vols) {
    const r = await fetch(`http://${v}${key2path(enc.encode(key))}`, { method: "HEAD" });
    await r.body?.cancel();
    out.push(r.status);
  }
  return out;
}

Deno.test("mkv API against real nginx volumes and a master process", async (t) => {
  const c = await Cluster.start();
  try {
    await t.step(
      "PUT answers 201 and GET redirects (302) to a replica with the exact bytes",
      async () => {
        const key = randomKey();
        const value = randomBytes(1000);
        assertEquals(await put(c, key, value), { status: 201, text: "" });
        const res = await req(c, key);
        assertEquals(res.status, 302);
        assertEquals(res.headers.get("content-length"), "0");
        assertEquals(res.headers.get("content-md5"), toHex(md5(value)));
        assertEquals(res.headers.get("key-balance"), "balanced");
        const vols = res.headers.get("key-volumes")!.split(",");
        assertEquals(vols.length, 3);
        assertEquals(
          new Set(vols.map((v) => v.split("/")[0])).size,
          3,
          "replicas on distinct volumes",
        );
        const loc = res.headers.get("location")!;
        assert(
          vols.some((v) => loc === `http://${v}${key2path(enc.encode(key))}`),
          `Location ${loc}`,
        );
        assertEquals(await read(c, key), value);
      },
    );

    await t.step("HEAD answers like GET: 302 with the same headers", async () => {
      const key = randomKey();
      await put(c, key, "head me");
      const res = await req(c, key, "HEAD");
      assertEquals(res.status, 302);
      assertEquals(res.headers.get("content-md5"), toHex(md5("head me")));
      assert(res.headers.get("location")!.startsWith("http://127.0.0.1:"));
    });

    await t.step("every replica holds the value at mkv's path", async () => {
      const key = randomKey();
      await put(c, key, "three copies");
      assertEquals(await onVolumes(c, key), [200, 200, 200]);
    });

    await t.step("a Range request through the redirect answers 206 with that range", async () => {
      const key = randomKey();
      await put(c, key, "0123456789");
      const loc = (await req(c, key)).headers.get("location")!;
      const res = await fetch(loc, { headers: { Range: "bytes=2-5" } });
      assertEquals(res.status, 206);
      assertEquals(await res.text(), "2345");
    });

    await t.step("PUT of an existing key answers 403 and keeps the old value", async () => {
      const key = randomKey();
      await put(c, key, "first");
      assertEquals((await put(c, key, "second")).status, 403);
      assertEquals(new TextDecoder().decode(await read(c, key)), "first");
    });

    await t.step("PUT of an empty body answers 411 and stores nothing", async () => {
      const key = randomKey();
      assertEquals((await put(c, key, "")).status, 411);
      assertEquals((await req(c, key)).status, 404);
    });

    await t.step("GET and HEAD of a missing key answer 404 with Content-Length 0", async () => {
      const res = await req(c, randomKey());
      assertEquals(res.status, 404);
      assertEquals(res.headers.get("content-length"), "0");
      assertEquals((await req(c, randomKey(), "HEAD")).status, 404);
    });

    await t.step("DELETE answers 204, removes every replica, then 404", async () => {
      const key = randomKey();
      await put(c, key, "doomed");
      const vols = (await req(c, key)).headers.get("key-volumes")!.split(",");
      assertEquals((await req(c, key, "DELETE")).status, 204);
      assertEquals((await req(c, key)).status, 404);
      assertEquals((await req(c, key, "DELETE")).status, 404);
      for (const v of vols) {
        const r = await fetch(`http://${v}${key2path(enc.encode(key))}`, { method: "HEAD" });
        assertEquals(r.status, 404, `file left on ${v}`);
      }
    });

    await t.step(
      "UNLINK hides a key, lists it as unlinked, keeps its files; DELETE then removes it",
      async () => {
        const prefix = randomKey("/unlink");
        const key = `${prefix}/a`;
        await put(c, key, "unlink me");
        assertEquals((await req(c, key, "UNLINK")).status, 204);
        assertEquals((await req(c, key)).status, 404);
        assertEquals((await req(c, key, "UNLINK")).status, 404);
        assertEquals((await list(c, `${prefix}?list`)).body, `{"next":"","keys":[]}`);
        assertEquals((await list(c, `${prefix}?unlinked`)).body, `{"next":"","keys":["${key}"]}`);
        const path = key2path(enc.encode(key));
        const vols = (await req(c, key, "HEAD")).headers.get("key-volumes");
        assertEquals(vols, null, "an unlinked key shows no volumes");
        const files = await Promise.all(c.volumes.map(async (v) => {
          const subs = await fetch(`http://${v}/`).then((r) => r.json()) as { name: string }[];
          let n = 0;
          for (const s of subs) {
            const r = await fetch(`http://${v}/${s.name}${path}`, { method: "HEAD" });
            await r.body?.cancel();
            if (r.status === 200) n++;
          }
          return n;
        }));
        assertEquals(files, [1, 1, 1], "files stay after UNLINK");
        assertEquals((await req(c, key, "DELETE")).status, 204);
        assertEquals((await list(c, `${prefix}?unlinked`)).body, `{"next":"","keys":[]}`);
      },
    );

    await t.step(
      "?list returns the prefix's live keys in byte order, paged by limit/next/start",
      async () => {
        const prefix = randomKey("/list");
        const names = ["b", "a", "c/d", "c", "e", "\u00e9"];
        for (const n of names) assertEquals((await put(c, `${prefix}/${n}`, n)).status, 201);
        await put(c, `${prefix}x/outside`, "not under the prefix/");
        const all = names.map((n) => `${prefix}/${n}`).sort((a, b) =>
          Buffer.compare(enc.encode(a), enc.encode(b))
        );
        const whole = await list(c, `${prefix}/?list`);
        assertEquals(whole.status, 200);
        assertEquals(whole.type, "application/json");
        assertEquals(JSON.parse(whole.body), { next: "", keys: all });
        const p1 = JSON.parse((await list(c, `${prefix}/?list&limit=2`)).body);
        assertEquals(p1, { next: all[2], keys: all.slice(0, 2) });
        const p2 = JSON.parse(
          (await list(c, `${prefix}/?list&limit=2&start=${encodeURIComponent(p1.next)}`)).body,
        );
        assertEquals(p2, { next: all[4], keys: all.slice(2, 4) });
        const p3 = JSON.parse(
          (await list(c, `${prefix}/?list&limit=2&start=${encodeURIComponent(p2.next)}`)).body,
        );
        assertEquals(p3, { next: "", keys: all.slice(4) });
      },
    );

    await t.step("bad list parameters answer 400 and non-GET queries 405", async () => {
      assertEquals((await list(c, "/x?list&limit=ten")).status, 400);
      assertEquals((await list(c, "/x?bogus")).status, 400);
      const res = await fetch(c.url + "/x?list", { method: "PUT", body: "x" });
      await res.body?.cancel();
      assertEquals(res.status, 405);
      assertEquals(res.headers.get("allow"), "GET, HEAD");
    });

    await t.step("a limit of 10 digits or more is a limit, not a bad one", async () => {
      const prefix = randomKey("/biglimit");
      for (const k of ["a", "b"]) assertEquals((await put(c, `${prefix}/${k}`, "v")).status, 201);
      const keys = [`${prefix}/a`, `${prefix}/b`];
      for (const limit of ["10000000000", "99999999999999999999999"]) {
        assertEquals(await list(c, `${prefix}/?list&limit=${limit}`), {
          status: 200,
          type: "application/json",
          body: JSON.stringify({ next: "", keys }),
        });
      }
    });

    await t.step(
      "a signed limit is read as mkv's Atoi reads it: +1 is 1, 0 or less is no limit",
      async () => {
        const prefix = randomKey("/signedlimit");
        for (const k of ["a", "b"]) assertEquals((await put(c, `${prefix}/${k}`, "v")).status, 201);
        const keys = [`${prefix}/a`, `${prefix}/b`];
        const page = (next: string, keys: string[]) => ({
          status: 200,
          type: "application/json",
          body: JSON.stringify({ next, keys }),
        });
        assertEquals(await list(c, `${prefix}/?list&limit=%2B1`), page(keys[1], keys.slice(0, 1)));
        for (const limit of ["-1", "-0", "0"]) {
          assertEquals(await list(c, `${prefix}/?list&limit=${limit}`), page("", keys));
        }
        assertEquals(await list(c, `${prefix}/?list&limit=--1`), {
          status: 400,
          type: "text/plain; charset=utf-8",
          body: `Bad limit "--1": not a whole number\n`,
        });
      },
    );

    await t.step(
      "an unknown or missing operation answers 400 naming the ones there are",
      async () => {
        const known = "?list, ?unlinked, ?writing, ?status or ?metrics";
        assertEquals(await list(c, "/x?bogus"), {
          status: 400,
          type: "text/plain; charset=utf-8",
          body: `Unknown operation "?bogus": expected ${known}\n`,
        });
        // The operation is the first parameter: "?&list" has none ("?" was named).
        assertEquals(await list(c, "/x?&list"), {
          status: 400,
          type: "text/plain; charset=utf-8",
          body: `The query must start with its operation: ${known}\n`,
        });
      },
    );

    await t.step(
      "an operation given a value (?list=1, ?unlinked=0) answers 400, as mkv refuses it, listing nothing",
      async () => {
        const known = "?list, ?unlinked, ?writing, ?status or ?metrics";
        const prefix = randomKey("/valued");
        assertEquals((await put(c, `${prefix}/a`, "v")).status, 201);
        for (const [op, name] of [["list=1", "list"], ["unlinked=0", "unlinked"]]) {
          assertEquals(await list(c, `${prefix}/?${op}&limit=5`), {
            status: 400,
            type: "text/plain; charset=utf-8",
            body: `Unknown operation "?${op}": expected ${known} ` +
              `(an operation takes no value: ?${name})\n`,
          });
        }
      },
    );

    await t.step(
      "a query naming a property every object has (?constructor) is no operation: 400",
      async () => {
        const known = "?list, ?unlinked, ?writing, ?status or ?metrics";
        for (const op of ["constructor", "toString", "hasOwnProperty"]) {
          assertEquals(await list(c, `/x?${op}`), {
            status: 400,
            type: "text/plain; charset=utf-8",
            body: `Unknown operation "?${op}": expected ${known}\n`,
          });
        }
      },
    );

    await t.step("a second PUT or DELETE of a key whose PUT is in flight answers 409", async () => {
      const key = randomKey();
      let ctl!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({ start: (cc) => void (ctl = cc) });
      ctl.enqueue(enc.encode("part one, "));
      const first = fetch(c.url + key, { method: "PUT", body });
      // Wait until the master has claimed the key (UNLINK probes without
      // creating it; a PUT probe could win the key first).
      let claimed = false;
      for (let i = 0; i < 200 && !claimed; i++) {
        claimed = (await req(c, key, "UNLINK")).status === 409;
        if (!claimed) await new Promise((r) => setTimeout(r, 10));
      }
      assert(claimed, "the first PUT holds the key");
      assertEquals((await put(c, key, "other")).status, 409);
      assertEquals((await req(c, key, "DELETE")).status, 409);
      assertEquals((await req(c, key)).status, 404, "a key being written is not readable");
      ctl.enqueue(enc.encode("part two"));
      ctl.close();
      const res = await first;
      await res.body?.cancel();
      assertEquals(res.status, 201);
      assertEquals(new TextDecoder().decode(await read(c, key)), "part one, part two");
    });

    await t.step("a 16 MiB value round-trips byte for byte with its MD5", async () => {
      const key = randomKey();
      const value = randomBytes(16 << 20);
      assertEquals((await put(c, key, value)).status, 201);
      assertEquals((await req(c, key)).headers.get("content-md5"), toHex(md5(value)));
      const back = await read(c, key);
      assertEquals(back.length, value.length);
      assertEquals(toHex(md5(back)), toHex(md5(value)));
    });

    await t.step("a chunked PUT (no Content-Length) is stored whole", async () => {
      const key = randomKey();
      const parts = [randomBytes(70_000), randomBytes(5), randomBytes(200_000)];
      const body = new ReadableStream<Uint8Array>({
        start(ctl) {
          for (const p of parts) ctl.enqueue(p);
          ctl.close();
        },
      });
      assertEquals((await put(c, key, body)).status, 201);
      const want = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let o = 0;
      for (const p of parts) want.set(p, (o += p.length) - p.length);
      assertEquals(await read(c, key), want);
    });

    await t.step("unicode keys are stored, listed and read back decoded", async () => {
      const prefix = randomKey("/ünï");
      const key = `${prefix}/cødé 鍵 🔑`;
      const path = encodeURI(key);
      assertEquals((await put(c, path, "unicode")).status, 201);
      assertEquals(new TextDecoder().decode(await read(c, path)), "unicode");
      assertEquals(JSON.parse((await list(c, `${encodeURI(prefix)}?list`)).body).keys, [key]);
    });

    await t.step(
      "keys whose base64 holds '/' inside or at the end are stored under base64url",
      async () => {
        for (const key of [slashKey(false), slashKey(true)]) {
          const name = key2name(enc.encode(key));
          assert(!name.includes("/") && name.includes("_"), `name ${name}`);
          const url = encodeURI(key);
          assertEquals((await put(c, url, key)).status, 201, `PUT ${key}`);
          assertEquals(new TextDecoder().decode(await read(c, url)), key);
          assertEquals(await onVolumes(c, key), [200, 200, 200]);
          assertEquals((await req(c, url, "DELETE")).status, 204);
        }
      },
    );

    await t.step(
      "'..' in a key is part of the key and never leaves the volume's folder",
      async () => {
        const prefix = randomKey("/dots");
        const key = `${prefix}/a/../b`;
        assertEquals((await rawRequest(c.masterPort, "PUT", key, "dots")).status, 201);
        assertEquals((await req(c, `${prefix}/b`)).status, 404);
        const got = await rawRequest(c.masterPort, "GET", key);
        assertEquals(got.status, 302);
        assertEquals(JSON.parse((await list(c, `${prefix}?list`)).body).keys, [key]);
        // On the volumes, the key is a base64 name in an md5 folder.
        const location = got.headers.get("location")!;
        assertEquals(location.slice(location.lastIndexOf("/") + 1), key2name(enc.encode(key)));
        const file = await fetch(location);
        assertEquals(await file.text(), "dots");
        const dotted = await rawRequest(c.masterPort, "GET", "/../../../etc/passwd");
        assertEquals(dotted.status, 404);
      },
    );

    await t.step("bad input gets a clear 4xx and the master keeps serving", async () => {
      const long = "/" + "k".repeat(5000);
      const r414 = await fetch(c.url + long, { method: "PUT", body: "x" });
      assertEquals(r414.status, 414);
      assertEquals(
        await r414.text(),
        "Key too long for the index (at most 2043 bytes, a zero byte counting twice)\n",
      );
      assertEquals((await req(c, long)).status, 414);
      const r400 = await fetch(c.url + "/bad%zzescape");
      assertEquals(r400.status, 400);
      assert((await r400.text()).startsWith("Broken percent-escape"));
      const r405 = await fetch(c.url + "/x", { method: "PATCH", body: "x" });
      await r405.body?.cancel();
      assertEquals(r405.status, 405);
      assertEquals(
        r405.headers.get("allow"),
        "GET, HEAD, PUT, REPLACE, DELETE, UNLINK, RELINK, REBALANCE",
      );
      const key = randomKey();
      assertEquals((await put(c, key, "still serving")).status, 201);
    });

    await t.step(
      "a Content-Length sent twice with one number is that number (PUT, REPLACE)",
      async () => {
        // Deno joins the two into "5, 5": read as NaN, it reached the volumes
        // as "Content-Length: NaN" and the write failed with a 500.
        const twice = async (method: string, key: string, body: string) => {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: c.masterPort });
          const n = enc.encode(body).length;
          const head = `${method} ${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
            `Content-Length: ${n}\r\nContent-Length: ${n}\r\n\r\n`;
          await conn.write(enc.encode(head + body));
          const text = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
          return Number(text.slice(9, 12));
        };
        const key = randomKey();
        assertEquals(await twice("PUT", key, "first"), 201);
        assertEquals(new TextDecoder().decode(await read(c, key)), "first");
        assertEquals(await twice("REPLACE", key, "second!"), 201);
        assertEquals(new TextDecoder().decode(await read(c, key)), "second!");
      },
    );

    await t.step(
      "a Host header holding '/' answers 400 instead of prefixing the key",
      async () => {
        const key = randomKey();
        const host = `127.0.0.1/hijacked`;
        assertEquals(await withHost(c, "PUT", key, host, "v"), {
          status: 400,
          body: `Bad Host header "${host}": a host holds no "/"\n`,
        });
        assertEquals((await withHost(c, "DELETE", key, host)).status, 400);
        assertEquals((await req(c, `/hijacked${key}`)).status, 404, "no key made from the Host");
        // A GET is never redirected to the key the Host would make either.
        assertEquals((await put(c, `/hijacked${key}`, "other")).status, 201);
        assertEquals((await withHost(c, "GET", key, host)).status, 400);
      },
    );

    await t.step(
      "a Host header holding '?' or '#' answers 400 (no host holds one), as one holding '/'",
      async () => {
        // Deno builds the URL as "http://" + Host + path: the path starts at
        // the first "/", "?" or "#" after "http://" (an absolute-form target's may be none).
        for (const char of ["?", "#"]) {
          const host = `127.0.0.1${char}x`;
          assertEquals(await withHost(c, "PUT", randomKey(), host, "v"), {
            status: 400,
            body: `Bad Host header "${host}": a host holds no "${char}"\n`,
          });
        }
      },
    );

    await t.step(
      "an absolute-form target with no path and a query holding '/' is no key of that '/'",
      async () => {
        const key = randomKey();
        const put = await rawRequest(c.masterPort, "PUT", `http://127.0.0.1?x${key}`, "v");
        assertEquals([put.status, put.body], [
          400,
          `Unknown operation "?x${key}": expected ?list, ?unlinked, ?writing, ?status or ?metrics\n`,
        ]);
        assertEquals((await req(c, key)).status, 404, "nothing stored under the query's bytes");
        const fragment = await rawRequest(c.masterPort, "PUT", `http://127.0.0.1#${key}`, "v");
        assertEquals(fragment.status, 400);
        assertEquals((await req(c, key)).status, 404, "nothing stored under the fragment's bytes");
      },
    );

    await t.step("keys of 150, 250, 600 and 1,500 bytes: PUT, GET, ?list, DELETE", async () => {
      const prefix = randomKey("/len");
      const keys = [150, 250, 600, 1500].map((n) =>
        `${prefix}/` + "k".repeat(n - prefix.length - 1)
      );
      for (const k of keys) {
        assertEquals((await put(c, k, `v${k.length}`)).status, 201, `PUT ${k.length} bytes`);
        assertEquals(new TextDecoder().decode(await read(c, k)), `v${k.length}`);
      }
      assertEquals(JSON.parse((await list(c, `${prefix}/?list`)).body).keys, keys.slice().sort());
      for (const k of keys) {
        assertEquals((await req(c, k, "DELETE")).status, 204);
        assertEquals((await req(c, k)).status, 404);
      }
    });

    await t.step(
      "the longest key the index holds (2043 bytes) is stored; one byte more is 414",
      async () => {
        const base = randomKey("/long");
        const key = base + "x".repeat(2043 - base.length);
        assertEquals((await put(c, key, "long")).status, 201);
        assertEquals(new TextDecoder().decode(await read(c, key)), "long");
        assertEquals((await put(c, key + "y", "long")).status, 414);
      },
    );

    await t.step(
      "a key under 2043 bytes made too long by its zero bytes: 414 saying a zero byte counts twice",
      async () => {
        // 1,100 zero bytes: under 1,200 bytes in all, past 2,048 once each is escaped to two.
        const key = randomKey("/zeros") + "%00".repeat(1100);
        const res = await fetch(c.url + key, { method: "PUT", body: "x" });
        assertEquals(
          [res.status, await res.text()],
          [414, "Key too long for the index (at most 2043 bytes, a zero byte counting twice)\n"],
        );
      },
    );

    await t.step(
      "a list of a prefix longer than any key can be is an empty page (as mkv's), not a 414",
      async () => {
        const base = randomKey("/longprefix");
        const key = base + "x".repeat(2043 - base.length);
        assertEquals((await put(c, key, "long")).status, 201);
        const empty = { status: 200, type: "application/json", body: `{"next":"","keys":[]}` };
        for (const op of ["list", "unlinked", "writing"]) {
          assertEquals(await list(c, `${key}y?${op}`), empty, `?${op}`);
        }
        const head = await req(c, `${key}y?list`, "HEAD");
        assertEquals([head.status, head.headers.get("content-length")], [200, "21"]);
        assertEquals(JSON.parse((await list(c, `${key}?list`)).body).keys, [key]);
      },
    );

    await t.step(
      "a PUT that a replica refuses answers 5xx, leaves no key and no partial copies",
      async () => {
        const key = randomKey();
        await c.stopVolume(2);
        try {
          const r = await put(c, key, "never stored");
          assertEquals(r.status, 500);
          assert(r.text.includes(`Cannot PUT "http://${c.volumes[2]}`), r.text);
          assertEquals((await req(c, key)).status, 404);
          assertEquals(JSON.parse((await list(c, `${key}?list`)).body).keys, []);
        } finally {
          await c.startVolume(2);
        }
        // Nothing left on the volumes that were up.
        for (const v of c.volumes.slice(0, 2)) {
          const subs = await fetch(`http://${v}/`).then((r) => r.json()) as { name: string }[];
          for (const s of subs) {
            const r = await fetch(`http://${v}/${s.name}${key2path(enc.encode(key))}`, {
              method: "HEAD",
            });
            await r.body?.cancel();
            assertEquals(r.status, 404, `partial copy left on ${v}/${s.name}`);
          }
        }
        assertEquals(
          (await put(c, key, "stored now")).status,
          201,
          "the same key can be written later",
        );
      },
    );
  } finally {
    await c.stop();
  }
});

Deno.test("-protect: DELETE of a live key answers 403 until it is unlinked", async () => {
  const c = await Cluster.start({ flags: ["-protect"] });
  try {
    const key = randomKey();
    assertEquals((await put(c, key, "protected")).status, 201);
    assertEquals((await req(c, key, "DELETE")).status, 403);
    assertEquals((await req(c, key)).status, 302);
    assertEquals((await req(c, key, "UNLINK")).status, 204);
    assertEquals((await req(c, key, "DELETE")).status, 204);
    assertEquals((await req(c, key)).status, 404);
  } finally {
    await c.stop();
  }
});

Deno.test("-fallback: a missing key redirects to the fallback server", async () => {
  const c = await Cluster.start({
    volumes: 1,
    flags: ["-replicas", "1", "-fallback", "old.example:8080"],
  });
  try {
    const res = await req(c, "/missing/k%20ey");
    assertEquals(res.status, 302);
    assertEquals(res.headers.get("location"), "http://old.example:8080/missing/k%20ey");
  } finally {
    await c.stop();
  }
});

Deno.test(
  "-fallback: a key sent as raw UTF-8 redirects with its bytes percent-encoded, escapes kept",
  async () => {
    // A header holds bytes: "鍵" (past U+00FF) failed the answer (500, "not a
    // valid ByteString"), "é" went out as the one byte 0xE9, another key.
    const c = await Cluster.start({
      volumes: 1,
      flags: ["-replicas", "1", "-fallback", "old.example:8080"],
    });
    try {
      for (const method of ["GET", "HEAD"]) {
        for (
          const [path, location] of [
            ["/missing/é", "/missing/%C3%A9"],
            ["/missing/鍵%20k", "/missing/%E9%8D%B5%20k"],
          ]
        ) {
          const res = await rawRequest(c.masterPort, method, path);
          assertEquals(
            [res.status, res.headers.get("location")],
            [302, `http://old.example:8080${location}`],
            `${method} ${path}`,
          );
        }
      }
    } finally {
      await c.stop();
    }
  },
);

Deno.test(
  "-fallback: a key sent with characters no URI holds redirects with them percent-encoded",
  async () => {
    // Sent raw (curl sends them as typed), they went into the Location as
    // they came: no URI, and a browser or fetch() following it read a
    // backslash as "/", another key.
    const c = await Cluster.start({
      volumes: 1,
      flags: ["-replicas", "1", "-fallback", "old.example:8080"],
    });
    try {
      const res = await rawRequest(c.masterPort, "GET", '/missing/a\\b"<>^`{|}%5C');
      assertEquals(
        [res.status, res.headers.get("location")],
        [302, "http://old.example:8080/missing/a%5Cb%22%3C%3E%5E%60%7B%7C%7D%5C"],
      );
    } finally {
      await c.stop();
    }
  },
);

Deno.test("Content-MD5 on PUT and REPLACE: a body of other bytes is refused", async (t) => {
  const c = await Cluster.start();
  const b64 = (s: string) => Buffer.from(md5(s)).toString("base64");
  const send = async (key: string, body: BodyInit, opts: { md5: string; method?: string }) => {
    const res = await fetch(c.url + key, {
      method: opts.method ?? "PUT",
      body,
      headers: { "Content-MD5": opts.md5 },
    });
    return { status: res.status, text: await res.text() };
  };
  const big = randomBytes(300 * 1024);
  try {
    await t.step("one matching the body, base64 (RFC 1864) or hex, is stored: 201", async () => {
      const a = randomKey(), b = randomKey();
      assertEquals(await send(a, "value", { md5: b64("value") }), { status: 201, text: "" });
      assertEquals(await send(b, "value", { md5: toHex(md5("value")) }), {
        status: 201,
        text: "",
      });
      assertEquals(new TextDecoder().decode(await read(c, a)), "value");
    });

    // Small sized bodies are read whole before any replica is asked; larger
    // ones stream, their last chunk held back; chunked ones stream to the end.
    const corrupt: [string, () => BodyInit, string][] = [
      ["sized", () => "corrupt", toHex(md5("corrupt"))],
      ["streamed (300 KiB)", () => big, toHex(md5(big))],
      ["chunked", () => ReadableStream.from([enc.encode("corrupt")]), toHex(md5("corrupt"))],
    ];
    for (const [how, body, got] of corrupt) {
      await t.step(
        `a PUT whose ${how} body has another MD5 answers 400, nothing stored`,
        async () => {
          const key = randomKey();
          const res = await send(key, body(), { md5: b64("value") });
          assertEquals(res, {
            status: 400,
            text: `The body's MD5 is ${got}, not its Content-MD5 (${toHex(md5("value"))}): ` +
              "nothing was stored\n",
          });
          assertEquals((await req(c, key)).status, 404);
          assertEquals((await list(c, `${key}?writing`)).body, '{"next":"","keys":[]}');
          assertEquals((await put(c, key, "value")).status, 201, "the key can be written then");
        },
      );

      await t.step(
        `a PUT over an unlinked key, its ${how} body of another MD5, leaves it unlinked`,
        async () => {
          const key = randomKey();
          assertEquals((await put(c, key, "old")).status, 201);
          assertEquals((await req(c, key, "UNLINK")).status, 204);
          assertEquals((await send(key, body(), { md5: b64("value") })).status, 400);
          assertEquals((await req(c, key, "RELINK")).status, 204);
          assertEquals(new TextDecoder().decode(await read(c, key)), "old");
        },
      );
    }

    await t.step("a REPLACE with another MD5 answers 400 and keeps the old value", async () => {
      const key = randomKey();
      assertEquals((await put(c, key, "old")).status, 201);
      const res = await send(key, "corrupt", { md5: b64("value"), method: "REPLACE" });
      assertEquals(res.status, 400);
      assertEquals(new TextDecoder().decode(await read(c, key)), "old");
      assertEquals((await req(c, key)).headers.get("content-md5"), toHex(md5("old")));
    });

    await t.step("a Content-MD5 that is no MD5 answers 400 before the body is read", async () => {
      const key = randomKey();
      const res = await send(key, "value", { md5: "abc" });
      assertEquals(res, {
        status: 400,
        text: 'Bad Content-MD5 "abc": not an MD5 (16 bytes in base64, or 32 hex digits)\n',
      });
      assertEquals((await req(c, key)).status, 404);
    });
  } finally {
    await c.stop();
  }
});

Deno.test("-md5sum=false: a PUT sent with a Content-MD5 checks and stores that MD5", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-md5sum=false"] });
  try {
    const key = randomKey();
    const res = await fetch(c.url + key, {
      method: "PUT",
      body: "with md5",
      headers: { "Content-MD5": toHex(md5("with md5")) },
    });
    assertEquals([res.status, await res.text()], [201, ""]);
    assertEquals((await req(c, key)).headers.get("content-md5"), toHex(md5("with md5")));
  } finally {
    await c.stop();
  }
});
