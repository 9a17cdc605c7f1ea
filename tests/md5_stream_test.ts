// The MD5 of streamed values (lib/md5_stream.ts): worker threads through a
// shared ring for large values, inline otherwise; every digest exact
// however many run at once, and a process using a worker still exits.
import { createHash } from "node:crypto";
import { md5Stream, WORKER_MIN } from "../lib/md5_stream.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

const md5hex = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

/** Feeds `value` in chunks of 1..max bytes, each update awaited when it asks to be. */
async function feed(value: Uint8Array, max: number, length: number | null = null) {
  const h = md5Stream(length);
  for (let at = 0; at < value.length;) {
    const n = Math.min(value.length - at, 1 + Math.floor(Math.random() * max));
    await h.update(value.subarray(at, at + n));
    at += n;
  }
  return await h.digest();
}

Deno.test("six large values hashed at once, more than there are workers, are each exact", async () => {
  const values = Array.from({ length: 6 }, (_, i) => randomBytes(WORKER_MIN + i * 777_777));
  const digests = await Promise.all(values.map((v) => feed(v, 300_000)));
  assertEquals(digests, values.map(md5hex));
});

Deno.test("chunks larger than the ring, and a value of known length, are exact", async () => {
  const value = randomBytes(3 * WORKER_MIN + 5);
  assertEquals(await feed(value, 9 << 20), md5hex(value));
  assertEquals(await feed(value, 65536, value.length), md5hex(value));
});

Deno.test("small values are hashed on the spot; empty is the empty MD5", async () => {
  const value = randomBytes(100_000);
  assertEquals(await feed(value, 4096, value.length), md5hex(value));
  assertEquals(await md5Stream(0).digest(), "d41d8cd98f00b204e9800998ecf8427e");
  assertEquals(await md5Stream(null).digest(), "d41d8cd98f00b204e9800998ecf8427e");
});

Deno.test("an aborted stream spoils none of the values hashed after it", async () => {
  const doomed = md5Stream(null);
  await doomed.update(randomBytes(6 << 20));
  doomed.abort();
  await assertRejects(() => doomed.digest(), Error, "MD5 stream already done");
  for (let i = 0; i < 3; i++) {
    const value = randomBytes(WORKER_MIN + 1);
    assertEquals(await feed(value, 1 << 20), md5hex(value));
  }
});

Deno.test("a process that hashed on a worker exits by itself", async () => {
  const lib = new URL("../lib/md5_stream.ts", import.meta.url).href;
  const code = `
    import { md5Stream } from "${lib}";
    const h = md5Stream(null);
    await h.update(new Uint8Array(${WORKER_MIN}).fill(97));
    console.log(await h.digest());
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Not a timing test: a worker keeping the process alive hangs it for good.
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const out = await child.output();
  clearTimeout(timer);
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const expected = md5hex(new Uint8Array(WORKER_MIN).fill(97));
  assertEquals(new TextDecoder().decode(out.stdout), `${expected}\n`);
  assert(out.signal === null, "exited by itself");
});
