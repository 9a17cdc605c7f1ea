// Where a key lives: mkv's hashing, byte for byte, plus one fix.
//
// key2path(key) = "/%02x/%02x/<name>", md5(key) bytes 0 and 1, then the name.
// The name is mkv's padded standard base64 of the key, except when that holds
// "/": nginx cannot store a name ending in "/" and one holding "/" inside lands
// a folder deeper, where mkv's rebuild loses it. Those keys use base64url
// (RFC 4648 §5, padded) instead. Standard base64 never holds "-" or "_" and
// base64url never holds "/" or "+", so every name decodes one way only.
// A name longer than NAME_MAX (255 bytes; keys over ~190 bytes) is cut into
// 255-byte segments, nested as folders: "/ab/cd/<255>/<255>/<rest>". Since a
// name never holds "/", a folder below "/ab/cd/" always means such a cut.
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { base64, smallBytes } from "./bytes.ts";
import { md5Into } from "./md5.ts";

/** Inputs up to this size are hashed in JS (lib/md5.ts), longer ones natively. */
const JS_MD5_MAX = 4096;

export function md5(data: Uint8Array | string): Uint8Array {
  if (typeof data !== "string" && data.length <= JS_MD5_MAX) {
    return md5Into([data], smallBytes(16));
  }
  return createHash("md5").update(data).digest();
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Lowercase hex; in JS, as Buffer's toString("hex") copied the bytes first (9x slower). */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}

/** The file name a key has on a volume (no folders). */
export function key2name(key: Uint8Array): string {
  const std = base64(key);
  if (!std.includes("/")) return std;
  return std.replaceAll("+", "-").replaceAll("/", "_");
}

/** The key a file name stands for, or null when the name is not one of ours. */
export function name2key(name: string): Uint8Array | null {
  if (name.length === 0 || name.length % 4 !== 0) return null;
  const url = /[-_]/.test(name);
  if (url ? /[+/]/.test(name) : false) return null;
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(name)) return null;
  const key = new Uint8Array(
    Buffer.from(
      url ? name.replaceAll("-", "+").replaceAll("_", "/") : name,
      "base64",
    ),
  );
  // Reject names that are not canonical encodings (e.g. stray files).
  return key2name(key) === name ? key : null;
}

export const NAME_MAX = 255;

export function key2path(key: Uint8Array): string {
  const h = md5(key);
  return `/${hex2(h[0])}/${hex2(h[1])}/${name2segments(key2name(key))}`;
}

function name2segments(name: string): string {
  if (name.length <= NAME_MAX) return name;
  const parts = [];
  for (let i = 0; i < name.length; i += NAME_MAX) {
    parts.push(name.slice(i, i + NAME_MAX));
  }
  return parts.join("/");
}

/**
 * The key stored at a volume path ("/ab/cd/name" or "/ab/cd/seg/.../seg"), or
 * null when the path is not where key2path would put any key.
 */
export function path2key(path: string): Uint8Array | null {
  const parts = path.split("/");
  if (parts.length < 4 || parts[0] !== "") return null;
  const segs = parts.slice(3);
  if (segs.slice(0, -1).some((s) => s.length !== NAME_MAX)) return null;
  const key = name2key(segs.join(""));
  return key && key2path(key) === path ? key : null;
}

function hex2(b: number): string {
  return HEX[b];
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/**
 * The volumes the hash puts a key on (mkv's kvolumes): score each volume by
 * md5(key + volume), highest first (stable), take `replicas`. With subvolumes
 * the volume becomes "volume/svNN", NN from the score's last four bytes.
 */
export function key2volume(
  key: Uint8Array,
  volumes: readonly string[],
  replicas: number,
  subvolumes: number,
): string[] {
  const scored = volumes.map((volume, i) => {
    const score = key.length <= JS_MD5_MAX
      ? md5Into([key, volumeBytes(volume)], smallBytes(16))
      : createHash("md5").update(key).update(volume).digest();
    return { score, volume, i };
  });
  // Array.prototype.sort is stable, as Go's sort.Stable.
  scored.sort((a, b) => compareBytes(b.score, a.score));
  return scored.slice(0, replicas).map(({ score, volume }) => {
    if (subvolumes === 1) return volume;
    const sv = ((score[12] << 24 | score[13] << 16 | score[14] << 8 | score[15]) >>> 0) %
      subvolumes;
    return `${volume}/sv${sv.toString(16).toUpperCase().padStart(2, "0")}`;
  });
}

/** The volume ("host:port") of a replica "host:port[/svNN]". */
export function volumeOfReplica(rvolume: string): string {
  const slash = rvolume.indexOf("/");
  return slash < 0 ? rvolume : rvolume.slice(0, slash);
}

/**
 * What the volume hash is taken of: the key, or with colocation its
 * "folder" (everything up to and including its last "/"), so that keys of
 * one folder share their volumes (and subvolume). The file path on the
 * volume still comes from the whole key.
 */
export function placementKey(key: Uint8Array, colocate: boolean): Uint8Array {
  if (!colocate) return key;
  const slash = key.lastIndexOf(0x2f);
  return slash < 0 ? key : key.subarray(0, slash + 1);
}

/** True when the replicas are not exactly where the hash puts them. */
export function needsRebalance(
  rvolumes: readonly string[],
  kvolumes: readonly string[],
): boolean {
  return rvolumes.length !== kvolumes.length ||
    rvolumes.some((v, i) => v !== kvolumes[i]);
}

/**
 * Orders the volumes that hold a key as key2volume would place them, those not
 * where they belong last (rebuild's rule, as mkv).
 */
export function orderByPlacement(
  rvolumes: readonly string[],
  kvolumes: readonly string[],
): string[] {
  const placed = kvolumes.filter((v) => rvolumes.includes(v));
  const rest = rvolumes.filter((v) => !kvolumes.includes(v));
  return [...placed, ...rest];
}

/** Volume names as UTF-8, kept: the same few are hashed with every key. */
const volumeNames = new Map<string, Uint8Array>();
const encoder = new TextEncoder();

function volumeBytes(volume: string): Uint8Array {
  let b = volumeNames.get(volume);
  if (!b) {
    b = encoder.encode(volume);
    if (volumeNames.size < 4096) volumeNames.set(volume, b);
  }
  return b;
}
