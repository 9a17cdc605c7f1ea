// The store's operations, shared by the master and the tools. Each returns
// its HTTP status as a value; lib/server.ts only maps requests onto them.
//
// Write order (as mkv): the index says "writing" before any volume is
// touched and "live" only after every replica is written, and a delete marks
// first, removes the files, then drops the record. So a crash never leaves a
// live key without its files; at worst a "writing" record or orphan files.
import { latin1 } from "./bytes.ts";
import { Claim, isAbandoned, isClaimed, isLingering, unleased } from "./claim.ts";
import {
  CUT_OFF,
  DigestMismatch,
  fanout,
  LengthMismatch,
  LostClaim,
  ShuttingDown,
  Silence,
  SourceError,
  sourceError,
} from "./fanout.ts";
import { type Entry, type Index, KEY_LIMIT, keyFits } from "./index_db.ts";
import { health } from "./health.ts";
import { RebuildRunning } from "./membership.ts";
import { compareReplicas, differMessage } from "./replica_digest.ts";
import { Fenced, IndexGone, isBusy, LOCKED, LOCKED_ANSWER } from "./group_commit.ts";
import { asciiPath } from "./target.ts";
import {
  key2path,
  key2volume,
  md5 as md5sum,
  needsRebalance,
  placementKey,
  toHex,
  volumeOfReplica,
} from "./keys.ts";
import type { FanoutResult } from "./fanout.ts";
import { fitsRecord, type Meta, type Next, type Record } from "./record.ts";
import {
  headFile,
  headStatus,
  openPut,
  outOfDescriptors,
  remoteDelete,
  remoteGet,
  remoteGetSmall,
  remoteMove,
  remotePut,
  remoteSize,
  unanswered,
  VolumeError,
  volumeUrl,
  writeFailureStatus,
} from "./volumes.ts";

export interface StoreOptions {
  volumes: string[];
  replicas: number;
  subvolumes: number;
  /** DELETE only after UNLINK. */
  protect: boolean;
  /** Keys of one folder on the same volumes (lib/keys.ts placementKey). */
  colocate: boolean;
  md5sum: boolean;
  /** Timeout of HEAD and listing calls to volumes, in ms. */
  voltimeout: number;
  /**
   * PUTs and GETs of values abort after this long without progress, ms; the
   * renames (MOVE) and removals (DELETE) of values' files may take this long.
   */
  stall: number;
  /** "host:port" that misses are redirected to, "" for none. */
  fallback: string;
  /** Lease of a claim on a key, in ms. */
  lease: number;
  /** This process's name in the claims it takes. */
  owner: string;
}

export interface Outcome {
  status: number;
  headers?: { [name: string]: string };
  /** Said in the body of an error, for people using curl; on a success, what was left undone. */
  message?: string;
  /** Value bytes received (PUT, REPLACE), for the metrics. */
  bytes?: number;
  /** The record a PUT or REPLACE made live (S3 answers with its ETag). */
  record?: Record;
  /**
   * Decided by the incomplete index's question to the volumes (PUT's, S3's
   * deletes'): 409, one holds a value the index lacks; 503, one did not
   * say. Made from what the index held, nothing written: judged as a read
   * after this master stalled (lib/server.ts).
   */
  unindexed?: boolean;
}

/** How Store's #write writes a body to the volumes. */
interface WriteOptions {
  signal: AbortSignal;
  md5?: boolean;
  size: number | null;
  fence?: () => Promise<boolean>;
  /** An empty body fails (411) before any replica is written. */
  refuseEmpty?: boolean;
  /**
   * Filled on failure with the volumes this write cannot have left a
   * file on (never reached, or the body cut off before its end).
   */
  untouched?: Set<string>;
  /** Filled on failure with the volumes whose PUT went out and was never answered. */
  unanswered?: Set<string>;
  /** The body's MD5 when known (a copy): other bytes fail before any replica stores them. */
  expectMd5?: string;
}

/** A PUT under way, its claim taken: what its failure or its end needs. */
interface PutAttempt {
  key: Uint8Array;
  prev: Entry | null;
  kvolumes: string[];
  claim: Claim;
  /** The volumes the write cannot have left a file on (see WriteOptions). */
  untouched: Set<string>;
}

export interface PutOptions {
  /** The request's Content-Length, null when chunked. */
  contentLength: number | null;
  signal?: AbortSignal;
  /** Kept with the value (S3's Content-Type, ETag form, x-amz-meta-*). */
  meta?: Meta;
  /** Take an empty value (S3 has them; mkv's API answers 411). */
  allowEmpty?: boolean;
  /** Compute the MD5 even with -md5sum=false (S3's ETag needs it). */
  md5?: boolean;
  /**
   * The MD5 the client sent (Content-MD5), hex: a body of other bytes
   * fails (400) before any replica stores it, as a body cut short does.
   */
  expectMd5?: string;
  /**
   * Runs once every replica holds the whole value and before the index
   * makes it live: an outcome here (a digest that does not match) undoes
   * the write and is answered instead.
   */
  check?: (written: FanoutResult) => Outcome | null;
  /**
   * REPLACE only: checked against the live record before anything is
   * written (S3's If-Match); an outcome here is answered instead.
   */
  expect?: (prev: Record) => Outcome | null;
  /**
   * A stopping master's cut-off (not the client's going, which does not
   * stop a value wholly received): the index writes made once the value is
   * written (PUT's making it live, REPLACE's switch), still unsent at its
   * abort, are dropped (503). `signal` is given up at it too.
   */
  stop?: AbortSignal;
}

export class Store {
  readonly index: Index;
  readonly opts: StoreOptions;
  /** Keys with an operation in flight here: a fast 409 before the index. */
  #busy = new Set<string>();
  #placed = new WeakMap<Entry, { balance: string; path: string }>();
  /** The clean-ups of writes cut off by a stopping master, still under way (cleanedUp). */
  #cleanups = new Set<Promise<unknown>>();

  constructor(index: Index, opts: StoreOptions) {
    this.index = index;
    this.opts = opts;
  }

  /**
   * Resolves once the clean-ups of the writes a stopping master cut off
   * (their files removed, their claims ended) are over, done or failed:
   * they are not waited for by those writes' 503 (on an index another
   * process holds the write lock of, each commit would wait up to 5 s, past
   * the stop's grace); the master waits for them before it leaves the index.
   * One the index never took leaves the key "writing" until its lease runs
   * out, as a master killed mid-write does.
   */
  async cleanedUp(): Promise<void> {
    await Promise.allSettled([...this.#cleanups]);
  }

  /** `work` (a cut-off write's clean-up), left to run: cleanedUp waits for it. */
  #cleanUpLater(work: () => Promise<unknown>) {
    const done: Promise<unknown> = work().catch(() => {}).finally(() =>
      this.#cleanups.delete(done)
    );
    this.#cleanups.add(done);
  }

  kvolumes(key: Uint8Array): string[] {
    const { volumes, replicas, subvolumes, colocate } = this.opts;
    return key2volume(placementKey(key, colocate), volumes, replicas, subvolumes);
  }

  /**
   * The key's place (volume and subvolume) on every volume, the key's own
   * volumes first: where a value the index lacks may be when volumes were
   * added or removed and the keys not rebalanced since.
   */
  #everyPlace(key: Uint8Array): string[] {
    const { volumes, subvolumes, colocate } = this.opts;
    return key2volume(placementKey(key, colocate), volumes, volumes.length, subvolumes);
  }

  /**
   * GET/HEAD: a 302 to a replica that answers, after HEAD-checking it.
   * `recheck`: whether a record that changed meanwhile may be read again;
   * `signal`: the HEAD checks are given up at its abort (which it rejects with).
   */
  async locate(
    key: Uint8Array,
    rawPath: string,
    opts: { signal?: AbortSignal; recheck?: boolean } = {},
  ): Promise<Outcome> {
    const { signal, recheck = true } = opts;
    if (!keyFits(key)) return tooLong();
    // A cached record (sole master) spares a promise on the hottest path.
    const cached = this.index.cached(key);
    let e = cached !== undefined ? cached : await this.index.get(key);
    if (e?.rec.next) e = await this.readEntry(key, { e, stop: signal });
    // No Content-Length: Deno sends "content-length: 0" with every empty body.
    const headers: { [name: string]: string } = {};
    // Not while a REPLACE renames (or a dead one's renames wait): a replica
    // may hold either value then.
    if (e?.rec.hash && !e.rec.next) headers["Content-Md5"] = e.rec.hash;
    if (!e || e.rec.state !== "live") {
      if (!this.opts.fallback) return { status: 404, headers };
      headers["Location"] = `http://${this.opts.fallback}${asciiPath(rawPath)}`;
      return { status: 302, headers };
    }
    const { rvolumes } = e.rec;
    const { balance, path } = this.#placement(key, e);
    headers["Key-Balance"] = balance;
    headers["Key-Volumes"] = rvolumes.join(",");
    let unreachable = 0;
    // Replicas whose file is of another size than the value's: passed over
    // as missing ones are (named in the answer when none is whole).
    let otherSize: Map<string, number> | undefined;
    // From a random replica on, in turn: as good as a shuffle, without a
    // copy. Replicas on volumes known down are tried last, only when no
    // other has the file: a hung one made a GET in three wait -voltimeout.
    const n = rvolumes.length;
    const first = Math.floor(Math.random() * n);
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < n; i++) {
        const volume = rvolumes[(first + i) % n];
        if (health.isDown(volume) !== (pass === 1)) continue;
        const url = volumeUrl(volume, path);
        const { status, length } = await headFile(url, this.opts.voltimeout, { signal });
        if (status === 200 && fitsRecord(e.rec, length)) {
          headers["Location"] = url;
          return { status: 302, headers };
        }
        if (status === 200) {
          otherSize = passedOver(otherSize, volume, { size: length, key, rec: e.rec });
        } else if (status !== 404) unreachable++;
      }
    }
    // The files may have gone with a write of the key since its record was
    // read (DELETE, REBALANCE, a REPLACE's new size): then the index says
    // so now, and it is no loss.
    if (recheck && await this.#changed(key, e)) {
      return this.locate(key, rawPath, { signal, recheck: false });
    }
    // Live in the index but on no replica whole: 410 when every replica
    // said it has no such file or one of another size (data lost), 503
    // when some could not say.
    // Asked only now, on this failure path: the HEADs this master could
    // not make (no descriptor left) say nothing of the volumes.
    const unsure = unreachable === 0 ? null : outOfDescriptors() ? "unasked" : "unanswered";
    return {
      status: unsure ? 503 : 410,
      headers,
      message: notWhole(e.rec, otherSize, unsure),
    };
  }

  async put(
    key: Uint8Array,
    body: ReadableStream<Uint8Array> | null,
    opts: PutOptions,
  ): Promise<Outcome> {
    const refused = refuseBody(key, body, opts);
    if (refused || !body) return refused!;
    return await this.#exclusive(key, async () => {
      const prev = await this.entry(key, { stop: opts.stop });
      const taken = refuseTaken(prev);
      if (taken) return taken;
      // Written beside the unlinked value, then renamed over it once every
      // replica has it, as REPLACE does: a write that fails takes nothing
      // away, and the key stays unlinked, its value whole for RELINK.
      if (prev?.rec.state === "unlinked") return await this.#overwrite(key, prev, body, opts);
      const kvolumes = this.kvolumes(key);
      const took = await this.#claimForPut(key, prev, kvolumes, opts);
      if ("answer" in took) return took.answer;
      const claim = took.claim;
      const signal = opts.signal;
      const writing = signal ? AbortSignal.any([signal, claim.signal]) : claim.signal;
      const attempt = { key, prev, kvolumes, claim, untouched: new Set<string>() };
      const unanswered = new Set<string>();
      let result;
      try {
        result = await this.#write(key2path(key), kvolumes, body, {
          signal: writing,
          md5: opts.md5,
          size: opts.contentLength,
          fence: () => claim.confirm(),
          refuseEmpty: !opts.allowEmpty,
          untouched: attempt.untouched,
          unanswered,
          expectMd5: opts.expectMd5,
        });
      } catch (err) {
        const failure = { ...attempt, unanswered: unanswered.size > 0 };
        return await this.#putFailed(sentWrong(err), failure);
      }
      return await this.#putWritten(attempt, result, opts);
    });
  }

  /**
   * PUT's claim on a key with no record, or a "writing" one no writer holds
   * (refuseTaken passed it), then the unindexed check of an incomplete index.
   */
  async #claimForPut(
    key: Uint8Array,
    prev: Entry | null,
    kvolumes: string[],
    opts: PutOptions,
  ): Promise<{ answer: Outcome } | { claim: Claim }> {
    const signal = opts.signal;
    const took = await orDropped(
      Claim.take(this.index, key, prev, kvolumes, { ...this.opts, signal }),
      signal,
    );
    if ("answer" in took) return took;
    const claim = took.value;
    if (!claim) return { answer: inFlight() };
    // Read once the claim is in the index: its commit carried this
    // master's fence, which a rebuild removes before it marks the index.
    const held = await this.#heldUnindexed(key, prev, claim, { stop: opts.stop });
    return held ? { answer: held } : { claim };
  }

  /**
   * A PUT's write failed: what it may have left on the volumes is removed
   * (or what was there kept), the claim ended, the failure answered.
   */
  async #putFailed(
    err: unknown,
    attempt: PutAttempt & { unanswered: boolean },
  ): Promise<Outcome> {
    const { key, prev, kvolumes, claim, untouched } = attempt;
    // The key may be another writer's now: its files are not ours to
    // remove. (A lease that only ran short, this process paused, is
    // renewed first: the files are ours while nobody took the key.) The
    // claim is given up all the same: one that could not be renewed in
    // time would otherwise be renewed on and on, the key "writing" and
    // refused to every writer for good.
    if (!(await claim.confirm())) {
      await claim.release().catch(() => {});
      return lostClaim(err, claim);
    }
    // Cut off by a stopping master: answered before the clean-up.
    const cleanUp = (work: () => Promise<unknown>) =>
      err instanceof ShuttingDown ? this.#cleanUpLater(work) : work();
    if (err instanceof SourceError && prev && kvolumes.every((v) => untouched.has(v))) {
      // The body never ended, so no replica took it (nginx renames a
      // file into place only once whole, and lib/fanout.ts holds the
      // last chunk back until the source has ended): what was there
      // stays (a failed write's record, naming its files).
      await cleanUp(() => claim.finish(prev.rec));
      return { status: err.status, message: err.message };
    }
    // No DELETE where neither this write nor an earlier value can have
    // a file: a volume that is down would fail it, and leave the key
    // "writing" for nothing.
    const had = prev?.rec.rvolumes ?? [];
    const maybe = kvolumes.filter((v) => !untouched.has(v) || had.includes(v));
    // A PUT sent whole and never answered may be stored yet, after
    // the key's next write: that waits out the lease (linger).
    await cleanUp(() => this.#undo(key, maybe, claim, { landing: attempt.unanswered }));
    return failedWrite(err);
  }

  /** A PUT's value is on every replica: recorded live (201), or removed. */
  async #putWritten(
    attempt: PutAttempt,
    result: FanoutResult,
    opts: PutOptions,
  ): Promise<Outcome> {
    const { key, prev, kvolumes, claim } = attempt;
    const refused = refuseWritten(result, opts);
    if (refused) {
      await this.#undo(key, kvolumes, claim);
      return refused;
    }
    // A failed earlier write may have left files elsewhere, removed once
    // the new value is live: asked about first. (A PUT over an unlinked
    // value goes as a REPLACE does: #overwrite.)
    const stale = (prev?.rec.rvolumes ?? []).filter((v) => !kvolumes.includes(v));
    const unanswered = await this.#staleCopyUnanswered(attempt, stale, opts);
    if (unanswered) return unanswered;
    const live = liveRecord(kvolumes, result, opts.meta);
    // With copies elsewhere to remove, the key stays held until they are
    // (the record live, with the claim's lease): a master placing keys
    // otherwise (another -volumes) writes the key's next value there, and
    // a removal of ours landing after that took it.
    let made: boolean;
    try {
      made = stale.length > 0
        ? await claim.note(live, { signal: opts.stop })
        : await claim.finish(live, { signal: opts.stop });
    } catch (err) {
      // Unsent at a stopping master's cut-off, or refused by the index
      // locked at it (GroupCommit stopRetrying): the value did not go
      // live; its files go.
      if (err instanceof ShuttingDown) this.#cleanUpLater(() => this.#undo(key, kvolumes, claim));
      throw err;
    }
    if (!made) return { status: 500, message: "Lost the claim on the key mid-write" };
    const out: Outcome = { status: 201, bytes: result.bytes, record: live };
    if (stale.length === 0) return out;
    // Live: a claim lost from here on (this master paused past its lease,
    // the key taken) is the key's next write, not this one's failure.
    const stop = opts.stop;
    const removal = () =>
      this.#removeAnswered(key2path(key), stale, { signal: stop, left: oldCopyLeft });
    const undone = await this.#endHeld(live, removal, { claim, stop, from: stale });
    return undone ? { ...out, message: undone } : out;
  }

  /**
   * Ends `claim` on a key whose new record `rec` it noted (readers are sent
   * only where it says) once `removal` has removed what the write left
   * elsewhere (the earlier value's copies, files that did not switch):
   * while the key is held, no writer of it puts a file where a removal of
   * ours, landing late, would take it (a master placing keys otherwise,
   * another -volumes, writes the key's next value on such a volume).
   * `removal` says whether every volume answered; one that did not may
   * land yet, and the claim then lingers (writers wait out the lease).
   * Returns what the write left undone, null for nothing: the files whose
   * DELETE failed, each said (orphans, recorded nowhere); or, the claim
   * lost before the removal (this master paused past its lease, the key
   * taken), that the files on `from` were left (they are no longer ours to
   * remove, and none is). Lost after it, nothing more is left undone. Cut
   * off by a stopping master (`stop`) at the end's index write, or that
   * write refused by the index (indexRefused), the record noted stays,
   * live, its lease left to run out: the write is done all the same.
   */
  async #endHeld(
    rec: Record,
    removal: () => Promise<Removal>,
    opts: { claim: Claim; stop?: AbortSignal; from: string[] },
  ): Promise<string | null> {
    const { claim, stop } = opts;
    if (!(await stillHeld(claim))) return leftOnLostClaim(opts.from);
    const { answered, left } = await removal();
    await claim.finish(rec, { linger: !answered, signal: stop }).catch((err) => {
      if (!(err instanceof ShuttingDown) && !indexRefused(err)) throw err;
    });
    return left.length > 0 ? left.join("; ") : null;
  }

  /**
   * #removePaths for a write holding its key (#endHeld), one DELETE per
   * volume: whether every volume answered (the file removed, or the DELETE
   * refused), false when one may still carry it out (unanswered, or given
   * up at `signal`'s abort, a stopping master's cut-off); and each file
   * whose DELETE failed, as `left` says it (the volume and why: the
   * error, or GIVEN_UP at the cut-off).
   */
  async #removeAnswered(
    path: string,
    volumes: string[],
    opts: { signal?: AbortSignal; left: (volume: string, why: string) => string },
  ): Promise<Removal> {
    const { signal } = opts;
    const results = await Promise.allSettled(
      volumes.map((v) => this.#removePaths(path, [v], { signal })),
    );
    const failed = volumes.flatMap((v, i) => {
      const r = results[i];
      return r.status === "rejected" ? [{ v, err: r.reason }] : [];
    });
    return {
      answered: !failed.some((f) => mayLand(f.err, signal)),
      left: failed.map((f) => opts.left(f.v, cutBy(f.err, signal) ? GIVEN_UP : messageOf(f.err))),
    };
  }

  /**
   * A written PUT's check of the earlier value's copies on volumes the key
   * no longer hashes to (`stale`), removed once the new value is live (a
   * failed write's): #oldCopyUnanswered's 503 when
   * one's volume does not answer, what was written removed and the earlier
   * record kept, less the replicas written over (a copy left there would
   * be recorded nowhere, and a rebuild would bring it back after a DELETE
   * of the key); else null. Cut off by a stopping master while asking: its
   * 503, the same clean-up made after the answer.
   */
  async #staleCopyUnanswered(
    attempt: PutAttempt,
    stale: string[],
    opts: PutOptions,
  ): Promise<Outcome | null> {
    const { key, prev, kvolumes, claim } = attempt;
    if (!prev || stale.length === 0) return null;
    const undo = () => this.#undo(key, kvolumes, claim, { keep: { ...prev.rec, rvolumes: stale } });
    let silent;
    try {
      silent = await this.#oldCopyUnanswered(key, stale, { stop: opts.stop, verb: "PUT" });
    } catch (err) {
      if (!(err instanceof ShuttingDown)) throw err;
      this.#cleanUpLater(undo);
      return failedWrite(err);
    }
    if (silent) await undo();
    return silent;
  }

  /**
   * PUT's and DELETE's check, once their claim is in, on an index marked
   * incomplete: with no record, or an abandoned "writing" one, the volumes
   * may hold the value the index lacks (a master killed amid this refusal
   * left such a record over it; one killed mid-write left the same over
   * what it had written, whose copies are refused too until rebuild records
   * them: nothing in the record tells the two apart). Then #unindexedValue's
   * answer, the claim ended (the record dropped, the files kept for
   * rebuild); null to go on. A record given up after a failed write or
   * delete (not abandoned) holds that call's own files: not asked about.
   * `stop` (a stopping master's cut-off): the volumes still unanswered are
   * given up at its abort, answered with its 503, the key's record put back
   * as it was after the answer (its commit may wait on a locked index).
   */
  async #heldUnindexed(
    key: Uint8Array,
    prev: Entry | null,
    claim: Claim,
    opts: { stop?: AbortSignal } = {},
  ): Promise<Outcome | null> {
    if (!this.index.markedIncomplete) return null;
    if (prev && !(prev.rec.state === "writing" && isAbandoned(prev.rec))) return null;
    let held: Outcome | null;
    try {
      held = await this.#unindexedValue(key, opts);
    } catch (err) {
      if (!(err instanceof ShuttingDown)) throw err;
      this.#cleanUpLater(() => claim.finish(prev?.rec ?? null));
      return failedWrite(err);
    }
    if (held) await claim.finish(null).catch(() => {});
    return held;
  }

  /**
   * Whether the volumes hold a value the index lacks (it is marked
   * incomplete: a rebuild has not finished): a PUT would write over it (on
   * the key's volumes), or put a new value beside it that a rebuild takes
   * for the newer copy (elsewhere: volumes added, the key not rebalanced),
   * and one that failed would delete it; an S3 delete answered as made
   * would see it come back with rebuild. Every volume is asked, as rebuild
   * reads every one: 409 when one holds a file, 503 when one cannot say
   * (within -voltimeout), null when none holds one. `stop` (a stopping
   * master's cut-off): the HEADs still unanswered are given up at its
   * abort, which is then what throws (ShuttingDown: 503).
   */
  async #unindexedValue(
    key: Uint8Array,
    opts: { stop?: AbortSignal } = {},
  ): Promise<Outcome | null> {
    const path = key2path(key);
    const places = this.#everyPlace(key);
    const signal = opts.stop;
    const heads = await Promise.all(
      places.map((v) => headStatus(volumeUrl(v, path), this.opts.voltimeout, { signal })),
    );
    if (heads.includes(200)) return { status: 409, message: UNINDEXED, unindexed: true };
    const unsure = places.filter((_, i) => heads[i] !== 404);
    if (unsure.length === 0) return null;
    const message = `The index is incomplete (a rebuild has not finished) and ` +
      `${unsure.join(", ")} did not say whether ${
        unsure.length === 1 ? "it holds" : "they hold"
      } ` +
      `a value for this key: retry once ${unsure.length === 1 ? "it answers" : "they answer"}, ` +
      `or run rebuild`;
    return { status: 503, message, unindexed: true };
  }

  /**
   * Writes the body to `path` on every volume; throws on the first failure.
   * A small value of known size is read whole and sent in one write per
   * replica over pooled connections (cheaper than a stream per replica);
   * anything else streams to all replicas in lock step (lib/fanout.ts).
   */
  #write(
    path: string,
    volumes: string[],
    body: ReadableStream<Uint8Array>,
    opts: WriteOptions,
  ): Promise<FanoutResult> {
    const md5 = opts.md5 || this.opts.md5sum;
    if (opts.size !== null && opts.size <= SMALL_WRITE) {
      return this.#writeSmall(path, volumes, body, { ...opts, md5, size: opts.size });
    }
    return this.#writeStreamed(path, volumes, body, { ...opts, md5 });
  }

  /** #write of a small value of known size: read whole, then one PUT per replica. */
  async #writeSmall(
    path: string,
    volumes: string[],
    body: ReadableStream<Uint8Array>,
    opts: WriteOptions & { size: number },
  ): Promise<FanoutResult> {
    const { signal, fence, size } = opts;
    const expectMd5 = opts.expectMd5 ?? "";
    let value;
    try {
      value = await readSmall(body, size, { signal, stall: this.opts.stall });
      if (value.length < size) {
        throw new SourceError(
          400,
          `The request body ended early: ${value.length} of ${size} bytes`,
        );
      }
    } catch (err) {
      // Read whole before any replica is asked: none can have a file of it.
      for (const v of volumes) opts.untouched?.add(v);
      throw err;
    }
    if (fence && !(await fence())) throw new LostClaim();
    const sum = opts.md5 || expectMd5 ? toHex(md5sum(value)) : "";
    if (expectMd5 && sum !== expectMd5) {
      for (const v of volumes) opts.untouched?.add(v);
      throw new DigestMismatch(sum, expectMd5);
    }
    const put = { signal, stall: this.opts.stall };
    // Every PUT settles before a failure is told: the caller then removes
    // what was written, and a PUT still in flight would land after that.
    const settled = await Promise.allSettled(
      volumes.map((v) => remotePut(volumeUrl(v, path), value, put)),
    );
    for (const v of unreached(settled, volumes)) opts.untouched?.add(v);
    settled.forEach((s, i) => {
      if (s.status === "rejected" && unanswered(s.reason)) opts.unanswered?.add(volumes[i]);
    });
    const failed = settled.find((s) => s.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return { bytes: value.length, md5: sum };
  }

  /** #write of any other value: streamed to every replica in lock step. */
  async #writeStreamed(
    path: string,
    volumes: string[],
    body: ReadableStream<Uint8Array>,
    opts: WriteOptions,
  ): Promise<FanoutResult> {
    const { signal, fence, refuseEmpty, md5 } = opts;
    const stall = this.opts.stall;
    const length = opts.size;
    const opened = await Promise.allSettled(
      volumes.map((v) => openPut(volumeUrl(v, path), { length, signal, stall })),
    );
    const puts = opened.flatMap((o) => o.status === "fulfilled" ? [o.value] : []);
    for (const v of unreached(opened, volumes)) opts.untouched?.add(v);
    try {
      const refused = opened.find((o) => o.status === "rejected");
      if (refused) throw (refused as PromiseRejectedResult).reason;
      const expectMd5 = opts.expectMd5 ?? "";
      const options = { md5: !!md5, length, stall, fence, refuseEmpty, signal, expectMd5 };
      const result = await fanout(body, puts, options);
      // Every answer settles before a failure is told: the caller then
      // removes what was written, and a PUT still landing would come after.
      const answers = await Promise.allSettled(puts.map((p) => p.end()));
      const failed = answers.find((a) => a.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
      return result;
    } catch (err) {
      await Promise.all(puts.map((p) => p.cancel()));
      const reached = volumes.filter((_, i) => opened[i].status === "fulfilled");
      reached.forEach((v, i) => puts[i].cutOff && opts.untouched?.add(v));
      reached.forEach((v, i) => puts[i].unanswered && opts.unanswered?.add(v));
      throw err;
    }
  }

  /**
   * REPLACE: overwrite a live key. The new value is written beside the old
   * one under a temporary name, renamed over it on each replica (atomic per
   * file), then the index switched in one commit and old copies elsewhere
   * removed. Readers meanwhile get the old value or the new one, never a
   * 404 or a mix. 404 when the key is not live (PUT creates).
   */
  async replace(
    key: Uint8Array,
    body: ReadableStream<Uint8Array> | null,
    opts: PutOptions,
  ): Promise<Outcome> {
    const refused = refuseBody(key, body, opts);
    if (refused || !body) return refused!;
    return await this.#exclusive(key, async () => {
      const prev = await this.#replaceable(key, opts);
      if ("status" in prev) return prev;
      return await this.#overwrite(key, prev, body, opts);
    });
  }

  /**
   * REPLACE's write over the live value `prev`, and PUT's over an unlinked
   * one: the new value written to a temporary beside it on each replica,
   * the switch recorded, then renamed over it (#switch). Until the switch
   * is recorded, a failure leaves `prev` as it was (its files untouched,
   * the temporaries removed). A PUT's switch makes the key live.
   */
  async #overwrite(
    key: Uint8Array,
    prev: Entry,
    body: ReadableStream<Uint8Array>,
    opts: PutOptions,
  ): Promise<Outcome> {
    // The hold is a compare-and-set on the record just checked.
    const held = await orDropped(
      Claim.hold(this.index, key, prev, { ...this.opts, signal: opts.signal }),
      opts.signal,
    );
    if ("answer" in held) return held.answer;
    const claim = held.value;
    if (!claim) return inFlight();
    const put = prev.rec.state === "unlinked";
    const kvolumes = this.kvolumes(key);
    const tmp = temporaryName(key2path(key));
    const written = await this.#writeTemporary(tmp, kvolumes, body, { claim, put: opts });
    if ("status" in written) return written;
    const elsewhere = prev.rec.rvolumes.filter((v) => !kvolumes.includes(v));
    const cleanUp = async () => {
      await this.#removePaths(tmp, kvolumes).catch(() => {});
      await claim.release();
    };
    let refused;
    try {
      refused = refuseWritten(written, opts) ??
        await this.#oldCopyUnanswered(key, elsewhere, {
          stop: opts.stop,
          verb: put ? "PUT" : "REPLACE",
        });
    } catch (err) {
      // Cut off waiting on that HEAD: no switch recorded, the old value
      // stays; answered before the clean-up, as a cut-off upload's.
      if (!(err instanceof ShuttingDown)) throw err;
      this.#cleanUpLater(cleanUp);
      return failedWrite(err);
    }
    if (refused) {
      await cleanUp();
      return refused;
    }
    const rec = liveRecord(kvolumes, written, opts.meta);
    const next: Next = put ? { rec, tmp, put } : { rec, tmp };
    const unnoted = await this.#noteSwitch(prev.rec, next, { claim, stop: opts.stop });
    if (unnoted) return unnoted;
    const out = await this.#switchNoted(key, prev.rec, next, { claim, stop: opts.stop });
    return out.status === 201 ? { ...out, bytes: written.bytes } : out;
  }

  /**
   * The key's record when a REPLACE may overwrite it (live, not claimed,
   * no switch pending, and as `opts.expect` wants it); else the answer.
   */
  async #replaceable(key: Uint8Array, opts: PutOptions): Promise<Entry | Outcome> {
    const prev = await this.entry(key, { stop: opts.stop });
    if (prev && isClaimed(prev.rec)) return inFlight(prev.rec);
    if (prev?.rec.next) return unfinishedSwitch(prev.rec.next);
    if (prev?.rec.state !== "live") {
      return this.#notFound(prev, "No live key to replace (PUT creates)");
    }
    return opts.expect?.(prev.rec) ?? prev;
  }

  /**
   * Writes a REPLACE's new value to `tmp` on `kvolumes` under `claim`; the
   * answer instead when that failed, what was written removed and the claim
   * given back (the old value stays live).
   */
  async #writeTemporary(
    tmp: string,
    kvolumes: string[],
    body: ReadableStream<Uint8Array>,
    opts: { claim: Claim; put: PutOptions },
  ): Promise<FanoutResult | Outcome> {
    const { claim, put } = opts;
    const signal = put.signal ? AbortSignal.any([put.signal, claim.signal]) : claim.signal;
    // Volumes the failed write cannot have left a temporary on (never
    // reached, or the body cut off, as a refused empty one is): not asked
    // to delete one, which only logged a "No such file" on each nginx.
    const untouched = new Set<string>();
    try {
      return await this.#write(tmp, kvolumes, body, {
        signal,
        md5: put.md5,
        size: put.contentLength,
        fence: () => claim.confirm(),
        refuseEmpty: !put.allowEmpty,
        untouched,
        expectMd5: put.expectMd5,
      });
    } catch (err) {
      // Nothing names the temporaries yet, and the claim leaves the old
      // value live: cut off by a stopping master, answered before the
      // clean-up, as PUT's (its commit may wait on a locked index).
      const touched = kvolumes.filter((v) => !untouched.has(v));
      const cleanUp = async () => {
        await this.#removePaths(tmp, touched).catch(() => {});
        await claim.release();
      };
      if (err instanceof ShuttingDown) this.#cleanUpLater(cleanUp);
      else await cleanUp();
      return failedWrite(sentWrong(err));
    }
  }

  /**
   * 503 when a volume of `elsewhere` (replicas of the old value on volumes
   * the key no longer hashes to: added since it was written, not
   * rebalanced) does not say whether it holds the key's file, else null.
   * Those copies are removed once the new value is live (REPLACE's #switch,
   * a PUT over an unlinked value), and one left there would be recorded
   * nowhere: a DELETE of the key would not remove it, and a rebuild would
   * bring it back (the deleted key, or its old value beside the new). Asked
   * once the new value is written, just before it is recorded, so that only
   * a volume going down within those milliseconds can still leave one.
   * `verb`: the write asking, named in the answer (REPLACE when not given).
   * `stop` (a stopping master's cut-off): the HEADs still unanswered are
   * given up at its abort, which is then what throws (ShuttingDown).
   */
  async #oldCopyUnanswered(
    key: Uint8Array,
    elsewhere: string[],
    opts: { stop?: AbortSignal; verb?: string } = {},
  ): Promise<Outcome | null> {
    const path = key2path(key);
    const signal = opts.stop;
    const heads = await Promise.all(
      elsewhere.map((v) => headStatus(volumeUrl(v, path), this.opts.voltimeout, { signal })),
    );
    const silent = elsewhere.find((_, i) => heads[i] !== 200 && heads[i] !== 404);
    if (silent === undefined) return null;
    const message = `Volume ${volumeOfReplica(silent)} holds the key's old value and did not ` +
      `answer: the ${opts.verb ?? "REPLACE"} would leave that copy there, recorded nowhere ` +
      "(a rebuild brings it back); retry once it answers";
    return { status: 503, message };
  }

  /**
   * Records the switch to `next` over `old` under `opts.claim`, before the
   * first rename: null once recorded, else the answer (the temporaries
   * removed when the index cannot have taken it, the claim given back).
   */
  async #noteSwitch(
    old: Record,
    next: Next,
    opts: { claim: Claim; stop?: AbortSignal },
  ): Promise<Outcome | null> {
    const { claim, stop } = opts;
    const kvolumes = next.rec.rvolumes;
    // Said in the index before the first rename: a master that dies amid
    // them leaves the record to switch to and where the value waits, and
    // whoever reads the key next finishes the switch (#settle).
    let noted;
    try {
      noted = await claim.confirm() &&
        await claim.note({ ...settled(old), next }, { signal: stop });
    } catch (err) {
      // Unsent at a stopping master's cut-off, or refused by the index
      // locked at it: nothing was written, as when fenced. Answered
      // before the clean-up (its commit may wait on a locked index).
      const cleanUp = async () => {
        if (err instanceof Fenced || err instanceof ShuttingDown) {
          await this.#removePaths(next.tmp, kvolumes).catch(() => {});
        }
        await claim.release().catch(() => {});
      };
      // Otherwise the index may have taken the switch all the same: the
      // temporaries stay for whoever finishes it (verify takes them for
      // orphans only when no record names them).
      if (err instanceof ShuttingDown) this.#cleanUpLater(cleanUp);
      else await cleanUp();
      return failedWrite(err);
    }
    if (!noted) {
      await this.#removePaths(next.tmp, kvolumes).catch(() => {});
      // Short of time but not taken over: given up, not renewed for good.
      await claim.release().catch(() => {});
      return lostClaim(new LostClaim(), claim);
    }
    return null;
  }

  /**
   * #switch of a REPLACE whose switch is recorded. A stopping master's
   * cut-off (`opts.stop`) before the renames, or at an index write of the
   * switch still unsent, answers 503, the claim abandoned.
   */
  async #switchNoted(
    key: Uint8Array,
    old: Record,
    next: Next,
    opts: { claim: Claim; stop?: AbortSignal },
  ): Promise<Outcome> {
    const { claim, stop } = opts;
    // The switch recorded is the key's to finish now, ours or, past the
    // lease, its next request's: cut off before the renames, it is that's.
    try {
      if (stop?.aborted) throw stop.reason;
      return await this.#switch(key, old, next, claim, { stop });
    } catch (err) {
      if (!(err instanceof ShuttingDown)) throw err;
      claim.abandon();
      return switchRecorded(next);
    }
  }

  /**
   * The second half of a REPLACE, under `claim` with `next` recorded:
   * renames the new value over the old on each replica, makes the index
   * name the replicas that switched, removes the old copies left elsewhere.
   * `stop` (a stopping master's cut-off): a rename (or the HEAD telling
   * whether one was made) or an index write still unanswered or unsent at
   * its abort is given up, throwing ShuttingDown, the switch left recorded
   * (the caller abandons the claim: past its lease, the key's next request
   * finishes the switch, as after a master killed amid the renames: a
   * rename given up may still land); once the index names the replicas
   * that switched, what is left of the work is given up at it (the value
   * live).
   */
  async #switch(
    key: Uint8Array,
    old: Record,
    next: Next,
    claim: Claim,
    opts: { stop?: AbortSignal } = {},
  ): Promise<Outcome> {
    const { stop } = opts;
    const switching: Switching = { path: key2path(key), tmp: next.tmp, claim, stop };
    const kvolumes = next.rec.rvolumes;
    const moves = await Promise.allSettled(
      kvolumes.map((v) => this.#rename(v, next.tmp, switching.path, next.rec.size, { stop })),
    );
    if (moves.some((m) => m.status === "rejected" && cutBy(m.reason, stop))) throw stop!.reason;
    const switched = kvolumes.filter((_, i) => moves[i].status === "fulfilled");
    if (switched.length === 0) return await this.#noneSwitched(old, next, moves, switching);
    // The replicas that switched hold the new value now: the index must
    // say so (readers are sent only there), and the rest are orphans.
    // An UNLINK of an older version may have come since: the key stays
    // unlinked. A PUT's switch over an unlinked value makes it live.
    const live: Record = { ...next.rec, rvolumes: switched };
    if (old.state === "unlinked" && !next.put) live.state = "unlinked";
    const unswitched = kvolumes.filter((v) => !switched.includes(v));
    // The old value's copies on volumes the key no longer hashes to.
    const elsewhere = old.rvolumes.filter((v) => !kvolumes.includes(v));
    const undone = await this.#endSwitch(live, { unswitched, elsewhere }, switching);
    const failure = firstRejected(moves);
    if (failure) {
      const message = `${messageOf(failure.reason)} (the new value is live on ` +
        `${switched.length} of ${kvolumes.length} replicas: REBALANCE the key to copy it back)`;
      return { status: 500, message: undone ? `${message}; ${undone}` : message, record: live };
    }
    const out: Outcome = { status: 201, record: live };
    return undone ? { ...out, message: undone } : out;
  }

  /**
   * #switch when no replica took the new value (`moves`, every rename
   * failed): the old value stays (500), or, when a volume may have renamed
   * all the same, the switch stays recorded for a later request (503).
   */
  async #noneSwitched(
    old: Record,
    next: Next,
    moves: PromiseSettledResult<void>[],
    switching: Switching,
  ): Promise<Outcome> {
    const { tmp, claim, stop } = switching;
    const failure = firstRejected(moves)!;
    // A volume that did not answer may have renamed all the same: then
    // the switch stays recorded, for a later read of the key to finish.
    const unknown = moves.some((m) =>
      m.status === "rejected" && !(m.reason instanceof VolumeError && m.reason.status > 0)
    );
    if (unknown) {
      // A rename that went unanswered may land yet: until the lease has
      // run out nobody finishes the switch (linger), or one that found
      // the temporaries there would keep the old value and remove them,
      // and the rename landing between the two put the new value under
      // the old record.
      const landing = moves.some((m) =>
        m.status === "rejected" && unanswered(m.reason) && !(m.reason instanceof Undecided)
      );
      await claim.finish({ ...settled(old), next }, { linger: landing, signal: stop });
      const why = messageOf(failure.reason);
      const wait = landing ? " and -lease has passed" : "";
      return {
        status: 503,
        message: `${why} (the ${verbOf(next)} is finished once the volumes answer${wait})`,
      };
    }
    // No replica took the new value: the old one stays, as it was. The
    // index forgets the switch before the temporaries go: a master killed
    // between the two would leave a switch whose temporaries are gone,
    // which the next reader takes for renamed (#rename).
    const why = messageOf(failure.reason);
    if (!await claim.finish(settled(old), { signal: stop })) {
      // The switch is still recorded, and the key another's: whoever took
      // it finishes the switch (#settle), the temporaries its to rename
      // or remove. Which value that leaves is not known here.
      return { status: 503, message: `${why} ${REFUSED_THEN_LOST}` };
    }
    await this.#removePaths(tmp, next.rec.rvolumes).catch(() => {});
    const kept = next.put ? "the key stays unlinked, its value as it was" : "the old value stays";
    return { status: 500, message: `${why} (${kept})` };
  }

  /**
   * Ends a switch that some replicas took: the index names `live` (the
   * replicas that switched), then the files left behind are removed while
   * the key is still held (#endHeld): the temporary and the file of each
   * of the key's volumes that did not switch (`unswitched`), where the
   * key's next writer writes, and the old value's copies on volumes the
   * key no longer hashes to (`elsewhere`), where a master placing keys
   * otherwise does. The index names the switched replicas first: the old
   * record's readers must not be sent to a replica whose file is going.
   * Returns what it left undone, null for nothing. When the claim was lost
   * before the index named them (this master paused past its lease),
   * whoever took the key finished the switch recorded first (#settle), and
   * found the renames made here done (the temporary gone, the file of the
   * new value's size), so the new value went live all the same
   * (SWITCH_FINISHED_BY_NEXT). Lost once the index had named them, the
   * files are left where they are (leftOnLostClaim). When the index
   * refused that write (indexRefused), nothing of it written, the switch
   * recorded before the renames stays, the claim abandoned: once its lease
   * has run out, the key's next request finishes it as it finishes a dead
   * master's, finding these renames made (switchLeftRecorded).
   */
  async #endSwitch(
    live: Record,
    left: { unswitched: string[]; elsewhere: string[] },
    switching: Switching,
  ): Promise<string | null> {
    const { path, tmp, claim, stop } = switching;
    const { unswitched, elsewhere } = left;
    const nothingLeft = unswitched.length === 0 && elsewhere.length === 0;
    let noted;
    try {
      noted = nothingLeft
        ? await claim.finish(live, { signal: stop })
        : await claim.note(live, { signal: stop });
    } catch (err) {
      // The index may have taken the new record or not. Not released
      // (that would write the record held before, without `next`, over
      // replicas renamed already): once the lease runs out, the next
      // reader finishes the switch, or finds it done.
      claim.abandon();
      if (indexRefused(err)) return switchLeftRecorded(err);
      throw err;
    }
    if (!noted) return SWITCH_FINISHED_BY_NEXT;
    if (nothingLeft) return null;
    const removal = async () =>
      together(
        await Promise.all([
          ...unswitched.map((v) => this.#unswitch(v, tmp, path, { stop })),
          this.#removeAnswered(path, elsewhere, { signal: stop, left: oldCopyLeft }),
        ]),
      );
    return await this.#endHeld(live, removal, { claim, stop, from: [...unswitched, ...elsewhere] });
  }

  /**
   * Removes the temporary, then the file, from a replica that did not
   * switch. The temporary first: once the volume has answered for it, a
   * rename of it that went unanswered can no longer land on a later value.
   * Not answered when a DELETE went unanswered (it may still land), or was
   * given up at `opts.stop`'s abort (a stopping master's cut-off).
   */
  async #unswitch(
    volume: string,
    tmp: string,
    path: string,
    opts: { stop?: AbortSignal } = {},
  ): Promise<Removal> {
    const signal = opts.stop;
    const tmpGone = await this.#removeAnswered(tmp, [volume], { signal, left: temporaryLeft });
    const fileGone = await this.#removeAnswered(path, [volume], { signal, left: oldCopyLeft });
    return together([tmpGone, fileGone]);
  }

  /**
   * Renames the new value `tmp` over `path` on `volume`; throws if it is not
   * there after. A VolumeError with a status says the volume holds the old
   * value (or none); any other error, that it may hold either. The MOVE gets
   * the stall bound of value transfers, not -voltimeout: renaming over a
   * large file takes the file system time in proportion (ext4 flushes the
   * new file's data first: a 1 GiB value's took 0.5-0.7 s, over 1 s with its
   * three replicas on one disk), and a rename taken for unanswered fails the
   * REPLACE with a 503. `opts.stop` (a stopping master's cut-off): each
   * call is given up at its abort, rejecting with its reason (a rename
   * given up may still land, as a dead master's).
   */
  async #rename(
    volume: string,
    tmp: string,
    path: string,
    size: number,
    opts: { stop?: AbortSignal } = {},
  ): Promise<void> {
    const t = this.opts.voltimeout;
    const signal = opts.stop;
    try {
      const to = volumeUrl(volume, path);
      const moved = await remoteMove(volumeUrl(volume, tmp), to, this.opts.stall, { signal });
      if (moved === "moved") return;
    } catch (err) {
      if (unanswered(err) || !(err instanceof VolumeError)) throw err;
      // Refused: this rename did not happen, but one by a master that died
      // amid the switch may have. The temporary still there says none did.
      if (await this.#holds(volume, tmp, err, { signal })) throw err;
    }
    // No such temporary: renamed already, by a master that died before the
    // index could say so. Its size tells that file from the old value's
    // (as far as it can: verify -md5 checks the bytes).
    const url = volumeUrl(volume, path);
    const found = await remoteSize(url, t, { signal }).catch((err) => {
      if (cutBy(err, signal)) throw err;
      throw undecided(`Cannot tell whether "${url}" holds the new value: ${messageOf(err)}`);
    });
    if (found === size) return;
    // An answer: with the temporary gone, no rename of it can come later.
    const why = `"${url}" does not hold the new value (${found ?? "no"} bytes)`;
    throw new VolumeError(why, 404);
  }

  /**
   * Whether `tmp` is still on `volume`, after its rename was `refused`.
   * Throws when the volume cannot say: the old value or the new may be there;
   * `opts.signal`'s reason at its abort (a stopping master's cut-off).
   */
  async #holds(
    volume: string,
    tmp: string,
    refused: VolumeError,
    opts: { signal?: AbortSignal } = {},
  ): Promise<boolean> {
    const url = volumeUrl(volume, tmp);
    // Whether it is there is all that counts: a HEAD's status (its size
    // would need a read in full behind a proxy that sends no Content-Length).
    const status = await headStatus(url, this.opts.voltimeout, opts);
    if (status === 200 || status === 404) return status === 200;
    const why = `${refused.message}; cannot tell whether "${url}" was renamed before`;
    const seen = status === 0 ? `no answer within -voltimeout` : `status ${status}`;
    throw undecided(`${why}: ${seen}`);
  }

  /**
   * The key's record, as it is in the index. A REPLACE left half done by a
   * master that died amid its renames (its lease ran out) is finished first.
   * `stop`: #settle's.
   */
  async entry(key: Uint8Array, opts: { stop?: AbortSignal } = {}): Promise<Entry | null> {
    const e = await this.index.get(key);
    return e && stranded(e.rec) ? await this.#settle(key, e, opts) : e;
  }

  /**
   * For readers: the key's record once no REPLACE is switching it (renames
   * take milliseconds: waited for up to SWITCH_WAIT), a switch left by a
   * dead master finished first. Past the wait, the record as it is: its
   * `next` says a replica may hold either value. `e`: the record just read;
   * `stop`: #settle's.
   */
  async readEntry(
    key: Uint8Array,
    opts: { e?: Entry | null; stop?: AbortSignal } = {},
  ): Promise<Entry | null> {
    let e = opts.e === undefined ? await this.index.get(key) : opts.e;
    const until = performance.now() + SWITCH_WAIT;
    while (e?.rec.next) {
      if (stranded(e.rec)) return await this.#settle(key, e, opts);
      if (performance.now() >= until) break;
      await new Promise((r) => setTimeout(r, 5));
      e = await this.index.get(key);
    }
    return e;
  }

  /**
   * Finishes the REPLACE recorded in `e`: its replicas hold the new value
   * or the old, and only renaming again tells which. Returns the record
   * after (held by another when it was first to finish it). `stop` (a
   * stopping master's cut-off): an index write of it still unsent at its
   * abort is dropped, throwing ShuttingDown (the request is cut off), the
   * switch left recorded for the key's next request, as it was found.
   */
  async #settle(
    key: Uint8Array,
    e: Entry,
    opts: { stop?: AbortSignal } = {},
  ): Promise<Entry | null> {
    const { stop } = opts;
    const claim = await Claim.hold(this.index, key, e, { ...this.opts, signal: stop });
    if (claim) {
      await this.#switch(key, e.rec, e.rec.next!, claim, { stop }).catch(async (err) => {
        // Its lease runs out unrenewed: no write of the index after the cut.
        if (err instanceof ShuttingDown) claim.abandon();
        else await claim.release().catch(() => {});
        throw err;
      });
    }
    return await this.index.get(key);
  }

  /**
   * Streams `body` to `path` on `volumes`, outside any key (S3's multipart
   * parts); throws on the first failure, the caller removes what is left.
   * `size`, when known, is the body's length: the volumes get it as their
   * Content-Length (a small body in one write), and a body of another
   * length fails (SourceError 400) before any volume keeps a file.
   */
  writeFile(
    path: string,
    volumes: string[],
    body: ReadableStream<Uint8Array>,
    opts: { signal: AbortSignal; size: number | null },
  ): Promise<FanoutResult> {
    return this.#write(path, volumes, body, { signal: opts.signal, md5: true, size: opts.size });
  }

  /** Removes `path` from `volumes` (gone already counts as removed). */
  removeFile(path: string, volumes: string[]): Promise<void> {
    return this.#removePaths(path, volumes);
  }

  /**
   * Deletes the key's file on `volume`, which its record does not name (an
   * orphan: verify -repair), under a claim on the key, so that a write of
   * the key meanwhile waits (409) rather than having its new file deleted.
   * 409 when the key is in use: claimed, being written, or on `volume` now.
   * 204 once deleted, with `message` saying why the claim was not given
   * back when it was not (the index refused the write, or the claim was
   * lost meanwhile): the key's writes then get 409 until its lease runs
   * out. A delete that failed throws, and says so of the claim too.
   */
  async removeOrphan(key: Uint8Array, volume: string): Promise<Outcome> {
    return await this.#exclusive(key, async () => {
      const prev = await this.entry(key);
      if (prev && (isClaimed(prev.rec) || prev.rec.state === "writing")) return inFlight();
      if (prev?.rec.next) return unfinishedSwitch(prev.rec.next);
      if (prev?.rec.rvolumes.includes(volume)) return { status: 409, message: "Recorded there" };
      // A live or unlinked key stays readable; a key with no record gets a
      // "writing" one for the moment.
      const claim = prev
        ? await Claim.hold(this.index, key, prev, this.opts)
        : await Claim.take(this.index, key, null, [], this.opts);
      if (!claim) return inFlight();
      let failed: unknown = null;
      try {
        if (!(await claim.confirm())) throw new LostClaim();
        await this.#removeFiles(key, [volume]);
      } catch (err) {
        failed = err;
      }
      const kept = await (prev ? claim.release() : claim.finish(null)).then(
        (ok) => ok ? "" : "the hold was lost meanwhile",
        (err) => `the index refused it: ${messageOf(err)}`,
      );
      if (failed === null) return kept ? { status: 204, message: kept } : { status: 204 };
      // A claim lost before the delete: its error says so already.
      if (!kept || failed instanceof LostClaim) throw failed;
      throw new Error(`${messageOf(failed)}; hold on the key not released: ${kept}`);
    });
  }

  /**
   * A failed write: remove what was written, then the record if all went
   * (or, `keep`, put that record back: an earlier value's still on other
   * volumes). `landing`: a PUT of it went unanswered and may be stored yet:
   * the key then stays "writing" with a lease nobody renews (linger), so no
   * write of the key meanwhile has its file replaced by this failed one.
   */
  async #undo(
    key: Uint8Array,
    volumes: string[],
    claim: Claim,
    opts: { landing?: boolean; keep?: Record } = {},
  ) {
    try {
      await this.#removeFiles(key, volumes);
      await (opts.landing ? claim.release({ linger: true }) : claim.finish(opts.keep ?? null));
    } catch (err) {
      // Some file may remain: leave the key "writing" for DELETE or repair
      // (after the lease, when a DELETE of ours may land yet).
      await claim.release({ linger: unanswered(err) });
    }
  }

  /** Whether the key's record is no longer the one read as `e`. */
  async #changed(key: Uint8Array, e: Entry): Promise<boolean> {
    return (await this.index.get(key))?.versionstamp !== e.versionstamp;
  }

  /**
   * Key-Balance and the volume path, computed once per cached record (each
   * costs md5s: one per volume for the balance, one for the path).
   */
  #placement(key: Uint8Array, e: Entry): { balance: string; path: string } {
    let p = this.#placed.get(e);
    if (p === undefined) {
      const unbalanced = needsRebalance(e.rec.rvolumes, this.kvolumes(key));
      p = { balance: unbalanced ? "unbalanced" : "balanced", path: key2path(key) };
      this.#placed.set(e, p);
    }
    return p;
  }

  #removeFiles(key: Uint8Array, volumes: string[], opts: { signal?: AbortSignal } = {}) {
    return this.#removePaths(key2path(key), volumes, opts);
  }

  /**
   * Removes a value's file (a key's, a temporary, a part) from `volumes`.
   * Each DELETE gets the stall bound of value transfers, not -voltimeout:
   * unlinking a large file written recently waits for its pages under
   * writeback (12 DELETEs of 256 MiB values at once on one disk: half took
   * over 1 s), and one taken for unanswered fails its request and keeps
   * the key from writers until the lease runs out. `signal`: the DELETEs
   * still unanswered are given up at its abort, which is then what throws
   * (they may still be carried out).
   */
  async #removePaths(path: string, volumes: string[], opts: { signal?: AbortSignal } = {}) {
    const { signal } = opts;
    const results = await Promise.allSettled(
      volumes.map((v) => remoteDelete(volumeUrl(v, path), this.opts.stall, { signal })),
    );
    const failures = results.flatMap((r) => r.status === "rejected" ? [r.reason] : []);
    const givenUp = signal?.aborted && failures.includes(signal.reason);
    if (givenUp) throw signal.reason;
    // One the volume may still carry out, if any: callers wait for it.
    if (failures.length > 0) throw failures.find(unanswered) ?? failures[0];
  }

  /**
   * DELETE: files and record. With `keepUnlinked` (S3's deletes, to which an
   * unlinked key does not exist) an unlinked key is left as it is: 404.
   * `expect` (S3's If-Match) is checked against the record (null when there
   * is no live one) before anything is deleted; an outcome is answered instead.
   * With `askVolumes` (S3's deletes, which answer a missing key as deleted),
   * a key with no record in an index marked incomplete is looked for on
   * every volume as PUT does (`unindexed`): 409 when one holds a file, which
   * rebuild brings back, 503 when one cannot say, 404 when none holds one.
   * `stop`: a stopping master's cut-off (not the client's going: a DELETE
   * runs to its end without it), see #deleteEntry.
   */
  async delete(
    key: Uint8Array,
    opts: {
      keepUnlinked?: boolean;
      expect?: (prev: Record | null) => Outcome | null;
      askVolumes?: boolean;
      stop?: AbortSignal;
    } = {},
  ): Promise<Outcome> {
    if (!keyFits(key)) return tooLong();
    return await this.#exclusive(key, async () => {
      const prev = await this.entry(key, { stop: opts.stop });
      if (prev && isClaimed(prev.rec)) return inFlight(prev.rec);
      if (prev?.rec.next) return unfinishedSwitch(prev.rec.next);
      const unexpected = opts.expect?.(prev?.rec.state === "live" ? prev.rec : null);
      if (unexpected) return unexpected;
      if (!prev && opts.askVolumes && this.index.markedIncomplete) {
        const held = await this.#unindexedValue(key, { stop: opts.stop });
        if (held) return held;
      }
      if (!prev) return this.#notFound(prev, "No such key");
      if (opts.keepUnlinked && prev.rec.state === "unlinked") return notFound("No such key");
      if (this.opts.protect && prev.rec.state === "live") {
        return { status: 403, message: "Protected: UNLINK the key before DELETE" };
      }
      return await this.#deleteEntry(key, prev, { stop: opts.stop });
    });
  }

  /**
   * verify -repair: removes a "writing" record whose lease ran out (its
   * writer died) with its files, only while it is still the record read as
   * `e`. A PUT may have taken the key over since: the key and its files are
   * that write's then, live ones included. 409 when the record changed.
   * `keepFiles` (the index is marked incomplete): the record only. Its
   * files may be a value the index lacks (a PUT killed after it claimed the
   * key, before it dropped the claim on finding a file there): rebuild
   * brings that back, and a PUT of the key, with no record, asks the
   * volumes first.
   */
  async removeExpired(
    key: Uint8Array,
    e: Entry,
    opts: { keepFiles?: boolean } = {},
  ): Promise<Outcome> {
    return await this.#exclusive(key, async () => {
      if (e.rec.state !== "writing" || isClaimed(e.rec)) return inFlight();
      if (!opts.keepFiles) return await this.#deleteEntry(key, e);
      return await this.index.cas(key, e.versionstamp, null) === null
        ? inFlight()
        : { status: 204 };
    });
  }

  /**
   * Files, then record, of the key whose record was read as `prev`; 409 if
   * it changed since. At `stop`'s abort (a stopping master's cut-off) a
   * claim still waiting to be written is dropped (503, the key as it was),
   * and volumes' DELETEs still unanswered are given up (503): the key is
   * left as a DELETE a volume never answered leaves it, non-live
   * ("writing"), its writers waiting out the lease (a DELETE sent may land yet).
   */
  async #deleteEntry(
    key: Uint8Array,
    prev: Entry,
    opts: { stop?: AbortSignal } = {},
  ): Promise<Outcome> {
    const { stop } = opts;
    // A compare-and-set on the record read: one changed since is not ours to delete.
    const took = await orDropped(
      Claim.take(this.index, key, prev, prev.rec.rvolumes, { ...this.opts, signal: stop }),
      stop,
    );
    if ("answer" in took) return took.answer;
    const claim = took.value;
    if (!claim) return inFlight();
    if (!(await claim.confirm())) {
      await claim.release().catch(() => {});
      return lostClaim(new LostClaim(), claim);
    }
    // Read once the claim, carrying this master's fence, is in: files kept
    // for rebuild when they may be the value the index lacks.
    const held = await this.#heldUnindexed(key, prev, claim, { stop });
    if (held) return held;
    try {
      await this.#removeFiles(key, prev.rec.rvolumes, { signal: stop });
    } catch (err) {
      // A DELETE the volume never answered (or given up at the cut-off) may
      // land yet, on the files of the key's next write: that waits out the
      // lease (linger). Cut off: answered before the claim is given up, whose
      // commit may wait on a locked index (the master waits for it, cleanedUp).
      if (err instanceof ShuttingDown) {
        this.#cleanUpLater(() => claim.release({ linger: true }));
        return failedWrite(err);
      }
      await claim.release({ linger: unanswered(err) });
      return { status: 500, message: messageOf(err) };
    }
    // Unsent at the cut-off: the key is left non-live, as above, its files
    // gone; past the lease, a DELETE removes the record.
    const finished = await orDropped(claim.finish(null, { signal: stop }), stop);
    if ("answer" in finished) return finished.answer;
    if (!finished.value) return { status: 500, message: "Lost the claim on the key mid-delete" };
    return { status: 204 };
  }

  /**
   * RELINK: undoes an UNLINK while a replica still has the value (#remains).
   * `stop`: a stopping master's cut-off, at which the HEAD checks of the
   * replicas still unanswered are given up and the write still waiting to
   * be sent to the index is dropped (503, the key as it was; #relabel).
   */
  async relink(key: Uint8Array, opts: { stop?: AbortSignal } = {}): Promise<Outcome> {
    if (!keyFits(key)) return tooLong();
    return await this.#exclusive(key, async () => {
      const prev = await this.entry(key, opts);
      if (prev && isClaimed(prev.rec) && !isLingering(prev.rec)) return inFlight(prev.rec);
      if (prev?.rec.next) return unfinishedSwitch(prev.rec.next);
      if (prev?.rec.state !== "unlinked") return this.#notFound(prev, "No unlinked key to relink");
      const gone = await this.#remains(key, prev.rec, opts);
      if (gone) return gone;
      return await this.#relabel(key, prev, { ...prev.rec, state: "live" }, opts.stop);
    });
  }

  /**
   * RELINK's check: null when a replica of the unlinked key holds a file of
   * its recorded size (any, when unknown). A file of another size is no
   * copy of the value (cut short: relinked, it would be served as the
   * value). Else 404 when every volume answered, 503 when one did not say
   * (within -voltimeout). `stop`: the HEADs still unanswered are given up
   * at its abort, which is then what throws (ShuttingDown: 503).
   */
  async #remains(
    key: Uint8Array,
    rec: Record,
    opts: { stop?: AbortSignal } = {},
  ): Promise<Outcome | null> {
    const path = key2path(key);
    const signal = opts.stop;
    const sizes = await Promise.all(
      rec.rvolumes.map((v) =>
        remoteSize(volumeUrl(v, path), this.opts.voltimeout, { signal }).catch((err) => {
          if (signal?.aborted && err === signal.reason) throw err;
          return undefined;
        })
      ),
    );
    const whole = (s: number | null | undefined) =>
      typeof s === "number" && (rec.size < 0 || s === rec.size);
    if (sizes.some(whole)) return null;
    const silent = rec.rvolumes.filter((_, i) => sizes[i] === undefined).map(volumeOfReplica);
    if (silent.length > 0) {
      const one = silent.length === 1;
      return {
        status: 503,
        message: `No replica of the unlinked key was found whole, and ${silent.join(", ")} ` +
          `did not say whether ${one ? "it holds" : "they hold"} one: ` +
          `RELINK again once ${one ? "it answers" : "they answer"}`,
      };
    }
    const other = rec.rvolumes.flatMap((v, i) =>
      typeof sizes[i] === "number" ? [holdsBytes(v, sizes[i])] : []
    );
    if (other.length === 0) {
      return { status: 404, message: "No replica of the unlinked key remains" };
    }
    return {
      status: 404,
      message: `No replica of the unlinked key remains whole (${other.join(", ")}, ` +
        `recorded ${rec.size})`,
    };
  }

  /** UNLINK: a virtual delete; the files stay until DELETE. `stop`: as relink's. */
  async unlink(key: Uint8Array, opts: { stop?: AbortSignal } = {}): Promise<Outcome> {
    if (!keyFits(key)) return tooLong();
    return await this.#exclusive(key, async () => {
      const prev = await this.entry(key, opts);
      // A lingering claim keeps writers off the key's files; UNLINK and
      // RELINK write none, and the record they write keeps its lease.
      if (prev && isClaimed(prev.rec) && !isLingering(prev.rec)) return inFlight(prev.rec);
      if (prev?.rec.next) return unfinishedSwitch(prev.rec.next);
      if (prev?.rec.state !== "live") return this.#notFound(prev, "No live key to unlink");
      return await this.#relabel(key, prev, { ...prev.rec, state: "unlinked" }, opts.stop);
    });
  }

  /**
   * UNLINK's and RELINK's one write: `rec` over the record read as `prev`;
   * 204, or 409 when it changed since. At `stop`'s abort, a write still
   * waiting to be sent (for this master to join the index again, behind a
   * heartbeat a locked index holds, or for its turn to commit) is dropped:
   * 503, nothing written.
   */
  async #relabel(
    key: Uint8Array,
    prev: Entry,
    rec: Record,
    stop: AbortSignal | undefined,
  ): Promise<Outcome> {
    const vs = await orDropped(this.index.cas(key, prev.versionstamp, rec, { signal: stop }), stop);
    if ("answer" in vs) return vs.answer;
    return vs.value === null ? inFlight() : { status: 204 };
  }

  /**
   * REBALANCE: move one live key (and with `unlinked`, an unlinked one: the
   * rebalance tool moves those too) to where the hash puts it now. `stop`:
   * a stopping master's cut-off, at which the HEAD checks of the replicas
   * still unanswered are given up, a write to the index still unsent is
   * dropped and a copy under way stopped (503, the key as it was); once
   * the index names the new copies, an old copy's removal is given up (204).
   */
  async rebalance(
    key: Uint8Array,
    opts: { unlinked?: boolean; check?: boolean; stop?: AbortSignal } = {},
  ): Promise<Outcome> {
    if (!keyFits(key)) return tooLong();
    return await this.#exclusive(key, async () => {
      const prev = await this.entry(key, { stop: opts.stop });
      if (prev && isClaimed(prev.rec)) return inFlight(prev.rec);
      if (prev?.rec.next) return unfinishedSwitch(prev.rec.next);
      const movable = prev?.rec.state === "live" ||
        (opts.unlinked && prev?.rec.state === "unlinked");
      if (!prev || !movable) return this.#notFound(prev, "No live key to rebalance");
      const check = opts.check || onlyDeletes(prev.rec.rvolumes, this.kvolumes(key));
      const { missing, silent } = check
        ? await this.#checkReplicas(key, prev.rec.rvolumes, { stop: opts.stop })
        : { missing: [], silent: [] };
      if (missing.length === prev.rec.rvolumes.length) {
        return { status: 500, message: "No replica of the key holds its file (data lost)" };
      }
      // A replica the hash keeps whose volume does not say: "in place"
      // would be a guess (as mkv's, which counts it lost, this fails).
      const kept = silent.find((v) => this.kvolumes(key).includes(v));
      if (kept !== undefined) {
        return {
          status: 503,
          message: `Volume ${volumeOfReplica(kept)} did not say whether it holds the key's ` +
            "file: REBALANCE again once it answers",
        };
      }
      return await this.#move(key, prev, { lost: missing, stop: opts.stop });
    });
  }

  /**
   * The recorded replicas whose volume answers that it has no such file
   * (`missing`), and those whose volume does not say (`silent`: no answer
   * within -voltimeout, or neither 200 nor 404). REBALANCE of one key checks
   * them first, as mkv's does, and copies the value back to the missing: a
   * balanced key with a lost replica was left as it was, answering 204.
   * (The rebalance tool checks only a move that would delete copies and
   * copy none: verify checks the rest.) `stop` (a stopping master's
   * cut-off): the checks still unanswered are given up at its abort, which
   * is then what throws (ShuttingDown: 503, before the claim, nothing written).
   */
  async #checkReplicas(
    key: Uint8Array,
    rvolumes: string[],
    opts: { stop?: AbortSignal } = {},
  ): Promise<{ missing: string[]; silent: string[] }> {
    const path = key2path(key);
    const signal = opts.stop;
    const heads = await Promise.all(
      rvolumes.map((v) => headStatus(volumeUrl(v, path), this.opts.voltimeout, { signal })),
    );
    return {
      missing: rvolumes.filter((_, i) => heads[i] === 404),
      silent: rvolumes.filter((_, i) => heads[i] !== 404 && heads[i] !== 200),
    };
  }

  /**
   * Copies the key from a replica that has it to the volumes the hash puts
   * it on, switches the index, then deletes the copies it left. Interrupted
   * at any point, it leaves the key readable where the index says.
   */
  async #move(
    key: Uint8Array,
    prev: Entry,
    opts: { lost?: string[]; stop?: AbortSignal } = {},
  ): Promise<Outcome> {
    const { lost = [], stop } = opts;
    const kvolumes = this.kvolumes(key);
    if (!needsRebalance(prev.rec.rvolumes, kvolumes) && lost.length === 0) return { status: 204 };
    // Held while copying, on every master of the index: a write of the key
    // elsewhere meanwhile would put files where this copy goes, and the
    // loser's cleanup would then delete the winner's live replicas.
    const held = await orDropped(
      Claim.hold(this.index, key, prev, { ...this.opts, signal: stop }),
      stop,
    );
    if ("answer" in held) return held.answer;
    const claim = held.value;
    if (!claim) return inFlight();
    // Copies sent whole and never answered (a failed try, when another
    // source is tried next): a volume may store one yet, over the file of
    // the key's next write there, unless that waits out the lease.
    const move: Move = {
      key,
      prev,
      kvolumes,
      claim,
      unanswered: new Set(),
      hash: prev.rec.hash,
      stop,
    };
    const stopped = await this.#copyMissing(move, lost) ?? await this.#recordMove(move);
    return stopped ?? await this.#removeLeft(move);
  }

  /**
   * A move's copies to the key's volumes that lack it (`lost`: the recorded
   * replicas found without their file); null once made, else the answer.
   */
  async #copyMissing(move: Move, lost: string[]): Promise<Outcome | null> {
    const { prev, kvolumes, claim, unanswered, stop } = move;
    // Without `lost` (the rebalance tool, for a move that copies), unlike
    // mkv, no HEAD of every replica first: the copies that stay are where
    // the index says (verify checks that), and the GET of the value tells
    // whether the one read from has it. Read from a copy about to go.
    const have = prev.rec.rvolumes.filter((v) => !lost.includes(v));
    const missing = kvolumes.filter((v) => !have.includes(v));
    if (missing.length === 0) return null;
    const differ = await this.#compareUnhashed(move, have);
    if (differ) return differ;
    const sources = [
      ...have.filter((v) => !kvolumes.includes(v)),
      ...have.filter((v) => kvolumes.includes(v)),
    ];
    const unindexed = await this.#unindexedAtTargets(move, missing, sources[0]);
    if (unindexed) return unindexed;
    const path = key2path(move.key);
    let failure: unknown = null;
    for (const source of sources) {
      failure = await this.copyReplica(path, source, {
        targets: missing,
        size: prev.rec.size,
        hash: move.hash,
        claim,
        unanswered,
        stop,
      });
      if (failure === null || failure instanceof ShuttingDown) break;
    }
    if (failure instanceof ShuttingDown) return this.#moveCutOff(move, failure);
    if (failure === null) return null;
    await claim.release({ linger: unanswered.size > 0 });
    return { status: writeFailureStatus(failure), message: messageOf(failure) };
  }

  /**
   * Before a move copies a key whose MD5 the index does not know (a rebuilt
   * one; REBALANCE, the rebalance tool): the copy would be held to the
   * recorded size only, and a replica of that size with other bytes would
   * be spread, the others deleted. So its replicas (`have`) are read in full
   * and compared first, under the move's claim (nothing writes the key
   * meanwhile): when they differ, nothing is copied (500: nothing tells
   * which holds the value; not 409, which the rebalance tool takes for a
   * key held by another writer and tries again); when two or more agree
   * (and none differs), the copies are held to their MD5, which the move's
   * new record names. A single replica has nothing to compare with: held
   * to its size. Null to go on, else the answer.
   */
  async #compareUnhashed(move: Move, have: string[]): Promise<Outcome | null> {
    const { prev, claim, stop } = move;
    if (prev.rec.hash || have.length < 2) return null;
    const { groups } = await compareReplicas(key2path(move.key), have, {
      stall: this.opts.stall,
      size: prev.rec.size,
      signal: stop ? AbortSignal.any([stop, claim.signal]) : claim.signal,
    });
    if (stop?.aborted) return this.#moveCutOff(move, stop.reason);
    if (groups.size > 1) {
      await claim.release();
      return { status: 500, message: `Its replicas differ ${differMessage(groups)}` };
    }
    const [agreed] = groups;
    if (agreed && agreed[1].length >= 2) move.hash = agreed[0];
    return null;
  }

  /**
   * Before a move copies to `targets` on an index marked incomplete: a
   * target may hold a value of the key the index lacks (its newest, on a
   * volume a rebuild skipped), which the copy would overwrite, and nothing
   * would bring back. Each target holding a file of the key is read in
   * full and compared with the value (its MD5 known, else `source`'s, read
   * too): one that differs, or cannot be read, stops the move (500, nothing
   * copied; not 409, which the rebalance tool takes for a key held by
   * another writer), its file kept for rebuild. A copy of the value (a move
   * killed after copying) is copied over. Null to go on, else the answer.
   */
  async #unindexedAtTargets(
    move: Move,
    targets: string[],
    source: string,
  ): Promise<Outcome | null> {
    const { prev, claim, stop } = move;
    if (!this.index.markedIncomplete) return null;
    const path = key2path(move.key);
    const heads = await Promise.all(
      targets.map((v) =>
        headStatus(volumeUrl(v, path), this.opts.voltimeout, { signal: stop }).catch(() => 0)
      ),
    );
    if (stop?.aborted) return this.#moveCutOff(move, stop.reason);
    const held = targets.filter((_, i) => heads[i] !== 404);
    if (held.length === 0) return null;
    const { groups } = await compareReplicas(path, move.hash ? held : [source, ...held], {
      stall: this.opts.stall,
      size: prev.rec.size,
      signal: stop ? AbortSignal.any([stop, claim.signal]) : claim.signal,
    });
    if (stop?.aborted) return this.#moveCutOff(move, stop.reason);
    const value = move.hash || [...groups].find(([, vs]) => vs.includes(source))?.[0];
    const same = (value && groups.get(value)) ?? [];
    const other = held.filter((v) => !same.includes(v)).map(volumeOfReplica);
    if (other.length === 0) return null;
    await claim.release();
    const one = other.length === 1;
    return {
      status: 500,
      message: `${other.join(", ")} ${one ? "holds" : "hold"} a file at the key's path that ` +
        `is not its value (or could not be read) while the index is incomplete (a rebuild has ` +
        `not finished): it may be a value the index lacks, so it was not copied over; run rebuild`,
    };
  }

  /**
   * A move's new record, naming the key's volumes (and the MD5 its
   * replicas agreed on, #compareUnhashed); null once the index holds it,
   * else the answer. With old copies to remove, the claim is kept
   * (#removeLeft ends it): a master placing keys otherwise (another
   * -volumes) writes the key's next value where one is, and a removal of
   * ours landing after that took it. Those on volumes of -volumes stay
   * named after the key's volumes meanwhile: a copy whose removal fails is
   * then still recorded, never left where a rebuild would find it after a
   * DELETE of the key, a master killed meanwhile included.
   */
  async #recordMove(move: Move): Promise<Outcome | null> {
    const { prev, kvolumes, claim, unanswered, hash, stop } = move;
    const kept = this.#keptUntilRemoved(move);
    const rec: Record = { ...unleased(prev.rec), rvolumes: [...kvolumes, ...kept], hash };
    let recorded;
    try {
      recorded = leftBy(move).length > 0
        ? await claim.note(rec, { signal: stop })
        : await claim.finish(rec, { linger: unanswered.size > 0, signal: stop });
    } catch (err) {
      if (err instanceof ShuttingDown) return this.#moveCutOff(move, err);
      throw err;
    }
    // Taken over after the lease ran out: the key is another's now.
    if (!recorded) return { status: 500, message: "Lost the claim on the key mid-move" };
    return null;
  }

  /**
   * The old copies of a move that stay recorded until removed: those on
   * volumes of -volumes. One on a volume dropped from them (a dead one, as
   * a rebalance off it goes) is out of the index's reach and of a rebuild's
   * by these -volumes: left an orphan when its removal fails.
   */
  #keptUntilRemoved(move: Move): string[] {
    const { prev, kvolumes } = move;
    return prev.rec.rvolumes.filter((v) =>
      !kvolumes.includes(v) && this.opts.volumes.includes(volumeOfReplica(v))
    );
  }

  /**
   * A move recorded: the copies left on volumes the key no longer hashes
   * to go while the key is still held (#recordMove), and the record then
   * names those on volumes of -volumes whose removal failed besides the
   * key's volumes (the same value: the key stays unbalanced, a DELETE
   * removes them, the next REBALANCE tries again). A removal that went
   * unanswered may land yet: the claim then lingers (writers wait out the
   * lease). At the cut-off (`stop`), the removals still unanswered are
   * given up, counted failed, and the record written after the answer
   * (204, moved all the same). The claim lost before the removals (this
   * master paused past its lease, the key taken), none is made: 204, the
   * copies left said; lost after them, nothing is left undone. The end's
   * write refused by the index (indexRefused): 204 all the same, the
   * record noted left with its lease to run out.
   */
  async #removeLeft(move: Move): Promise<Outcome> {
    const { key, kvolumes, claim, unanswered, hash, stop } = move;
    const left = leftBy(move);
    if (left.length === 0) return { status: 204 };
    if (!(await stillHeld(claim))) return { status: 204, message: leftOnLostClaim(left) };
    const removals = await Promise.allSettled(
      left.map((v) => this.#removeFiles(key, [v], { signal: stop })),
    );
    const kept = this.#keptUntilRemoved(move);
    const failures = left.flatMap((v, i) => {
      const r = removals[i];
      return r.status === "rejected" ? [{ v, err: r.reason, kept: kept.includes(v) }] : [];
    });
    const answer: Outcome = failures.length === 0
      ? { status: 204 }
      : { status: 204, message: failures.map(leftCopyMessage).join("; ") };
    const still = failures.flatMap((f) => f.kept ? [f.v] : []);
    const rec: Record = { ...unleased(move.prev.rec), rvolumes: [...kvolumes, ...still], hash };
    const linger = unanswered.size > 0 || failures.some((f) => mayLand(f.err, stop));
    try {
      await claim.finish(rec, { linger, signal: stop });
    } catch (err) {
      if (indexRefused(err)) return answer;
      // Unsent at the cut-off: written after the answer (the record noted
      // names every old copy on -volumes meanwhile).
      if (!(err instanceof ShuttingDown)) throw err;
      this.#cleanUpLater(() => claim.finish(rec, { linger }));
    }
    return answer;
  }

  /**
   * Cut off by a stopping master before the index names the new copies
   * (copying, or the record unsent): the key stays as it was, the claim
   * given up after the answer (its commit may wait on a locked index), the
   * copies made orphans (verify), as a move that failed leaves them.
   */
  #moveCutOff(move: Move, err: unknown): Outcome {
    const { claim, unanswered } = move;
    this.#cleanUpLater(() => claim.release({ linger: unanswered.size > 0 }));
    return failedWrite(err);
  }

  /**
   * Copies `path` from `source` to `targets` under `claim` (REBALANCE,
   * verify -repair); the error, or null when done. A copy of another size
   * or MD5 than recorded (`size`, `hash`; -1 and "" when unknown) is
   * refused before any target stores it, and one whose claim is lost
   * meanwhile stops before it can land over the key's next value.
   */
  async copyReplica(
    path: string,
    source: string,
    opts: {
      targets: string[];
      size: number;
      hash: string;
      claim: Claim;
      /** Filled with the targets whose PUT went out whole and was never answered. */
      unanswered: Set<string>;
      /** A stopping master's cut-off: the copy stops at it (its reason returned). */
      stop?: AbortSignal;
    },
  ): Promise<unknown> {
    const { targets, size, hash, claim, stop } = opts;
    const ac = new AbortController();
    const lost = claim.signal;
    if (lost.aborted) return lost.reason;
    if (stop?.aborted) return stop.reason;
    const onLost = () => ac.abort(lost.reason);
    const onStop = () => ac.abort(stop!.reason);
    lost.addEventListener("abort", onLost, { once: true });
    stop?.addEventListener("abort", onStop, { once: true });
    const copy: Copy = {
      from: volumeUrl(source, path),
      path,
      targets,
      size,
      hash,
      fence: () => claim.confirm(),
      unanswered: opts.unanswered,
      signal: ac.signal,
    };
    try {
      if (size >= 0 && size <= SMALL_VALUE) await this.#copySmall(copy);
      else await this.#copyStreamed(copy);
      return null;
    } catch (err) {
      ac.abort();
      // Stopped at the cut-off: its reason, whatever the abort made of it.
      return stop?.aborted ? stop.reason : err;
    } finally {
      lost.removeEventListener("abort", onLost);
      stop?.removeEventListener("abort", onStop);
    }
  }

  /** Small: one read into memory, then plain PUTs (streams cost more). */
  async #copySmall(copy: Copy): Promise<void> {
    const { from, path, targets, signal } = copy;
    const put = { signal, stall: this.opts.stall };
    const value = await remoteGetSmall(from, { ...put, maxBody: SMALL_VALUE });
    refuseSize(from, value.length, copy.size);
    refuseDigest(from, value, copy.hash);
    if (!(await copy.fence())) throw new LostClaim();
    const puts = await Promise.allSettled(
      targets.map((v) => remotePut(volumeUrl(v, path), value, put)),
    );
    puts.forEach((p, i) => {
      if (p.status === "rejected" && unanswered(p.reason)) copy.unanswered.add(targets[i]);
    });
    const failed = puts.find((p) => p.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** Larger, or of unknown size: streamed from the source to every target (#write). */
  async #copyStreamed(copy: Copy): Promise<void> {
    const { from, size, hash, signal } = copy;
    const res = await remoteGet(from, { signal, stall: this.opts.stall });
    const header = res.headers.get("content-length");
    const length = header === null ? null : Number(header);
    if (length !== null) refuseSize(from, length, size);
    // Sent chunked (no Content-Length: a proxy in front of nginx), the
    // body is held to the recorded size all the same: cut short (or
    // longer), it is no copy of the value, and with no MD5 known (a
    // rebuilt key) nothing else tells.
    await this.#write(copy.path, copy.targets, res.body!, {
      signal,
      size: length ?? (size >= 0 ? size : null),
      fence: copy.fence,
      unanswered: copy.unanswered,
      expectMd5: hash,
    }).catch((err) => {
      if (err instanceof DigestMismatch) throw digestError(from, hash);
      if (err instanceof LengthMismatch) throw sentSizeError(from, err, size);
      throw err;
    });
  }

  /**
   * A 404 of a verb other than GET/HEAD (its reason goes in the body,
   * README). Of a key with no record (`prev` null) in an index marked
   * incomplete, it says that the volumes may hold the key: nothing was
   * written, and rebuild brings the key back.
   */
  #notFound(prev: Entry | null, message: string): Outcome {
    if (prev || !this.index.markedIncomplete) return notFound(message);
    return notFound(`${message}; ${MAYBE_UNINDEXED}`);
  }

  async #exclusive(key: Uint8Array, work: () => Promise<Outcome>): Promise<Outcome> {
    const id = latin1(key);
    if (this.#busy.has(id)) return inFlight();
    this.#busy.add(id);
    try {
      return await work();
    } finally {
      this.#busy.delete(id);
    }
  }
}

/** A REBALANCE of a key under way (Store's #move), once it holds the key. */
interface Move {
  key: Uint8Array;
  /** The key's record the move began from. */
  prev: Entry;
  /** Where the hash puts the key now. */
  kvolumes: string[];
  claim: Claim;
  /** The volumes a copy's PUT went out to whole and was never answered by. */
  unanswered: Set<string>;
  /**
   * The MD5 the copies are held to and the new record names: the recorded
   * one, or the one a rebuilt key's replicas agree on (#compareUnhashed).
   */
  hash: string;
  /** A stopping master's cut-off. */
  stop?: AbortSignal;
}

/** A copy of one replica (Store.copyReplica), from `from` to `path` on `targets`. */
interface Copy {
  from: string;
  path: string;
  targets: string[];
  /** The recorded size and MD5 (-1 and "" when unknown). */
  size: number;
  hash: string;
  /** False once the claim the copy is made under is lost (Claim.confirm). */
  fence: () => Promise<boolean>;
  /** Filled with the targets whose PUT went out whole and was never answered. */
  unanswered: Set<string>;
  signal: AbortSignal;
}

/** The copies a move leaves on volumes the key no longer hashes to. */
function leftBy(move: Move): string[] {
  return move.prev.rec.rvolumes.filter((v) => !move.kvolumes.includes(v));
}

/**
 * What a removal of the files a write left (#endHeld) came to: whether
 * every volume answered (false when a DELETE may still be carried out: the
 * claim then lingers), and each file whose DELETE failed, said.
 */
interface Removal {
  answered: boolean;
  left: string[];
}

/** Removals made together, as one. */
function together(removals: Removal[]): Removal {
  return {
    answered: removals.every((r) => r.answered),
    left: removals.flatMap((r) => r.left),
  };
}

/**
 * Says that a write's DELETE of the old value's copy on replica `v` failed
 * (`why`): a file no record names, which verify lists and a rebuild records.
 */
function oldCopyLeft(v: string, why: string): string {
  return `Old copy on ${volumeOfReplica(v)} not deleted, an orphan that verify -repair ` +
    `removes (a rebuild before then brings the old value back): ${why}`;
}

/**
 * Says that a REPLACE's DELETE of the temporary its new value waited in on
 * replica `v`, which did not switch, failed (`why`).
 */
function temporaryLeft(v: string, why: string): string {
  return `Temporary of the new value on ${volumeOfReplica(v)} not deleted, an orphan that ` +
    `verify -repair removes once older than -grace: ${why}`;
}

/**
 * Why a removal of a write's leftovers given up at a stopping master's
 * cut-off left its file: not the cut's own "retry", the write being done.
 */
const GIVEN_UP = "its DELETE was given up as the master stopped (one sent may be carried out yet)";

/** Says why a move's old copy on `v` is still there (`err`), and what became of it (`kept`). */
function leftCopyMessage(f: { v: string; err: unknown; kept: boolean }): string {
  const what = f.kept
    ? "kept in the key's record (a DELETE of the key removes it, the next REBALANCE tries again)"
    : "an orphan (its volume is not in -volumes)";
  return `Old copy on ${volumeOfReplica(f.v)} not deleted, ${what}: ${messageOf(f.err)}`;
}

/**
 * Whether a move from `rvolumes` to `kvolumes` copies nothing and deletes
 * copies (a lower -replicas). Then the replicas are HEAD-checked first even
 * for the rebalance tool: a kept one whose file is lost would otherwise be
 * left as the key's only replica, and the copies deleted were the value's.
 */
function onlyDeletes(rvolumes: readonly string[], kvolumes: readonly string[]): boolean {
  return kvolumes.every((v) => rvolumes.includes(v)) && rvolumes.some((v) => !kvolumes.includes(v));
}

/**
 * A replica of another size than the index records (cut short by a crash,
 * or an older value) is not copied: the move reads another replica.
 */
function refuseSize(url: string, got: number, size: number) {
  if (size >= 0 && got !== size) {
    throw new Error(`"${url}" holds ${got} bytes where the index records ${size}; not copied`);
  }
}

/** A replica whose body (sent with no length) came to another size than recorded. */
function sentSizeError(url: string, err: LengthMismatch, size: number): Error {
  const sent = err.bytes < size ? `${err.bytes} bytes` : `more than ${size} bytes`;
  return new Error(`"${url}" sent ${sent} where the index records ${size}; not copied`);
}

/** A replica whose bytes are not the recorded value's (`hash`, "" unknown) is not copied. */
function refuseDigest(url: string, value: Uint8Array, hash: string) {
  if (hash && toHex(md5sum(value)) !== hash) throw digestError(url, hash);
}

function digestError(url: string, hash: string): Error {
  return new Error(`"${url}" holds other bytes than the recorded MD5 ${hash}; not copied`);
}

/** Why a PUT is refused where the volumes hold a value the incomplete index lacks. */
export const UNINDEXED = "The index is incomplete (a rebuild has not finished) and the volumes " +
  "hold a value for this key: run rebuild";

/** Said by a 404 of a key with no record while the index is incomplete. */
export const MAYBE_UNINDEXED = "the index is incomplete (a rebuild has not finished): " +
  "the volumes may hold this key, run rebuild";

/** How long a reader waits for a REPLACE's renames before answering without them, ms. */
const SWITCH_WAIT = 1000;

/** Values up to this size are copied through memory by a move, not streamed. */
const SMALL_VALUE = 1 << 20;

/**
 * Writes of a value up to this size (known in advance) read it whole before
 * sending it: 64 such writes in flight hold 16 MiB.
 */
const SMALL_WRITE = 256 * 1024;

/**
 * Reads a body of `size` bytes whole. Shorter comes back short (the caller
 * answers 400 before any replica is written); longer than announced is an
 * error.
 */
async function readSmall(
  body: ReadableStream<Uint8Array>,
  size: number,
  opts: { signal: AbortSignal; stall: number },
): Promise<Uint8Array<ArrayBuffer>> {
  const { signal } = opts;
  const out = new Uint8Array(size);
  let n = 0;
  const reader = body.getReader();
  const onAbort = () => reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", onAbort, { once: true });
  // A client that stops sending must not hold the key: 408 after `stall` ms.
  const silence = new Silence(opts.stall);
  try {
    while (true) {
      if (signal.aborted) throw signal.reason;
      const chunk = await silence.read(reader).catch((err) => {
        throw signal.aborted ? signal.reason : err;
      });
      if (chunk.done) break;
      if (n + chunk.value.length > size) {
        throw new SourceError(400, "Body longer than its Content-Length");
      }
      out.set(chunk.value, n);
      n += chunk.value.length;
    }
  } catch (err) {
    reader.cancel(err).catch(() => {});
    throw err;
  } finally {
    silence.stop();
    signal.removeEventListener("abort", onAbort);
  }
  return n === size ? out : out.slice(0, n);
}

/** The volumes whose call failed before any byte of it reached them. */
function unreached(results: PromiseSettledResult<unknown>[], volumes: string[]): string[] {
  return volumes.filter((_, i) => {
    const r = results[i];
    return r.status === "rejected" && r.reason instanceof VolumeError && r.reason.unsent;
  });
}

/** What a REPLACE's switch works on: the key's path, the temporary, the claim, the cut-off. */
interface Switching {
  path: string;
  tmp: string;
  claim: Claim;
  /** A stopping master's cut-off (#switch). */
  stop?: AbortSignal;
}

/**
 * A REPLACE's temporary name for the key at `path`: short, in the key's
 * "/ab/cd/" folder (a long key's last name segment may be 255 bytes
 * already), and never a key: it holds a ".".
 */
function temporaryName(path: string): string {
  return `${path.slice(0, 7)}replace.${crypto.randomUUID()}`;
}

/** The first of `results` that failed, if any. */
function firstRejected(
  results: PromiseSettledResult<unknown>[],
): PromiseRejectedResult | undefined {
  return results.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
}

/** A REPLACE recorded whose master is gone (its lease ran out). */
function stranded(rec: Record): boolean {
  return rec.next !== undefined && !isClaimed(rec);
}

/** A record without a lease or a switch in progress. */
function settled(rec: Record): Record {
  const { next: _n, ...rest } = unleased(rec);
  return rest;
}

/** What PUT and REPLACE refuse before touching anything: 411, 414. */
function refuseBody(
  key: Uint8Array,
  body: ReadableStream<Uint8Array> | null,
  opts: PutOptions,
): Outcome | null {
  if (body === null || (opts.contentLength === 0 && !opts.allowEmpty)) {
    return { status: 411, message: "A value must not be empty" };
  }
  return keyFits(key) ? null : tooLong();
}

/** What a written value is refused for before it goes live: 411, 400, or the caller's check. */
function refuseWritten(written: FanoutResult, opts: PutOptions): Outcome | null {
  if (written.bytes === 0 && !opts.allowEmpty) {
    return { status: 411, message: "A value must not be empty" };
  }
  if (opts.contentLength !== null && written.bytes !== opts.contentLength) {
    return { status: 400, message: "Body shorter than its Content-Length" };
  }
  return opts.check?.(written) ?? null;
}

function liveRecord(rvolumes: string[], written: FanoutResult, meta?: Meta): Record {
  const rec: Record = {
    state: "live",
    rvolumes,
    hash: written.md5,
    size: written.bytes,
    mtime: Date.now(),
  };
  if (meta) rec.meta = meta;
  return rec;
}

function lostClaim(err: unknown, claim: Claim): Outcome {
  // A renewal fenced, or refused by a locked index: nothing more was
  // written, and a retry can be.
  const why = claim.signal.reason;
  if (indexRefused(why)) return failedWrite(why);
  const cause = err instanceof LostClaim ? "" : ` (${messageOf(err)})`;
  return { status: 500, message: `Lost the claim on the key mid-write${cause}` };
}

/** Why a GET or HEAD answers 503: no replica that answered has the key's file, and some did not. */
const UNREACHED = "Some replicas of the key did not answer (within -voltimeout) and none that " +
  "did has its file: retry once its volumes answer";

const LOST = "Value lost: the index has the key live but every replica answered that it has " +
  "no such file; run verify to list every such key, then restore the file or DELETE the key";

/**
 * "host:port holds N bytes": a replica's file of another size than its
 * value's (null: fewer than a range asked for, its size not said).
 */
function holdsBytes(replica: string, length: number | null): string {
  return `${volumeOfReplica(replica)} holds ${length ?? "fewer"} bytes`;
}

/**
 * The replicas of `rec` that hold a file of another size (`held`: replica
 * to its size), in the record's order, and the value's recorded size (or
 * either of a REPLACE's, `next`, while it switches): "h holds 5 bytes,
 * recorded 11".
 */
export function otherSizes(rec: Record, held: Map<string, number | null>): string {
  const named = rec.rvolumes.filter((v) => held.has(v)).map((v) => holdsBytes(v, held.get(v)!));
  return `${named.join(", ")}, recorded ${recordedSize(rec)}`;
}

/** The value's recorded size: "11", or "11 or 20" while a REPLACE switches it (`next`). */
function recordedSize(rec: Record): string {
  const next = rec.next?.rec;
  return next && next.size !== rec.size ? `${rec.size} or ${next.size}` : `${rec.size}`;
}

/**
 * `replica` of `rec`, its file of `size` bytes (null: fewer than a range
 * asked for), passed over by a read of `key` as no copy of the value: put
 * in `held` (made if none; the answer names them when none is whole), and
 * told to the operator (lib/health.ts: logged, throttled, and counted).
 * Only a replica of another size comes here: a whole one costs nothing.
 */
export function passedOver<T extends number | null>(
  held: Map<string, T> | undefined,
  replica: string,
  seen: { size: T; key: Uint8Array; rec: Record },
): Map<string, T> {
  const { size, key, rec } = seen;
  health.otherSize({
    volume: volumeOfReplica(replica),
    key: new TextDecoder().decode(key),
    size,
    recorded: recordedSize(rec),
  });
  return (held ?? new Map()).set(replica, size);
}

/**
 * GET's reason when no replica of a live key gave it whole: LOST or
 * UNREACHED when none holds a file of another size, else one naming those
 * (`otherSize`, holdsBytes'), which are no copy of the value. `unsure`:
 * some replicas did not answer, or could not be asked (this master has no
 * file descriptor left); null when every one answered.
 */
function notWhole(
  rec: Record,
  otherSize: Map<string, number> | undefined,
  unsure: "unanswered" | "unasked" | null,
): string {
  if (unsure === "unasked") {
    const none = otherSize ? `holds it whole (${otherSizes(rec, otherSize)})` : "has its file";
    return `This master has no file descriptor left (ulimit -n) to ask some replicas of the key, ` +
      `and none it asked ${none}: that says nothing of its volumes, retry once it has`;
  }
  if (!otherSize) return unsure ? UNREACHED : LOST;
  const held = otherSizes(rec, otherSize);
  if (unsure) {
    return `Some replicas of the key did not answer (within -voltimeout) and none that did ` +
      `holds it whole (${held}): retry once its volumes answer`;
  }
  const rest = otherSize.size < rec.rvolumes.length ? "; the others have no such file" : "";
  return `Value lost: the index has the key live but no replica holds it whole (${held})${rest}; ` +
    "run verify to list every such key, then restore the file or DELETE the key";
}

/**
 * `write`'s value, or the answer to a write whose index write was dropped
 * unwritten at `signal`'s abort (cut off by a stopping master, or the client
 * gone, while it waited to be written: behind a heartbeat or a commit that a
 * locked index holds, or for its master to join the index again). Other
 * failures are thrown as they came.
 */
async function orDropped<T>(
  write: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<{ value: T } | { answer: Outcome }> {
  try {
    return { value: await write };
  } catch (err) {
    if (signal?.aborted && err === signal.reason) return { answer: failedWrite(sourceError(err)) };
    throw err;
  }
}

/**
 * A body whose MD5 is not the Content-MD5 its client sent: a body sent
 * wrong (400), as one cut short is, not a volume's failure. Other errors
 * as they are.
 */
function sentWrong(err: unknown): unknown {
  if (!(err instanceof DigestMismatch)) return err;
  return new SourceError(
    400,
    `The body's MD5 is ${err.got}, not its Content-MD5 (${err.expected}): nothing was stored`,
  );
}

/** A write that failed: the client's body (400, 408) or a volume (500). */
function failedWrite(err: unknown): Outcome {
  // Nothing was written; it can be once the rebuild is done.
  if (err instanceof RebuildRunning) return { status: 503, message: err.message };
  // Fenced: nothing was written, and once the master has joined again it can be.
  if (err instanceof Fenced) return { status: 503, message: `${err.message}: retry` };
  if (isBusy(err)) return { status: 503, message: LOCKED_ANSWER };
  // Nothing more is written to the index: the master is to be restarted.
  if (err instanceof IndexGone) return { status: 503, message: err.message };
  const status = err instanceof SourceError ? err.status : writeFailureStatus(err);
  return { status, message: messageOf(err) };
}

/**
 * PUT's refusal of the key's record `prev`: 403 when a value is live, 409
 * while another write holds the key, 503 when it names a switch (an
 * unlinked key UNLINKed by an older version amid a REPLACE: a rename of it
 * may land yet, over this PUT's file); null when a PUT may write it.
 */
function refuseTaken(prev: Entry | null): Outcome | null {
  if (prev?.rec.state === "live") {
    return { status: 403, message: "Key exists (PUT never overwrites)" };
  }
  if (prev && isClaimed(prev.rec)) return inFlight(prev.rec);
  if (prev?.rec.next) return unfinishedSwitch(prev.rec.next);
  return null;
}

/** A 404 of a verb other than GET/HEAD: its reason goes in the body (README). */
function notFound(message: string): Outcome {
  return { status: 404, message };
}

/**
 * 409: the key is claimed; `rec`, the claimed record, tells a lingering
 * claim's reason, and when its lease runs out: the writer may be a master
 * killed mid-write, which holds the key until then.
 */
function inFlight(rec?: Record): Outcome {
  const left = rec?.until === undefined
    ? 0
    : Math.max(1, Math.ceil((rec.until - Date.now()) / 1000));
  if (rec && isLingering(rec)) {
    const message = "A volume has yet to answer for this key's last write: " +
      `retry once -lease has passed (in ${left} s)`;
    return { status: 409, message };
  }
  const message = "Another write of this key is in progress";
  if (left === 0) return { status: 409, message };
  return {
    status: 409,
    message:
      `${message} (or its writer stopped mid-write: retry once its lease runs out, in ${left} s)`,
  };
}

/**
 * 503: a REPLACE (or a PUT over an unlinked key, `next.put`) cut off by a
 * stopping master once the index recorded its switch (the record to switch
 * to, where the value waits), which only an index write the cut did not
 * leave time for could take back: its claim's lease runs out unrenewed,
 * then the key's next request finishes it, as a killed master's (it renames
 * the value in on the replicas that take it).
 */
function switchRecorded(next: Next): Outcome {
  const message =
    `${CUT_OFF} this ${verbOf(next)} off after the index recorded its switch to the ` +
    "new value: once -lease has passed, the key's next request finishes it";
  return { status: 503, message };
}

/** The request a switch is of: a PUT's over an unlinked value, or a REPLACE's. */
function verbOf(next: Next): string {
  return next.put ? "PUT" : "REPLACE";
}

/**
 * 503: the key's record still names a switch (`next`) that a REPLACE's
 * master, or a PUT's over an unlinked value, left unfinished, which entry()
 * could not finish now (a volume did not answer). Any write of the key
 * would drop it, though some replicas may hold its value already: the
 * index would name them under another value's MD5.
 */
function unfinishedSwitch(next: Next): Outcome {
  const message = `The key's last ${
    verbOf(next)
  } is yet to be finished: retry once its volumes answer`;
  return { status: 503, message };
}

function tooLong(): Outcome {
  return { status: 414, message: `Key too long for the index (${KEY_LIMIT})` };
}

/**
 * A replica that cannot say which value it holds (a HEAD failed): the
 * switch it was part of stays pending. No call of it is left to land.
 */
class Undecided extends VolumeError {}

function undecided(message: string): VolumeError {
  return new Undecided(message);
}

/**
 * Whether a call to a volume that failed with `err` may still be carried
 * out: it went unanswered, or was given up at `signal`'s abort.
 */
function mayLand(err: unknown, signal: AbortSignal | undefined): boolean {
  return unanswered(err) || cutBy(err, signal);
}

/**
 * Whether the index refused a write (nothing written, to be retried):
 * fenced twice (this master taken for gone), or locked by another process
 * past retrying. A write whose new record it holds already is done all the
 * same when it refuses the one ending the claim (#endHeld, #removeLeft).
 */
function indexRefused(err: unknown): boolean {
  return err instanceof Fenced || isBusy(err);
}

/**
 * Whether `claim` still holds its key (Claim.confirm), before a write
 * removes what it left on the volumes; abandoned when it does not (lost:
 * the key another's, whose files these may be now).
 */
async function stillHeld(claim: Claim): Promise<boolean> {
  if (await claim.confirm()) return true;
  claim.abandon();
  return false;
}

/**
 * What a REPLACE left undone whose claim was lost once its renames were
 * made, before the index named the replicas that switched (this master
 * paused past its lease, the key taken): whoever took it finished the
 * switch first (#settle), the new value live.
 */
const SWITCH_FINISHED_BY_NEXT = "Lost the claim on the key once its renames were made, before " +
  "the index named them: the key's next request finished the switch and its clean-up";

/**
 * Why a REPLACE whose renames every volume refused answers 503: the claim
 * was lost (this master paused past its lease, the key taken) before the
 * index took the old record back, so its switch is still recorded, and
 * whoever took the key finishes it (#settle), renaming again. A REPLACE
 * retried finishes it first too, then writes the value again.
 */
const REFUSED_THEN_LOST = "(every volume refused the rename; then the claim on the key was " +
  "lost to the key's next request, which renames again: the new value goes live if the " +
  "volumes take it now, else the old one stays): retry to be sure";

/**
 * What a REPLACE left undone whose record naming the replicas that switched
 * the index refused (`err`: fenced twice, or locked past retrying), its
 * renames made: the switch it recorded before them stays, its lease left
 * to run out, and the key's next request then finishes it (#settle), as it
 * finishes a dead master's, finding the renames made. Done all the same:
 * its readers are sent to the replicas, which hold the new value.
 */
function switchLeftRecorded(err: unknown): string {
  const why = isBusy(err) ? LOCKED : messageOf(err);
  return `The index refused the record naming the new value (${why}): the switch recorded ` +
    "before the renames is finished by the key's next request once -lease has passed (its " +
    "writes answer 409 until then)";
}

/**
 * What a write left undone whose claim was lost once its new record was
 * in the index (this master paused past its lease, the key taken): the
 * files it had yet to remove from `volumes`.
 */
function leftOnLostClaim(volumes: string[]): string {
  const on = [...new Set(volumes.map(volumeOfReplica))].join(", ");
  return `Lost the claim on the key once its new record was in the index: the files it had ` +
    `yet to remove from ${on} were left there (verify lists them)`;
}

/** Whether `err` is `signal`'s reason, a call given up at its abort. */
function cutBy(err: unknown, signal: AbortSignal | undefined): boolean {
  return signal !== undefined && signal.aborted && err === signal.reason;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A random order of a key's replicas (which to try first), those on a volume
 * known down last: a hung one held each read that began there for its timeout.
 */
export function shuffled(rvolumes: readonly string[]): string[] {
  const out = rvolumes.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  const down = out.filter((v) => health.isDown(v));
  return down.length === 0 ? out : [...out.filter((v) => !health.isDown(v)), ...down];
}
