// What the master can and cannot do about a request's head, as a raw client
// sees it: a PUT with "Expect: 100-continue" that the master refuses is
// answered without a byte of its body (after the "100 Continue" Deno's
// server sends by itself), and a head over Deno's limits gets Deno's bare
// 400 (README, Keys).
import { Cluster, randomKey, status } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";

const enc = new TextEncoder();

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array) {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/**
 * Sends `head` (and no body) and reads until a final answer is whole (its
 * Content-Length read) or the connection ends; returns all that came.
 */
async function sendHead(port: number, head: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let text = "";
  const buf = new Uint8Array(65536);
  const dec = new TextDecoder();
  try {
    await writeAll(conn, enc.encode(head));
    while (!finalAnswerWhole(text)) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n));
    }
  } finally {
    conn.close();
  }
  return text;
}

/** True once `text` holds a final (not 1xx) answer's head and its whole body. */
function finalAnswerWhole(text: string): boolean {
  const interim = /^(HTTP\/1\.1 1\d\d [^\r]*\r\n\r\n)*/.exec(text)![0].length;
  const rest = text.slice(interim);
  const end = rest.indexOf("\r\n\r\n");
  const length = /\r\ncontent-length: *(\d+)/i.exec(rest.slice(0, end));
  return end >= 0 && length !== null && rest.length >= end + 4 + Number(length[1]);
}

/** A PUT's head announcing 8 MiB with Expect: 100-continue. */
function expectingPut(path: string): string {
  return `PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${8 << 20}\r\n` +
    "Expect: 100-continue\r\n\r\n";
}

/** The status line and body of the final answer in `text`, after the interim ones. */
function finalAnswer(text: string): { interim: string[]; status: string; body: string } {
  const parts = text.split("\r\n\r\n");
  const interim = parts.filter((p, i) => i < parts.length - 1 && / 1\d\d /.test(p.slice(8, 13)));
  const head = parts[interim.length];
  return {
    interim,
    status: head.split("\r\n")[0],
    body: parts.slice(interim.length + 1).join("\r\n\r\n"),
  };
}

async function isWriting(url: string, key: string): Promise<boolean> {
  const { keys } = await (await fetch(`${url}/?writing`)).json() as { keys: string[] };
  return keys.includes(key);
}

Deno.test("Expect: 100-continue: a refused PUT is answered whole with none of its body sent", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const held = await Deno.connect({ hostname: "127.0.0.1", port: c.masterPort });
  try {
    const existing = randomKey();
    assertEquals(await status(c.url + existing, { method: "PUT", body: "v" }), 201);
    // A write in flight: a PUT whose body has not ended holds its key.
    const busy = randomKey();
    await writeAll(
      held,
      enc.encode(`PUT ${busy} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc`),
    );
    for (let i = 0; i < 100 && !await isWriting(c.url, busy); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert(await isWriting(c.url, busy), "the first PUT holds its key");
    const cases: [string, string, string][] = [
      [existing, "HTTP/1.1 403 Forbidden", "Key exists (PUT never overwrites)\n"],
      [busy, "HTTP/1.1 409 Conflict", "Another write of this key is in progress\n"],
      [
        "/" + "k".repeat(3000),
        "HTTP/1.1 414 URI Too Long",
        "Key too long for the index (at most 2043 bytes, a zero byte counting twice)\n",
      ],
      [`${randomKey()}/bad%zz`, "HTTP/1.1 400 Bad Request", "Broken percent-escape at byte"],
    ];
    for (const [path, statusLine, body] of cases) {
      const answer = finalAnswer(await sendHead(c.masterPort, expectingPut(path)));
      // Deno's server says "100 Continue" as soon as it has read the head,
      // before the master sees the request (README, API): the client may
      // start sending, and stops once it reads the refusal.
      assertEquals(answer.interim, ["HTTP/1.1 100 Continue"], path);
      assertEquals(answer.status, statusLine, path);
      assert(answer.body.startsWith(body), `${path}: ${answer.body}`);
    }
  } finally {
    held.close();
    await c.stop();
  }
});

Deno.test("a request head over 64 KiB, or of more than 128 fields, gets Deno's bare 400", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  try {
    const host = "Host: 127.0.0.1\r\n";
    // A key too long for the index but within the head's limit: the master's 414, with its reason.
    const long = await sendHead(c.masterPort, `GET /${"k".repeat(60_000)} HTTP/1.1\r\n${host}\r\n`);
    assertEquals(finalAnswer(long).status, "HTTP/1.1 414 URI Too Long");
    assertEquals(
      finalAnswer(long).body,
      "Key too long for the index (at most 2043 bytes, a zero byte counting twice)\n",
    );
    const heads = [
      `GET /${"k".repeat(70_000)} HTTP/1.1\r\n${host}\r\n`,
      `GET /k HTTP/1.1\r\n${host}X-Big: ${"v".repeat(70_000)}\r\n\r\n`,
      `GET /k HTTP/1.1\r\n${host}${
        Array.from({ length: 128 }, (_, i) => `X-H${i}: v\r\n`).join("")
      }\r\n`,
    ];
    for (const head of heads) {
      const answer = finalAnswer(await sendHead(c.masterPort, head));
      assertEquals([answer.status, answer.body], ["HTTP/1.1 400 Bad Request", ""]);
    }
    // 127 fields besides Host are still read.
    const fields = Array.from({ length: 127 }, (_, i) => `X-H${i}: v\r\n`).join("");
    const ok = await sendHead(c.masterPort, `GET ${randomKey()} HTTP/1.1\r\n${host}${fields}\r\n`);
    assertEquals(finalAnswer(ok).status, "HTTP/1.1 404 Not Found");
  } finally {
    await c.stop();
  }
});
