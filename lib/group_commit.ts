// Group commit: the index writes of concurrent requests share one Deno KV
// atomic. Each commit fsyncs (~2,900 single-key commits/s here, no faster
// when concurrent), while one atomic of hundreds of mutations costs about the
// same as one, so batching is what makes throughput grow with concurrency.
//
// Every write is a compare-and-set on one key: `expect` is the versionstamp
// the writer read (null: the key must not exist). A batch never holds two
// writes to the same key (the second waits for the next batch, where its
// check sees the first), and when a batch's checks fail, the writes whose
// checks no longer hold are answered `null` and the rest retried.
//
// A write may also carry its writer's fence (lib/membership.ts): one more
// check, shared by the batch, that the writer still holds its place in the
// index. A batch never mixes fences, and when its fence no longer holds,
// each of its writes fails with Fenced: it was not made.
//
// On a KV Connect index (-db https://...) a commit whose checks fail may
// have landed all the same: Deno's client sends a commit again when its
// answer is lost (a network error, a 5xx from a proxy), and the second
// try's checks fail against what the first wrote. So there (`marked`) each
// commit also writes a mark of its own, looked up when its checks are said
// to have failed: found, the commit was made.
import { setImmediate } from "node:timers";
import { latin1 } from "./bytes.ts";
import { batchHistogram, commitHistogram } from "./metrics.ts";

/**
 * Several processes on one SQLite file (masters, tools) take turns at its
 * write lock; a Deno KV write waits up to 5 s on it, then fails with
 * "database is locked". Retry that, with a growing random pause, until `ms`
 * have passed (a write then fails after `ms` to `ms` + 5 s).
 */
export async function retryBusy<T>(
  work: () => Promise<T>,
  ms = 10_000,
  stop?: AbortSignal,
): Promise<T> {
  const until = Date.now() + ms;
  for (let pause = 1;; pause = Math.min(pause * 2, 100)) {
    try {
      return await work();
    } catch (err) {
      if (!isBusy(err) || Date.now() > until) throw err;
      // `stop`: not tried again once it is aborted (with its reason).
      if (stop?.aborted) throw stop.reason;
      await new Promise((r) => setTimeout(r, pause * (0.5 + Math.random())));
    }
  }
}

/** Why the index refused a commit whose lock another process held past retryBusy's retries. */
export const LOCKED =
  "the index stayed locked (another process holds its write lock) past 10 s of retries";

/** The answer (503) to a request the index refused so: it may succeed once the lock is released. */
export const LOCKED_ANSWER = `The index stayed locked (another process holds its write lock) ` +
  `past 10 s of retries: retry once it is released`;

/** Whether `err` is SQLite's "database is locked" (or busy): another process holds its write lock. */
export function isBusy(err: unknown): boolean {
  return err instanceof Error && /database is (locked|busy)/i.test(err.message);
}

/** The key and versionstamp of a writer's fence record. */
export interface Fence {
  key: Deno.KvKey;
  versionstamp: string;
}

/** Where commit marks live (KV Connect, see `marked`): [MARKS, process's id(, nonce)]. */
export const MARKS = "cm";

/**
 * How long a commit mark stays (ms): it is looked up once its commit has
 * answered, which KV Connect's client may send again for as long as the
 * server errs; gone after that, a landed commit is taken for lost.
 */
const MARK_LIFE = 3_600_000;

/** Room a mark takes in an atomic: one mutation, its key's bytes (~50) counted with slack. */
const MARK_BYTES = 128;

/** A commit's mark: its key, and the nonce only that commit wrote there. */
export interface Mark {
  key: Deno.KvKey;
  nonce: string;
}

/** Makes `atomic` write `mark` too (see MARKS). */
export function withMark(atomic: Deno.AtomicOperation, mark: Mark | null): Deno.AtomicOperation {
  return mark ? atomic.set(mark.key, mark.nonce, { expireIn: MARK_LIFE }) : atomic;
}

/** A write refused because its writer lost its fence: nothing was written. */
export class Fenced extends Error {}

/** The Fenced of a write whose fence was removed by another member. */
export function lostRegistration(): Fenced {
  return new Fenced(
    "Cannot write the index: this process lost its registration in it (paused past its heartbeat?)",
  );
}

/**
 * The index's SQLite file was removed (or another put in its place) while
 * this process had it open: what it writes goes to a file no one will open
 * again, so it writes nothing more.
 */
export class IndexGone extends Error {}

/**
 * One compare-and-set. `value: null` deletes the key; `expect: undefined`
 * writes unconditionally (rebuild).
 */
export interface Cas {
  key: Deno.KvKey;
  expect: string | null | undefined;
  value: unknown | null;
  /** Encoded size estimate of the value in bytes, for the atomic's limits. */
  size: number;
  /** Encoded size of the key in bytes. */
  keySize: number;
  /** The writer's fence when it was cleared to write (null: unfenced). */
  fence: Fence | null;
}

/** Deno KV's limits on one atomic (ext/kv), with room for encoding slack. */
export const LIMITS = {
  checks: 100,
  mutations: 1000,
  keyBytes: 80 * 1024,
  totalBytes: 800 * 1024,
};

interface Pending {
  cas: Cas;
  resolve: (versionstamp: string | null) => void;
  reject: (err: unknown) => void;
  /**
   * When its retries on a locked index end (Date.now()): counted from when
   * it was queued, so that waiting behind a commit the lock holds counts.
   */
  until: number;
}

export interface CommitStats {
  commits: number;
  writes: number;
  maxBatch: number;
  /** Commits the index refused as a whole (locked past retrying, a disk error). */
  failures: number;
}

/** Index commits failing: since when (no commit has succeeded since), why, ms since epoch. */
export interface Failing {
  since: number;
  reason: string;
}

export class GroupCommit {
  #kv: Deno.Kv;
  #queue: Pending[] = [];
  #running = false;
  readonly stats: CommitStats = { commits: 0, writes: 0, maxBatch: 0, failures: 0 };
  /** Set by a commit that failed, cleared by the next that the index answers. */
  failing: Failing | null = null;
  /** Writes per successful commit. */
  readonly batches = batchHistogram();
  /** Seconds per commit that the index answered (ok, or a check that failed). */
  readonly durations = commitHistogram();

  /** Throws IndexGone when the index's file is no longer the one open (Index.checkFile). */
  #check: () => void;
  /** How long a commit is tried again while the index is locked, ms. */
  #busyMs: number;
  /** Aborted when a stopping master cuts off its requests (stopRetrying). */
  #stop: AbortSignal | undefined;
  /** Set once the index refused a commit as locked after #stop: writes then fail at once. */
  #lockedAtStop = false;
  /** This process's commit marks' id, when the index needs them (`marked`); else null. */
  #marks: string | null;

  /**
   * `marked`: a KV Connect index, whose client may answer a commit that
   * landed as one whose checks failed (see MARKS).
   */
  constructor(
    kv: Deno.Kv,
    opts: { check?: () => void; busyMs?: number; marked?: boolean } = {},
  ) {
    this.#kv = kv;
    this.#check = opts.check ?? (() => {});
    this.#busyMs = opts.busyMs ?? 10_000;
    this.#marks = opts.marked ? crypto.randomUUID() : null;
  }

  /**
   * A mark for a commit made outside the group (S3's records; withMark),
   * null when the index needs none. A key of its own: such commits run
   * beside the group's, whose batches, one at a time, share one key.
   */
  outsideMark(): Mark | null {
    if (this.#marks === null) return null;
    const nonce = crypto.randomUUID();
    return { key: [MARKS, this.#marks, nonce], nonce };
  }

  /**
   * The versionstamp of the commit that wrote `mark`, if it landed (its
   * checks said to have failed all the same: see MARKS); else null.
   */
  async landed(mark: Mark): Promise<string | null> {
    const e = await retryBusy(() => this.#kv.get(mark.key));
    return e.value === mark.nonce ? e.versionstamp : null;
  }

  /**
   * A stopping master's cut-off: from `signal`'s abort on, a commit the
   * index refuses as locked (another process holds its write lock) is not
   * tried again: its writes, and every write after it, fail at once with
   * the signal's reason (nothing of them was written), so that the requests
   * cut off answer within the stop's grace rather than after 10 s of
   * retries. A commit the index is already trying is waited for (it may
   * land): one try (up to 5 s).
   */
  stopRetrying(signal: AbortSignal) {
    this.#stop = signal;
  }

  /** The signal stopRetrying was given: the index's other writes (heartbeats) stop retrying at it too. */
  get stop(): AbortSignal | undefined {
    return this.#stop;
  }

  /**
   * `commit` (one made outside the group: S3's bucket and upload records),
   * tried again while the index is locked as retryBusy does, and bounded
   * by stopRetrying's signal as the group's own commits are: past its
   * abort, a try the index refuses as locked is not made again (nothing of
   * it was written), and once one was refused so, none is tried at all:
   * each fails with the signal's reason.
   */
  async retrying<T>(commit: () => Promise<T>): Promise<T> {
    if (this.#lockedAtStop) throw this.#stop!.reason;
    try {
      return await retryBusy(commit, this.#busyMs, this.#stop);
    } catch (err) {
      if (this.#stop?.aborted && err === this.#stop.reason) this.#lockedAtStop = true;
      throw err;
    }
  }

  /**
   * Resolves to the new versionstamp, or null when `expect` no longer held.
   * `signal`: a write still queued at its abort (behind a commit under way,
   * which a locked index holds up to 5 s) is dropped, never written, and
   * fails with the reason; one the index is already trying is waited for.
   */
  write(cas: Cas, opts: { signal?: AbortSignal } = {}): Promise<string | null> {
    if (this.#lockedAtStop) return Promise.reject(this.#stop!.reason);
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const { promise, resolve, reject } = Promise.withResolvers<string | null>();
    const p: Pending = { cas, resolve, reject, until: Date.now() + this.#busyMs };
    this.#queue.push(p);
    if (!this.#running) this.#run();
    if (!signal) return promise;
    const drop = () => {
      const at = this.#queue.indexOf(p);
      if (at < 0) return;
      this.#queue.splice(at, 1);
      reject(signal.reason);
    };
    signal.addEventListener("abort", drop, { once: true });
    // The listener goes with the write's end (a request's signal outlives it).
    return promise.finally(() => signal.removeEventListener("abort", drop));
  }

  async #run() {
    this.#running = true;
    try {
      while (this.#queue.length > 0) {
        // A short queue waits one turn of the event loop for the writes of
        // requests whose I/O came in that turn: a fifth fewer commits under
        // the thrash, ~4% less CPU per cycle, and a lone write waits a few
        // µs more on a commit that takes a millisecond.
        if (this.#queue.length < 4) await new Promise((r) => setImmediate(r));
        // Writes dropped meanwhile (their signal aborted) may have left none.
        if (this.#queue.length === 0) break;
        const batch = takeBatch(this.#queue, { marked: this.#marks !== null });
        await this.#commit(batch);
      }
    } finally {
      this.#running = false;
    }
  }

  async #commit(batch: Pending[]) {
    // Before and after: a commit into a removed file is lost once it closes,
    // so a write that landed there is not answered as made.
    if (!this.#checked(batch)) return;
    const mark = this.#marks === null
      ? null
      : { key: [MARKS, this.#marks], nonce: crypto.randomUUID() };
    const atomic = withMark(atomicOf(this.#kv, batch), mark);
    let result: Deno.KvCommitResult | Deno.KvCommitError;
    const started = performance.now();
    // Tried at least once, then again only within its oldest write's time.
    const ms = Math.min(...batch.map((p) => p.until)) - Date.now();
    try {
      result = await retryBusy(() => atomic.commit(), Math.max(0, ms), this.#stop);
    } catch (err) {
      await this.#commitFailed(err, batch, mark);
      return;
    }
    this.succeeded();
    this.stats.commits++;
    this.durations.observe((performance.now() - started) / 1000);
    if (!result.ok) return await this.#checksFailed(batch, mark);
    this.#made(batch, result.versionstamp);
  }

  /** The batch's commit landed, at `versionstamp`: each write hears it. */
  #made(batch: Pending[], versionstamp: string) {
    if (!this.#checked(batch)) return;
    this.stats.writes += batch.length;
    this.stats.maxBatch = Math.max(this.stats.maxBatch, batch.length);
    this.batches.observe(batch.length);
    for (const p of batch) p.resolve(versionstamp);
  }

  /**
   * The batch's commit threw: its writes hear it, or are tried one by one.
   * Unless it landed all the same (its `mark` found: KV Connect's client
   * throws when the answer's body cannot be read, the commit made).
   */
  async #commitFailed(err: unknown, batch: Pending[], mark: Mark | null) {
    if (this.#stop?.aborted && err === this.#stop.reason) {
      this.#lockedAtStop = true;
      for (const p of [...batch, ...this.#queue.splice(0)]) p.reject(err);
      return;
    }
    if (mark) {
      // Unknown when the mark cannot be read either: tried again, a write
      // that landed would be answered as lost to another writer.
      const landed = await this.landed(mark).catch(() => undefined);
      if (landed) {
        this.succeeded();
        this.stats.commits++;
        return this.#made(batch, landed);
      }
      if (landed === undefined) {
        this.failed(err);
        for (const p of batch) p.reject(err);
        return;
      }
    }
    // An error of the whole commit (disk, a limit): alone, the writer
    // hears it; in a batch, each write is tried alone so that one bad
    // write does not fail the others. Not a lock held past the retries:
    // no write of the batch caused it, and each alone would wait as long.
    if (batch.length === 1 || isBusy(err)) {
      this.failed(err);
      for (const p of batch) p.reject(err);
    } else for (const p of batch) await this.#commit([p]);
    // Queued writes whose time ran out meanwhile waited out their retries
    // on the lock too: they fail with it, untried (each try would wait on
    // it up to 5 s more).
    if (isBusy(err)) {
      const now = Date.now();
      const late = this.#queue.filter((p) => p.until <= now);
      this.#queue = this.#queue.filter((p) => p.until > now);
      for (const p of late) p.reject(err);
    }
  }

  /**
   * Some check of the batch's commit failed: find which by reading the
   * current versionstamps; those writers lose, the others go to the front
   * of the queue again. Unless the commit landed all the same (its `mark`
   * found: KV Connect sent it again, see MARKS): then it was made.
   */
  async #checksFailed(batch: Pending[], mark: Mark | null) {
    const landed = mark && await this.landed(mark);
    if (landed) return this.#made(batch, landed);
    const fence = batch[0].cas.fence;
    const keys = batch.map((p) => p.cas.key);
    const current = await this.#versionstamps(fence ? [fence.key, ...keys] : keys);
    if (fence && current.shift() !== fence.versionstamp) {
      const err = lostRegistration();
      for (const p of batch) p.reject(err);
      return;
    }
    const retry: Pending[] = [];
    batch.forEach((p, i) => {
      if (p.cas.expect !== undefined && current[i] !== p.cas.expect) {
        p.resolve(null);
      } else retry.push(p);
    });
    this.#queue.unshift(...retry);
  }

  /** False, each write of `batch` failed, when the index's file is gone. */
  #checked(batch: Pending[]): boolean {
    try {
      this.#check();
      return true;
    } catch (err) {
      for (const p of batch) p.reject(err);
      return false;
    }
  }

  /**
   * Counts a failed commit, for ?metrics and the status page (the writer
   * hears the error); the index's other commits (heartbeats) report here too.
   */
  failed(err: unknown) {
    this.stats.failures++;
    const reason = isBusy(err) ? LOCKED : err instanceof Error ? err.message : String(err);
    this.failing = { since: this.failing?.since ?? Date.now(), reason };
  }

  /** A commit the index answered: its commits no longer fail. */
  succeeded() {
    this.failing = null;
  }

  async #versionstamps(keys: Deno.KvKey[]): Promise<(string | null)[]> {
    const out: (string | null)[] = [];
    for (let i = 0; i < keys.length; i += 10) {
      const got = await retryBusy(() => this.#kv.getMany(keys.slice(i, i + 10)));
      for (const e of got) out.push(e.versionstamp);
    }
    return out;
  }
}

/** The batch's writes as one atomic: the fence's check, each write's check and mutation. */
function atomicOf(kv: Deno.Kv, batch: Pending[]): Deno.AtomicOperation {
  const atomic = kv.atomic();
  const fence = batch[0].cas.fence;
  if (fence) atomic.check(fence);
  for (const { cas } of batch) {
    if (cas.expect !== undefined) {
      atomic.check({ key: cas.key, versionstamp: cas.expect });
    }
    if (cas.value === null) atomic.delete(cas.key);
    else atomic.set(cas.key, cas.value);
  }
  return atomic;
}

/**
 * Takes from the queue the longest run of writes that fits one atomic
 * (`marked`: with room for the commit's mark, see MARKS).
 */
export function takeBatch(queue: Pending[], opts: { marked?: boolean } = {}): Pending[] {
  const batch: Pending[] = [];
  const seen = new Set<string>();
  const deferred: Pending[] = [];
  const mark = opts.marked ? 1 : 0;
  let keyBytes = mark * MARK_BYTES;
  let totalBytes = mark * MARK_BYTES;
  const fence = queue[0]?.cas.fence ?? null;
  let checks = fence ? 1 : 0;
  while (queue.length > 0 && batch.length < LIMITS.mutations - mark) {
    const p = queue[0];
    const check = p.cas.expect !== undefined ? 1 : 0;
    if (checks + check > LIMITS.checks) break;
    // Only mutations count their keys (measured: 40 checked writes of
    // 2,048-byte keys commit, 41 unchecked ones are refused).
    const k = p.cas.keySize;
    const t = k + p.cas.size;
    if (
      batch.length > 0 &&
      (keyBytes + k > LIMITS.keyBytes || totalBytes + t > LIMITS.totalBytes)
    ) break;
    queue.shift();
    const id = keyId(p.cas.key);
    if (seen.has(id) || p.cas.fence?.versionstamp !== fence?.versionstamp) {
      seen.add(id); // a later write of a deferred key waits too
      deferred.push(p);
      continue;
    }
    seen.add(id);
    batch.push(p);
    checks += check;
    keyBytes += k;
    totalBytes += t;
  }
  queue.unshift(...deferred);
  return batch;
}

/**
 * A string that tells keys apart: each part's type, its length, its content
 * (bytes as one char each). Lengths keep ["a\0b"] and ["a", "b"] apart.
 */
function keyId(key: Deno.KvKey): string {
  let id = "";
  for (const part of key) {
    const s = part instanceof Uint8Array ? latin1(part) : String(part);
    const type = part instanceof Uint8Array ? "u" : typeof part;
    id += `${type}${s.length}:${s}`;
  }
  return id;
}
