// `PORT=3001 deno task volume /tmp/volume1/`: one volume, stock nginx in the
// foreground, serving the folder with WebDAV PUT/DELETE and a JSON autoindex
// (volume.conf). nginx's pid and temp files stay in <folder>/.mkv-nginx,
// made again while nginx runs when the folder goes (a disk replaced).
import { chmod, chown, mkdir, readFile, realpath, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { type Level, logFormatInUse, logInfo, logLine, logWarn } from "../lib/log.ts";
import { envPort } from "../lib/config.ts";
import { inUse } from "../lib/ports.ts";
import { SettingError } from "../lib/flags.ts";
import { serveSpace } from "./volume_space.ts";

export async function volume(args: string[]): Promise<number> {
  const folder = resolve(args[0] ?? "/tmp/volume1/");
  const raw = Deno.env.get("PORT") ?? "3001";
  const port = envPort(raw);
  if (port === null) throw new SettingError(`Bad PORT "${raw}": expected 1 to 65535`);
  const nginx = await ensureNginx();
  const run = join(folder, ".mkv-nginx");
  const template = await readFile(new URL("../volume.conf", import.meta.url), "utf8");
  // Answers nginx's 500s (507 for a full disk) and the space report.
  const space = serveSpace(folder);
  const { conf, confPath, workers, disk } = await inFolder(
    folder,
    () => setUp({ folder, run, port, template, spacePort: space.port }),
  ).catch(async (err) => {
    await space.stop();
    throw err;
  });
  const child = new Deno.Command(nginx, {
    args: ["-e", "stderr", "-c", confPath, "-p", run],
    stdin: "null",
    stderr: "piped",
    // Its own process group, its workers in it: they outlive a master
    // killed (OOM, kill -9), holding the port and nginx's stderr, and are
    // killed as a group once it has gone.
    detached: true,
  }).spawn();
  const stopping = forwardStops(child);
  // Started once nginx listens: its pid file says when, which the keeper writes.
  let keeper: Keeper | null = null;
  const errors = forwardErrors(child.stderr, {
    onLine: (line) => {
      space.line(line);
      if (line.includes(run)) keeper?.check();
    },
  });
  // Announced once nginx listens, not before: a port in use has it retry
  // its bind for 2.5 s, then exit.
  if (await listening(child, join(run, "nginx.pid"))) {
    logInfo(`mkv volume ${folder} on :${port}`, { folder, port });
    keeper = keepFolders({ folder, run, conf, pid: child.pid, workers, disk });
  }
  const status = await child.status;
  keeper?.stop();
  killGroup(child.pid);
  stopping.remove();
  const last = await errors;
  await space.stop();
  if (status.success || status.signal === "SIGTERM") return 0;
  if (last.inUse) {
    throw new Error(`Cannot listen on port ${port} (PORT): it is ${inUse(port)}`);
  }
  return status.code || 1;
}

/**
 * What nginx is sent when the volume is told to stop: SIGTERM and Ctrl-C
 * (SIGINT), its terminal closed (SIGHUP), Ctrl-\ (SIGQUIT: nginx's graceful
 * stop, the requests in flight finished). Each would kill Deno alone, and
 * nginx, in a process group of its own, hears none of them: it would go on
 * serving the folder, its errors written to no one.
 */
const STOPS: [Deno.Signal, Deno.Signal][] = [
  ["SIGTERM", "SIGTERM"],
  ["SIGINT", "SIGTERM"],
  ["SIGHUP", "SIGTERM"],
  ["SIGQUIT", "SIGQUIT"],
];

/** Passes the signals that stop the volume on to nginx (STOPS), until removed. */
function forwardStops(child: Deno.ChildProcess): { remove: () => void } {
  const send = (sig: Deno.Signal) => () => {
    try {
      child.kill(sig);
    } catch {
      // nginx has exited already: the volume is stopping.
    }
  };
  const listeners = STOPS.map(([heard, sent]) => [heard, send(sent)] as const);
  for (const [heard, fn] of listeners) Deno.addSignalListener(heard, fn);
  return { remove: () => listeners.forEach(([heard, fn]) => Deno.removeSignalListener(heard, fn)) };
}

/**
 * Readies the folder for nginx: makes it and nginx's in it, removes the
 * partial uploads of one killed, hands it to the workers, writes nginx.conf
 * (volume.conf filled in); says which disk it is on.
 */
async function setUp(
  v: { folder: string; run: string; port: number; template: string; spacePort: number },
): Promise<{ conf: string; confPath: string; workers: Workers; disk: Disk }> {
  await mkdir(v.run, { recursive: true });
  // One folder served twice is one volume under two names, which the tools
  // take for two (a copy deleted as its own duplicate); and this one would
  // rewrite the other's nginx.conf and take its pid file when it stops.
  const serving = await servingNginx(v.run);
  if (serving !== null) {
    throw new Error(
      `${v.folder} is served already, by nginx ${serving} (a volume of this folder): ` +
        `stop that volume first (or kill ${serving}, left by one killed), or serve another folder`,
    );
  }
  await clearUploads(v.run);
  const workers = await workerUser(v.folder);
  const conf = renderConf(v.template, {
    port: v.port,
    root: v.folder,
    run: v.run,
    user: workers.directive,
    spacePort: v.spacePort,
  });
  const confPath = join(v.run, "nginx.conf");
  await writeFile(confPath, conf);
  return { conf, confPath, workers, disk: await diskOf(v.folder) };
}

/** Kills what is left of nginx's process group (workers of a master killed); none is fine. */
function killGroup(pid: number) {
  try {
    Deno.kill(-pid, "SIGKILL");
  } catch {
    // ESRCH: the workers went with their master, as they do when it stops.
  }
}

/**
 * True once nginx listens: it writes its pid file only after it has bound
 * its port (a file left by an nginx that was killed names another pid).
 * False when it exits first.
 */
async function listening(child: Deno.ChildProcess, pidFile: string): Promise<boolean> {
  let exited = false;
  child.status.then(() => exited = true);
  while (!exited) {
    const pid = Number((await readFile(pidFile, "utf8").catch(() => "")).trim());
    if (pid === child.pid) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** Who nginx's workers run as, and the ids the folders they write are handed to (none: ours). */
interface Workers {
  /** nginx's `user` directive, "" for none. */
  directive: string;
  owner: { uid: number; gid: number } | null;
}

interface Keeper {
  /** Looks now (nginx failed on a path of the run folder). */
  check: () => void;
  stop: () => void;
}

/** How often the folders nginx needs are looked for (ms). */
const KEEP_EVERY = 1_000;

/**
 * Makes again what nginx needs of the folder once it is gone while nginx
 * runs (the disk replaced, the folder deleted): the folder, and in
 * `<folder>/.mkv-nginx` the upload temp folder (without it nginx answers
 * every PUT 500), its nginx.conf and pid file (which a second volume of the
 * folder is refused by). nginx makes them only at its start. Not while its
 * disk is unmounted (diskGone): PUTs fail then, rather than fill the file
 * system under it.
 */
function keepFolders(
  v: { folder: string; run: string; conf: string; pid: number; workers: Workers; disk: Disk },
): Keeper {
  const body = join(v.run, "body");
  let busy = false;
  let unmounted = false;
  const check = async () => {
    if (busy || await stat(body).then(() => true, () => false)) return;
    busy = true;
    try {
      if (await diskGone(v.disk)) {
        if (!unmounted) {
          logWarn(
            `${v.folder}: its disk is not mounted (the folder's path leads to the file system ` +
              `it was mounted on): nothing is made there; mount the disk again, or restart the ` +
              `volume to serve the folder where it is now`,
            { folder: v.folder },
          );
        }
        unmounted = true;
        return;
      }
      unmounted = false;
      await mkdir(v.run, { recursive: true });
      const owner = v.workers.owner;
      if (owner) await handOver(v.folder, owner);
      await writeFile(join(v.run, "nginx.conf"), v.conf);
      await writeFile(join(v.run, "nginx.pid"), `${v.pid}\n`);
      await mkdir(body, { recursive: true, mode: 0o700 });
      if (owner) await chown(body, owner.uid, owner.gid);
      logWarn(`${v.folder} was gone: made again (its folder and nginx's in .mkv-nginx)`, {
        folder: v.folder,
      });
    } catch (err) {
      logWarn(`${v.folder} is gone and cannot be made again: ${describe(err)}`, {
        folder: v.folder,
      });
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(check, KEEP_EVERY);
  return { check: () => void check(), stop: () => clearInterval(timer) };
}

/**
 * The file system a volume's folder was on at its start (its device), and
 * the one that file system is mounted on, when another: its path leads
 * there once that disk is unmounted.
 */
interface Disk {
  path: string;
  dev: number;
  /** The device of the nearest folder above it on another file system; null: none. */
  under: number | null;
}

async function diskOf(folder: string): Promise<Disk> {
  const path = await realpath(folder);
  const dev = (await stat(path)).dev;
  for (let d = dirname(path);; d = dirname(d)) {
    const info = await stat(d);
    if (info.dev !== dev) return { path, dev, under: info.dev };
    if (d === dirname(d)) return { path, dev, under: null };
  }
}

/**
 * True when the folder's path (or what is left of it) now leads to the file
 * system its disk was mounted on: the disk is unmounted, and what nginx
 * needs, made again there, would have every PUT fill that file system (the
 * root disk, as a rule), hidden once the disk is mounted again. Another
 * file system there is a disk replaced.
 */
async function diskGone(disk: Disk): Promise<boolean> {
  if (disk.under === null) return false;
  for (let d = disk.path;; d = dirname(d)) {
    const info = await stat(d).catch(() => null);
    if (info) return info.dev === disk.under;
    if (d === dirname(d)) return false;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Writes nginx's error lines to stderr as they come (with -log json, a JSON
 * line each, its level nginx's), each passed to `onLine` too; resolves when
 * nginx closes its stderr, saying whether it failed to bind a port in use.
 */
async function forwardErrors(
  stderr: ReadableStream<Uint8Array>,
  opts: { onLine: (line: string) => void },
): Promise<{ inUse: boolean }> {
  let inUse = false;
  let rest = "";
  const line = (l: string) => {
    opts.onLine(l);
    if (l.includes("Address already in use")) inUse = true;
    if (logFormatInUse() === "json") logLine(nginxLevel(l), l, { source: "nginx" }, "stderr");
    else console.error(l);
  };
  for await (const text of stderr.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + text).split("\n");
    rest = lines.pop()!;
    lines.forEach(line);
  }
  if (rest) line(rest);
  return { inUse };
}

/** Our level of an nginx error line ("nginx: [emerg] bind() ...", "... [warn] ..."). */
function nginxLevel(line: string): Level {
  const m = line.match(/\[(emerg|alert|crit|error|warn|notice|info|debug)\]/);
  if (!m || ["emerg", "alert", "crit", "error"].includes(m[1])) return "error";
  return m[1] === "warn" ? "warn" : "info";
}

/** volume.conf with its {{...}} fields filled in. */
function renderConf(
  template: string,
  v: { port: number; root: string; run: string; user: string; spacePort: number },
): string {
  return template
    .replaceAll("{{PORT}}", String(v.port))
    .replaceAll("{{SPACE_PORT}}", String(v.spacePort))
    .replaceAll("{{ROOT}}", v.root)
    .replaceAll("{{RUN}}", v.run)
    .replaceAll("{{USER}}", v.user);
}

/**
 * As root, nginx's workers run as nobody; they must be able to write the
 * folder, so a folder owned by root is handed to them (the folder itself,
 * not what is in it). When nobody cannot even reach the folder (a parent
 * such as /root is closed to others), the workers run as root instead.
 * Not as root, the workers run as us and need nothing.
 */
async function workerUser(folder: string): Promise<Workers> {
  if (Deno.uid() !== 0) return { directive: "", owner: null };
  if (!await othersCanReach(dirname(folder))) {
    logWarn(`${dirname(folder)} is closed to other users: nginx workers run as root`);
    return { directive: "user root root;", owner: null };
  }
  const group = (await readFile("/etc/group", "utf8")).match(/^nogroup:/m) ? "nogroup" : "nobody";
  const owner = { uid: await idOf("-u", "nobody"), gid: await idOf("-g", "nobody") };
  await handOver(folder, owner);
  return { directive: `user nobody ${group};`, owner };
}

/** Hands a folder owned by root to nginx's workers (the folder itself, not what is in it). */
async function handOver(folder: string, owner: { uid: number; gid: number }): Promise<void> {
  if ((await stat(folder)).uid !== 0) return;
  await chown(folder, owner.uid, owner.gid);
  await chmod(folder, 0o755);
}

/**
 * The pid of an nginx serving this folder still (its pid file names a live
 * nginx run from `run`: not another that took the pid of one killed); null
 * when none.
 */
async function servingNginx(run: string): Promise<number | null> {
  const pid = Number((await readFile(join(run, "nginx.pid"), "utf8").catch(() => "")).trim());
  if (!(pid > 0)) return null;
  const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  const real = await realpath(run).catch(() => run);
  return cmd.includes("nginx") && (cmd.includes(run) || cmd.includes(real)) ? pid : null;
}

/**
 * nginx writes each upload to `<run>/body` and renames it into place when
 * whole; an nginx killed mid-upload leaves the part there for good. At start
 * none is in flight, so what is there is such a part: removed, unless an
 * nginx of this folder still runs.
 */
export async function clearUploads(run: string) {
  if (await servingNginx(run) !== null) return;
  await rm(join(run, "body"), { recursive: true, force: true });
}

/** True when every folder from / down to `dir` lets others through (o+x). */
async function othersCanReach(dir: string): Promise<boolean> {
  for (let d = dir;; d = dirname(d)) {
    const info = await stat(d);
    if ((info.mode & 0o001) === 0) return false;
    if (d === dirname(d)) return true;
  }
}

async function idOf(flag: string, user: string): Promise<number> {
  const out = await new Deno.Command("id", { args: [flag, user] }).output();
  return Number(new TextDecoder().decode(out.stdout).trim());
}

/** Why a folder could not be made, by its error's code. */
const CANNOT_MAKE: { [code: string]: string } = {
  ENOENT: "no folder can be made there",
  ENOTDIR: "it, or one above it, is a file",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "its file system is read-only",
  ENOSPC: "its disk is full",
};

/**
 * Runs `fn`, the volume's set-up in its folder; a folder that cannot be made
 * or written (under /proc, a file, on a read-only disk) is an error naming
 * it and why, in one line, rather than the failed call's, which names
 * .mkv-nginx or a file in it.
 */
async function inFolder<T>(folder: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const code = (err as { code?: string }).code ?? "";
    const why = CANNOT_MAKE[code];
    if (why === undefined) throw err;
    throw new Error(`Cannot use ${folder} as a volume's folder: ${why} (${code})`);
  }
}

/**
 * The nginx binary: `MKV_NGINX` when set (it must be a file: nothing is
 * installed then), else nginx on PATH or in the sbin folders, installed
 * first if missing (see installNginx).
 */
export async function ensureNginx(): Promise<string> {
  const named = Deno.env.get("MKV_NGINX");
  if (named) {
    const info = await stat(named).catch(() => null);
    if (!info?.isFile) {
      throw new Error(
        `MKV_NGINX names "${named}", which is not a file: point it at the nginx binary, ` +
          `or unset it to use nginx from PATH`,
      );
    }
    return named;
  }
  return await findNginx() ?? await installNginx();
}

async function findNginx(): Promise<string | null> {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").concat([
    "/usr/sbin",
    "/usr/local/sbin",
    "/sbin",
  ]);
  for (const dir of dirs) {
    const p = join(dir, "nginx");
    const info = await stat(p).catch(() => null);
    if (info?.isFile) return p;
  }
  return null;
}

/**
 * Installs Debian's nginx-light when root; otherwise says what to run.
 * `deno task up` and `deno task test` call this once before starting
 * volumes, so parallel volumes never race for apt's lock.
 */
export async function installNginx(root = Deno.uid() === 0): Promise<string> {
  const how = "apt-get update && apt-get install -y nginx-light";
  if (!root || !await stat("/usr/bin/apt-get").catch(() => null)) {
    throw new Error(`nginx is not installed. Install it with: sudo sh -c '${how}'`);
  }
  logWarn(`nginx is not installed; running: ${how}`);
  const out = await new Deno.Command("sh", {
    args: ["-c", how],
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  const nginx = out.success ? await findNginx() : null;
  if (!nginx) throw new Error(`Could not install nginx; run: ${how}`);
  return nginx;
}
