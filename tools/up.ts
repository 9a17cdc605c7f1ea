// `deno task up`: a local cluster to try the store: three nginx volumes on
// :3001-3003 (./data/volume1-3) and a master on :3000 (index in
// ./data/indexdb). `PORT=13000 deno task up` moves them all: the master on
// 13000, the volumes on 13001-13003 (below 32768, Linux's range for
// outgoing connections, where a client may hold a port). Flags go to the master (-log goes to
// the volumes too, and formats this command's own lines). Ctrl-C stops
// everything it started; so does any part of it exiting.
import { MASTER_V8_FLAGS } from "../lib/runtime.ts";
import { resolve } from "node:path";
import { ensureNginx } from "./volume.ts";
import { FlagError, HelpRequested, parseFlags, usage } from "../lib/flags.ts";
import { envPort, FLAGS, logFormat, serverSettings } from "../lib/config.ts";
import { inUse } from "../lib/ports.ts";
import { TOOL_FLAGS } from "../lib/tool_flags.ts";
import { logError, type LogFormat, logInfo, logLine, setLogFormat } from "../lib/log.ts";

const main = new URL("../main.ts", import.meta.url).pathname;
const data = resolve("data");
const deno = Deno.execPath();
const children: Deno.ChildProcess[] = [];

function start(args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(deno, {
    args: ["run", "-A", "--unstable-kv", MASTER_V8_FLAGS, main, ...args],
    env,
    stdin: "null",
  }).spawn();
  children.push(child);
  return child;
}

/**
 * The log format the flags ask for, and the flags given; null when they
 * are wrong: the master then says so, as `deno task master` would. -h
 * prints up's usage. Parsed with the tools' flags too, as the master
 * parses them, so that one given here is refused (toolFlagRefusal), not
 * passed to a master that would ignore it.
 */
function parsedArgs(args: string[]): { format: LogFormat; given: string[] } | null {
  try {
    const { flags, positionals, given } = parseFlags(args, { ...FLAGS, ...TOOL_FLAGS });
    return positionals.length > 0 ? null : { format: logFormat(flags), given };
  } catch (err) {
    if (err instanceof HelpRequested) {
      console.log(upUsage());
      Deno.exit(0);
    }
    return null;
  }
}

/**
 * Whether the master takes `masterArgs` (every flag checked as it checks
 * them, before it touches a volume or the index); false on a flag error.
 */
function masterTakes(masterArgs: string[]): boolean {
  try {
    serverSettings(parseFlags(masterArgs, { ...FLAGS, ...TOOL_FLAGS }).flags);
    return true;
  } catch (err) {
    if (err instanceof FlagError) return false;
    throw err;
  }
}

/**
 * Why up refuses the first of `given` that is a tool's (-md5, -dry-run,
 * ...: rebuild's, rebalance's, verify's): the master it runs takes every
 * flag, as mkv's one binary, and does nothing with those. Null: none.
 */
function toolFlagRefusal(given: string[]): string | null {
  const tool = given.find((name) => Object.hasOwn(TOOL_FLAGS, name));
  if (tool === undefined) return null;
  return `deno task up runs the master, which takes no -${tool}: it is a tool's ` +
    `(${TOOL_FLAGS[tool].usage}); deno task up -h lists up's flags`;
}

/**
 * What up is, and the master's flags but the two it sets itself (-port,
 * -volumes); -db with the default up gives it.
 */
function upUsage(): string {
  const { port: _port, volumes: _volumes, ...flags } = FLAGS;
  flags.db = { ...flags.db, default: "./data/indexdb", required: false };
  return `deno task up: a local cluster to try the store: three nginx volumes on PORT+1 to ` +
    `PORT+3 (./data/volume1-3) and a master on PORT (default 3000; its index in ` +
    `./data/indexdb, or -db). Flags go to the master (-log to the volumes too); PORT moves the ` +
    `cluster (PORT=13000 deno task up). Ctrl-C stops everything it started.\n\n` +
    usage("deno task up [flags]", flags);
}

/**
 * Waits until `url` answers. When `child` exits first (a flag the master
 * refuses, a port taken meanwhile: it has said why) or nothing answers in
 * 10 s, the exit code to leave with; null once it answers.
 */
async function waitFor(url: string, child: Deno.ChildProcess): Promise<number | null> {
  const ended = { code: null as number | null };
  child.status.then((s) => ended.code = s.code);
  for (let i = 0; i < 100; i++) {
    if (ended.code !== null) return ended.code;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      return null;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  logError(`${url} did not answer within 10 s: stopping`);
  return 1;
}

let stopping = false;

function stop() {
  stopping = true;
  for (const c of children) {
    try {
      c.kill("SIGTERM");
    } catch { /* already gone */ }
  }
}

/** Stops what was started and leaves with `code`. */
async function exit(code: number): Promise<never> {
  stop();
  await Promise.all(children.map((c) => c.status));
  Deno.exit(code);
}

const args = Deno.args;
const parsed = parsedArgs(args);
if (parsed === null) {
  // A wrong flag: nothing is started.
  Deno.exit((await start(["server", ...args]).status).code);
}
const { format } = parsed;
setLogFormat(format);
const toolFlag = toolFlagRefusal(parsed.given);
if (toolFlag !== null) {
  logError(toolFlag);
  Deno.exit(2);
}
// Set here, from PORT: given again, the master would listen where nothing waits for it.
const mine = args.find((a) => /^--?(port|volumes)(=|$)/.test(a));
if (mine) {
  logError(
    `deno task up sets -${mine.replace(/^--?/, "").replace(/=.*$/, "")} itself: ` +
      `move the cluster with PORT (PORT=13000 deno task up)`,
  );
  Deno.exit(2);
}
const base = envPort(Deno.env.get("PORT") ?? "3000", 65532);
if (base === null) {
  logError(`Bad PORT "${Deno.env.get("PORT")}": expected 1-65532 (the master's port)`);
  Deno.exit(2);
}
const volumes = [base + 1, base + 2, base + 3];
const masterArgs = [
  "server",
  "-port",
  String(base),
  "-db",
  `${data}/indexdb`,
  "-volumes",
  volumes.map((p) => `localhost:${p}`).join(","),
  ...args,
];
if (!masterTakes(masterArgs)) {
  // A flag the master refuses (-lease 0s, -replicas 5): it says so, as
  // `deno task master` would, before any volume starts.
  Deno.exit((await start(masterArgs).status).code);
}
try {
  await ensureNginx();
} catch (err) {
  // Not installed, and not root to install it: what to run, as one line.
  logError(err instanceof Error ? err.message : String(err));
  Deno.exit(1);
}
// Another cluster on these ports would answer our readiness checks.
for (const port of [base, ...volumes]) {
  try {
    Deno.listen({ port }).close();
  } catch (err) {
    // Another error (a port below 1024, not root): said as it is.
    logError(
      err instanceof Deno.errors.AddrInUse
        ? `Port ${port} is ${inUse(port)}: stop what runs there first (another ` +
          `'deno task up'?), or move the cluster: PORT=13000 deno task up`
        : `Cannot listen on port ${port}: ${err instanceof Error ? err.message : err}`,
    );
    Deno.exit(1);
  }
}
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
const volumeChildren = volumes.map((port) =>
  start(["-log", format, "volume", `${data}/volume${port - base}`], { PORT: String(port) })
);
const volumesUp = await Promise.all(
  volumes.map((p, i) => waitFor(`http://localhost:${p}/`, volumeChildren[i])),
);
const volumeFailed = volumesUp.find((code) => code !== null);
if (volumeFailed !== undefined && volumeFailed !== null) await exit(volumeFailed);
const master = start(masterArgs);
const failed = await waitFor(`http://localhost:${base}/?list&limit=1`, master);
if (failed !== null) await exit(failed);
const where = `master http://localhost:${base}, volumes ${volumes.map((p) => `:${p}`).join(" ")}`;
if (format === "json") {
  logInfo(`mkv is up: ${where}; Ctrl-C stops everything`, {
    master: `http://localhost:${base}`,
    volumes: volumes.map((p) => `localhost:${p}`),
  });
} else {
  logLine(
    "info",
    `
mkv is up: ${where}
  curl -L -T README.md localhost:${base}/hello     # store
  curl -L localhost:${base}/hello                  # read
  curl 'localhost:${base}/?list'                   # list
Ctrl-C stops everything.`,
  );
}
// If any part dies, take the rest down too, and leave with its exit code.
const names = [...volumes.map((p) => `the volume on :${p}`), `the master on :${base}`];
const first = await Promise.race(children.map(async (c, i) => ({ i, status: await c.status })));
if (!stopping) {
  logError(`${names[first.i]} stopped (exit ${first.status.code}): stopping the rest`);
}
await exit(first.status.code);
