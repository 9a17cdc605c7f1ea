// Walking volumes through nginx's JSON autoindex (rebuild, verify).
//
// A key's folder "/ab/cd/" is the same on every volume (it depends only on
// the key), so listing one folder on every (sub)volume gives each key in it
// with all its replicas. Only folders that exist are listed. A walk given
// `strays` (verify's) also lists every folder that is no mkv folder, down
// to its last, for the files that are no key's.
import { path2key, volumeOfReplica } from "./keys.ts";
import { type FileEntry, remoteList, VolumeError, volumeUrl } from "./volumes.ts";

const HEX2 = /^[0-9a-f]{2}$/;

export interface Found {
  key: Uint8Array;
  /** The (sub)volumes that hold it, in the order they were given. */
  volumes: string[];
  /** Each volume's size of the file (-1 unknown). */
  sizes: number[];
  /** Each volume's modification time of the file (ms since epoch; NaN unknown). */
  mtimes: number[];
}

/** A file in a key folder that is not a key's (multipart parts, REPLACE temporaries). */
export interface Other {
  path: string;
  volume: string;
  mtime: number;
}

export interface Walker {
  timeout: number;
  /** Folders that could not be read, as URLs with the reason. */
  errors: string[];
  /**
   * Volumes ("host:port") that left a listing unanswered: the rest of their
   * folders are not asked for. Each would wait out the timeout, and a full
   * volume has 65,536 of them (hours, with the master stopped for rebuild).
   */
  down?: Set<string>;
  /**
   * When given, filled with the files outside any key folder ("/ab/cd/"):
   * in a top folder ("/ab/"), in a folder that is no mkv folder ("/zz/",
   * "/ab/cd/ef/"), at any depth. A volume's root files go to subvolumesOf's
   * `rootFiles`.
   */
  strays?: Other[];
}

/**
 * The (sub)volumes of a volume: "host:port/svNN" for each svNN folder, and
 * the volume itself when it has none or also has key folders at its root
 * (written with -subvolumes 1, before a rebalance to subvolumes finished).
 * None when the volume's root cannot be listed. The files at its root go to
 * `rootFiles` when given.
 */
export async function subvolumesOf(
  w: Walker,
  volume: string,
  rootFiles?: Other[],
): Promise<string[]> {
  const root = await list(w, volume, "/", true);
  // Unreadable, and named in w.errors: listing it again would only wait
  // out the same timeout and name it twice.
  if (root === null) return [];
  for (const f of root) {
    if (f.type === "file") {
      rootFiles?.push({ path: `/${f.name}`, volume, mtime: Date.parse(f.mtime) });
    }
  }
  const dirs = root.filter((f) => f.type === "directory");
  const sv = (f: FileEntry) => /^sv[0-9A-F]{2}$/.test(f.name);
  const svs = dirs.filter(sv).map((f) => `${volume}/${f.name}`);
  const keysAtRoot = svs.length === 0 || dirs.some((f) => HEX2.test(f.name));
  // lost+found is the filesystem's at a mount point (root's, unreadable to
  // nginx's workers): not a stray, and no error on every run of verify.
  const others = dirs.filter((f) => !sv(f) && !HEX2.test(f.name) && f.name !== "lost+found");
  for (const f of others) await straysUnder(w, volume, `/${f.name}/`);
  return keysAtRoot ? [volume, ...svs] : svs;
}

/** Hex folder names ("ab") in `path` of each of the given (sub)volumes. */
export async function hexFolders(
  w: Walker,
  vols: string[],
  path: string,
): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  await Promise.all(vols.map(async (vol) => {
    for (const f of await list(w, vol, path) ?? []) {
      if (f.type !== "directory" || !HEX2.test(f.name)) {
        // A volume's own root is subvolumesOf's to judge (its svNN folders).
        if (path !== "/" || vol !== volumeOfReplica(vol)) await stray(w, vol, path, f);
        continue;
      }
      const at = found.get(f.name) ?? [];
      at.push(vol);
      found.set(f.name, at);
    }
  }));
  return found;
}

/**
 * The keys stored in one "/ab/cd/" folder across the given (sub)volumes;
 * files that are no key's go to `others` when given.
 */
export async function keysIn(
  w: Walker,
  vols: string[],
  folder: string,
  others?: Other[],
): Promise<Found[]> {
  const byKey = new Map<string, Found>();
  // Keep the caller's volume order whatever order the listings finish in.
  const perVol = await Promise.all(vols.map((vol) => filesUnder(w, vol, folder)));
  perVol.forEach((files, i) => {
    for (const { path, size, mtime } of files) {
      const key = path2key(path);
      if (!key) {
        others?.push({ path, volume: vols[i], mtime });
        continue;
      }
      const found = byKey.get(path);
      if (found) {
        found.volumes.push(vols[i]);
        found.sizes.push(size);
        found.mtimes.push(mtime);
      } else byKey.set(path, { key, volumes: [vols[i]], sizes: [size], mtimes: [mtime] });
    }
  });
  return [...byKey.values()];
}

/**
 * One key's file on `volume`: its key and where it is ("host:port/svNN/ab/cd/name"),
 * looked for depth first in at most `budget` listings; null when none was
 * found within them (an empty volume, only empty key folders left by
 * deletes, or a volume that could not be read: w.errors).
 */
export async function someKeyFile(
  w: Walker,
  volume: string,
  budget: number,
): Promise<{ key: Uint8Array; file: string } | null> {
  let left = budget - 1;
  const hex = async (vol: string, path: string) =>
    left-- > 0
      ? (await list(w, vol, path) ?? [])
        .filter((f) => f.type === "directory" && HEX2.test(f.name))
        .map((f) => `${path}${f.name}/`)
      : [];
  for (const vol of await subvolumesOf(w, volume)) {
    for (const ab of await hex(vol, "/")) {
      for (const folder of await hex(vol, ab)) {
        if (left-- <= 0) return null;
        for (const { path } of await filesUnder(w, vol, folder)) {
          const key = path2key(path);
          if (key) return { key, file: `${vol}${path}` };
        }
      }
    }
  }
  return null;
}

/** Files under a key folder, following long-name segment folders down. */
async function filesUnder(
  w: Walker,
  vol: string,
  folder: string,
): Promise<{ path: string; size: number; mtime: number }[]> {
  const out: { path: string; size: number; mtime: number }[] = [];
  for (const f of await list(w, vol, folder) ?? []) {
    const path = folder + f.name;
    if (f.type === "file") out.push({ path, size: f.size ?? -1, mtime: Date.parse(f.mtime) });
    // A segment folder of a long name is exactly 255 bytes long.
    else if (f.type === "directory" && f.name.length === 255) {
      out.push(...await filesUnder(w, vol, path + "/"));
    } else await stray(w, vol, folder, f);
  }
  return out;
}

/** An entry of `folder` that is no mkv file or folder: w.strays' (all files under it). */
async function stray(w: Walker, vol: string, folder: string, f: FileEntry): Promise<void> {
  if (!w.strays) return;
  const path = folder + f.name;
  if (f.type === "directory") await straysUnder(w, vol, path + "/");
  else w.strays.push({ path, volume: vol, mtime: Date.parse(f.mtime) });
}

/** Every file under a folder that is no mkv folder, to w.strays. */
async function straysUnder(w: Walker, vol: string, folder: string): Promise<void> {
  if (!w.strays) return;
  // Its names are anyone's: "a?b" asked as it is would list "a".
  const asked = folder.split("/").map(encodeURIComponent).join("/");
  for (const f of await list(w, vol, asked) ?? []) await stray(w, vol, folder, f);
}

/**
 * A folder's listing; null when it cannot be read (named in w.errors) or
 * is not there. A `root` not there is named too: every volume has its
 * root, and a server answering 404 for it (a -volumes entry naming another
 * service, a volume's folder gone) would otherwise pass for an empty volume.
 */
async function list(
  w: Walker,
  vol: string,
  path: string,
  root = false,
): Promise<FileEntry[] | null> {
  const volume = volumeOfReplica(vol);
  const down = w.down ??= new Set();
  if (down.has(volume)) return null;
  const url = volumeUrl(vol, path);
  try {
    const files = await remoteList(url, w.timeout);
    if (files === null && root) {
      w.errors.push(`Cannot list "${url}": status 404 (no volume's root: is -volumes right?)`);
    }
    // Any other JSON (another service) would end the walk where it is read.
    if (files !== null && !Array.isArray(files)) {
      w.errors.push(`Cannot list "${url}": not an nginx JSON listing`);
      return null;
    }
    return files;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    // No answer at all (refused, reset, timed out), not an error status.
    if (err instanceof VolumeError && err.status === 0) {
      if (down.has(volume)) return null; // one of the listings in flight then
      down.add(volume);
      w.errors.push(`${why} (${volume} stopped answering; its other folders were not read)`);
    } else w.errors.push(why);
    return null;
  }
}
