// Go-style flags, as mkv's `flag` package reads them: "-name value",
// "-name=value", "--name value"; booleans as "-name" or "-name=false".
// Unlike Go, flags may come after the subcommand ("server -port 3000"),
// because `deno task master` appends them after "server".

export type FlagType = "string" | "int" | "bool" | "duration";

export interface FlagSpec {
  type: FlagType;
  default: string | number | boolean;
  usage: string;
  /** No default a command can run with: usage says "(required)" instead of one. */
  required?: boolean;
}

export type FlagValues = { [name: string]: string | number | boolean };

export class FlagError extends Error {}

/**
 * A wrong setting that is no flag (the environment's PORT), or a flag the
 * command takes none of (volume's -port): exit 2 as a flag error, its
 * reason alone, without the flags' usage.
 */
export class SettingError extends FlagError {}

/** -h, -help or --help, as Go's flag package takes them: print the usage, exit 0. */
export class HelpRequested extends Error {}

export interface Parsed {
  flags: FlagValues;
  positionals: string[];
  /** The flags the arguments set, in their order (a default is no flag given). */
  given: string[];
}

export function parseFlags(
  args: readonly string[],
  specs: { [name: string]: FlagSpec },
): Parsed {
  const flags: FlagValues = {};
  for (const [name, spec] of Object.entries(specs)) flags[name] = spec.default;
  const positionals: string[] = [];
  const given: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    const spec = specs[name];
    if (!spec && (name === "h" || name === "help")) throw new HelpRequested();
    if (!spec) throw new FlagError(`Unknown flag: -${name}`);
    let raw: string;
    if (eq >= 0) raw = body.slice(eq + 1);
    else if (spec.type === "bool") raw = "true";
    else if (i + 1 < args.length) raw = args[++i];
    else throw new FlagError(`Flag needs a value: -${name}`);
    flags[name] = parseValue(name, spec.type, raw);
    given.push(name);
  }
  return { flags, positionals, given };
}

function parseValue(name: string, type: FlagType, raw: string) {
  switch (type) {
    case "string":
      return raw;
    case "int": {
      if (!/^[+-]?\d+$/.test(raw)) {
        throw new FlagError(`Invalid value "${raw}" for flag -${name}: not an integer`);
      }
      // Past 2^53 a number is rounded: checked against the flag's range, 1e20 would pass.
      const n = Number(raw);
      if (!Number.isSafeInteger(n)) {
        throw new FlagError(`Invalid value "${raw}" for flag -${name}: out of range`);
      }
      return n;
    }
    case "bool": {
      const v = {
        "1": true,
        t: true,
        T: true,
        true: true,
        TRUE: true,
        True: true,
        "0": false,
        f: false,
        F: false,
        false: false,
        FALSE: false,
        False: false,
      }[raw];
      if (v === undefined) {
        throw new FlagError(`Invalid value "${raw}" for flag -${name}: not a boolean`);
      }
      return v;
    }
    case "duration":
      return parseDuration(raw, name);
  }
}

const UNITS: { [unit: string]: number } = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's time.ParseDuration, in milliseconds: "1s", "300ms", "1m30s", "1.5h". */
export function parseDuration(raw: string, name = "duration"): number {
  const bad = () =>
    new FlagError(`Invalid value "${raw}" for flag -${name}: not a duration (e.g. 1s, 500ms)`);
  let s = raw;
  let sign = 1;
  if (s.startsWith("-") || s.startsWith("+")) {
    sign = s[0] === "-" ? -1 : 1;
    s = s.slice(1);
  }
  if (s === "0") return 0;
  if (s === "") throw bad();
  let total = 0;
  const re = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (s.length > 0) {
    const m = re.exec(s);
    if (!m) throw bad();
    total += Number(m[1]) * UNITS[m[2]];
    s = s.slice(m[0].length);
  }
  return sign * total;
}

export function usage(
  command: string,
  specs: { [name: string]: FlagSpec },
): string {
  const lines = [`Usage: ${command}`];
  for (const [name, spec] of Object.entries(specs)) {
    const kind = spec.type === "bool"
      ? ""
      : ` ${spec.type === "duration" ? "duration" : spec.type === "int" ? "int" : "string"}`;
    lines.push(`  -${name}${kind}\n    \t${spec.usage}${defaultNote(spec)}`);
  }
  return lines.join("\n");
}

/**
 * " (default ...)" after a flag's usage, or " (required)"; none for a
 * boolean that is off, as Go's flag package.
 */
function defaultNote(spec: FlagSpec): string {
  if (spec.required) return " (required)";
  if (spec.default === false) return "";
  const def = spec.type === "duration"
    ? formatDuration(spec.default as number)
    : JSON.stringify(spec.default);
  return ` (default ${def})`;
}

/**
 * A standalone tool's exit code for what parsing its arguments threw: -h
 * prints its usage on stdout (0), a wrong flag the reason and the usage on
 * stderr (2); anything else is no flag's doing and is thrown again.
 */
export function flagExit(
  err: unknown,
  command: string,
  specs: { [name: string]: FlagSpec },
): number {
  if (err instanceof HelpRequested) {
    console.log(usage(command, specs));
    return 0;
  }
  if (!(err instanceof FlagError)) throw err;
  console.error(`${err.message}\n\n${usage(command, specs)}`);
  return 2;
}

/** parseFlags for a script run on its own: on -h or a wrong flag, exits as flagExit says. */
export function parseFlagsOrExit(
  args: string[],
  specs: { [name: string]: FlagSpec },
  command: string,
): Parsed {
  try {
    return parseFlags(args, specs);
  } catch (err) {
    Deno.exit(flagExit(err, command, specs));
  }
}

export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms % 1000 !== 0) return `${ms}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s}s`;
  // Go's time.Duration: 1m30s, 1h0m0s.
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h ? `${h}h` : ""}${m}m${s % 60}s`;
}
