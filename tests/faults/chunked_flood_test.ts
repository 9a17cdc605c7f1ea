// A chunked PUT whose client is far ahead of the master, as `cat big | curl
// -T -` is: Deno's HTTP/1.1 server then hands the body out of its own
// buffer, every read ready at once, and the master must still poll its
// sockets meanwhile (lib/request_body.ts): before, its probes of the
// volumes went unread past -voltimeout and it took every volume for down.
// By the request's framing, not the value's: an S3 upload in aws-chunked
// whose decoded length is known starved it the same way until session 22.
// `deno task test:faults`.
import { createHash } from "node:crypto";
import { Cluster, randomKey } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { awsChunkedHeaders } from "../s3_client.ts";
import { memory, resetPeak } from "../../tools/bench.ts";

const SIZE = 256 * 1024 * 1024;

/**
 * PUTs SIZE zero bytes chunked from a pipe, `head -c | curl -T -` (a client
 * of the test's own was not far enough ahead of the master to show it): the
 * answer's status.
 */
async function pipedPut(url: string, size = SIZE): Promise<number> {
  return await curlFromPipe(`head -c ${size} /dev/zero`, url, []);
}

/** `source | curl -T - url` with `headers`: the answer's status. */
async function curlFromPipe(source: string, url: string, headers: string[]): Promise<number> {
  const h = headers.map((x) => `-H '${x}'`).join(" ");
  const out = await new Deno.Command("sh", {
    args: ["-c", `${source} | curl -s -o /dev/null -w '%{http_code}' ${h} -T - '${url}'`],
  }).output();
  return Number(new TextDecoder().decode(out.stdout));
}

/**
 * The same from an S3 client: SIZE zero bytes in aws-chunked framing (64 KiB
 * chunks, unsigned), sent chunked from a pipe, so that its length is known
 * (x-amz-decoded-content-length) while its HTTP framing is Deno's chunked one.
 */
async function pipedAwsChunkedPut(url: string, file: string): Promise<number> {
  const CHUNK = 65536;
  const frame = new TextEncoder().encode(`${CHUNK.toString(16)}\r\n`);
  const chunk = new Uint8Array(frame.length + CHUNK + 2);
  chunk.set(frame);
  chunk.set([13, 10], frame.length + CHUNK);
  const out = await Deno.open(file, { write: true, truncate: true });
  for (let n = 0; n < SIZE; n += CHUNK) await out.write(chunk);
  await out.write(new TextEncoder().encode("0\r\n\r\n"));
  out.close();
  const headers = Object.entries(awsChunkedHeaders(SIZE)).map(([k, v]) => `${k}: ${v}`);
  return await curlFromPipe(`cat '${file}'`, url, headers);
}

/** What the master wrote to stderr that says a volume is down. */
async function downLines(stderr: Promise<string>): Promise<string[]> {
  return (await stderr).split("\n").filter((l) => / down: /.test(l));
}

/** The size and MD5 of what GET `url` reads, and those of `size` zero bytes. */
async function readBack(url: string, size = SIZE) {
  const got = createHash("md5"), want = createHash("md5");
  let n = 0;
  for await (const chunk of (await fetch(url)).body!) {
    got.update(chunk);
    n += chunk.length;
  }
  for (let left = size; left > 0; left -= Math.min(left, 1 << 20)) {
    want.update(new Uint8Array(Math.min(left, 1 << 20)));
  }
  return [{ size: n, md5: got.digest("hex") }, { size, md5: want.digest("hex") }];
}

Deno.test("a chunked PUT from a client far ahead of the master leaves its probes hearing every volume", async () => {
  const c = await Cluster.start({ volumes: 3 });
  const m = await c.spawnMaster(["-voltimeout", "300ms"], {}, { stderr: "piped" });
  const stderr = new Response(m.proc.stderr).text();
  try {
    const k = randomKey();
    assertEquals(await pipedPut(m.url + k), 201);
    const [got, want] = await readBack(m.url + k);
    assertEquals(got, want);
    await m.stop();
    assertEquals(await downLines(stderr), []);
  } finally {
    await m.stop();
    await c.stop();
  }
});

Deno.test("an S3 PUT sent chunked from a pipe, aws-chunked inside, leaves its probes hearing every volume", async () => {
  const c = await Cluster.start({ volumes: 3 });
  const m = await c.spawnMaster(["-s3", "-voltimeout", "300ms"], {}, { stderr: "piped" });
  const stderr = new Response(m.proc.stderr).text();
  const file = await Deno.makeTempFile({ dir: c.dir });
  try {
    const k = randomKey();
    assertEquals(await pipedAwsChunkedPut(m.url + k, file), 200);
    const [got, want] = await readBack(m.url + k);
    assertEquals(got, want);
    await m.stop();
    assertEquals(await downLines(stderr), []);
  } finally {
    await Deno.remove(file);
    await m.stop();
    await c.stop();
  }
});

// Reads of 64 KiB let Deno's buffer grow by each chunk curl sends short of
// it, for the whole body: +137 to +288 MiB for 1 GiB before session 22
// (lib/request_body.ts). The bound holds for any value's size.
Deno.test("a 1 GiB chunked PUT from a pipe grows the master's peak memory by under 64 MiB", async () => {
  const c = await Cluster.start({ volumes: 3 });
  try {
    const pid = c.masterProcess!.pid;
    const k = randomKey();
    await resetPeak(pid);
    const before = await memory(pid);
    assertEquals(await pipedPut(c.url + k, 1 << 30), 201);
    const after = await memory(pid);
    const grew = (after.hwm - before.rss) / 1024;
    assert(grew < 64, `peak memory grew by ${grew.toFixed(0)} MiB, from ${before.rss >> 10} MiB`);
    const [got, want] = await readBack(c.url + k, 1 << 30);
    assertEquals(got, want);
  } finally {
    await c.stop();
  }
});
