// Unit tests of lib/fanout.ts: every branch gets the same bytes, the source
// is read in lock step with the slowest branch, and a failure on any side
// stops everything.
import { createHash } from "node:crypto";
import { fanout, SourceError } from "../lib/fanout.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

interface Source {
  stream: ReadableStream<Uint8Array>;
  /** How many chunks the stream has asked for. */
  pulls: () => number;
  cancelled: () => unknown;
  whole: () => Uint8Array;
}

/** A pull-based source of `count` random chunks of 1..`max` bytes. */
function source(count: number, max = 4096): Source {
  let pulls = 0;
  let cancelled: unknown = undefined;
  const sent: Uint8Array[] = [];
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (pulls === count) return c.close();
      pulls++;
      const chunk = crypto.getRandomValues(new Uint8Array(1 + Math.floor(Math.random() * max)));
      sent.push(chunk);
      c.enqueue(chunk);
    },
    cancel(reason) {
      cancelled = reason ?? "cancelled";
    },
  });
  return {
    stream,
    pulls: () => pulls,
    cancelled: () => cancelled,
    whole: () => concat(sent),
  };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const c of stream) chunks.push(c);
  return concat(chunks);
}

const md5hex = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("fanout gives every branch exactly the source's bytes, and their md5", async () => {
  const src = source(500);
  const f = fanout(src.stream, 3, { md5: true });
  const [results, got] = await Promise.all([Promise.all(f.branches.map(readAll)), f.done]);
  const whole = src.whole();
  assert(whole.length > 100_000);
  for (const r of results) assertEquals(r, whole);
  assertEquals(got, { bytes: whole.length, md5: md5hex(whole) });
});

Deno.test("fanout of an empty body closes every branch empty", async () => {
  const f = fanout(source(0).stream, 3, { md5: true });
  const results = await Promise.all(f.branches.map(readAll));
  assertEquals(results.map((r) => r.length), [0, 0, 0]);
  assertEquals(await f.done, { bytes: 0, md5: "d41d8cd98f00b204e9800998ecf8427e" });
});

Deno.test("fanout with md5 off reports the size and an empty md5", async () => {
  const src = source(20);
  const f = fanout(src.stream, 1, { md5: false });
  const [data, got] = await Promise.all([readAll(f.branches[0]), f.done]);
  assertEquals(got, { bytes: data.length, md5: "" });
  assertEquals(data, src.whole());
});

Deno.test("fanout reads the source only a few chunks ahead of the slowest branch", async () => {
  const chunks = 200;
  const src = source(chunks, 1024);
  const f = fanout(src.stream, 3, { md5: true });
  let consumed = 0;
  let maxAhead = 0;
  const slow = (async () => {
    const reader = f.branches[1].getReader();
    while (true) {
      const { done } = await reader.read();
      if (done) break;
      consumed++;
      maxAhead = Math.max(maxAhead, src.pulls() - consumed);
      if (consumed % 4 === 0) await sleep(1);
    }
  })();
  const fast = [f.branches[0], f.branches[2]].map(readAll);
  // While the slow branch dawdles, the source must not race ahead.
  await sleep(20);
  maxAhead = Math.max(maxAhead, src.pulls() - consumed);
  await Promise.all([slow, ...fast, f.done]);
  assertEquals(consumed, chunks);
  assert(maxAhead <= 8, `source read ${maxAhead} chunks ahead of the slowest branch`);
});

Deno.test("a branch nobody reads holds the source back", async () => {
  const src = source(1000, 16);
  const f = fanout(src.stream, 2, { md5: false });
  const reader = f.branches[0].getReader();
  let got = 0;
  const reading = (async () => {
    while (!(await reader.read()).done) got++;
  })();
  await sleep(50);
  assert(src.pulls() <= 8, `${src.pulls()} chunks pulled with one branch never read`);
  assert(got <= 8, `the read branch got ${got} chunks`);
  f.abort(new Error("test over"));
  await assertRejects(() => reading);
  await assertRejects(() => f.done);
});

Deno.test("cancelling one branch rejects done, errors the others and cancels the source", async () => {
  const src = source(100_000, 64);
  const f = fanout(src.stream, 3, { md5: true });
  const readers = f.branches.map((b) => b.getReader());
  for (const r of readers) await r.read();
  await readers[1].cancel(new Error("replica gone"));
  await assertRejects(() => f.done);
  for (const i of [0, 2]) {
    await assertRejects(async () => {
      while (!(await readers[i].read()).done) { /* drain until the error */ }
    });
  }
  assert(src.cancelled() !== undefined, "source cancelled");
  assert(src.pulls() < 100, `${src.pulls()} chunks pulled`);
});

Deno.test("abort() errors every branch, rejects done with the reason, cancels the source", async () => {
  const src = source(100_000, 64);
  const f = fanout(src.stream, 3, { md5: false });
  const readers = f.branches.map((b) => b.getReader());
  for (const r of readers) await r.read();
  const reason = new Error("client went away");
  f.abort(reason);
  const err = await assertRejects(() => f.done);
  assertEquals(err, reason);
  for (const r of readers) {
    await assertRejects(async () => {
      while (!(await r.read()).done) { /* drain until the error */ }
    });
  }
  assertEquals(src.cancelled(), reason);
});

Deno.test("a source that errors rejects done and errors every branch", async () => {
  let n = 0;
  const boom = new Error("client reset");
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (++n > 5) c.error(boom);
      else c.enqueue(new Uint8Array(10));
    },
  });
  const f = fanout(stream, 3, { md5: true });
  const reads = f.branches.map((b) => readAll(b));
  // The client's fault, not a volume's: a SourceError that the client is answered 400 with.
  const err = await assertRejects(() => f.done);
  assert(err instanceof SourceError);
  assertEquals(err.status, 400);
  assertEquals(err.message, "The request body ended early: client reset");
  for (const r of reads) await assertRejects(() => r);
});

Deno.test("a source silent past the stall time rejects done with a 408 SourceError", async () => {
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) });
  ctl.enqueue(new Uint8Array(10));
  const f = fanout(stream, 2, { md5: false, stall: 50 });
  const reads = f.branches.map((b) => readAll(b));
  const err = await assertRejects(() => f.done);
  assert(err instanceof SourceError);
  assertEquals(err.status, 408);
  assertEquals(err.message, "No byte of the request body in 50ms");
  for (const r of reads) await assertRejects(() => r);
  assert(f.waiting(0) && f.waiting(1), "after a failure no branch holds anything up");
});
