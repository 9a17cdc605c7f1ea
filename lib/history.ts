// The master's recent past, for GET /?status: requests per 10 s slot over the
// last 10 minutes (a ring buffer of counters, by method and by status class)
// and the most recent errors (a bounded ring). Counting a request is O(1)
// and allocates nothing: it runs on every request, the GET fast path too.

/** Methods of the API (POST: S3's), in the order of the counters; anything else is "other". */
export const METHODS = [
  "GET",
  "HEAD",
  "PUT",
  "REPLACE",
  "DELETE",
  "UNLINK",
  "RELINK",
  "REBALANCE",
  "POST",
  "other",
] as const;

/** Status classes counted (the master never answers 1xx). */
export const CLASSES = ["2xx", "3xx", "4xx", "5xx"] as const;

export interface TrafficOptions {
  /** Length of one slot, ms. */
  slotMs: number;
  /** Slots kept: the history covers slots * slotMs. */
  slots: number;
}

export interface TrafficSnapshot {
  /** Length of one slot, seconds. */
  interval_s: number;
  /** End of the newest slot (still filling), ISO 8601. */
  end: string;
  /** Requests per slot by method, oldest slot first. */
  methods: { [method: string]: number[] };
  /** Requests per slot by status class, oldest slot first. */
  classes: { [cls: string]: number[] };
}

function methodIndex(method: string): number {
  switch (method) {
    case "GET":
      return 0;
    case "HEAD":
      return 1;
    case "PUT":
      return 2;
    case "REPLACE":
      return 3;
    case "DELETE":
      return 4;
    case "UNLINK":
      return 5;
    case "RELINK":
      return 6;
    case "REBALANCE":
      return 7;
    case "POST":
      return 8;
    default:
      return 9;
  }
}

function classIndex(status: number): number {
  if (status < 300) return 0;
  if (status < 400) return 1;
  if (status < 500) return 2;
  return 3;
}

/** Requests per time slot, a ring of `slots` slots. */
export class Traffic {
  readonly #slotMs: number;
  readonly #slots: number;
  readonly #methods: Float64Array;
  readonly #classes: Float64Array;
  /** Absolute number (time / slotMs) of the newest slot; -1 before any. */
  #newest = -1;

  constructor(opts: TrafficOptions = { slotMs: 10_000, slots: 60 }) {
    this.#slotMs = opts.slotMs;
    this.#slots = opts.slots;
    this.#methods = new Float64Array(opts.slots * METHODS.length);
    this.#classes = new Float64Array(opts.slots * CLASSES.length);
  }

  /** Counts one answered request. */
  request(method: string, status: number, now: number = Date.now()) {
    const slot = this.#advance(now) % this.#slots;
    this.#methods[slot * METHODS.length + methodIndex(method)]++;
    this.#classes[slot * CLASSES.length + classIndex(status)]++;
  }

  /** Moves the ring to the slot of `now`, zeroing the slots it passes. */
  #advance(now: number): number {
    const abs = Math.floor(now / this.#slotMs);
    // A clock stepping back counts into the newest slot.
    if (abs <= this.#newest) return this.#newest;
    const from = Math.max(this.#newest + 1, abs - this.#slots + 1);
    for (let s = from; s <= abs; s++) {
      const i = s % this.#slots;
      this.#methods.fill(0, i * METHODS.length, (i + 1) * METHODS.length);
      this.#classes.fill(0, i * CLASSES.length, (i + 1) * CLASSES.length);
    }
    this.#newest = abs;
    return abs;
  }

  snapshot(now: number = Date.now()): TrafficSnapshot {
    const newest = this.#advance(now);
    const methods: { [m: string]: number[] } = {};
    const classes: { [c: string]: number[] } = {};
    METHODS.forEach((m, j) => methods[m] = this.#series(this.#methods, METHODS.length, j, newest));
    CLASSES.forEach((c, j) => classes[c] = this.#series(this.#classes, CLASSES.length, j, newest));
    return {
      interval_s: this.#slotMs / 1000,
      end: new Date((newest + 1) * this.#slotMs).toISOString(),
      methods,
      classes,
    };
  }

  #series(counts: Float64Array, width: number, j: number, newest: number): number[] {
    const out: number[] = [];
    for (let s = newest - this.#slots + 1; s <= newest; s++) {
      out.push(s < 0 ? 0 : counts[(s % this.#slots) * width + j]);
    }
    return out;
  }
}

export interface ErrorEntry {
  /** ISO 8601. */
  time: string;
  /** What failed: "PUT /key 500", "volume host:port put". */
  what: string;
  reason: string;
}

/** The last `size` errors, oldest dropped first. */
export class RecentErrors {
  readonly #ring: (ErrorEntry | undefined)[];
  #next = 0;

  constructor(readonly size = 50) {
    this.#ring = new Array(size);
  }

  add(what: string, reason: string, now: number = Date.now()) {
    this.#ring[this.#next] = { time: new Date(now).toISOString(), what, reason };
    this.#next = (this.#next + 1) % this.size;
  }

  /** Newest first. */
  list(): ErrorEntry[] {
    const out: ErrorEntry[] = [];
    for (let n = 1; n <= this.size; n++) {
      const e = this.#ring[(this.#next - n + this.size) % this.size];
      if (e) out.push(e);
    }
    return out;
  }
}

/** The process's request history, fed where the metrics count requests. */
export const traffic = new Traffic();

/** The process's recent errors: 5xx answers and volume failures. */
export const recentErrors = new RecentErrors();
