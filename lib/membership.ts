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
// still stands; a member removes the fences of lapsed members before it
// trusts its memory as the sole writer. A late write then fails (Fenced)
// instead of landing unseen, and its member joins again, with the wait.
import type { Fence } from "./group_commit.ts";
import type { Index } from "./index_db.ts";

/** The start of a rebuild's member id (tools/rebuild.ts). */
export const REBUILD = "rebuild:";

export interface MembershipOptions {
  /** Heartbeat interval, ms. */
  interval: number;
  /** Called when this member becomes, or stops being, the sole writer. */
  onSole?: (sole: boolean) => void;
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
  #fence: Fence | null = null;
  #fencing: Promise<void> | null = null;

  constructor(index: Index, id: string, opts: MembershipOptions) {
    this.#index = index;
    this.id = id;
    this.#interval = opts.interval;
    this.#onSole = opts.onSole ?? (() => {});
  }

  /**
   * True while a rebuild is registered: it empties the index and refills it
   * from the volumes, so the index says nothing a master may answer from
   * (a master paused past its heartbeat when the rebuild began looked gone).
   */
  get rebuilding(): boolean {
    return this.#rebuilding;
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
      this.#timer ??= setInterval(() => this.#beat().catch(() => {}), this.#interval);
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
      } else return this.#fence;
    }
  }

  /** A write found this member's fence gone: join again before writing. */
  lapsed(): void {
    this.#beatAt = -Infinity;
  }

  /** Beats in flight: leave() waits for them, or one lands after it. */
  #beats = new Set<Promise<number>>();
  #left = false;

  #beat(): Promise<number> {
    if (this.#left) return Promise.resolve(0);
    const beat = this.#beatOnce();
    this.#beats.add(beat);
    beat.finally(() => this.#beats.delete(beat)).catch(() => {});
    return beat;
  }

  async #beatOnce(): Promise<number> {
    const started = performance.now();
    await this.#index.heartbeat(this.id, Date.now() + 3 * this.#interval);
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
    const ids = await this.#index.otherMembers(this.id, Date.now());
    const others = ids.length;
    this.#rebuilding = ids.some((id) => id.startsWith(REBUILD));
    // Sole once no write of a lapsed member can land any more. Only a beat
    // still fresh can make it sole (from `started` on): a slow one (the index
    // locked meanwhile, holding up every member's heartbeat as it did ours)
    // would evict the others' fences for nothing, and fail their writes.
    const fresh = performance.now() - started < 1.5 * this.#interval;
    const sole = others === 0 && fresh && await this.#index.evictLapsed(this.id, Date.now());
    // A gap between two alone-checks (a stall) may hide a member that came
    // and went: that counts as becoming sole anew.
    const unbroken = this.#wasSole && started - this.#aloneSince < 1.5 * this.#interval;
    this.#aloneSince = sole ? started : -Infinity;
    if (sole !== this.#wasSole || (sole && !unbroken)) this.#onSole(sole);
    this.#wasSole = sole;
    return others;
  }

  /** Makes sure this member holds a fence that stands (one call at a time). */
  #refence(): Promise<void> {
    this.#fencing ??= this.#index.fence(this.id, this.#fence?.versionstamp ?? null)
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
    await Promise.allSettled(this.#beats);
    this.#aloneSince = -Infinity;
    await this.#index.heartbeat(this.id, 0).catch(() => {});
  }
}
