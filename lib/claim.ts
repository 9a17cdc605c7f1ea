// A claim on one key, held in the index so that every master on it sees it:
// the key's record in the "writing" state, naming its owner and the time its
// lease runs out. While the work goes on the lease is renewed; a master that
// dies stops renewing, and once the lease runs out another may take the key.
//
// Leases compare wall clocks (heartbeats no longer do, lib/membership.ts):
// a lease is judged by whoever reads the key's record once (a request on
// any master, verify's scan, rebalance), none of which has watched the
// record change over time. A writer stops with a quarter of its lease left
// by its own clock, so clocks apart by up to a quarter of -lease are safe.
import { unlessAborted } from "./abort.ts";
import { Fenced, IndexGone, isBusy } from "./group_commit.ts";
import type { Entry, Index } from "./index_db.ts";
import type { Record } from "./record.ts";

export function isClaimed(rec: Record, now = Date.now()): boolean {
  return (rec.until ?? 0) > now;
}

/**
 * A claim no writer holds any more, kept until its lease runs out because
 * a volume has yet to answer a call of its writer's (see Claim.finish).
 */
export function isLingering(rec: Record, now = Date.now()): boolean {
  return isClaimed(rec, now) && rec.owner === "";
}

/**
 * A claim its writer neither ended nor gave up: its lease ran out unrenewed
 * (its master died, or could not write the record back). One given up
 * after a failure (lease 0) or left to linger (no owner) was ended by a
 * writer still running, its files those of its own failed write or delete.
 */
export function isAbandoned(rec: Record, now = Date.now()): boolean {
  return !isClaimed(rec, now) && (rec.until ?? 0) > 0 && (rec.owner ?? "") !== "";
}

/** A record without its lease. */
export function unleased(rec: Record): Record {
  const { owner: _o, until: _u, ...rest } = rec;
  return rest;
}

export interface ClaimOptions {
  owner: string;
  /** Lease length in ms. */
  lease: number;
}

export class Claim {
  #index: Index;
  #key: Uint8Array;
  #rec: Record;
  #versionstamp: string;
  #lease: number;
  /** What release() leaves behind. */
  #released: Record;
  /** When the lease is next renewed (performance.now() ms). */
  renewAt: number;
  /**
   * The claim's writes, in order. Never left rejected: a renewal chained on
   * a note that failed (its caller hears why) would reject unhandled, and
   * that ends the process.
   */
  #chain: Promise<unknown> = Promise.resolve();
  readonly #lost = new AbortController();

  private constructor(
    index: Index,
    key: Uint8Array,
    rec: Record,
    versionstamp: string,
    lease: number,
    released: Record,
  ) {
    this.#index = index;
    this.#key = key;
    this.#rec = rec;
    this.#versionstamp = versionstamp;
    this.#lease = lease;
    this.#released = released;
    this.renewAt = performance.now() + this.period;
    hold(this);
  }

  /** Renewed every third of the lease (up to a sixth later: the shared tick). */
  get period(): number {
    return Math.max(this.#lease / 3, 10);
  }

  /**
   * Claims `key`, replacing `prev` (null: the key has no record), with a
   * "writing" record on `rvolumes`. Null when another writer was first.
   * `signal` (a request's): not taken, rejecting with its reason, if its
   * commit has not started at the abort (Index.cas).
   */
  static async take(
    index: Index,
    key: Uint8Array,
    prev: Entry | null,
    rvolumes: string[],
    opts: ClaimOptions & { signal?: AbortSignal },
  ): Promise<Claim | null> {
    const rec: Record = {
      state: "writing",
      rvolumes,
      hash: "",
      size: -1,
      owner: opts.owner,
      until: Date.now() + opts.lease,
    };
    const vs = await index.cas(key, prev?.versionstamp ?? null, rec, { signal: opts.signal });
    return vs === null ? null : new Claim(index, key, rec, vs, opts.lease, { ...rec, until: 0 });
  }

  /**
   * Claims a live key without hiding it: its record stays as it is (still
   * readable) with a lease added (REPLACE). Null when another was first.
   * `signal`: as take's.
   */
  static async hold(
    index: Index,
    key: Uint8Array,
    prev: Entry,
    opts: ClaimOptions & { signal?: AbortSignal },
  ): Promise<Claim | null> {
    const rec: Record = { ...prev.rec, owner: opts.owner, until: Date.now() + opts.lease };
    const vs = await index.cas(key, prev.versionstamp, rec, { signal: opts.signal });
    return vs === null ? null : new Claim(index, key, rec, vs, opts.lease, unleased(prev.rec));
  }

  /**
   * Whether the lease still has a quarter of it to spare, by this process's
   * clock. False once this process was paused (or its renewals starved)
   * long enough that another master may take the key.
   */
  #holds(): boolean {
    return !this.#lost.signal.aborted && Date.now() < (this.#rec.until ?? 0) - this.#lease / 4;
  }

  /**
   * Whether the claim holds: checked before each step that changes the
   * volumes (a value's end, a rename, a removal), since the renewal that
   * would find the claim lost is a commit away and the step can go out
   * before it returns. A lease run short with the key still ours (this
   * process paused, or its thread held past the renewals' times: a 1 GiB
   * body chunked from a pipe) is renewed first rather than given up: a
   * renewal compare-and-sets the record as this claim last wrote it, and
   * whoever takes a key writes its record first, so one that lands says
   * nobody took the key meanwhile, and the lease runs anew from then.
   */
  async confirm(): Promise<boolean> {
    if (this.#holds() || this.#lost.signal.aborted) return this.#holds();
    this.renew();
    await this.#chain;
    return this.#holds();
  }

  /** Aborted when the claim was lost (taken over after the lease ran out). */
  get signal(): AbortSignal {
    return this.#lost.signal;
  }

  /** Extends the lease (the shared timer calls it when due). */
  renew() {
    this.renewAt = performance.now() + this.period;
    this.#chain = this.#chain.then(async () => {
      if (this.#lost.signal.aborted) return;
      let rec = this.#rec;
      // Fenced twice (this process taken for gone), or the index locked
      // past retrying: the reason the work fails.
      let why: unknown = new Error("Lost the claim on the key");
      const vs = await this.#cas(() => rec = { ...this.#rec, until: Date.now() + this.#lease })
        .catch((err) => {
          if (refusedByIndex(err)) why = err;
          return null;
        });
      if (vs === null) {
        this.#lost.abort(why);
        unhold(this);
      } else {
        this.#rec = rec;
        this.#versionstamp = vs;
      }
    });
  }

  /**
   * Rewrites the record held (its lease kept and renewed as before): what a
   * master that dies holding it leaves behind. False when the claim was lost.
   * `signal` (a stopping master's cut-off): as finish's.
   */
  note(rec: Record, opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    return this.#chained(async () => {
      if (this.#lost.signal.aborted) return this.#lostReason();
      let leased = rec;
      const vs = await this.#cas(
        () => leased = { ...rec, owner: this.#rec.owner, until: Date.now() + this.#lease },
        opts.signal,
      );
      if (vs === null) {
        this.#lost.abort(new Error("Lost the claim on the key"));
        unhold(this);
        return false;
      }
      this.#rec = leased;
      this.#versionstamp = vs;
      return true;
    }, opts.signal);
  }

  /**
   * Ends the claim by writing `rec` (null: removing the record). False when
   * the claim had been lost, in which case nothing is written. `linger`:
   * the record keeps a lease that runs out on its own, unrenewed, so the
   * key's writers wait (409) for a volume that has yet to answer a call
   * of this writer's (it may still carry it out, onto their files).
   * `signal` (a stopping master's cut-off): not written, rejecting with its
   * reason, if at its abort the write is not yet sent to the index (it
   * waits behind the claim's renewal, for this master to join the index
   * again, or for its turn to commit: Index.cas); one the index is trying
   * is waited for. The claim is no longer renewed either way.
   */
  finish(
    rec: Record | null,
    opts: { linger?: boolean; signal?: AbortSignal } = {},
  ): Promise<boolean> {
    unhold(this);
    // No owner: nobody renews it, and the key's writers can tell why they wait.
    const final = () =>
      rec && opts.linger ? { ...rec, owner: "", until: Date.now() + this.#lease } : rec;
    return this.#chained(async () => {
      if (this.#lost.signal.aborted) return this.#lostReason();
      return await this.#cas(final, opts.signal) !== null;
    }, opts.signal);
  }

  /**
   * Runs `write` after the claim's writes before it. `signal`: given up at
   * its abort while those still run (rejecting with its reason, `write`
   * never made); the claim's next write still waits for them.
   */
  #chained<T>(write: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    const before = this.#chain;
    const done = (signal ? unlessAborted(before, signal) : before).then(write);
    this.#chain = Promise.allSettled([before, done]);
    return done;
  }

  /**
   * Compare-and-sets the claim's record to `make()`. A write fenced (this
   * process was taken for gone, paused past its heartbeat: nothing was
   * written) is made once more, once the process has joined again (the
   * index waits for that): the claim's versionstamp still tells whether the
   * key is ours, and the work done under it stands. Else a REPLACE fenced
   * after its renames would answer 503, its value made live later all the
   * same by the key's next reader. Fenced again: thrown. `signal`: Index.cas's.
   */
  async #cas(make: () => Record | null, signal?: AbortSignal): Promise<string | null> {
    try {
      return await this.#index.cas(this.#key, this.#versionstamp, make(), { signal });
    } catch (err) {
      if (!(err instanceof Fenced)) throw err;
      return await this.#index.cas(this.#key, this.#versionstamp, make(), { signal });
    }
  }

  /**
   * Stops renewing the claim and writes nothing: its lease runs out on its
   * own. For when the index failed a write of the claim's: what it holds
   * then is for the key's next reader to sort out.
   */
  abandon(): void {
    unhold(this);
  }

  /**
   * False for a claim lost to another writer; a renewal fenced (twice), or
   * refused by an index locked past retrying, throws that error (the
   * request fails 503, to be retried).
   */
  #lostReason(): false {
    const why = this.#lost.signal.reason;
    if (refusedByIndex(why)) throw why;
    return false;
  }

  /**
   * Gives the claim up: a "writing" key stays so with its lease run out; a
   * held live key goes back to its record as it was. `linger`, `signal`: as finish's.
   */
  release(opts: { linger?: boolean; signal?: AbortSignal } = {}): Promise<boolean> {
    return this.finish(this.#released, opts);
  }
}

/**
 * Whether a write of the claim's failed for the index, not for another
 * writer: fenced (this process taken for gone), the index locked (by
 * another process) past retrying, or its file removed. The key may be
 * nobody else's.
 */
function refusedByIndex(err: unknown): boolean {
  return err instanceof Fenced || err instanceof IndexGone || isBusy(err);
}

/**
 * Claims held, renewed by one timer that ticks at a sixth of the shortest
 * lease while any is held: a timer per claim cost more than the rest of the
 * claim's bookkeeping.
 */
const held = new Set<Claim>();
let renewer: ReturnType<typeof setInterval> | undefined;
let tick = Infinity;

function hold(claim: Claim) {
  held.add(claim);
  const want = Math.max(claim.period / 2, 5);
  if (want >= tick) return;
  clearInterval(renewer);
  tick = want;
  renewer = setInterval(renewDue, tick);
}

function unhold(claim: Claim) {
  held.delete(claim);
  if (held.size > 0) return;
  clearInterval(renewer);
  renewer = undefined;
  tick = Infinity;
}

/** Whether the renewal timer runs (for tests: it must stop once no claim is held). */
export function renewing(): boolean {
  return renewer !== undefined;
}

function renewDue() {
  const now = performance.now();
  for (const claim of held) if (claim.renewAt <= now) claim.renew();
}
