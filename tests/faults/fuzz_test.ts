// Hostile input: thousands of malformed requests over raw sockets. The
// master never crashes, answers each with a non-5xx status (the volumes are
// healthy), keeps its memory flat, and answers correctly afterwards.
import { Cluster, randomKey } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function pick<T>(xs: readonly T[]): T {
  return xs[Math.floor(Math.random() * xs.length)];
}

function junk(n: number, alphabet: string): string {
  let s = "";
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(Math.random() * alphabet.length)];
  return s;
}

const METHODS = [
  "GET",
  "HEAD",
  "PUT",
  "DELETE",
  "UNLINK",
  "RELINK",
  "REBALANCE",
  "PATCH",
  "POST",
  "OPTIONS",
  "TRACE",
  "FOO",
  "get",
  "G=T",
];
const PATH_CHARS = "abcXYZ019/._-~!$&'()*+,;=:@";
const QUERIES = [
  "",
  "?list",
  "?unlinked",
  "?writing",
  "?list&limit=",
  "?list&limit=-1",
  "?list&limit=99999999999",
  "?list&limit=ten",
  "?list&start=%zz",
  "?list&start=" + "x".repeat(3000),
  "?bogus",
  "?",
  "?&&&",
  "?list=1",
  "?%zz",
];

/** One malformed (or now and then valid) request, as raw bytes. */
function request(): { bytes: Uint8Array; dropAfter?: number } {
  const method = pick(METHODS);
  let path = "/fuzz/" + junk(Math.floor(Math.random() * 40), PATH_CHARS);
  if (Math.random() < 0.1) path += "%" + junk(2, "0123456789abcdefgxyz%");
  if (Math.random() < 0.05) path = "/" + "p".repeat(3000 + Math.floor(Math.random() * 5000));
  if (Math.random() < 0.05) path = "/../../etc/passwd";
  const query = Math.random() < 0.5 ? "" : pick(QUERIES);
  const headers = [`Host: 127.0.0.1`, `Connection: close`];
  if (Math.random() < 0.2) headers.push(`X-${junk(5, "abc")}: ${junk(20, "abc xyz;=")}`);
  if (Math.random() < 0.03) headers.push(`X-Huge: ${"h".repeat(70_000)}`);
  let body = "";
  let dropAfter: number | undefined;
  const shape = Math.random();
  if (shape < 0.3) {
    body = junk(Math.floor(Math.random() * 2000), "abcdef0123");
    headers.push(`Content-Length: ${body.length}`);
  } else if (shape < 0.4) {
    // Promises more than it sends, then hangs up.
    body = junk(100, "abc");
    headers.push(`Content-Length: ${body.length + 5000}`);
    dropAfter = 1;
  } else if (shape < 0.45) {
    headers.push("Transfer-Encoding: chunked");
    body = pick(["zz\r\nbad\r\n", "5\r\nabc\r\n0\r\n\r\n", "3\r\nabc\r\n", "0\r\n\r\n"]);
  } else if (shape < 0.5) {
    headers.push(`Content-Length: ${pick(["-1", "abc", "1e9", "99999999999999999999"])}`);
  }
  const text = `${method} ${path}${query} HTTP/1.1\r\n${headers.join("\r\n")}\r\n\r\n${body}`;
  return { bytes: enc.encode(text), dropAfter };
}

/** Sends one request; the status, or 0 when the connection closed with none. */
async function send(port: number, r: { bytes: Uint8Array; dropAfter?: number }): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 5000);
  try {
    await conn.write(r.bytes).catch(() => {});
    if (r.dropAfter !== undefined) return 0;
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf).catch(() => null);
    if (n === null) return 0;
    const head = dec.decode(buf.subarray(0, n));
    return Number(head.slice(9, 12)) || 0;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

async function rssMiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function roundTrip(c: Cluster) {
  const key = randomKey();
  const put = await fetch(c.url + key, { method: "PUT", body: "still right" });
  await put.body?.cancel();
  assertEquals(put.status, 201);
  assertEquals(await (await fetch(c.url + key)).text(), "still right");
}

Deno.test("thousands of malformed requests: no crash, no 5xx, flat memory, right answers after", async () => {
  const c = await Cluster.start();
  try {
    const pid = c.masterProcess!.pid;
    const statuses = new Map<number, number>();
    const fuzz = async (n: number) => {
      await Promise.all(Array.from({ length: 8 }, async () => {
        for (let i = 0; i < n / 8; i++) {
          const s = await send(c.masterPort, request());
          statuses.set(s, (statuses.get(s) ?? 0) + 1);
        }
      }));
    };
    await fuzz(1000); // warm-up: caches and pools reach their working size
    const before = await rssMiB(pid);
    await fuzz(3000);
    const after = await rssMiB(pid);
    await roundTrip(c);
    console.log(
      "statuses",
      JSON.stringify([...statuses].sort()),
      "rss",
      before.toFixed(1),
      after.toFixed(1),
    );
    const fives = [...statuses].filter(([s]) => s >= 500);
    assertEquals(fives, [], `5xx answers: ${JSON.stringify([...statuses])}`);
    assert(after - before < 64, `memory grew ${before.toFixed(0)} -> ${after.toFixed(0)} MiB`);
    // The process is the same one: it never crashed.
    assertEquals(c.masterProcess!.pid, pid);
    const alive = await fetch(`${c.url}/?list&limit=1`);
    await alive.body?.cancel();
    assertEquals(alive.status, 200);
  } finally {
    await c.stop();
  }
});
