// mkv: a distributed key-value store for large values, minikeyvalue's API on
// Deno. `main.ts <command> [flags]`; see `main.ts help`.
import { FlagError, HelpRequested, parseFlags, SettingError, usage } from "./lib/flags.ts";
import { FLAGS, logFormat, serverSettings } from "./lib/config.ts";
import { firstAnswer, joinIndex, LOCKED_FOR, openIndex } from "./lib/open.ts";
import { LOCKED } from "./lib/group_commit.ts";
import { Store, type StoreOptions } from "./lib/store.ts";
import { Serving } from "./lib/serving.ts";
import type { Index } from "./lib/index_db.ts";
import {
  answerFailed,
  createHandler,
  Drain,
  type Drained,
  drainedLine,
  nothingDrained,
} from "./lib/server.ts";
import { health, startProbes } from "./lib/health.ts";
import {
  logError,
  logFormatInUse,
  logInfo,
  logUnexpected,
  logWarn,
  setLogFormat,
} from "./lib/log.ts";
import { remoteProbe } from "./lib/volumes.ts";
import { inUse } from "./lib/ports.ts";
import {
  lookForUnindexed,
  lookForUnknownVolumes,
  type Unindexed,
  type UnknownVolumes,
} from "./lib/unindexed.ts";
import {
  describePlacement,
  memberName,
  type OtherPlacement,
  type Placement,
  placementAdvice,
  placementOf,
} from "./lib/membership.ts";
import { aliasesMessage, checkNames, mastersMessage } from "./lib/aliases.ts";
import { rebuild } from "./tools/rebuild.ts";
import { rebalance } from "./tools/rebalance.ts";
import { verify } from "./tools/verify.ts";
import { TOOL_FLAGS } from "./lib/tool_flags.ts";
import { volume } from "./tools/volume.ts";

export const VERSION = "0.1.0";

/** Every flag: the master's (mkv's) and the tools' (-concurrency, -md5, ...). */
const ALL_FLAGS = { ...FLAGS, ...TOOL_FLAGS };

const HELP = `mkv ${VERSION}: a distributed key-value store for large values

Commands:
  server     run the master
  rebuild    recreate the index from the volumes (master stopped)
  rebalance  move keys to where the hash puts them (masters may run: give them the new -volumes first)
  verify     check every replica and find orphan files (-md5, -repair)
  volume     run one nginx volume: PORT=3001 mkv volume /tmp/volume1/
  version    print the version
  help       print this`;

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseFlags(args, ALL_FLAGS);
    // Before anything may fail: every error after it (a stray word
    // included) is in this format, as the volume failures every command logs.
    setLogFormat(logFormat(parsed.flags));
  } catch (err) {
    // "-log json" with another flag wrong: that error is a JSON line too.
    if (jsonAsked(args)) setLogFormat("json");
    return fail(err);
  }
  const [command, ...rest] = parsed.positionals;
  const { flags } = parsed;
  // Only volume takes an argument (its folder). Any other word is a mistake,
  // most often a bool given a value apart ("-protect false" sets -protect
  // and leaves "false"): ignored, it ran the command with the opposite flag.
  const stray = rest.slice(command === "volume" ? 1 : 0);
  if (stray.length > 0) {
    // The flag the word follows, when it is one: "-md5 false" -> "-md5=false".
    const before = args[args.indexOf(stray[0]) - 1] ?? "";
    const hint = /^(true|false|[01]|t|f)$/i.test(stray[0]) && /^--?[a-z]/.test(before)
      ? ` (a bool flag takes its value with "=": ${before}=${stray[0]})`
      : "";
    return fail(new FlagError(`Unexpected argument "${stray[0]}" after "${command}"${hint}`));
  }
  // volume reads -log alone: "volume -port 3002 DIR", ignored, served on PORT's port.
  const ignored = command === "volume" ? parsed.given.find((name) => name !== "log") : undefined;
  if (ignored !== undefined) {
    return fail(
      new SettingError(
        `volume takes no -${ignored} (a master's or a tool's flag): it takes -log, and its port ` +
          `from PORT (PORT=3002 mkv volume DIR)`,
      ),
    );
  }
  try {
    reportCrashesAsJson();
    switch (command) {
      case "server":
        return await server(flags);
      case "rebuild":
        return await rebuild(flags);
      case "rebalance":
        return await rebalance(flags);
      case "verify":
        return await verify(flags);
      case "volume":
        return await volume(rest);
      case "version":
        console.log(VERSION);
        return 0;
      case "help":
        console.log(HELP + "\n\n" + usage("mkv [flags] <command>", ALL_FLAGS));
        return 0;
      default:
        return fail(new FlagError(command ? `Unknown command "${command}"` : "No command given"));
    }
  } catch (err) {
    return fail(err);
  } finally {
    // The volume failures the throttle still holds back (a tool that ends
    // within a second of them): written, counted, before the exit.
    health.flush();
  }
}

function fail(err: unknown): number {
  // `deno task master --help`: what was asked for, not an error.
  if (err instanceof HelpRequested) {
    console.log(HELP + "\n\n" + usage("mkv [flags] <command>", ALL_FLAGS));
    return 0;
  }
  const json = logFormatInUse() === "json";
  if (err instanceof FlagError) {
    // A wrong setting that is no flag (PORT): its reason alone.
    const help = err instanceof SettingError
      ? ""
      : json
      ? " (mkv help lists the commands and flags)"
      : `\n\n${HELP}\n\n${usage("mkv [flags] <command>", ALL_FLAGS)}`;
    if (json) logError(`${err.message}${help}`);
    else console.error(`${err.message}${help}`);
    return 2;
  }
  if (json) logError(err instanceof Error ? err.message : String(err));
  else console.error(err instanceof Error ? err.message : err);
  return 1;
}

/** True when the arguments ask for -log json (read before, or without, the other flags). */
function jsonAsked(args: string[]): boolean {
  return args.some((a, i) =>
    /^--?log=json$/.test(a) || (/^--?log$/.test(a) && args[i + 1] === "json")
  );
}

/**
 * With -log json, what escapes every handler (an uncaught error, a promise
 * rejected with no handler) is a JSON line too, and still ends the process
 * (exit 1), as Deno's own report of it would.
 */
function reportCrashesAsJson() {
  if (logFormatInUse() !== "json") return;
  const crash = (what: string, err: unknown, e: Event) => {
    e.preventDefault();
    logUnexpected(what, err);
    Deno.exit(1);
  };
  addEventListener("error", (e) => crash("Uncaught error", e.error, e));
  addEventListener("unhandledrejection", (e) => crash("Unhandled rejection", e.reason, e));
}

async function server(flags: { [name: string]: string | number | boolean }): Promise<number> {
  // Every flag checked before any volume or the index is touched.
  const settings = serverSettings(flags);
  const { port, opts, deadline, db } = settings;
  const s3 = settings.s3 ?? undefined;
  await checkVolumes(opts);
  const index = await openAndJoin(db, opts);
  const store = new Store(index, opts);
  const drain = new Drain();
  // Past the -drain deadline, a commit the index refuses as locked is not retried.
  index.commits.stopRetrying(drain.signal);
  const handler = createHandler(store, { verbose: flags.v as boolean, s3 }, drain);
  const srv = await listen(index, { port, opts, drain, handler });
  const stopping = stopOnSignals(srv, { drain, deadline });
  // A new or emptied index beside volumes that hold files: said, not waited for.
  lookForUnindexed(index, opts.volumes, { timeout: opts.voltimeout })
    .then((found) => found && logUnindexed(found))
    .catch((err) => logUnexpected("Looking for files the index lacks", err));
  lookForUnknownVolumes(index, opts.volumes)
    .then((found) => found && logUnknownVolumes(found))
    .catch((err) => logUnexpected("Looking for volumes the index names outside -volumes", err));
  // Volume up/down for /?status: every volume probed every 2 s.
  const probes = startProbes(opts.volumes, {
    probe: remoteProbe,
    timeout: opts.voltimeout,
    every: 2_000,
  });
  await Promise.race([srv.finished, stopping.leftOpen]);
  probes.stop();
  // Leave before exiting (main exits as soon as this returns): a tool that
  // checks the index's members (rebuild) then sees this master gone at once;
  // first the clean-ups of the writes cut off end (Store.cleanedUp). Within
  // GRACE: on an index whose write lock another process holds, the removal
  // waits as long (up to 5 s a try, retried for 10 s, after the heartbeat in
  // flight), and the stop took 20 s whatever -drain said. Unremoved, the
  // record lapses in 3 s; the index is not closed then (Deno KV's close
  // would wait for the write in flight).
  if (await leftWithin(index, { after: store.cleanedUp(), ms: GRACE })) index.close();
  else {
    logWarn(
      `Stopping: the index took no write for ${GRACE} ms (another process holds its write ` +
        `lock): exiting without removing this master's heartbeat record (it lapses in 3 s)`,
    );
  }
  // 1: a request cut off at the deadline had no answer out within the grace.
  return stopping.drained().unanswered > 0 ? 1 : 0;
}

/**
 * Refuses -volumes that cannot be this master's volumes: two names for one
 * nginx would put two "replicas" of a key in one file; a service that takes
 * no PUT (no WebDAV) would fail every write; another mkv master would take
 * each replica for a key.
 */
async function checkVolumes(opts: StoreOptions): Promise<void> {
  const { aliases, notVolumes, masters } = await checkNames(opts.volumes, [], opts.voltimeout);
  if (aliases.length > 0) {
    throw new Error(aliasesMessage(aliases, "or two replicas of a key would be one file"));
  }
  if (masters.length > 0) throw new Error(mastersMessage(masters));
  if (notVolumes.length > 0) {
    throw new Error(
      `No volume answers at ${notVolumes.join(", ")}: it refused a PUT as a server without ` +
        `WebDAV does (an mkv volume is nginx with volume.conf: deno task volume DIR); ` +
        `check -volumes`,
    );
  }
}

/** Opens the index and joins it as a master (its heartbeat record), saying if it is incomplete. */
async function openAndJoin(db: string, opts: StoreOptions): Promise<Index> {
  const index = await openIndex(db);
  const locked = (why: string) =>
    `The master did not start: ${why}: start it again once the lock is released`;
  await firstAnswer(index, locked(LOCKED_FOR));
  const placement = placementOf(opts);
  await joinIndex(index, opts.owner, {
    placement,
    onPlacements: (others) => logPlacements(others, placement),
    locked: locked(LOCKED),
  });
  const partial = await index.incomplete();
  if (partial) {
    logWarn(
      `Warning: the index is incomplete: ${partial.why} (${new Date(partial.at).toISOString()}); ` +
        `keys on the volumes it could not read are missing: run rebuild again`,
      { incomplete: partial.why, since: new Date(partial.at).toISOString() },
    );
  }
  return index;
}

/** Serves `handler` on the port; one that cannot be listened on leaves the index at once. */
async function listen(
  index: Index,
  serving: {
    port: number;
    opts: StoreOptions;
    drain: Drain;
    handler: (req: Request) => Promise<Response> | Response;
  },
): Promise<Serving> {
  const { port, opts, drain, handler } = serving;
  try {
    return new Serving({
      port,
      handler,
      onListen: ({ port }) =>
        logInfo(
          `mkv master on :${port}, volumes ${opts.volumes.join(",")}, replicas ${opts.replicas}`,
          { port, volumes: opts.volumes, replicas: opts.replicas },
        ),
      // What Deno reports itself (a response body that failed mid-stream),
      // in the log's format rather than as Deno's stack trace.
      onError: answerFailed(drain),
    });
  } catch (err) {
    // Left at once, so a rebuild need not wait out this master's heartbeat.
    await index.membership?.leave();
    index.close();
    const why = err instanceof Deno.errors.AddrInUse
      ? `it is ${inUse(port)}`
      : err instanceof Error
      ? err.message
      : String(err);
    throw new Error(`Cannot listen on port ${port} (-port): ${why}`);
  }
}

/**
 * SIGTERM/SIGINT: refuse new requests (503), let those in flight finish
 * (-drain), cut off those left (503), then stop the server; the caller then
 * leaves and closes the index. A second signal cuts off at once.
 * `leftOpen` settles when the server is done with enough (it may still
 * wait on a connection); `drained` says what became of the requests.
 */
function stopOnSignals(
  srv: Serving,
  stopping: { drain: Drain; deadline: number },
): { leftOpen: Promise<void>; drained: () => Drained } {
  const { drain, deadline } = stopping;
  let drained = nothingDrained();
  const leftOpen = Promise.withResolvers<void>();
  const stop = async () => {
    if (drain.draining) return drain.cutOff();
    drained = await drain.drain({ deadline, grace: GRACE });
    logStop(drained, deadline);
    const closed = srv.shutdown();
    // A request with no answer out yet holds the shutdown: waited for enough.
    if (drained.unanswered > 0) return leftOpen.resolve();
    // Every answer is out: a connection still open is a client sending a
    // body it was answered for (Deno's shutdown() waits for its end).
    const timer = setTimeout(() => {
      logWarn(`Stopping: connections still open ${GRACE} ms after the last answer: closed`);
      leftOpen.resolve();
    }, GRACE);
    await closed;
    clearTimeout(timer);
  };
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, stop);
  return { leftOpen: leftOpen.promise, drained: () => drained };
}

/**
 * Whether this master left the index (lib/membership.ts leave) within `ms`,
 * once `after` (the clean-ups of the writes cut off) was over.
 */
async function leftWithin(
  index: Index,
  opts: { after: Promise<void>; ms: number },
): Promise<boolean> {
  const { after, ms } = opts;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const left = after.then(() => index.membership?.leave()).then(() => true);
  const late = new Promise<boolean>((r) => timer = setTimeout(() => r(false), ms));
  try {
    return await Promise.race([left, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How long, ms, the requests cut off at the -drain deadline have to answer,
 * then the connections left open to close.
 */
const GRACE = 5_000;

/**
 * Says which live masters of the index place keys otherwise than this one
 * (lib/membership.ts), or that none does any more.
 */
function logPlacements(others: OtherPlacement[], mine: Placement) {
  if (others.length === 0) {
    logInfo("Every live member of the index places keys as this master does again");
    return;
  }
  for (const o of others) {
    logWarn(
      `Warning: ${memberName(o.id)} on this index places keys by ${
        describePlacement(o.placement)
      }, ` +
        `this master by ${describePlacement(mine)}: keys placed by one are unbalanced for ` +
        `the other (a REBALANCE or rebalance by one moves the other's back): ` +
        placementAdvice(o.id),
      { other: o.id, placement: o.placement, mine },
    );
  }
}

function logUnindexed(found: Unindexed) {
  const volumes = found.volumes.map((v) => v.volume);
  logWarn(
    `Warning: the index holds no key while volumes hold files (${volumes.join(", ")}; e.g. ` +
      `${found.volumes[0].file}): their keys answer 404: run rebuild (master stopped)`,
    { unindexed: volumes },
  );
}

function logUnknownVolumes(found: UnknownVolumes) {
  const one = found.looked === 1;
  const named = found.volumes.map((v) => one ? v.volume : `${v.volume} for ${v.keys} of them`);
  const keys = one
    ? "the index's only key names"
    : `the first ${found.looked} keys of the index name`;
  logWarn(
    `Warning: ${keys} volumes that -volumes does not ` +
      `(${named.join(", ")}): their replicas there are read only while those volumes answer ` +
      `at those names, a key with no other replica answers 503 until then: give -volumes the ` +
      `names its keys were written with (the same PORT for deno task up), or, for a volume ` +
      `gone for good, rebalance onto -volumes`,
    { unknownVolumes: found.volumes.map((v) => v.volume) },
  );
}

/** What a stop did to the requests still in flight at its deadline, when there were any. */
function logStop(drained: Drained, deadline: number) {
  if (drained.inflight === 0) return;
  logWarn(drainedLine(drained, { deadline, grace: GRACE }), { ...drained });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
