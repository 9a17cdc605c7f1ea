// A client whose request body fails (stops sending, ends early) gets a 4xx,
// frees the key, takes nothing away from it and costs no volume its health.
import { Cluster, concatBytes, randomBytes, randomKey, status } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { awsChunkedHeaders } from "./s3_client.ts";

const enc = new TextEncoder();

/** Opens a PUT announcing `length` bytes and sends the first `sent` of them. */
async function partialPut(
  port: number,
  key: string,
  length: number,
  sent: number,
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head = `PUT ${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${length}\r\n` +
    "Connection: close\r\n\r\n";
  await writeAll(conn, enc.encode(head));
  const chunk = new Uint8Array(65536).fill(0x61);
  for (let off = 0; off < sent; off += chunk.length) {
    await writeAll(conn, chunk.subarray(0, Math.min(chunk.length, sent - off)));
  }
  return conn;
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array) {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/** The answer's status line and body (by its Content-Length). */
async function answer(conn: Deno.TcpConn): Promise<string> {
  let text = "";
  const buf = new Uint8Array(4096);
  const dec = new TextDecoder();
  try {
    while (true) {
      const end = text.indexOf("\r\n\r\n");
      const length = /\r\ncontent-length: *(\d+)/i.exec(text);
      if (end >= 0 && length && text.length >= end + 4 + Number(length[1])) break;
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n));
    }
  } finally {
    conn.close();
  }
  return `${text.split("\r\n")[0]} | ${text.slice(text.indexOf("\r\n\r\n") + 4)}`;
}

async function listed(url: string, what: "writing" | "unlinked", key: string): Promise<boolean> {
  const { keys } = await (await fetch(`${url}/?${what}`)).json() as { keys: string[] };
  return keys.includes(key);
}

/** Waits (bounded) until the master has finished with the key's failed write. */
async function settled(url: string, key: string) {
  for (let i = 0; i < 100 && await listed(url, "writing", key); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function putErrors(url: string): Promise<number> {
  const text = await (await fetch(`${url}/?metrics`)).text();
  return text.split("\n")
    .filter((l) => l.startsWith("mkv_volume_calls_total{") && l.includes('call="put"'))
    .filter((l) => !l.includes('outcome="ok"'))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

Deno.test("request bodies that fail", async (t) => {
  // -voltimeout 200ms: a transfer stalls after 2 s without a byte (10x, at least 2 s).
  // -s3: the gateway with no keys (its aws-chunked bodies can break after their last byte).
  const c = await Cluster.start({ flags: ["-voltimeout", "200ms", "-s3"] });
  try {
    await t.step(
      "an S3 UploadPart whose client stops sending answers RequestTimeout, not InternalError",
      async () => {
        const bucket = `b-${crypto.randomUUID().slice(0, 8)}`;
        const created = await (await fetch(`${c.url}/${bucket}/obj?uploads`, { method: "POST" }))
          .text();
        const id = /<UploadId>([0-9a-f]+)<\/UploadId>/.exec(created)![1];
        const conn = await partialPut(
          c.masterPort,
          `/${bucket}/obj?partNumber=1&uploadId=${id}`,
          100_000,
          5000,
        );
        const got = await answer(conn);
        assert(got.startsWith("HTTP/1.1 400 Bad Request | "), got);
        assert(got.includes("<Code>RequestTimeout</Code>"), got);
        // No part was recorded: the upload lists none.
        const parts = await (await fetch(`${c.url}/${bucket}/obj?uploadId=${id}`)).text();
        assert(parts.includes("<ListPartsResult") && !parts.includes("<Part>"), parts);
      },
    );

    await t.step(
      "a small PUT whose client stops sending answers 408 and frees the key",
      async () => {
        const key = randomKey("/stall");
        const conn = await partialPut(c.masterPort, key, 1000, 500);
        assertEquals(
          await answer(conn),
          "HTTP/1.1 408 Request Timeout | No byte of the request body in 2000ms\n",
        );
        assertEquals(await listed(c.url, "writing", key), false);
        assertEquals(await status(c.url + key, { method: "PUT", body: "whole" }), 201);
        assertEquals(await (await fetch(c.url + key)).text(), "whole");
      },
    );

    await t.step(
      "a large PUT whose client stops sending answers 408; no volume is blamed",
      async () => {
        const key = randomKey("/stall-large");
        const before = await putErrors(c.url);
        const conn = await partialPut(c.masterPort, key, 20 << 20, 1 << 20);
        assertEquals(
          await answer(conn),
          "HTTP/1.1 408 Request Timeout | No byte of the request body in 2000ms\n",
        );
        assertEquals(await listed(c.url, "writing", key), false);
        assertEquals(await putErrors(c.url), before, "the volumes were not at fault");
        assertEquals(await status(c.url + key), 404);
      },
    );

    await t.step("a client gone mid-PUT costs no volume a failure", async () => {
      const key = randomKey("/gone");
      const before = await putErrors(c.url);
      const conn = await partialPut(c.masterPort, key, 20 << 20, 2 << 20);
      conn.close();
      await new Promise((r) => setTimeout(r, 200));
      await settled(c.url, key);
      assertEquals(await listed(c.url, "writing", key), false);
      assertEquals(await putErrors(c.url), before);
      assertEquals(await status(c.url + key), 404);
    });

    await t.step(
      "a PUT over an unlinked key whose body ends early keeps the unlinked value",
      async () => {
        const key = randomKey("/unlinked");
        assertEquals(await status(c.url + key, { method: "PUT", body: "keep me" }), 201);
        assertEquals(await status(c.url + key, { method: "UNLINK" }), 204);
        for (const [length, sent] of [[1000, 500], [20 << 20, 1 << 20]]) {
          const conn = await partialPut(c.masterPort, key, length, sent);
          conn.close();
          await new Promise((r) => setTimeout(r, 200));
          await settled(c.url, key);
          assert(await listed(c.url, "unlinked", key), `still unlinked after ${sent} of ${length}`);
        }
        assertEquals(await status(c.url + key, { method: "RELINK" }), 204);
        assertEquals(await (await fetch(c.url + key)).text(), "keep me");
      },
    );

    await t.step(
      "a PUT over an unlinked key whose body breaks after its last byte keeps the unlinked value",
      async () => {
        // S3's aws-chunked body: every byte of the value, then no final
        // chunk. Before the fix the value's last chunk had gone to the
        // replicas, which stored it over the unlinked one's files, and the
        // record kept the old MD5 and size.
        const key = randomKey("/bucket/unlinked-tail");
        const old = randomBytes(300_000);
        assertEquals(await status(c.url + key, { method: "PUT", body: old }), 201);
        const md5 = (await fetch(c.url + key, { method: "HEAD", redirect: "manual" }))
          .headers.get("content-md5");
        assertEquals(await status(c.url + key, { method: "UNLINK" }), 204);
        assertEquals(await status(c.url + "/bucket/other", { method: "PUT", body: "x" }), 201);
        const n = 1 << 20;
        const value = new Uint8Array(n).fill(0x62);
        const chunk = concatBytes([enc.encode(`${n.toString(16)}\r\n`), value, enc.encode("\r\n")]);
        const res = await fetch(c.url + key, {
          method: "PUT",
          headers: awsChunkedHeaders(n),
          body: chunk,
        });
        const text = await res.text();
        assertEquals(res.status, 400);
        assert(text.includes("<Code>IncompleteBody</Code>"), text);
        assert(await listed(c.url, "unlinked", key), "still unlinked");
        assertEquals(await status(c.url + key, { method: "RELINK" }), 204);
        const head = await fetch(c.url + key, { method: "HEAD", redirect: "manual" });
        assertEquals(head.headers.get("content-md5"), md5);
        assertEquals(new Uint8Array(await (await fetch(c.url + key)).arrayBuffer()), old);
      },
    );

    await t.step(
      "a chunked PUT over an unlinked key with an empty body answers 411 and keeps the value",
      async () => {
        const key = randomKey("/unlinked-empty");
        assertEquals(await status(c.url + key, { method: "PUT", body: "keep me too" }), 201);
        assertEquals(await status(c.url + key, { method: "UNLINK" }), 204);
        const empty = new ReadableStream<Uint8Array>({ start: (ctl) => ctl.close() });
        const res = await fetch(c.url + key, { method: "PUT", body: empty });
        assertEquals([res.status, await res.text()], [411, "A value must not be empty\n"]);
        assert(await listed(c.url, "unlinked", key), "still unlinked");
        assertEquals(await status(c.url + key, { method: "RELINK" }), 204);
        assertEquals(await (await fetch(c.url + key)).text(), "keep me too");
      },
    );
  } finally {
    await c.stop();
  }
});
