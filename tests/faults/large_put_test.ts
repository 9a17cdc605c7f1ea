// A large PUT (streamed to every replica at once, lib/fanout.ts) whose
// volume dies or hangs half-way: the client gets a 500 naming that volume
// in bounded time, no live key is left, no replica keeps a file, and no
// other volume is blamed. `deno task test:faults`.
import { Cluster, randomBytes, randomKey, status, volumeFiles } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";

const enc = new TextEncoder();
const CHUNK = 1 << 20;

/**
 * PUTs `chunks` MiB to the master over a raw connection, a chunk every few
 * ms, with a Content-Length or chunked; after `after` chunks it awaits
 * `midway()`. Stops writing when the master stops reading; returns the
 * answer's status and body.
 */
async function slowPut(
  port: number,
  key: string,
  opts: { chunks: number; known: boolean; after: number; midway: () => Promise<void> },
): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const answer = readAnswer(conn);
  const framing = opts.known
    ? `Content-Length: ${opts.chunks * CHUNK}`
    : "Transfer-Encoding: chunked";
  try {
    await writeAll(
      conn,
      enc.encode(`PUT ${key} HTTP/1.1\r\nHost: 127.0.0.1\r\n${framing}\r\n\r\n`),
    );
    const chunk = randomBytes(CHUNK);
    for (let i = 0; i < opts.chunks; i++) {
      if (i === opts.after) await opts.midway();
      if (!opts.known) await writeAll(conn, enc.encode(`${CHUNK.toString(16)}\r\n`));
      await writeAll(conn, chunk);
      if (!opts.known) await writeAll(conn, enc.encode("\r\n"));
      await new Promise((r) => setTimeout(r, 5));
    }
    if (!opts.known) await writeAll(conn, enc.encode("0\r\n\r\n"));
  } catch {
    // The master answered and closed: the answer says why.
  }
  try {
    return await answer;
  } finally {
    conn.close();
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array) {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/** The first answer on conn: status and body (by Content-Length). */
async function readAnswer(conn: Deno.Conn): Promise<{ status: number; body: string }> {
  let text = "";
  const buf = new Uint8Array(4096);
  while (true) {
    const end = text.indexOf("\r\n\r\n");
    const length = /\r\ncontent-length: *(\d+)/i.exec(text);
    if (end >= 0 && length && text.length >= end + 4 + Number(length[1])) {
      return {
        status: Number(text.slice(9, 12)),
        body: text.slice(end + 4, end + 4 + Number(length[1])),
      };
    }
    const n = await conn.read(buf).catch(() => null);
    if (n === null) throw new Error(`Connection closed before a whole answer: "${text}"`);
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
}

/** Failed put calls per volume, from the master's metrics. */
async function putFailures(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/?metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^mkv_volume_calls_total\{volume="([^"]+)",call="put",outcome="(\w+)"\} (\d+)$/
      .exec(line);
    if (m && m[2] !== "ok") out.set(m[1], (out.get(m[1]) ?? 0) + Number(m[3]));
  }
  return out;
}

async function writing(c: Cluster): Promise<string[]> {
  return (await (await fetch(`${c.url}/?writing`)).json() as { keys: string[] }).keys;
}

async function noFilesLeft(c: Cluster) {
  for (const v of c.volumes) assertEquals(await volumeFiles(v), [], `no file left on ${v}`);
}

Deno.test("a volume killed half-way through a large PUT: 500 naming it, nothing left behind", async () => {
  const c = await Cluster.start();
  try {
    const key = randomKey("/large");
    const res = await slowPut(c.masterPort, key, {
      chunks: 48,
      known: true,
      after: 8,
      midway: () => c.stopVolume(1),
    });
    assertEquals(res.status, 500);
    assert(res.body.startsWith(`Cannot PUT "http://${c.volumes[1]}/`), res.body);
    assertEquals(await status(c.url + key), 404, "no live key");
    assertEquals(await putFailures(c.url), new Map([[c.volumes[1], 1]]), "only it is blamed");
    // Cut off mid-body, it cannot hold a file: the key is not left "writing".
    assertEquals(await writing(c), []);
    await c.startVolume(1);
    await noFilesLeft(c);
    // The key is free: the same PUT now lands, byte for byte.
    const value = randomBytes(3 * CHUNK + 7);
    assertEquals(await status(c.url + key, { method: "PUT", body: value }), 201);
    assertEquals(new Uint8Array(await (await fetch(c.url + key)).arrayBuffer()), value);
  } finally {
    await c.stop();
  }
});

Deno.test("a volume hung half-way through a chunked large PUT: 500 Stalled in bounded time", async () => {
  // -voltimeout 200ms: a transfer stalls after 2 s without progress.
  const c = await Cluster.start({ flags: ["-voltimeout", "200ms"] });
  try {
    const key = randomKey("/large-hung");
    const started = performance.now();
    let paused = false;
    const res = await slowPut(c.masterPort, key, {
      chunks: 64,
      known: false,
      after: 4,
      midway: async () => {
        await c.pauseVolume(2);
        paused = true;
      },
    }).finally(() => paused && c.resumeVolume(2));
    assertEquals(res.status, 500);
    assert(
      res.body.startsWith(`Cannot PUT "http://${c.volumes[2]}/`) &&
        res.body.includes("Stalled: no progress in 2000ms"),
      res.body,
    );
    assert(performance.now() - started < 15_000, "gave up within a few stall times");
    assertEquals(await status(c.url + key), 404, "no live key");
    assertEquals(await putFailures(c.url), new Map([[c.volumes[2], 1]]), "only it is blamed");
    assertEquals(await writing(c), []);
    // Once resumed, nginx sees the cut-off body and drops its temp file.
    for (let i = 0; i < 50 && (await volumeFiles(c.volumes[2])).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await noFilesLeft(c);
  } finally {
    await c.stop();
  }
});
