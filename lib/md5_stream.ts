// The MD5 of a value as it streams by. On the master's thread it cost a
// 256 MiB PUT 0.39 s of the ~1.1 s it took (the thread is CPU-bound:
// receiving once, sending three times); a worker thread hashes large values
// instead, in parallel, from a shared ring the main thread copies each chunk
// into (a copy costs ~1/20 of hashing it). The ring is the backpressure: a
// full ring makes the copy wait, so memory stays fixed. Small values, and
// large ones while every worker is busy, are hashed on the spot.
import { createHash } from "node:crypto";
import { Worker } from "node:worker_threads";
import { ABORTED, ENDED, READ, type RingInit, RUNNING, SEQ, STATE, WRITTEN } from "./md5_ring.ts";

export interface Md5Stream {
  /** Takes in a chunk; a promise when it must wait for room (await before the next). */
  update(chunk: Uint8Array): Promise<void> | undefined;
  /** Lowercase hex of everything taken in; the stream is done after. */
  digest(): Promise<string>;
  /** Drops the stream (a failed write). */
  abort(): void;
}

/** Values at least this long (or of unknown length) go to a worker. */
export const WORKER_MIN = 8 << 20;
/** Bytes of ring per worker: a power of two, so it divides the counters' 2^32. */
const RING = 4 << 20;
/**
 * The worker is woken once this much more is in the ring (or at the end, or
 * when the ring is full): a wake per 64 KiB chunk cost the main thread
 * ~40 ms of a 256 MiB PUT (a futex call each).
 */
const WAKE_EVERY = 1 << 20;
/** Workers at most: more than the cores would only take turns. */
const MAX_WORKERS = Math.max(1, Math.min(4, navigator.hardwareConcurrency ?? 1));

/** A hash for a value of `length` bytes (null: not known). */
export function md5Stream(length: number | null): Md5Stream {
  if (length !== null && length < WORKER_MIN) return inline();
  return take()?.begin() ?? inline();
}

function inline(): Md5Stream {
  const hash = createHash("md5");
  return {
    update(chunk) {
      hash.update(chunk);
      return undefined;
    },
    digest: () => Promise.resolve(hash.digest("hex")),
    abort() {},
  };
}

const idle: Hasher[] = [];
let started = 0;

function take(): Hasher | null {
  const h = idle.pop();
  if (h) return h;
  if (started >= MAX_WORKERS) return null;
  try {
    const fresh = new Hasher();
    started++;
    return fresh;
  } catch {
    return null; // no worker to be had: the caller hashes on the spot
  }
}

/** One worker and its ring; one job at a time. */
class Hasher {
  readonly #worker: Worker;
  readonly #ring = new Uint8Array(new SharedArrayBuffer(RING));
  readonly #ctl = new Int32Array(new SharedArrayBuffer(16));
  #written = 0;
  /** #written when the worker was last woken. */
  #told = 0;
  /** The job's end, told by the worker: its digest, or null once aborted. */
  #result: PromiseWithResolvers<string | null> | null = null;
  #dead = false;

  constructor() {
    this.#worker = new Worker(new URL("./md5_worker.ts", import.meta.url));
    // Idle, it must not keep a tool's process alive; a job refs it.
    this.#worker.unref();
    const init: RingInit = { ring: this.#ring.buffer as SharedArrayBuffer, ctl: this.#ctl.buffer };
    this.#worker.postMessage(init);
    this.#worker.on("message", (digest: string | null) => this.#ended(digest));
    const die = (err: unknown) => {
      if (this.#dead) return;
      this.#dead = true;
      started--;
      // Dead between jobs: never handed a job again (it would never end).
      const at = idle.indexOf(this);
      if (at >= 0) idle.splice(at, 1);
      this.#result?.reject(err instanceof Error ? err : new Error(`MD5 worker: ${err}`));
      this.#result = null;
    };
    this.#worker.on("error", die);
    this.#worker.on("exit", (code: number) => die(new Error(`MD5 worker exited (${code})`)));
  }

  begin(): Md5Stream {
    // The worker is between jobs: the counters can start over.
    Atomics.store(this.#ctl, WRITTEN, 0);
    Atomics.store(this.#ctl, READ, 0);
    Atomics.store(this.#ctl, STATE, RUNNING);
    this.#written = 0;
    this.#told = 0;
    // This job's end, kept here: the worker's death clears #result.
    const result = Promise.withResolvers<string | null>();
    this.#result = result;
    result.promise.catch(() => {});
    this.#worker.ref();
    this.#worker.postMessage("start");
    let open = true;
    return {
      update: (chunk) => this.#copy(chunk),
      digest: async () => {
        if (!open) throw new Error("MD5 stream already done");
        open = false;
        this.#signal(ENDED);
        const digest = await result.promise;
        if (digest === null) throw new Error("MD5 stream aborted");
        return digest;
      },
      abort: () => {
        if (!open) return;
        open = false;
        this.#signal(ABORTED);
      },
    };
  }

  #ended(digest: string | null) {
    this.#result?.resolve(digest);
    this.#result = null;
    this.#worker.unref();
    if (!this.#dead) idle.push(this);
  }

  #signal(state: number) {
    Atomics.store(this.#ctl, STATE, state);
    this.#bump();
  }

  #bump() {
    this.#told = this.#written;
    Atomics.add(this.#ctl, SEQ, 1);
    Atomics.notify(this.#ctl, SEQ);
  }

  /** Copies the chunk in, waiting for room only when the ring is full. */
  #copy(chunk: Uint8Array): Promise<void> | undefined {
    const room = RING - ((this.#written - Atomics.load(this.#ctl, READ)) >>> 0);
    if (chunk.length > room) return this.#copySlowly(chunk);
    this.#put(chunk);
    return undefined;
  }

  async #copySlowly(chunk: Uint8Array) {
    let off = 0;
    while (off < chunk.length) {
      const read = Atomics.load(this.#ctl, READ);
      const room = RING - ((this.#written - read) >>> 0);
      if (room === 0) {
        if (Atomics.load(this.#ctl, STATE) !== RUNNING || this.#dead) {
          throw new Error("MD5 stream ended");
        }
        this.#bump(); // it may be asleep on bytes not yet told
        // Bounded, so a worker that died between checks cannot hang us.
        const wait = Atomics.waitAsync(this.#ctl, READ, read, 1000);
        if (wait.async) await wait.value;
        continue;
      }
      const n = Math.min(room, chunk.length - off);
      this.#put(chunk.subarray(off, off + n));
      off += n;
    }
  }

  /** Copies bytes that fit; the worker is told every WAKE_EVERY bytes. */
  #put(bytes: Uint8Array) {
    const at = this.#written & (RING - 1);
    const first = Math.min(bytes.length, RING - at);
    this.#ring.set(first === bytes.length ? bytes : bytes.subarray(0, first), at);
    if (first < bytes.length) this.#ring.set(bytes.subarray(first), 0);
    this.#written = (this.#written + bytes.length) | 0;
    Atomics.store(this.#ctl, WRITTEN, this.#written);
    if ((this.#written - this.#told) >>> 0 >= WAKE_EVERY) this.#bump();
  }
}
