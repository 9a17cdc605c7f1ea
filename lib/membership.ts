// Who writes the index. Every master (and every tool that writes) keeps a
// heartbeat record in it; a master may answer from its own memory (caches
// in lib/index_db.ts) only while it is the index's sole writer.
//
// Safety: a master is "sole" for 1.5 intervals after a check that began
// with no other member live. A newcomer registers, then waits 2.5 intervals
// before its first write, by which time every other master has either seen
// it or stopped trusting its caches. A member whose own heartbeat may have
// lapsed (event loop stalled) re-joins, with the wait, before writing.
//
// Fences: a write sent before a member stalled can land after it (it waited
// on a busy or remote index meanwhile), when the others may have taken the
// member for gone and trusted their memory again. So each member keeps a
// fence record, and every index write of its carries a check that the fence
// still stands; a member removes the fences of lapsed members at every
// beat, and never trusts its memory as the sole writer before they are
// gone. A late write then fails (Fenced) instead of landing unseen, and its
// member joins again, with the wait (a rebuild does not: `rejoin: false`).
//
// Lapses: a member is taken for gone when its heartbeat record has not
// changed (same versionstamp) for 3 intervals of the observer's own
// monotonic clock; a record first seen counts as live from then. No wall
// clocks are compared: a member whose clock runs behind is not gone.
//
// Rebuilds: a rebuild (tools/rebuild.ts) registers as a member too, then
// removes every other member's fence, and only then empties the index. A
// master that sees it registered answers no request from the index and
// writes nothing (RebuildRunning). One that stalled (paused past its
// heartbeat, or its event loop held up) may have been taken for stopped by
// a rebuild meanwhile, and what it read since cannot be answered from until
// a heartbeat begun after the stall has looked (answerable()).
//
// Placement: a master's heartbeat record carries how it places keys (its
// -volumes, -replicas, -subvolumes, -colocate). Masters that differ put
// new keys on different volumes; each sees the others' at every beat and
// says so (otherPlacements). Not refused: restarting masters one by one with
// a new -volumes, then running rebalance, is how volumes are added. The
// tools' records carry theirs too (rebalance, verify -repair, rebuild), so a
// master names a tool placing keys otherwise; rebalance, which moves keys
// by its flags, refuses to start while a live member places keys otherwise
// (livePlacements), unless forced.
import { type Fence, Fenced } from "./group_commit.ts";
import type { Index, MemberRecord } from "./index_db.ts";

/** The start of a rebuild's member id (tools/rebuild.ts). */
export const REBUILD = "rebuild:";

/** How a master places keys: its -volumes, -replicas, -subvolumes and -colocate. */
export interface Placement {
  volumes: string[];
  replicas: number;
  subvolumes: number;
  colocate: boolean;
}

/** A live master of the index placing keys otherwise than this one. */
export interface OtherPlacement {
  id: string;
  placement: Placement;
}

/** Whether two masters place every key alike (the order of -volumes does not matter). */
export function samePlacement(a: Placement, b: Placement): boolean {
  const sorted = (p: Placement) => [...p.volumes].sort().join(",");
  return sorted(a) === sorted(b) && a.replicas === b.replicas &&
    a.subvolumes === b.subvolumes && a.colocate === b.colocate;
}

/** The flags a placement comes from: "-volumes a,b -replicas 2 -subvolumes 10 -colocate=false". */
export function describePlacement(p: Placement): string {
  return `-volumes ${p.volumes.join(",")} -replicas ${p.replicas} -subvolumes ${p.subvolumes} ` +
    `-colocate=${p.colocate}`;
}

/** How a master or tool with these store options places keys. */
export function placementOf(
  opts: { volumes: string[]; replicas: number; subvolumes: number; colocate: boolean },
): Placement {
  const { volumes, replicas, subvolumes, colocate } = opts;
  return { volumes, replicas, subvolumes, colocate };
}

/**
 * The flags two placements differ in, `a`'s value first:
 * "-replicas 1 (2 there), -volumes a,b (a,b,c there)".
 */
export function placementDifference(a: Placement, b: Placement): string {
  const sorted = (p: Placement) => [...p.volumes].sort().join(",");
  const out: string[] = [];
  if (sorted(a) !== sorted(b)) {
    out.push(`-volumes ${a.volumes.join(",")} (${b.volumes.join(",")} there)`);
  }
  if (a.replicas !== b.replicas) out.push(`-replicas ${a.replicas} (${b.replicas} there)`);
  if (a.subvolumes !== b.subvolumes) {
    out.push(`-subvolumes ${a.subvolumes} (${b.subvolumes} there)`);
  }
  if (a.colocate !== b.colocate) out.push(`-colocate=${a.colocate} (${b.colocate} there)`);
  return out.join(", ");
}

/** A member as logs and ?status name it: "master host:pid:random", or "tool rebalance:pid". */
export function memberName(id: string): string {
  return isTool(id) ? `tool ${id}` : `master ${id}`;
}

/** What to do about a live member `id` placing keys otherwise than this master. */
export function placementAdvice(id: string): string {
  return isTool(id)
    ? "stop it and run it with this master's flags (a rebalance moves keys by its own)"
    : "give every master the same flags, then run rebalance";
}

/** A tool's member id ("rebalance:pid"), not a master's ("host:pid:random"). */
function isTool(id: string): boolean {
  return /^[a-z-]+:\d+$/.test(id);
}

/**
 * The live members of the index (masters, tools) other than `id` that place
 * keys otherwise than `mine`, for a tool before it joins: only records that
 * carry another placement are watched, for 1.5 intervals (every live member
 * beats within one), and those that changed meanwhile are live (a killed
 * master's record is not). Reads only: nothing is registered.
 */
export async function livePlacements(
  index: Index,
  opts: { id: string; mine: Placement; interval: number },
): Promise<OtherPlacement[]> {
  const differing = async () =>
    (await index.members()).records.filter((r) =>
      r.id !== opts.id && r.placement && !samePlacement(r.placement, opts.mine)
    );
  const first = new Map((await differing()).map((r) => [r.id, r.versionstamp]));
  if (first.size === 0) return [];
  await new Promise((r) => setTimeout(r, 1.5 * opts.interval));
  return (await differing())
    .filter((r) => first.get(r.id) !== r.versionstamp)
    .map((r) => ({ id: r.id, placement: r.placement! }))
    .sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** Heartbeats unchanged for this many intervals: the member is gone. */
const LAPSE = 3;

/**
 * Beats this many intervals apart: this process stalled meanwhile (the
 * timer fires every interval). Under a lapse by more than a heartbeat:
 * a member that stalled less was never taken for gone.
 */
const STALL = 1.5;

/**
 * Why a request answers 503 while a rebuild empties and refills the index:
 * what it holds then is no answer (a rebuild runs with the masters stopped;
 * one paused past its heartbeat when the rebuild began looked stopped).
 */
export const REBUILD_RUNNING = "A rebuild of the index is running: retry once it is done";

/** A write refused because a rebuild of the index is running: nothing was written. */
export class RebuildRunning extends Fenced {
  constructor() {
    super(REBUILD_RUNNING);
  }
}

/**
 * Judges members by their heartbeat records as seen over time, by this
 * process's monotonic clock: a record whose versionstamp has not changed
 * for `lapse` ms of watching has lapsed; one new or changed since the last
 * look is live from then.
 */
export class Watch {
  readonly lapse: number;
  #seen = new Map<string, Seen>();

  constructor(lapse: number) {
    this.lapse = lapse;
  }

  /** Looks at the records as listed at `now` (records no longer listed are forgotten). */
  see(records: MemberRecord[], now = performance.now()): {
    live: MemberRecord[];
    lapsed: MemberRecord[];
    /** The live records seen to change while watched: members beating, not a dead one's record. */
    beating: MemberRecord[];
  } {
    const seen = new Map<string, Seen>();
    const live: MemberRecord[] = [];
    const lapsed: MemberRecord[] = [];
    const beating: MemberRecord[] = [];
    for (const r of records) {
      const before = this.#seen.get(r.id);
      const same = before?.versionstamp === r.versionstamp;
      const since = same ? before.since : now;
      const moved = before !== undefined && (before.moved || !same);
      seen.set(r.id, { versionstamp: r.versionstamp, since, moved });
      const isLive = now - since < this.lapse;
      (isLive ? live : lapsed).push(r);
      if (isLive && moved) beating.push(r);
    }
    this.#seen = seen;
    return { live, lapsed, beating };
  }

  /**
   * Forgets what was seen: every record counts as new at the next look.
   * For when nobody could beat for a while (the index held up), or this
   * process could not look (it stalled).
   */
  restart(): void {
    this.#seen.clear();
  }
}

/** What a Watch keeps of a record: its versionstamp, since when, whether it ever changed. */
interface Seen {
  versionstamp: string;
  since: number;
  moved: boolean;
}

/**
 * The members other than `id` that are live, for a process that has not
 * been watching (rebuild's check): the records are watched until all have
 * lapsed, or one changes (or a new one appears): live. Every live member
 * beats within an interval, so one more interval finds them all. `lapsed`:
 * the records as last seen, when none is live. Records whose id `ignore`
 * says are not watched.
 *
 * The watcher beats too, under `id` (its record removed at the end): a
 * record unchanged while the index was locked (SQLite's write lock held)
 * tells nothing, as no heartbeat could land, so when a beat of the
 * watcher's is held up past 1.5 intervals the watch starts over, as a
 * member's does. Reads go on under the lock: without this, a lock held
 * through the watch made every live member look gone.
 */
export async function liveMembers(
  index: Index,
  id: string,
  interval: number,
  ignore: (id: string) => boolean = () => false,
): Promise<{ live: string[]; lapsed: MemberRecord[] }> {
  const watch = new Watch(LAPSE * interval);
  const others = async () =>
    (await index.members()).records.filter((r) => r.id !== id && !ignore(r.id));
  try {
    await beatHeldUp(index, id, interval);
    const first = new Map((await others()).map((r) => [r.id, r.versionstamp]));
    let { live, lapsed } = watch.see(
      [...first].map(([id, versionstamp]) => ({ id, versionstamp })),
    );
    const moved = new Set<string>();
    let until = Infinity;
    while (live.length > 0 && performance.now() < until) {
      await new Promise((r) => setTimeout(r, interval / 2));
      if (await beatHeldUp(index, id, interval)) watch.restart();
      ({ live, lapsed } = watch.see(await others()));
      for (const r of live) if (first.get(r.id) !== r.versionstamp) moved.add(r.id);
      if (moved.size > 0) until = Math.min(until, performance.now() + interval);
    }
    return { live: live.filter((r) => moved.has(r.id)).map((r) => r.id), lapsed };
  } finally {
    await index.heartbeat(id, 0).catch(() => {});
  }
}

/** Writes `id`'s heartbeat record; true when that was held up past 1.5 intervals. */
async function beatHeldUp(index: Index, id: string, interval: number): Promise<boolean> {
  const started = performance.now();
  await index.heartbeat(id, Date.now() + LAPSE * interval);
  return performance.now() - started >= 1.5 * interval;
}

export interface MembershipOptions {
  /** Heartbeat interval, ms. */
  interval: number;
  /** Called when this member becomes, or stops being, the sole writer. */
  onSole?: (sole: boolean) => void;
  /**
   * False: once taken for gone (its fence removed by another member), this
   * member stays gone, and every write of its fails Fenced, rather than
   * join again (rebuild: what it read before the lapse may be stale by
   * then). Default true.
   */
  rejoin?: boolean;
  /** How this member places keys (a master's, a tool's): carried in its heartbeat record. */
  placement?: Placement;
  /** Called when the live masters placing keys otherwise than `placement` change. */
  onPlacements?: (others: OtherPlacement[]) => void;
}

export class Membership {
  readonly id: string;
  #index: Index;
  #interval: number;
  #onSole: (sole: boolean) => void;
  #aloneSince = -Infinity;
  #beatAt = -Infinity;
  /** No write before this (performance.now() ms): set when a heartbeat lapsed. */
  #writableAt = -Infinity;
  #timer: ReturnType<typeof setInterval> | undefined;
  #joining: Promise<void> | null = null;
  #wasSole = false;
  #rebuilding = false;
  /** When the last beat began (performance.now() ms): a gap says this process stalled. */
  #tickAt = -Infinity;
  /** When the last stall (or failed beat) was noticed. */
  #stalledAt = -Infinity;
  /**
   * Index reads from this time on can be answered from: a beat begun after
   * the last stall saw no rebuild. Infinity until one has.
   */
  #trustedFrom = Infinity;
  #trusted = Promise.withResolvers<void>();
  #fence: Fence | null = null;
  #fencing: Promise<void> | null = null;
  #watch: Watch;
  #rejoin: boolean;
  readonly placement: Placement | undefined;
  #onPlacements: (others: OtherPlacement[]) => void;
  #others: OtherPlacement[] = [];

  constructor(index: Index, id: string, opts: MembershipOptions) {
    this.#index = index;
    this.id = id;
    this.#interval = opts.interval;
    this.#onSole = opts.onSole ?? (() => {});
    this.#rejoin = opts.rejoin ?? true;
    this.#watch = new Watch(LAPSE * opts.interval);
    this.placement = opts.placement;
    this.#onPlacements = opts.onPlacements ?? (() => {});
  }

  /** The live members (seen beating) that place keys otherwise than this one, as last seen. */
  get otherPlacements(): OtherPlacement[] {
    return this.#others;
  }

  /** Notes the placements of the members seen beating; tells when that changed. */
  #judgePlacements(beating: MemberRecord[]) {
    const mine = this.placement;
    if (!mine) return;
    const others = beating
      .filter((r) => r.placement && !samePlacement(r.placement, mine))
      .map((r) => ({ id: r.id, placement: r.placement! }))
      .sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    if (JSON.stringify(others) === JSON.stringify(this.#others)) return;
    this.#others = others;
    this.#onPlacements(others);
  }

  /**
   * True while a rebuild is registered: it empties the index and refills it
   * from the volumes, so the index says nothing a master may answer from
   * (a master paused past its heartbeat when the rebuild began looked gone).
   */
  get rebuilding(): boolean {
    return this.#rebuilding;
  }

  /**
   * Whether what this master read from the index since `since`
   * (performance.now() ms) can be answered: no rebuild can have emptied it
   * meanwhile. False after a stall until a beat begun after it has seen no
   * rebuild registered (one that took this master for stopped while it
   * stalled may be refilling the index). Reads no index: two clock reads.
   */
  answerable(since: number): boolean {
    return !this.#rebuilding && this.#trustedFrom <= since &&
      performance.now() - this.#tickAt < STALL * this.#interval;
  }

  /**
   * Waits, up to `ms` (two heartbeats), until reads from now on can be
   * answered (see answerable()); false when they still cannot (a rebuild runs).
   */
  async settle(ms = 2 * this.#interval): Promise<boolean> {
    const until = performance.now() + ms;
    while (!this.answerable(performance.now()) && !this.#rebuilding) {
      const left = until - performance.now();
      if (left <= 0) return false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#trusted.promise,
        new Promise((r) => timer = setTimeout(r, Math.min(left, this.#interval / 4))),
      ]);
      clearTimeout(timer);
    }
    return this.answerable(performance.now());
  }

  /** Reads can no longer be answered from, until a beat begun after `at` says so. */
  #distrust(at: number) {
    this.#stalledAt = Math.max(this.#stalledAt, at);
    if (this.#trustedFrom === Infinity) return;
    this.#trustedFrom = Infinity;
    this.#trusted = Promise.withResolvers<void>();
  }

  /** A beat begun at `started` saw the members: reads may be answered from again, or not. */
  #judgeTrust(started: number) {
    if (this.#rebuilding) this.#distrust(started);
    else if (this.#trustedFrom === Infinity && started >= this.#stalledAt) {
      this.#trustedFrom = performance.now();
      this.#trusted.resolve();
    }
  }

  /** True while this member may trust what it alone wrote. */
  get sole(): boolean {
    return performance.now() - this.#aloneSince < 1.5 * this.#interval;
  }

  /** Registers; resolves once writing is safe for the caches of others. */
  join(): Promise<void> {
    this.#joining ??= (async () => {
      // After a lapse the others may have taken us for gone: always wait.
      const rejoin = this.#timer !== undefined;
      const others = await this.#beat();
      // Beat through the wait too, or the registration lapses meanwhile.
      this.#timer ??= setInterval(() => this.#tick(), this.#interval);
      if (others > 0 || rejoin) {
        await new Promise((r) => setTimeout(r, 2.5 * this.#interval));
      }
    })().finally(() => {
      // Failed too (the index busy past retrying): the next write joins
      // anew, rather than fail at once with this stale error.
      this.#joining = null;
    });
    return this.#joining;
  }

  /**
   * Resolves when a write is safe, the registration fresh, to the fence the
   * write must carry.
   */
  async ready(): Promise<Fence> {
    while (true) {
      const now = performance.now();
      if (now - this.#beatAt >= 2 * this.#interval || !this.#fence) await this.join();
      else if (now < this.#writableAt) {
        await new Promise((r) => setTimeout(r, this.#writableAt - now));
      } else if (this.#rebuilding) throw new RebuildRunning();
      else return this.#fence;
    }
  }

  /** A write found this member's fence gone: join again before writing. */
  lapsed(): void {
    this.#beatAt = -Infinity;
  }

  /** Beats in flight, with when each started: leave() waits for them, or one lands after it. */
  #beats = new Map<Promise<number>, number>();
  #left = false;

  /** The timer's beat in flight. */
  #ticking: Promise<unknown> | null = null;

  /**
   * The timer's beat, unless its last is still in flight (held up by a
   * locked index): Deno KV runs reads after the writes it holds up, and a
   * beat sent every second piled up writes that every read waited behind,
   * longer the longer the lock was held. The tick counts all the same:
   * this process did not stall.
   */
  #tick() {
    if (this.#ticking) {
      this.#ticked(performance.now());
      return;
    }
    this.#ticking = this.#beat().catch(() => {}).finally(() => this.#ticking = null);
  }

  /** A beat (or a tick) at `now`: after a gap, this process stalled. */
  #ticked(now: number) {
    if (now - this.#tickAt >= STALL * this.#interval) this.#distrust(now);
    this.#tickAt = now;
  }

  #beat(): Promise<number> {
    if (this.#left) return Promise.resolve(0);
    const started = performance.now();
    this.#ticked(started);
    const beat = this.#beatOnce(started);
    this.#beats.set(beat, started);
    beat.finally(() => this.#beats.delete(beat)).catch(() => {});
    // A beat that failed without looking at the members (the index locked
    // past retrying, then unreadable): no rebuild can be ruled out, as if
    // we had stalled.
    beat.catch((err) => {
      if (!this.#lookedPast.has(err)) this.#distrust(started);
    });
    return beat;
  }

  /** Heartbeat failures after which the beat still looked at the members (#lookUnregistered). */
  #lookedPast = new WeakSet<object>();

  /**
   * Whether a beat of this member's has been held up past 1.5 intervals
   * (the index locked, holding up every member's heartbeat as it does ours).
   */
  #heldUp(): boolean {
    const now = performance.now();
    for (const started of this.#beats.values()) {
      if (now - started >= 1.5 * this.#interval) return true;
    }
    return false;
  }

  async #beatOnce(started: number): Promise<number> {
    // A removed index file: nothing read from it can be trusted for long
    // (another process may open a new one there), and nothing written lands.
    this.#index.checkFile();
    try {
      await this.#index.heartbeat(this.id, Date.now() + LAPSE * this.#interval, this.placement);
    } catch (err) {
      // Refused (a full disk, a read-only index file): writes fail anyway,
      // but reads need not, once a look has seen no rebuild.
      if (await this.#lookUnregistered(started) && err instanceof Object) {
        this.#lookedPast.add(err);
      }
      throw err;
    }
    // The timer's beat after a stall (a SIGSTOP, a starved event loop) may
    // come before any write asks ready(): our record may have lapsed
    // meanwhile, and the others, alone, may trust their memory again. Wait
    // as a newcomer does before writing, or a write lands unseen by them.
    const now = performance.now();
    const lapsed = this.#timer !== undefined && now - this.#beatAt >= 2 * this.#interval;
    if (lapsed) this.#writableAt = Math.max(this.#writableAt, now + 2.5 * this.#interval);
    // After the heartbeat: a fence made before it could be removed as lapsed.
    if (lapsed || !this.#fence) await this.#refence();
    this.#beatAt = started;
    const { records, fenced } = await this.#index.members();
    // After the members: a rebuild marks the index before it empties it,
    // and is seen registered until it has marked it or left (killed, it is
    // seen until its record has lapsed), so a write made once no rebuild is
    // seen knows of its mark (lib/store.ts put).
    await this.#index.incomplete();
    // Records unchanged while nobody could beat (the index held up), or
    // while this member could not look (it stalled), tell nothing.
    const heldUp = this.#heldUp();
    if (heldUp || lapsed) this.#watch.restart();
    const seen = this.#watch.see(records.filter((r) => r.id !== this.id));
    const others = seen.live.length;
    this.#rebuilding = seen.live.some((r) => r.id.startsWith(REBUILD));
    this.#judgeTrust(started);
    this.#judgePlacements(seen.beating);
    // Lapsed members go at every beat, whoever else is live (or their
    // records pile up); sole once no write of one can land any more. A
    // held-up beat evicts nobody: it would fail the others' writes for nothing.
    const cleared = !heldUp && await this.#index.evict(this.#gone(seen.lapsed, records, fenced));
    const sole = others === 0 && cleared;
    // A gap between two alone-checks (a stall) may hide a member that came
    // and went: that counts as becoming sole anew.
    const unbroken = this.#wasSole && started - this.#aloneSince < 1.5 * this.#interval;
    this.#aloneSince = sole ? started : -Infinity;
    if (sole !== this.#wasSole || (sole && !unbroken)) this.#onSole(sole);
    this.#wasSole = sole;
    return others;
  }

  /**
   * A beat whose heartbeat the index refused still looks at the members:
   * what this master reads stays answerable while no rebuild is seen (a
   * rebuild registers 2.5 s before it empties anything, and a beat looks
   * every interval), as the look of a beat that landed would judge. Not
   * sole (it evicts nothing, and its record may lapse for the others);
   * writes join again first (#beatAt is left as it was), so they fail with
   * the index's refusal. False when the look failed too.
   */
  async #lookUnregistered(started: number): Promise<boolean> {
    try {
      const { records } = await this.#index.members();
      await this.#index.incomplete();
      const seen = this.#watch.see(records.filter((r) => r.id !== this.id));
      this.#rebuilding = seen.live.some((r) => r.id.startsWith(REBUILD));
    } catch {
      return false;
    }
    this.#judgeTrust(started);
    this.#aloneSince = -Infinity;
    if (this.#wasSole) this.#onSole(false);
    this.#wasSole = false;
    return true;
  }

  /**
   * What to evict: the lapsed members, and the fences of members with no
   * heartbeat record (removed as lapsed, or never written: nothing live
   * holds one without its record).
   */
  #gone(
    lapsed: MemberRecord[],
    records: MemberRecord[],
    fenced: string[],
  ): { id: string; versionstamp: string | null }[] {
    const recorded = new Set(records.map((r) => r.id));
    const orphans = fenced.filter((id) => id !== this.id && !recorded.has(id));
    return [...lapsed, ...orphans.map((id) => ({ id, versionstamp: null }))];
  }

  /** Makes sure this member holds a fence that stands (one call at a time). */
  #refence(): Promise<void> {
    const held = this.#fence?.versionstamp ?? null;
    this.#fencing ??= this.#index.fence(this.id, held, { renew: this.#rejoin })
      .then((f) => {
        this.#fence = f;
      })
      .finally(() => this.#fencing = null);
    return this.#fencing;
  }

  async leave(): Promise<void> {
    this.#left = true;
    clearInterval(this.#timer);
    // A heartbeat landing after the removal would leave a record (no fence
    // with it, so no member ever removes it) that looks live for 3 s.
    await Promise.allSettled(this.#beats.keys());
    this.#aloneSince = -Infinity;
    await this.#index.heartbeat(this.id, 0).catch(() => {});
  }
}
