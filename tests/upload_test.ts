// Streamed request bodies (lib/http1.ts Upload, what a large PUT's replica
// writes go through) against raw TCP servers: the exact bytes sent, an
// answer before the body's end, a server that stops reading, an abort.
import { EarlyAnswer, Http1Pool, TimeoutError, Upload } from "../lib/http1.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { concatBytes } from "./cluster.ts";
import { openPut, VolumeError } from "../lib/volumes.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What one connection has sent, as text. */
interface Log {
  text: string;
}

/** A server that hands each connection, and its log, to `serve`. */
function server(serve: (conn: Deno.Conn, log: Log) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const logs: Log[] = [];
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const log = { text: "" };
      logs.push(log);
      serve(conn, log).catch(() => {}).finally(() => conns.delete(conn));
    }
  })().catch(() => {});
  const host = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  return {
    host,
    pool: new Http1Pool(host),
    logs,
    close() {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

/** Reads into the log until `done(text)` holds, or the connection ends. */
async function readUntil(conn: Deno.Conn, log: Log, done: (text: string) => boolean) {
  const buf = new Uint8Array(65536);
  while (!done(log.text)) {
    const n = await conn.read(buf);
    if (n === null) return;
    log.text += dec.decode(buf.subarray(0, n), { stream: true });
  }
}

const CREATED = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";

Deno.test("upload: a body of known length goes out with its Content-Length, byte for byte", async () => {
  const s = server(async (conn, log) => {
    await readUntil(conn, log, (t) => t.endsWith("defgh"));
    await conn.write(enc.encode(CREATED));
  });
  try {
    const up = await s.pool.upload("PUT", "/ab/cd/a2V5", { length: 8, timeout: 2000 });
    await up.write(enc.encode("abc"));
    assertEquals(up.sentAll, false);
    const last = up.write(enc.encode("defgh"));
    assertEquals(up.sentAll, true, "its write in flight may already have reached the server whole");
    await last;
    const res = await up.finish();
    assertEquals(res.status, 201);
    assertEquals(
      s.logs[0].text,
      `PUT /ab/cd/a2V5 HTTP/1.1\r\nHost: ${s.pool.host}\r\nContent-Length: 8\r\n\r\nabcdefgh`,
    );
    assertEquals(s.pool.idle, 1, "the connection went back to the pool");
  } finally {
    s.close();
  }
});

Deno.test("upload: a body of unknown length goes out chunked, each chunk framed", async () => {
  const s = server(async (conn, log) => {
    await readUntil(conn, log, (t) => t.endsWith("0\r\n\r\n"));
    await conn.write(enc.encode("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"));
  });
  try {
    const up = await s.pool.upload("PUT", "/k", { length: null, timeout: 2000 });
    await up.write(enc.encode("0123456789abcdefX"));
    await up.write(new Uint8Array(0)); // nothing: an empty chunk would end the body
    await up.write(enc.encode("y"));
    assertEquals((await up.finish()).status, 204);
    assertEquals(
      s.logs[0].text,
      `PUT /k HTTP/1.1\r\nHost: ${s.pool.host}\r\nTransfer-Encoding: chunked\r\n\r\n` +
        "11\r\n0123456789abcdefX\r\n1\r\ny\r\n0\r\n\r\n",
    );
    assertEquals(s.pool.idle, 0, "Connection: close is not pooled");
  } finally {
    s.close();
  }
});

Deno.test("upload: an answer before the body's end fails the next write with its status", async () => {
  const s = server(async (conn, log) => {
    await readUntil(conn, log, (t) => t.includes("\r\n\r\n"));
    await conn.write(
      enc.encode("HTTP/1.1 507 Insufficient Storage\r\nContent-Length: 4\r\n\r\nfull"),
    );
    // As nginx's lingering close: the rest of the body is read and dropped.
    await readUntil(conn, { text: "" }, () => false);
  });
  try {
    const up = await s.pool.upload("PUT", "/k", { length: 1 << 30, timeout: 2000 });
    const chunk = new Uint8Array(65536);
    const err = await assertRejects(async () => {
      for (let i = 0; i < 1000; i++) {
        await up.write(chunk);
        await new Promise((r) => setTimeout(r, 1));
      }
    });
    assert(err instanceof EarlyAnswer, String(err));
    assertEquals(err.status, 507);
    assertEquals(err.message, "status 507 before the body's end");
  } finally {
    s.close();
  }
});

/**
 * A server that answers 500 once a body has sent "abcde", and reads on;
 * `answerSeen` resolves once it has answered, and a moment more for the
 * answer to reach the upload.
 */
function answeringAtFive() {
  const answered = Promise.withResolvers<void>();
  const s = server(async (conn, log) => {
    await readUntil(conn, log, (t) => t.endsWith("abcde"));
    await conn.write(enc.encode("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"));
    answered.resolve();
    await readUntil(conn, { text: "" }, () => false);
  });
  const answerSeen = async () => {
    await answered.promise;
    // The answer reaching the upload's pending read is no event a test can await.
    await new Promise((r) => setTimeout(r, 100));
  };
  return { s, answerSeen };
}

// An answer seen as the last chunk was about to go out was taken for a body
// sent whole and unanswered: the key was then held from writers for -lease
// (a retried PUT answered 409, verify skipped the key) though the volume
// had answered and stored nothing.
Deno.test("upload: an answer before the last chunk went out leaves nothing sent whole to wait for", async () => {
  const { s, answerSeen } = answeringAtFive();
  try {
    const up = await s.pool.upload("PUT", "/k", { length: 10, timeout: 2000 });
    await up.write(enc.encode("abcde"));
    await answerSeen();
    const err = await assertRejects(() => up.write(enc.encode("fghij")));
    assert(err instanceof EarlyAnswer, String(err));
    assertEquals(err.status, 500);
    assertEquals(up.sentAll, false);
  } finally {
    s.close();
  }
});

Deno.test("openPut: a volume that answered before the last chunk went out is no PUT unanswered", async () => {
  const { s, answerSeen } = answeringAtFive();
  try {
    const signal = new AbortController().signal;
    const put = await openPut(`http://${s.host}/k`, { length: 10, signal, stall: 2000 });
    await put.write(enc.encode("abcde"));
    await answerSeen();
    const err = await assertRejects(() => put.write(enc.encode("fghij")));
    assertEquals((err as VolumeError).status, 500);
    await put.cancel();
    assertEquals(put.unanswered, false);
  } finally {
    s.close();
  }
});

Deno.test("upload: a server that stops reading fails the write once its time is up", async () => {
  let accepted = 0;
  const s = server(async (conn, log) => {
    accepted++;
    await readUntil(conn, log, (t) => t.includes("\r\n\r\n"));
    await new Promise(() => {}); // reads nothing more: the buffers fill, the write hangs
  });
  try {
    const up = await s.pool.upload("PUT", "/k", { length: 1 << 30, timeout: 300 });
    const chunk = new Uint8Array(1 << 20);
    const started = performance.now();
    const err = await assertRejects(async () => {
      for (let i = 0; i < 1024; i++) await up.write(chunk);
    });
    assert(err instanceof TimeoutError, String(err));
    assertEquals(err.message, "timed out after 300ms");
    assert(performance.now() - started < 5000, "gave up within a few timeouts");
    assertEquals([accepted, s.pool.idle], [1, 0]);
  } finally {
    s.close();
  }
});

Deno.test("upload: time spent between writes (waiting on the client) is not a stall", async () => {
  const s = server(async (conn, log) => {
    await readUntil(conn, log, (t) => t.endsWith("ab"));
    await conn.write(enc.encode(CREATED));
  });
  try {
    const up = await s.pool.upload("PUT", "/k", { length: 2, timeout: 100 });
    await up.write(enc.encode("a"));
    await new Promise((r) => setTimeout(r, 300));
    await up.write(enc.encode("b"));
    assertEquals((await up.finish()).status, 201);
  } finally {
    s.close();
  }
});

Deno.test("upload: an abort mid-body rejects the blocked write with its reason and closes", async () => {
  let closed = false;
  const s = server(async (conn, log) => {
    await readUntil(conn, log, (t) => t.includes("\r\n\r\n"));
    await new Promise((r) => setTimeout(r, 200));
    // After the abort the client's side is gone: reading ends (or resets).
    await readUntil(conn, { text: "" }, () => false).catch(() => {});
    closed = true;
  });
  try {
    const ac = new AbortController();
    const up = await s.pool.upload("PUT", "/k", {
      length: 1 << 30,
      timeout: 10_000,
      signal: ac.signal,
    });
    const reason = new Error("client gone");
    setTimeout(() => ac.abort(reason), 50);
    const err = await assertRejects(async () => {
      for (let i = 0; i < 1024; i++) await up.write(new Uint8Array(1 << 20));
    });
    assertEquals(err, reason);
    for (let i = 0; i < 100 && !closed; i++) await new Promise((r) => setTimeout(r, 20));
    assert(closed, "the server saw the connection end");
    assertEquals(s.pool.idle, 0);
  } finally {
    s.close();
  }
});

Deno.test("upload: an abort after the whole body went out keeps the connection for the answer", async () => {
  const s = server(async (conn, log) => {
    await readUntil(conn, log, (t) => t.endsWith("whole"));
    await new Promise((r) => setTimeout(r, 100)); // storing the file
    await conn.write(enc.encode(CREATED));
  });
  try {
    const ac = new AbortController();
    const up = await s.pool.upload("PUT", "/k", { length: 5, timeout: 2000, signal: ac.signal });
    await up.write(enc.encode("whole"));
    ac.abort(new Error("client gone"));
    // The volume may be placing the file: its answer still says whether it did.
    assertEquals((await up.finish()).status, 201);
  } finally {
    s.close();
  }
});

/**
 * A connection that takes every write at once, noting the memory each came
 * in, and never answers.
 */
function recordingConn() {
  const writes: { buffer: ArrayBufferLike; bytes: Uint8Array }[] = [];
  const conn = {
    write(b: Uint8Array) {
      writes.push({ buffer: b.buffer, bytes: b.slice() });
      return Promise.resolve(b.length);
    },
    read: () => new Promise<number | null>(() => {}),
    setNoDelay() {},
    close() {},
  };
  return { conn: conn as unknown as Deno.TcpConn, writes };
}

// A new array per chunk made the master's peak memory grow with the body's
// chunks (a 1 GiB chunked PUT from a file: +112-115 MiB; one buffer, +39).
Deno.test("upload: a chunked body is framed in one buffer the upload reuses, chunk after chunk", async () => {
  const { conn, writes } = recordingConn();
  const up = new Upload(conn, { length: null, timeout: 2000 }, () => {});
  try {
    const chunks = [65524, 65524, 100, 65524, 70000, 65524, 1].map((n, i) =>
      new Uint8Array(n).fill(i + 1)
    );
    for (const c of chunks) await up.write(c);
    const expected = chunks.map((
      c,
    ) => [enc.encode(`${c.length.toString(16)}\r\n`), c, enc.encode("\r\n")]);
    assertEquals(writes.map((w) => w.bytes), expected.map((parts) => concatBytes(parts)));
    // One buffer for the first chunks, one more once a chunk outgrew it.
    assertEquals(new Set(writes.map((w) => w.buffer)).size, 2);
  } finally {
    up.close();
  }
});

// store.ts cancels every replica's PUT when one fails: one whose last chunk
// is still being written has sent all of its body, so its answer is waited
// for. That write settling after the wait began took the wait's time bound
// away (its deadline was reset to none, as between chunks): a volume that
// never answered held the client's PUT for good.
Deno.test("openPut: cancelled while its last chunk is written, a PUT the volume never answers gives up after its stall time", async () => {
  const s = server(async (conn, log) => {
    await readUntil(conn, log, (t) => t.endsWith("whole"));
    await new Promise(() => {}); // never answers
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const signal = new AbortController().signal;
    const put = await openPut(`http://${s.host}/k`, { length: 5, signal, stall: 200 });
    const last = put.write(enc.encode("whole"));
    const cancelled = put.cancel();
    await last;
    const stuck = new Promise((r) => timer = setTimeout(() => r("still waiting"), 5000));
    assertEquals(await Promise.race([cancelled.then(() => "given up"), stuck]), "given up");
    assertEquals(put.unanswered, true);
  } finally {
    clearTimeout(timer);
    s.close();
  }
});

Deno.test("upload: an interim answer (100 Continue) is no early answer: the body goes on, the answer after it is read", async () => {
  const s = server(async (conn, log) => {
    await readUntil(conn, log, (t) => t.includes("\r\n\r\n"));
    await conn.write(enc.encode("HTTP/1.1 100 Continue\r\n\r\n"));
    await readUntil(conn, log, (t) => t.endsWith("abcdef"));
    await conn.write(enc.encode(CREATED));
  });
  try {
    const up = await s.pool.upload("PUT", "/k", { length: 6, timeout: 2000 });
    await up.write(enc.encode("abc"));
    // The 100 has come before the next write (no event to await).
    await new Promise((r) => setTimeout(r, 50));
    await up.write(enc.encode("def"));
    assertEquals((await up.finish()).status, 201);
  } finally {
    s.close();
  }
});
