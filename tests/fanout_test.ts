// Unit tests of lib/fanout.ts: every sink gets the same bytes, the source
// is read in lock step with the slowest sink, and a failure on any side
// stops everything.
import { createHash } from "node:crypto";
import { Worker } from "node:worker_threads";
import { fanout, LostClaim, SourceError } from "../lib/fanout.ts";
import { WORKER_MIN } from "../lib/md5_stream.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { concatBytes } from "./cluster.ts";

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
    whole: () => concatBytes(sent),
  };
}

/** A sink keeping copies of what it is given; `delay` ms per write, or failing at write `failAt`. */
function sink(opts: { delay?: number; failAt?: number; error?: Error } = {}) {
  const got: Uint8Array[] = [];
  return {
    got,
    whole: () => concatBytes(got),
    async write(chunk: Uint8Array) {
      if (got.length + 1 === opts.failAt) throw opts.error ?? new Error("replica gone");
      if (opts.delay) await sleep(opts.delay);
      got.push(chunk.slice());
    },
  };
}

const md5hex = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("fanout gives every sink exactly the source's bytes, and their md5", async () => {
  const src = source(500);
  const sinks = [sink(), sink(), sink()];
  const got = await fanout(src.stream, sinks, { md5: true });
  const whole = src.whole();
  assert(whole.length > 100_000);
  for (const s of sinks) assertEquals(s.whole(), whole);
  assertEquals(got, { bytes: whole.length, md5: md5hex(whole) });
});

Deno.test("a large value's md5 (taken by a worker thread, through its ring) is exact", async () => {
  // Past WORKER_MIN and the ring's 4 MiB several times over, in uneven chunks.
  const src = source(400, 64 * 1024);
  const one = sink();
  const got = await fanout(src.stream, [one], { md5: true, length: null });
  const whole = src.whole();
  assert(whole.length > WORKER_MIN, `${whole.length} bytes`);
  assertEquals(one.whole(), whole);
  assertEquals(got, { bytes: whole.length, md5: md5hex(whole) });
});

Deno.test("an md5 worker that dies between values is dropped: the next value's md5 still comes", async () => {
  // The workers, as lib/md5_stream.ts starts them (each is posted its ring).
  const workers = new Set<Worker>();
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (this: Worker, ...args: Parameters<typeof post>) {
    workers.add(this);
    return post.apply(this, args);
  };
  try {
    const first = source(3, 1000);
    const got = await fanout(first.stream, [sink()], { md5: true, length: null });
    assertEquals(got.md5, md5hex(first.whole()));
    assert(workers.size > 0, "a value of unknown length went to a worker");
    for (const w of workers) await w.terminate();
    // A small value of unknown length fits the ring: before the fix its
    // digest waited forever for the dead worker (a chunked PUT that hung).
    const next = source(3, 1000);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no md5 after 5 s")), 5000);
    });
    try {
      const again = await Promise.race([
        fanout(next.stream, [sink()], { md5: true, length: null }),
        late,
      ]);
      assertEquals(again.md5, md5hex(next.whole()));
    } finally {
      clearTimeout(timer);
    }
  } finally {
    Worker.prototype.postMessage = post;
  }
});

Deno.test("fanout of an empty body gives nothing, the empty md5; refuseEmpty makes it a 411", async () => {
  const sinks = [sink(), sink()];
  assertEquals(await fanout(source(0).stream, sinks, { md5: true }), {
    bytes: 0,
    md5: "d41d8cd98f00b204e9800998ecf8427e",
  });
  assertEquals(sinks.map((s) => s.got.length), [0, 0]);
  const err = await assertRejects(() =>
    fanout(source(0).stream, [sink()], { md5: false, refuseEmpty: true })
  );
  assert(err instanceof SourceError);
  assertEquals([err.status, err.message], [411, "A value must not be empty"]);
});

Deno.test("fanout with md5 off reports the size and an empty md5", async () => {
  const src = source(20);
  const one = sink();
  const got = await fanout(src.stream, [one], { md5: false });
  assertEquals(got, { bytes: src.whole().length, md5: "" });
  assertEquals(one.whole(), src.whole());
});

Deno.test("fanout reads the source at most a chunk or two ahead of the slowest sink", async () => {
  const chunks = 100;
  const src = source(chunks, 1024);
  const slow = sink({ delay: 1 });
  let maxAhead = 0;
  const watching = setInterval(() => {
    maxAhead = Math.max(maxAhead, src.pulls() - slow.got.length);
  }, 0);
  try {
    await fanout(src.stream, [sink(), slow, sink()], { md5: true });
  } finally {
    clearInterval(watching);
  }
  assertEquals(slow.got.length, chunks);
  assert(maxAhead <= 3, `source read ${maxAhead} chunks ahead of the slowest sink`);
});

Deno.test("a sink that never takes its chunk holds the source back; the signal ends the copy", async () => {
  const src = source(1000, 16);
  const stuck = { write: () => new Promise<void>(() => {}) };
  const ac = new AbortController();
  const copy = fanout(src.stream, [sink(), stuck], { md5: false, signal: ac.signal });
  await sleep(50);
  assert(src.pulls() <= 3, `${src.pulls()} chunks pulled with one sink stuck`);
  const reason = new Error("client went away");
  ac.abort(reason);
  assertEquals(await assertRejects(() => copy), reason);
  assertEquals(src.cancelled(), reason);
});

Deno.test("a failing sink rejects with its own error, cancels the source, stops the others", async () => {
  const src = source(100_000, 64);
  const boom = new Error("replica gone");
  const others = [sink(), sink()];
  const err = await assertRejects(() =>
    fanout(src.stream, [others[0], sink({ failAt: 5, error: boom }), others[1]], { md5: true })
  );
  assertEquals(err, boom);
  assertEquals(src.cancelled(), boom);
  assert(src.pulls() < 10, `${src.pulls()} chunks pulled`);
  for (const s of others) assert(s.got.length <= 5, `${s.got.length} chunks went on`);
});

Deno.test("a source that errors is a 400 SourceError", async () => {
  let n = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (++n > 5) c.error(new Error("client reset"));
      else c.enqueue(new Uint8Array(10));
    },
  });
  // The client's fault, not a volume's: the client is answered 400.
  const err = await assertRejects(() => fanout(stream, [sink(), sink()], { md5: true }));
  assert(err instanceof SourceError);
  assertEquals([err.status, err.message], [400, "The request body ended early: client reset"]);
});

Deno.test("a source silent past the stall time is a 408 SourceError", async () => {
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) });
  ctl.enqueue(new Uint8Array(10));
  const err = await assertRejects(() => fanout(stream, [sink()], { md5: false, stall: 50 }));
  assert(err instanceof SourceError);
  assertEquals([err.status, err.message], [408, "No byte of the request body in 50ms"]);
});

Deno.test("a source shorter or longer than its length is a 400 SourceError", async () => {
  const short = source(3, 10);
  const err = await assertRejects(() =>
    fanout(short.stream, [sink()], { md5: false, length: 1000 })
  );
  assert(err instanceof SourceError);
  const sent = short.whole().length;
  assertEquals([err.status, err.message], [
    400,
    `The request body ended early: ${sent} of 1000 bytes`,
  ]);
  const long = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new Uint8Array(6));
      c.enqueue(new Uint8Array(6));
      c.close();
    },
  });
  const one = sink();
  const err2 = await assertRejects(() => fanout(long, [one], { md5: false, length: 10 }));
  assert(err2 instanceof SourceError);
  assertEquals([err2.status, err2.message], [
    400,
    "The request body is longer than its 10 bytes",
  ]);
  assertEquals(one.got.length, 1, "the chunk past the length was not sent");
});

Deno.test("with a known length the last chunk waits for the source's clean end", async () => {
  // The volumes store the file on its last byte: a source that fails after
  // it (an aws-chunked body's final chunk, a broken connection) must not
  // have completed the file anywhere.
  const chunks = [new Uint8Array(4).fill(1), new Uint8Array(4).fill(2)];
  const failing = new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(chunk);
    },
    pull(c) {
      c.error(new Error("final chunk missing"));
    },
  });
  const one = sink();
  const err = await assertRejects(() => fanout(failing, [one], { md5: true, length: 8 }));
  assert(err instanceof SourceError);
  assertEquals([err.status, err.message], [
    400,
    "The request body ended early: final chunk missing",
  ]);
  assertEquals(one.got, [chunks[0]], "the last chunk was held back");
  const ending = new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(chunk);
      c.close();
    },
  });
  const two = sink();
  const got = await fanout(ending, [two], { md5: true, length: 8 });
  assertEquals(two.got, chunks, "a clean end lets it go");
  assertEquals(got, { bytes: 8, md5: md5hex(concatBytes(chunks)) });
});

Deno.test("a lost claim stops the value before its last chunk (known length) or its end", async () => {
  const chunks = [new Uint8Array(4).fill(1), new Uint8Array(4).fill(2)];
  const stream = () =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (const chunk of chunks) c.enqueue(chunk);
        c.close();
      },
    });
  const lost = () => Promise.resolve(false);
  const known = sink();
  const err = await assertRejects(() =>
    fanout(stream(), [known], { md5: false, length: 8, fence: lost })
  );
  assert(err instanceof LostClaim);
  assertEquals(known.got, [chunks[0]], "with a Content-Length the last chunk is the end: withheld");
  const unknown = sink();
  const err2 = await assertRejects(() => fanout(stream(), [unknown], { md5: false, fence: lost }));
  assert(err2 instanceof LostClaim);
  assertEquals(unknown.got, chunks, "every chunk went, the end did not");
});

Deno.test("the value's end waits for the claim to be confirmed (a late renewal), then goes", async () => {
  const chunks = [new Uint8Array(4).fill(1), new Uint8Array(4).fill(2)];
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(chunk);
      c.close();
    },
  });
  const renewal = Promise.withResolvers<boolean>();
  const asked = Promise.withResolvers<void>();
  const known = sink();
  const copying = fanout(stream, [known], {
    md5: true,
    length: 8,
    fence: () => {
      asked.resolve();
      return renewal.promise;
    },
  });
  await asked.promise;
  await sleep(20);
  assertEquals(known.got, [chunks[0]], "the last chunk waits for the renewal");
  renewal.resolve(true);
  const done = await copying;
  assertEquals(known.got, chunks);
  assertEquals(done, { bytes: 8, md5: md5hex(concatBytes(chunks)) });
});
