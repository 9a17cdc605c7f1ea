// More connections than the master's open-files limit (ulimit -n): idle
// keep-alive clients, a burst. Deno 2.9.6's Deno.serve ends its accept loop
// at the first accept() that fails with EMFILE ("Too many open files (os
// error 24)"), closing its listener; the master exited with that message
// and never served again. It now listens again (lib/serving.ts).
// `deno task test:faults`.
import { Cluster, randomKey, status, waitUp } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";

/** The master's open-files limit in these tests: its own use is ~40. */
const LIMIT = 128;

/** Sets process `pid`'s open-files limit (the soft one: it may be raised back) to `n`. */
async function limitOpenFiles(pid: number, n: number): Promise<void> {
  const out = await new Deno.Command("prlimit", {
    args: ["--pid", String(pid), `--nofile=${n}:`],
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
}

/**
 * Reads `stderr`'s lines until one matches `re`: that line; null when the
 * stream ends first (the process exited).
 */
async function lineMatching(
  stderr: ReadableStream<string>,
  re: RegExp,
): Promise<string | null> {
  let rest = "";
  // Not cancelled on return: that would wait for the master's next write.
  for await (const text of stderr.values({ preventCancel: true })) {
    const lines = (rest + text).split("\n");
    rest = lines.pop()!;
    const hit = lines.find((l) => re.test(l));
    if (hit) return hit;
  }
  return null;
}

/**
 * Connects `n` clients that send nothing (the kernel's backlog takes those
 * not accepted yet); those refused, or reset from the backlog of a
 * listener that closed (the master stopped taking connections), are not kept.
 */
async function idleClients(port: number, n: number): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < n; i++) {
    try {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    } catch (err) {
      if (
        !(err instanceof Deno.errors.ConnectionRefused ||
          err instanceof Deno.errors.ConnectionReset)
      ) {
        throw err;
      }
    }
  }
  return conns;
}

const STOPPED = /stopped taking connections on :\d+ \(.*Too many open files/;

Deno.test("a master whose connections use up ulimit -n takes connections again once they close", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const m = await c.spawnMaster([], {}, { stderr: "piped" });
  const stderr = m.proc.stderr.pipeThrough(new TextDecoderStream());
  try {
    await limitOpenFiles(m.proc.pid, LIMIT);
    const port = Number(new URL(m.url).port);
    const idle = await idleClients(port, 2 * LIMIT);
    const line = await lineMatching(stderr, STOPPED);
    if (line === null) throw new Error(`The master exited: ${JSON.stringify(await m.proc.status)}`);
    assert(line.includes("ulimit -n"), line);
    for (const conn of idle) conn.close();
    await waitUp(`${m.url}/?list&limit=1`, { proc: m.proc });
    const k = randomKey();
    assertEquals(await status(m.url + k, { method: "PUT", body: "hello" }), 201);
    assertEquals(await status(m.url + k), 302);
  } finally {
    await m.stop();
    await c.stop();
  }
});

Deno.test("a PUT whose body is on its way when the master runs out of file descriptors is stored", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const m = await c.spawnMaster([], {}, { stderr: "piped" });
  const stderr = m.proc.stderr.pipeThrough(new TextDecoderStream());
  try {
    await limitOpenFiles(m.proc.pid, LIMIT);
    const port = Number(new URL(m.url).port);
    const k = randomKey();
    const put = await Deno.connect({ hostname: "127.0.0.1", port });
    await put.write(
      encoder.encode(`PUT ${k} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello`),
    );
    // The request has reached the handler: its key is being written.
    await keyWriting(m.url, k);
    const idle = await idleClients(port, 2 * LIMIT);
    assert(await lineMatching(stderr, STOPPED) !== null, "the master exited");
    await put.write(encoder.encode("world"));
    assertEquals(await statusLine(put), "HTTP/1.1 201 Created");
    put.close();
    for (const conn of idle) conn.close();
    await waitUp(`${m.url}/?list&limit=1`, { proc: m.proc });
    assertEquals(await (await fetch(m.url + k)).text(), "helloworld");
  } finally {
    await m.stop();
    await c.stop();
  }
});

const encoder = new TextEncoder();

/** Waits until `key` is listed by ?writing: a PUT of it is under way. */
async function keyWriting(url: string, key: string): Promise<void> {
  while (true) {
    const { keys } = await (await fetch(`${url}/?writing`)).json() as { keys: string[] };
    if (keys.includes(key)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The status line of the answer read from `conn`. */
async function statusLine(conn: Deno.TcpConn): Promise<string> {
  return (await answer(conn)).status;
}

/** The answer read from `conn` (kept alive): its status line and body (by its Content-Length). */
async function answer(conn: Deno.TcpConn): Promise<{ status: string; body: string }> {
  const buf = new Uint8Array(65536);
  let text = "";
  const more = async () => {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`Connection closed after ${JSON.stringify(text)}`);
    text += new TextDecoder().decode(buf.subarray(0, n));
  };
  while (!text.includes("\r\n\r\n")) await more();
  const end = text.indexOf("\r\n\r\n") + 4;
  const length = Number(text.slice(0, end).match(/\r\ncontent-length: *(\d+)/i)?.[1] ?? 0);
  while (text.length < end + length) await more();
  return { status: text.slice(0, text.indexOf("\r\n")), body: text.slice(end, end + length) };
}

/**
 * Sets process `pid`'s open-files limit to its lowest free descriptor:
 * every descriptor it opens from then on fails (EMFILE) until one below
 * closes. Returns the limit it had.
 */
async function useUpOpenFiles(pid: number): Promise<number> {
  const limits = await Deno.readTextFile(`/proc/${pid}/limits`);
  const had = Number(limits.match(/^Max open files +(\d+)/m)![1]);
  const used = new Set<number>();
  for await (const e of Deno.readDir(`/proc/${pid}/fd`)) used.add(Number(e.name));
  let free = 0;
  while (used.has(free)) free++;
  await limitOpenFiles(pid, free);
  return had;
}

/** Sends `request` (head and body) on `conn`: its answer. */
async function exchange(conn: Deno.TcpConn, request: string) {
  let bytes = encoder.encode(request);
  while (bytes.length > 0) bytes = bytes.subarray(await conn.write(bytes));
  return await answer(conn);
}

Deno.test("a volume call the master has no file descriptor for fails saying so and leaves the volume up", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const m = await c.spawnMaster();
  const port = Number(new URL(m.url).port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  // Past the master's small writes (one pooled call per replica): an upload on a connection of its own.
  const value = "v".repeat(300_000);
  const put = (k: string) =>
    exchange(
      conn,
      `PUT ${k} HTTP/1.1\r\nHost: x\r\nContent-Length: ${value.length}\r\n\r\n${value}`,
    );
  try {
    assertEquals((await put(randomKey())).status, "HTTP/1.1 201 Created");
    const had = await useUpOpenFiles(m.proc.pid);
    const k = randomKey();
    const failed = await put(k);
    assertEquals(failed.status, "HTTP/1.1 500 Internal Server Error");
    assert(
      failed.body.includes("this process has no file descriptor left, ulimit -n"),
      failed.body,
    );
    const page = await exchange(
      conn,
      "GET /?status HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n",
    );
    const { volumes } = JSON.parse(page.body) as { volumes: { volume: string; up: boolean }[] };
    assertEquals(volumes.map((v) => [v.volume, v.up]), [[c.volumes[0], true]]);
    await limitOpenFiles(m.proc.pid, had);
    assertEquals((await put(k)).status, "HTTP/1.1 201 Created");
  } finally {
    conn.close();
    await m.stop();
    await c.stop();
  }
});

/** Why a GET answers 503 when this master had no descriptor to ask the key's replicas with. */
const UNASKED = "This master has no file descriptor left (ulimit -n) to ask some replicas of " +
  "the key, and none it asked has its file: that says nothing of its volumes, retry once it has";

Deno.test("a GET the master has no file descriptor to ask the key's replicas with answers 503 saying so", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const m = await c.spawnMaster();
  const port = Number(new URL(m.url).port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const get = (k: string) => exchange(conn, `GET ${k} HTTP/1.1\r\nHost: x\r\n\r\n`);
  try {
    const k = randomKey();
    const put = await exchange(
      conn,
      `PUT ${k} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello`,
    );
    assertEquals(put.status, "HTTP/1.1 201 Created");
    // The GET's HEAD must need a connection of its own: the volume's
    // restart closes those the master keeps (the start-up's name check
    // leaves one to the volume open, which a HEAD would take).
    await c.stopVolume(0);
    await c.startVolume(0);
    const had = await useUpOpenFiles(m.proc.pid);
    assertEquals(await get(k), {
      status: "HTTP/1.1 503 Service Unavailable",
      body: UNASKED + "\n",
    });
    await limitOpenFiles(m.proc.pid, had);
    assertEquals((await get(k)).status, "HTTP/1.1 302 Found");
  } finally {
    conn.close();
    await m.stop();
    await c.stop();
  }
});
