// The log lines of the master and the tools, as plain text or JSON lines
// (-log text|json): one line per request with -v (stdout), volume failures
// and volume up/down changes always (stderr), and every other line a
// command writes (the master's banner and warnings, a tool's progress and
// summary, the error that ends a command): with -log json, each is one JSON
// object with time, level and msg (the text line) and fields of its own, so
// a log shipper can parse every line alike. Volume failures, and replicas
// a read passed over for their size, are throttled: at most one line per
// volume and call per second, then one line saying how many more there
// were, so a dead volume (or a hot key's damaged file) under load cannot
// flood the log.

export type LogFormat = "text" | "json";

export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

let format: LogFormat = "text";

export function setLogFormat(f: LogFormat) {
  format = f;
}

/** The format set by setLogFormat (text until then). */
export function logFormatInUse(): LogFormat {
  return format;
}

export type Level = "info" | "warn" | "error";

/** Extra fields of a JSON line, after time, level and msg. */
export type Fields = { [name: string]: unknown };

/**
 * A line for people: `msg` as it is in text; in json one object,
 * {"time","level","msg",...fields}, a message of several lines included.
 * Info goes to stdout, warnings and errors to stderr, unless `stream` says.
 */
export function logLine(
  level: Level,
  msg: string,
  fields: Fields = {},
  stream: "stdout" | "stderr" = level === "info" ? "stdout" : "stderr",
  now: number = Date.now(),
) {
  const line = format === "json"
    ? JSON.stringify({ time: new Date(now).toISOString(), level, msg, ...fields })
    : msg;
  if (stream === "stdout") console.log(line);
  else console.error(line);
}

export function logInfo(msg: string, fields: Fields = {}) {
  logLine("info", msg, fields);
}

export function logWarn(msg: string, fields: Fields = {}) {
  logLine("warn", msg, fields);
}

export function logError(msg: string, fields: Fields = {}) {
  logLine("error", msg, fields);
}

/**
 * An error nobody expected (a bug, or a failure of the runtime) on stderr:
 * what failed and why ("PUT /k: boom"), then its stack; in json one object
 * with that line as msg and the stack as a field, on one line.
 */
export function logUnexpected(what: string, err: unknown) {
  const message = err instanceof Error ? err.message : String(err);
  const stack = err instanceof Error && err.stack ? err.stack : "";
  if (format !== "json") {
    console.error(stack ? `${what}: ${message}\n${stack}` : `${what}: ${message}`);
    return;
  }
  logLine("error", `${what}: ${message}`, stack ? { stack } : {});
}

/**
 * A request refused or failed for a reason known and said in its answer
 * (503: the index locked past retrying, a write fenced, ...; 500: a replica
 * write failed): `what` (the method and key) with the status and that
 * reason, one line on stderr, no stack (in an incident every such request
 * is one, and the stacks would bury the rest); in json that line as `msg`,
 * level warn (error for a failure, not a 503), with {"status","reason"}.
 */
export function logRefused(what: string, status: number, reason: string) {
  logLine(status === 503 ? "warn" : "error", `${what} ${status}: ${reason}`, { status, reason });
}

/**
 * A write answered as done (2xx) that left something undone, said by its
 * outcome (a file left on a volume, a switch left to the key's next
 * request): `what` (the method and key) with the status and that, one line
 * on stderr, as logRefused's; in json that line as `msg`, level warn, with
 * {"status","reason"}.
 */
export function logUndone(what: string, status: number, reason: string) {
  logLine("warn", `${what} ${status}: ${reason}`, { status, reason });
}

export interface RequestLine {
  method: string;
  /** The key as requested (the URL's path, still percent-encoded). */
  key: string;
  status: number;
  ms: number;
  /** Value bytes received (PUT, REPLACE) plus body bytes sent (lists, errors). */
  bytes: number;
}

/**
 * `GET /key 302 0.4ms 0B` (stdout), or in json that line as `msg`, level
 * info, with {"method","key","status","ms","bytes"}.
 */
export function logRequest(r: RequestLine, now: number = Date.now()) {
  const { method, key, status, bytes } = r;
  const ms = Math.round(r.ms * 10) / 10;
  const text = `${method} ${key} ${status} ${ms.toFixed(1)}ms ${bytes}B`;
  logLine("info", text, { method, key, status, ms, bytes }, "stdout", now);
}

export interface VolumeFailureLine {
  volume: string;
  /** head, put, get, delete, move, list. */
  call: string;
  /** error or timeout. */
  outcome: string;
  reason: string;
  /** Failures like it (same volume and call) never written, since the last line. */
  suppressed: number;
}

/**
 * `volume 127.0.0.1:3001 put error: <reason>`, with ` (+N suppressed)` when
 * some were held back (stderr); in json that line as `msg`, level warn,
 * with {"volume","call","outcome","reason","suppressed"}.
 */
export function logVolumeFailure(f: VolumeFailureLine, now: number = Date.now()) {
  const more = f.suppressed > 0 ? ` (+${f.suppressed} suppressed)` : "";
  const text = `volume ${f.volume} ${f.call} ${f.outcome}: ${f.reason}${more}`;
  logLine("warn", text, { ...f }, "stderr", now);
}

/**
 * `volume 127.0.0.1:3001 down: <reason>` / `... up` (stderr); in json that
 * line as `msg`, level error (down) or info (up), with
 * {"volume","state","reason"}.
 */
export function logVolumeState(
  v: { volume: string; up: boolean; reason: string },
  now: number = Date.now(),
) {
  const state = v.up ? "up" : "down";
  const text = `volume ${v.volume} ${state}${v.reason ? `: ${v.reason}` : ""}`;
  const fields = { volume: v.volume, state, reason: v.reason };
  logLine(v.up ? "info" : "error", text, fields, "stderr", now);
}

export interface OtherSizeLine {
  /** The replica's volume (host:port). */
  volume: string;
  /** The key (its bytes as UTF-8); the text line quotes it as verify does. */
  key: string;
  /** The file's size; null: fewer bytes than a range asked for (its size not said). */
  size: number | null;
  /** The value's recorded size ("11"; "11 or 20" while a REPLACE switches it). */
  recorded: string;
  /** Replicas like it (same volume) never written, since the last line. */
  suppressed: number;
}

/**
 * `volume 127.0.0.1:3001 holds "/k" of another size: 5 bytes, recorded 11
 * (passed over; verify -repair copies the value over it)`, with
 * ` (+N suppressed)` when some were held back (stderr); in json that line
 * as `msg`, level warn, with {"volume","key","size","recorded","suppressed"}.
 */
export function logOtherSize(f: OtherSizeLine, now: number = Date.now()) {
  const more = f.suppressed > 0 ? ` (+${f.suppressed} suppressed)` : "";
  const key = JSON.stringify(f.key);
  const text = `volume ${f.volume} holds ${key} of another size: ${f.size ?? "fewer"} bytes, ` +
    `recorded ${f.recorded} (passed over; verify -repair copies the value over it)${more}`;
  logLine("warn", text, { ...f }, "stderr", now);
}

/**
 * A line the throttle writes: held back by its volume and, for a failure,
 * its call; written with how many like it were held back.
 */
export interface Throttled {
  volume: string;
  call?: string;
  suppressed: number;
}

interface Held<L> {
  /** When the current window opened (the last line written), ms. */
  since: number;
  /** Lines held back in this window, and the last of them. */
  count: number;
  last: Omit<L, "suppressed"> | null;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Passes the first line of each volume and call per window through, and
 * holds back the rest; when the window ends, one line carries the last one
 * held back with their count. The timers never keep the process alive.
 */
export class Throttle<L extends Throttled = VolumeFailureLine> {
  readonly #held = new Map<string, Held<L>>();

  constructor(
    readonly windowMs: number,
    readonly emit: (f: L) => void,
  ) {}

  failure(f: Omit<L, "suppressed">, now: number = Date.now()) {
    const id = `${f.volume} ${f.call ?? ""}`;
    const h = this.#held.get(id);
    if (!h || now - h.since >= this.windowMs) {
      if (h) clearTimeout(h.timer);
      this.#held.set(id, { since: now, count: 0, last: null, timer: undefined });
      this.emit({ ...f, suppressed: 0 } as L);
      return;
    }
    h.count++;
    h.last = f;
    if (h.timer === undefined) {
      const t = setTimeout(() => this.#flush(id), h.since + this.windowMs - now);
      Deno.unrefTimer(t);
      h.timer = t;
    }
  }

  #flush(id: string) {
    const h = this.#held.get(id);
    if (!h || !h.last) return;
    this.#held.set(id, { since: Date.now(), count: 0, last: null, timer: undefined });
    // The line shows the last one held back; the others are counted.
    this.emit({ ...h.last, suppressed: h.count - 1 } as L);
  }

  /** Writes what is held back now (on shutdown) and stops the timers. */
  flush() {
    for (const [id, h] of [...this.#held]) {
      clearTimeout(h.timer);
      if (h.last) this.#flush(id);
    }
  }
}
