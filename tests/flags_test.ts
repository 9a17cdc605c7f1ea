// Unit tests of lib/flags.ts and lib/config.ts: Go-style flag parsing with the
// real FLAGS spec, Go durations, and the checks of storeOptions.
import { FLAGS, storeOptions } from "../lib/config.ts";
import { FlagError, formatDuration, parseDuration, parseFlags, usage } from "../lib/flags.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";

const parse = (...args: string[]) => parseFlags(args, FLAGS);

Deno.test("with no arguments every flag has its default", () => {
  const { flags, positionals } = parse();
  assertEquals(positionals, []);
  for (const [name, spec] of Object.entries(FLAGS)) assertEquals(flags[name], spec.default, name);
});

Deno.test("-port 3001, -port=3001 and --port 3001 all set an int", () => {
  assertEquals(parse("-port", "3001").flags.port, 3001);
  assertEquals(parse("-port=3001").flags.port, 3001);
  assertEquals(parse("--port", "3001").flags.port, 3001);
  assertEquals(parse("--port=3001").flags.port, 3001);
});

Deno.test("a bool flag alone is true, -name=false sets it false", () => {
  assertEquals(parse().flags.protect, false);
  assertEquals(parse("-protect").flags.protect, true);
  assertEquals(parse("-md5sum=false").flags.md5sum, false);
  assertEquals(parse("-md5sum=0").flags.md5sum, false);
  assertEquals(parse("-protect=T").flags.protect, true);
});

Deno.test("a bool flag does not take the next argument as its value", () => {
  const p = parse("-protect", "server");
  assertEquals(p.flags.protect, true);
  assertEquals(p.positionals, ["server"]);
});

Deno.test("flags after the subcommand are parsed: server -port 4000", () => {
  const p = parse("server", "-port", "4000", "-volumes", "a:1,b:2");
  assertEquals(p.positionals, ["server"]);
  assertEquals(p.flags.port, 4000);
  assertEquals(p.flags.volumes, "a:1,b:2");
});

Deno.test("everything after -- is positional", () => {
  const p = parse("-port", "1", "--", "-port", "2", "-nosuch");
  assertEquals(p.flags.port, 1);
  assertEquals(p.positionals, ["-port", "2", "-nosuch"]);
});

Deno.test("a lone '-' is a positional", () => {
  assertEquals(parse("-", "x").positionals, ["-", "x"]);
});

Deno.test("a string value may be empty or start with '-'", () => {
  assertEquals(parse("-db=").flags.db, "");
  assertEquals(parse("-db", "-weird").flags.db, "-weird");
  assertEquals(parse("-fallback=a=b").flags.fallback, "a=b");
});

Deno.test("durations parse as Go's, in milliseconds", () => {
  assertEquals(parse("-voltimeout", "250ms").flags.voltimeout, 250);
  assertEquals(parse("-lease=1m").flags.lease, 60_000);
});

Deno.test("an unknown flag throws FlagError", () => {
  assertThrows(() => parse("-nosuch"), FlagError, "Unknown flag: -nosuch");
  assertThrows(() => parse("--nosuch=1"), FlagError, "-nosuch");
  assertThrows(() => parse("---port", "1"), FlagError);
});

Deno.test("a flag missing its value throws FlagError", () => {
  assertThrows(() => parse("-port"), FlagError, "needs a value");
  assertThrows(() => parse("server", "-volumes"), FlagError, "-volumes");
});

Deno.test("a bad int or bool value throws FlagError", () => {
  for (const v of ["abc", "", "3.5", "1e3", "12x"]) {
    assertThrows(() => parse(`-port=${v}`), FlagError, "-port");
  }
  assertThrows(() => parse("-protect=yes"), FlagError, "-protect");
  assertThrows(() => parse("-voltimeout", "1"), FlagError, "-voltimeout");
});

Deno.test("an int past 2^53 throws FlagError: out of range, as Go's flag package says", () => {
  for (const v of ["9007199254740992", "-9007199254740992", "99999999999999999999"]) {
    assertThrows(
      () => parse(`-port=${v}`),
      FlagError,
      `Invalid value "${v}" for flag -port: out of range`,
    );
  }
  assertEquals(parse("-replicas=9007199254740991").flags.replicas, 9007199254740991);
});

Deno.test("parseDuration reads Go durations in milliseconds", () => {
  assertEquals(parseDuration("1s"), 1000);
  assertEquals(parseDuration("500ms"), 500);
  assertEquals(parseDuration("1m30s"), 90_000);
  assertEquals(parseDuration("1.5h"), 5_400_000);
  assert(Math.abs(parseDuration("300us") - 0.3) < 1e-12, String(parseDuration("300us")));
  assert(Math.abs(parseDuration("300µs") - 0.3) < 1e-12);
  assert(Math.abs(parseDuration("1500ns") - 0.0015) < 1e-12);
  assertEquals(parseDuration("0"), 0);
  assertEquals(parseDuration("-1s"), -1000);
  assertEquals(parseDuration("+2s"), 2000);
  assertEquals(parseDuration(".5s"), 500);
  assertEquals(parseDuration("1h2m3s4ms"), 3_723_004);
});

Deno.test("parseDuration rejects what Go rejects", () => {
  for (const bad of ["1", "s", "1x", "", "-", ".s", "1s2", "1 s", "ms", "1S", "1d"]) {
    assertThrows(() => parseDuration(bad), FlagError, "not a duration");
  }
});

Deno.test("formatDuration prints defaults as Go does for whole units", () => {
  assertEquals(formatDuration(0), "0s");
  assertEquals(formatDuration(1000), "1s");
  assertEquals(formatDuration(30_000), "30s");
  assertEquals(formatDuration(250), "250ms");
  assertEquals(formatDuration(90_000), "1m30s");
  assertEquals(formatDuration(120_000), "2m0s");
  assertEquals(formatDuration(3_600_000), "1h0m0s", "-grace's default, not 3600s");
});

Deno.test("usage prints no default for a false boolean, as Go's flag package; other defaults stay", () => {
  const text = usage("cmd", {
    off: { type: "bool", default: false, usage: "Off" },
    on: { type: "bool", default: true, usage: "On" },
    name: { type: "string", default: "", usage: "Name" },
    n: { type: "int", default: 3, usage: "N" },
    wait: { type: "duration", default: 1000, usage: "Wait" },
  });
  assertEquals(
    text,
    "Usage: cmd\n" +
      "  -off\n    \tOff\n" +
      "  -on\n    \tOn (default true)\n" +
      '  -name string\n    \tName (default "")\n' +
      "  -n int\n    \tN (default 3)\n" +
      "  -wait duration\n    \tWait (default 1s)",
  );
});

Deno.test("usage says (required) of a flag with no default the command can run without", () => {
  const text = usage("cmd", {
    db: { type: "string", default: "", usage: "Index", required: true },
  });
  assertEquals(text, "Usage: cmd\n  -db string\n    \tIndex (required)");
});

Deno.test("storeOptions has mkv's defaults", () => {
  const o = storeOptions(parse("-volumes", "a:1,b:2,c:3").flags);
  assertEquals(o.volumes, ["a:1", "b:2", "c:3"]);
  assertEquals(o.replicas, 3);
  assertEquals(o.subvolumes, 10);
  assertEquals(o.md5sum, true);
  assertEquals(o.protect, false);
  assertEquals(o.voltimeout, 1000);
  assertEquals(o.fallback, "");
});

Deno.test("storeOptions trims volumes and drops empty entries", () => {
  const o = storeOptions(parse("-volumes", " a:1, b:2 ,,c:3,", "-replicas", "1").flags);
  assertEquals(o.volumes, ["a:1", "b:2", "c:3"]);
});

Deno.test("storeOptions: fewer volumes than replicas throws a clear FlagError", () => {
  const err = assertThrows(
    () => storeOptions(parse("-volumes", "a:1,b:2").flags),
    FlagError,
  );
  assertEquals(
    err.message,
    "The number of volumes (2) must be at least the number of replicas (3)",
  );
  storeOptions(parse("-volumes", "a:1,b:2", "-replicas", "2").flags);
});

Deno.test("storeOptions: no volumes throws FlagError", () => {
  assertThrows(() => storeOptions(parse().flags), FlagError, "-volumes is required");
  assertThrows(() => storeOptions(parse("-volumes=").flags), FlagError, "-volumes is required");
  assertThrows(() => storeOptions(parse("-volumes", " , ").flags), FlagError, "-volumes");
});

Deno.test("storeOptions: a volume listed twice throws FlagError", () => {
  assertThrows(
    () => storeOptions(parse("-volumes", "a:1,b:2,a:1").flags),
    FlagError,
    "twice",
  );
});

Deno.test("storeOptions: one volume spelled two ways (no port and :80, host case, a leading zero) is listed twice", () => {
  // "localhost" is port 80, as mkv's: with "localhost:80" beside it, two
  // "replicas" of a key would be one file. The check for two names of one
  // nginx (a marker file) compares only volumes that answer at start.
  for (
    const [a, b] of [["localhost", "localhost:80"], ["Vol1:3001", "vol1:3001"], [
      "vol1:3001",
      "vol1:03001",
    ]]
  ) {
    const err = assertThrows(
      () => storeOptions(parse("-volumes", `${a},other:1,${b}`).flags),
      FlagError,
    );
    assertEquals(err.message, `-volumes names one volume twice: "${a}" and "${b}"`);
  }
});

Deno.test("storeOptions rejects bad volumes, replicas, subvolumes and timeouts", () => {
  const v = ["-volumes", "a:1,b:2,c:3"];
  assertThrows(
    () => storeOptions(parse("-volumes", "http://a:1,b,c").flags),
    FlagError,
    "Bad volume",
  );
  assertThrows(() => storeOptions(parse("-volumes", "a/b,b,c").flags), FlagError, "Bad volume");
  assertThrows(() => storeOptions(parse(...v, "-replicas", "0").flags), FlagError, "-replicas");
  assertThrows(() => storeOptions(parse(...v, "-subvolumes", "0").flags), FlagError, "-subvolumes");
  assertThrows(() => storeOptions(parse(...v, "-subvolumes", "257").flags), FlagError);
  assertEquals(storeOptions(parse(...v, "-subvolumes", "256").flags).subvolumes, 256);
  assertThrows(() => storeOptions(parse(...v, "-voltimeout", "0").flags), FlagError);
  assertThrows(() => storeOptions(parse(...v, "-voltimeout", "-1s").flags), FlagError);
});

Deno.test("storeOptions: a lease of zero or less throws FlagError (every write would lose its claim)", () => {
  const v = ["-volumes", "a:1,b:2,c:3"];
  for (const lease of ["0", "-5s"]) {
    const err = assertThrows(() => storeOptions(parse(...v, "-lease", lease).flags), FlagError);
    assertEquals(err.message, "-lease must be positive");
  }
  assertEquals(storeOptions(parse(...v, "-lease", "1ms").flags).lease, 1);
});

Deno.test("storeOptions: -voltimeout and -lease over 24h throw FlagError (a timer that long fires at once)", () => {
  const v = ["-volumes", "a:1,b:2,c:3"];
  const vol = assertThrows(() => storeOptions(parse(...v, "-voltimeout", "25h").flags), FlagError);
  assertEquals(vol.message, "-voltimeout must be at most 24h");
  const lease = assertThrows(() => storeOptions(parse(...v, "-lease", "25h").flags), FlagError);
  assertEquals(lease.message, "-lease must be at most 24h");
  const o = storeOptions(parse(...v, "-voltimeout", "24h", "-lease", "24h").flags);
  assertEquals([o.voltimeout, o.lease], [86_400_000, 86_400_000]);
});

Deno.test("storeOptions: a -fallback that is not host:port throws FlagError (its redirects would be broken)", () => {
  const v = ["-volumes", "a:1,b:2,c:3"];
  for (const bad of ["http://old:3000", "old cluster:3000", "old:3000/x"]) {
    const err = assertThrows(() => storeOptions(parse(...v, "-fallback", bad).flags), FlagError);
    assertEquals(err.message, `Bad -fallback "${bad}": expected host:port (port 1 to 65535)`);
  }
  assertEquals(
    storeOptions(parse(...v, "-fallback", "old-1.example.com:3000").flags).fallback,
    "old-1.example.com:3000",
  );
});

Deno.test("storeOptions accepts IPv6 and host names with dots and dashes", () => {
  const o = storeOptions(
    parse("-volumes", "[::1]:3001,vol-2.example.com:80", "-replicas", "2").flags,
  );
  assertEquals(o.volumes, ["[::1]:3001", "vol-2.example.com:80"]);
});

Deno.test("storeOptions: a volume named without a port is taken (port 80, as mkv); a port outside 1-65535 throws FlagError", () => {
  // mkv's volumes on port 80 are often named so, and the name is hashed:
  // renamed "host:80", every key would move.
  const o = storeOptions(parse("-volumes", "vol1,vol2,[::1]", "-fallback", "old").flags);
  assertEquals(o.volumes, ["vol1", "vol2", "[::1]"]);
  assertEquals(o.fallback, "old");
  for (const bad of ["a:0", "a:65536", "a:99999", "a:", "::1:3001", "[::1]x:3001"]) {
    const err = assertThrows(
      () => storeOptions(parse("-volumes", `${bad},b:2,c:3`).flags),
      FlagError,
    );
    assertEquals(err.message, `Bad volume "${bad}": expected host:port (port 1 to 65535)`);
  }
  const err = assertThrows(
    () => storeOptions(parse("-volumes", "a:1,b:2,c:3", "-fallback", "old:70000").flags),
    FlagError,
  );
  assertEquals(err.message, `Bad -fallback "old:70000": expected host:port (port 1 to 65535)`);
});
