// Whether each volume is up, for GET /?status: the master probes every
// volume every few seconds (with lib/volumes.ts remoteProbe, passed in by
// main.ts), and every real volume call tells too (lib/volumes.ts reports
// each outcome here). A volume
// is up while it answers (any HTTP status), down from the first call or
// probe it did not answer (refused, reset, timed out) until one it answers.
// Failures of real calls are logged, throttled, and kept among the recent
// errors; changes between up and down are logged as they happen. A replica
// a read passed over for its file's size is logged (throttled) and counted.
// A volume of ours also says how full its disk is (GET /.mkv-nginx/space,
// read with each probe): one nearly full is logged as it becomes so, and
// again once it is not.
import { recentErrors } from "./history.ts";
import {
  logInfo,
  logOtherSize,
  logVolumeFailure,
  logVolumeState,
  logWarn,
  type OtherSizeLine,
  Throttle,
  type VolumeFailureLine,
} from "./log.ts";
import { metrics } from "./metrics.ts";

export interface VolumeState {
  /** Null until the first probe or call. */
  up: boolean | null;
  /** Time the last probe took to be answered, ms; null before one was. */
  ms: number | null;
  /** When the last probe ended (ms since epoch), 0 before one did. */
  checked: number;
  /** Since when the volume is up or down (ms since epoch), 0 while unknown. */
  since: number;
  /** Why it is down ("" when up). */
  reason: string;
  /** When a real call last failed or changed the state (ms since epoch). */
  called: number;
  /** Its disk, as the last probe read it; null when the volume does not say (or is down). */
  space: Space | null;
}

/**
 * Where a volume of ours answers its disk's size and free bytes
 * (tools/volume_space.ts serves it; volume.conf proxies it there).
 */
export const SPACE_PATH = "/.mkv-nginx/space";

/** A volume's disk, in bytes (tools/volume_space.ts answers it). */
export interface Space {
  size: number;
  /** What nginx's workers may still write there. */
  free: number;
}

/** A disk with less than this share of its size free is nearly full. */
export const NEARLY_FULL = 0.05;

export function nearlyFull(space: Space | null): boolean {
  return space !== null && space.free < space.size * NEARLY_FULL;
}

/** "1.2 MB free of 8.4 MB (14%)": a disk's free bytes for people. */
export function describeSpace(space: Space): string {
  const pct = space.size > 0 ? Math.floor((space.free / space.size) * 100) : 0;
  return `${megabytes(space.free)} free of ${megabytes(space.size)} (${pct}%)`;
}

/** Bytes as MB, GB or TB (powers of 1000, as df -H), one decimal. */
function megabytes(n: number): string {
  const units = ["MB", "GB", "TB", "PB"];
  let v = n / 1e6;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) [v, u] = [v / 1000, u + 1];
  return `${v.toFixed(1)} ${units[u]}`;
}

function unknown(): VolumeState {
  return { up: null, ms: null, checked: 0, since: 0, reason: "", called: 0, space: null };
}

export class VolumeHealth {
  readonly #volumes = new Map<string, VolumeState>();
  readonly #throttle: Throttle;
  readonly #otherSizes: Throttle<OtherSizeLine>;
  /** Volumes whose disk the last probe that read it found nearly full. */
  readonly #nearlyFull = new Set<string>();

  constructor(windowMs = 1000) {
    this.#throttle = new Throttle(windowMs, noteFailure);
    this.#otherSizes = new Throttle(windowMs, logOtherSize);
  }

  #state(volume: string): VolumeState {
    let s = this.#volumes.get(volume);
    if (!s) this.#volumes.set(volume, s = unknown());
    return s;
  }

  /** A real call that the volume answered (any status). Cheap: every HEAD calls it. */
  answered(volume: string) {
    const s = this.#volumes.get(volume);
    if (s?.up !== true) this.#mark(volume, true, "", Date.now(), true);
  }

  /**
   * A real call that failed: logged (throttled) and kept among the recent
   * errors; when the volume did not answer at all it is down. `answered`
   * null: the call could not be made for a reason of this process's own
   * (no file descriptor left), which says nothing of the volume.
   */
  failed(
    f: { volume: string; call: string; outcome: "error" | "timeout"; reason: string },
    answered: boolean | null,
  ) {
    this.#throttle.failure(f);
    if (answered === null) return;
    if (answered) this.answered(f.volume);
    else this.#mark(f.volume, false, f.reason, Date.now(), true);
  }

  /**
   * A replica a read (GET, HEAD, S3's) passed over, its file of another
   * size than the value's (cut short by a disk's fault or a copy that died
   * midway): counted (mkv_replicas_cut_short_total) and logged, throttled
   * per volume, so the operator hears of it before verify runs. Not on the
   * path of a whole replica.
   */
  otherSize(f: Omit<OtherSizeLine, "suppressed">) {
    metrics.replicaCutShort(f.volume);
    this.#otherSizes.failure(f);
  }

  /**
   * A probe's outcome. A real call that told otherwise after the probe was
   * sent (`sent`, ms since epoch) is newer news: the probe then only
   * updates the timing.
   */
  probed(volume: string, p: Probe, sent: number, now = Date.now()) {
    if (p.unknown) return;
    const s = this.#state(volume);
    s.checked = now;
    if (p.up) s.ms = p.ms;
    this.#spaceRead(volume, s, p.up ? p.space : null);
    if (s.called > sent) return;
    this.#mark(volume, p.up, p.reason, now);
  }

  #mark(volume: string, up: boolean, reason: string, now = Date.now(), call = false) {
    const s = this.#state(volume);
    if (call) s.called = now;
    const was = s.up;
    s.reason = reason;
    if (was === up) return;
    s.up = up;
    s.since = now;
    // Coming up at start is not news; going down always is.
    if (up && was === null) return;
    logVolumeState({ volume, up, reason }, now);
    if (!up) recentErrors.add(`volume ${volume} down`, reason, now);
  }

  /**
   * Keeps what a probe read of the volume's disk (null: it did not say);
   * says so when the disk becomes nearly full, and once it no longer is.
   */
  #spaceRead(volume: string, s: VolumeState, space: Space | null) {
    s.space = space;
    if (space === null) return;
    const full = nearlyFull(space);
    if (full === this.#nearlyFull.has(volume)) return;
    const fields = { volume, size: space.size, free: space.free };
    if (full) {
      this.#nearlyFull.add(volume);
      logWarn(
        `Volume ${volume} is nearly full: ${describeSpace(space)}; writes onto it answer 507 ` +
          `once it is full: free space there, or add volumes`,
        fields,
      );
    } else {
      this.#nearlyFull.delete(volume);
      logInfo(`Volume ${volume} is no longer nearly full: ${describeSpace(space)}`, fields);
    }
  }

  /**
   * True while the volume is known down (its last call or probe went
   * unanswered). `volume` may name a subvolume ("host:port/sv03").
   */
  isDown(volume: string): boolean {
    const slash = volume.indexOf("/");
    return this.#volumes.get(slash < 0 ? volume : volume.slice(0, slash))?.up === false;
  }

  get(volume: string): VolumeState {
    return { ...(this.#volumes.get(volume) ?? unknown()) };
  }

  /** Writes the lines held back by the throttles (on shutdown). */
  flush() {
    this.#throttle.flush();
    this.#otherSizes.flush();
  }
}

function noteFailure(f: VolumeFailureLine) {
  logVolumeFailure(f);
  const more = f.suppressed > 0 ? ` (+${f.suppressed} suppressed)` : "";
  recentErrors.add(`volume ${f.volume} ${f.call} ${f.outcome}`, f.reason + more);
}

/** The process's view of its volumes. */
export const health = new VolumeHealth();

export interface Probe {
  up: boolean;
  /** Time to the answer, ms. */
  ms: number;
  /** Why the volume counts as down ("" when up). */
  reason: string;
  /** Its disk, when it said (lib/volumes.ts remoteSpace); null otherwise. */
  space: Space | null;
  /** The probe could not be made (this process has no file descriptor left): nothing learned. */
  unknown?: boolean;
}

export interface ProbeOptions {
  /** Asks one volume whether it is there (lib/volumes.ts remoteProbe). */
  probe: (volume: string, timeout: number) => Promise<Probe>;
  /** Each probe must be answered within this, ms (-voltimeout). */
  timeout: number;
  /** Pause between the end of one round of probes and the next, ms. */
  every: number;
}

/**
 * Probes every volume now and then every `every` ms, until stopped. The
 * timer never keeps the process alive; stop() clears it.
 */
export function startProbes(volumes: string[], opts: ProbeOptions): { stop(): void } {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const round = async () => {
    await Promise.all(volumes.map(async (v) => {
      const sent = Date.now();
      const p = await opts.probe(v, opts.timeout);
      if (!stopped) health.probed(v, p, sent);
    }));
    if (stopped) return;
    const t = setTimeout(round, opts.every);
    Deno.unrefTimer(t);
    timer = t;
  };
  round();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
