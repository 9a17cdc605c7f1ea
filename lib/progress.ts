// Progress of the offline tools (rebuild, rebalance, verify), on stderr. On
// a terminal one line rewritten in place; otherwise a plain line every few
// seconds (MKV_PROGRESS_MS overrides the interval, e.g. for tests), a JSON
// line with -log json. `done` prints the final summary line.
import { type Level, logFormatInUse, logLine } from "./log.ts";

const enc = new TextEncoder();

export interface ProgressOptions {
  /** The counter whose rate and ETA are shown, e.g. "keys". */
  main: string;
  /** Milliseconds between plain lines (not on a terminal). */
  interval?: number;
  /** Write here instead of stderr (tests). */
  write?: (line: string) => void;
  /** Force terminal mode on or off. */
  tty?: boolean;
}

export class Progress {
  readonly counters = new Map<string, number>();
  /** Known total of the main counter, for the ETA; 0 when unknown. */
  total = 0;
  readonly #name: string;
  readonly #main: string;
  readonly #tty: boolean;
  readonly #write: (line: string) => void;
  readonly #started = performance.now();
  #timer: ReturnType<typeof setInterval> | undefined;
  #shown = 0;

  constructor(name: string, opts: ProgressOptions) {
    this.#name = name;
    this.#main = opts.main;
    this.counters.set(opts.main, 0);
    // JSON lines are never rewritten in place: each is a log line of its own.
    const json = logFormatInUse() === "json";
    this.#tty = json ? false : opts.tty ?? isTerminal();
    this.#write = opts.write ??
      (json
        ? (s) => logLine("info", s.trimEnd(), {}, "stderr")
        : (s) => Deno.stderr.writeSync(enc.encode(s)));
    const env = Number(envOr("MKV_PROGRESS_MS", ""));
    const every = opts.interval ?? (env > 0 ? env : this.#tty ? 250 : 5_000);
    this.#timer = setInterval(() => this.show(), every);
    Deno.unrefTimer(this.#timer);
  }

  add(name: string, n = 1) {
    this.counters.set(name, (this.counters.get(name) ?? 0) + n);
  }

  get(name: string): number {
    return this.counters.get(name) ?? 0;
  }

  /** Seconds since the start. */
  get seconds(): number {
    return (performance.now() - this.#started) / 1000;
  }

  /** "keys 1,200/5,000, folders 30, 400/s, ETA 9s" */
  line(final = false): string {
    const secs = this.seconds;
    const main = this.get(this.#main);
    const parts: string[] = [];
    for (const [name, n] of this.counters) {
      parts.push(
        name === this.#main && this.total > 0 && !final
          ? `${name} ${fmt(n)}/${fmt(this.total)}`
          : `${name} ${fmt(n)}`,
      );
    }
    const rate = secs > 0 ? main / secs : 0;
    parts.push(`${fmt(Math.round(rate))} ${this.#main}/s`);
    if (final) parts.push(`in ${secs.toFixed(1)}s`);
    else if (this.total > 0 && rate > 0) {
      parts.push(`ETA ${Math.max(0, Math.ceil((this.total - main) / rate))}s`);
    }
    return `${this.#name}: ${parts.join(", ")}`;
  }

  show() {
    const line = this.line();
    if (this.#tty) {
      const pad = " ".repeat(Math.max(0, this.#shown - line.length));
      this.#write(`\r${line}${pad}`);
      this.#shown = line.length;
    } else {
      this.#write(`${line}\n`);
    }
  }

  /** Stops the updates without a summary (on errors). */
  stop() {
    clearInterval(this.#timer);
  }

  /** Stops the updates and prints the summary line. */
  done(): string {
    clearInterval(this.#timer);
    const line = `${this.line(true)}`;
    if (this.#tty) {
      const pad = " ".repeat(Math.max(0, this.#shown - line.length));
      this.#write(`\r${line}${pad}\n`);
    } else {
      this.#write(`${line}\n`);
    }
    return line;
  }
}

/** "1 key", "2 keys", "0 keys"; `many` when the plural is not `one` + "s" ("copies"). */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * The first `max` of a tool's list of named items (failed keys, unreadable
 * folders) on stdout, with the summary and the line that introduces them
 * (the tool's report; progress and errors that stop it go to stderr),
 * indented, and how many were left out: a summary that said "89 failed" and
 * then named 50 read as 50. With -log json, a line each at `level`, unindented.
 */
export function nameSome(lines: string[], max = 50, level: Level = "error"): void {
  const name = (line: string) =>
    logFormatInUse() === "json" ? logLine(level, line, {}, "stdout") : console.log(`  ${line}`);
  for (const line of lines.slice(0, max)) name(line);
  if (lines.length > max) name(`... and ${lines.length - max} more`);
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

function isTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

function envOr(name: string, def: string): string {
  try {
    return Deno.env.get(name) ?? def;
  } catch {
    return def;
  }
}
