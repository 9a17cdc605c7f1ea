// Who writes the index. Every master (and every tool that writes) keeps a
// heartbeat record in it; a master may answer from its own memory (caches
// in lib/index_db.ts) only while it is the index's sole writer.
//
// Safety: a master is "sole" for 1.5 intervals after a check that began
// with no other member live. A newcomer registers, then waits 2.5 intervals
// before its first write, by which time every other master has either seen
// it or stopped trusting its caches. A member whose own heartbeat may have
// lapsed (event loop stalled) re-joins, with the wait, before writing.
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
      this.#joining = null;
    })();
    return this.#joining;
  }

  /** Resolves when a write is safe: the registration is fresh. */
  async ready(): Promise<void> {
    while (true) {
      const now = performance.now();
      if (now - this.#beatAt >= 2 * this.#interval) await this.join();
      else if (now < this.#writableAt) {
        await new Promise((r) => setTimeout(r, this.#writableAt - now));
      } else return;
    }
  }

  async #beat(): Promise<number> {
    const started = performance.now();
    await this.#index.heartbeat(this.id, Date.now() + 3 * this.#interval);
    // The timer's beat after a stall (a SIGSTOP, a starved event loop) may
    // come before any write asks ready(): our record may have lapsed
    // meanwhile, and the others, alone, may trust their memory again. Wait
    // as a newcomer does before writing, or a write lands unseen by them.
    const now = performance.now();
    if (this.#timer !== undefined && now - this.#beatAt >= 2 * this.#interval) {
      this.#writableAt = Math.max(this.#writableAt, now + 2.5 * this.#interval);
    }
    this.#beatAt = started;
    const ids = await this.#index.otherMembers(this.id, Date.now());
    const others = ids.length;
    this.#rebuilding = ids.some((id) => id.startsWith(REBUILD));
    const sole = others === 0;
    // A gap between two alone-checks (a stall) may hide a member that came
    // and went: that counts as becoming sole anew.
    const unbroken = this.#wasSole && started - this.#aloneSince < 1.5 * this.#interval;
    this.#aloneSince = sole ? started : -Infinity;
    if (sole !== this.#wasSole || (sole && !unbroken)) this.#onSole(sole);
    this.#wasSole = sole;
    return others;
  }

  async leave(): Promise<void> {
    clearInterval(this.#timer);
    this.#aloneSince = -Infinity;
    await this.#index.heartbeat(this.id, 0).catch(() => {});
  }
}
