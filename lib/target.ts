// The request target, as mkv sees it: the key is the URL-decoded path, in
// bytes, exactly as sent (no "." or ".." folding: every path is a key, and
// keys only ever reach a volume base64-encoded). The operation is the first
// query parameter ("?list&limit=10").

export class BadRequest extends Error {}

export interface Target {
  key: Uint8Array;
  /** The raw path, escapes kept, for redirects (fallback). */
  rawPath: string;
  /** The raw query without "?", "" when none. */
  query: string;
}

import { asciiInto, smallBytes } from "./bytes.ts";

const encoder = new TextEncoder();

export function parseTarget(url: string): Target {
  // Deno.serve gives "http://host[:port]/path?query" with the path as sent.
  // An absolute-form target ("PUT http://h?x/a") may have no path: the "/"
  // of its query is none (checkHost refuses a Host holding "?" or "#").
  const authority = url.indexOf("://") + 3;
  const slash = url.indexOf("/", authority);
  const q = url.indexOf("?", authority);
  const pathStart = slash >= 0 && (q < 0 || slash < q) ? slash : -1;
  if (url.lastIndexOf("#", pathStart >= 0 ? pathStart : q >= 0 ? q : url.length) >= authority) {
    throw new BadRequest(`Bad request target "${url.slice(authority)}": a "#" before its path`);
  }
  const rawPath = pathStart < 0 ? "/" : url.slice(pathStart, q < 0 ? undefined : q);
  return {
    key: percentDecode(rawPath, false),
    rawPath,
    query: q < 0 ? "" : url.slice(q + 1),
  };
}

/**
 * The path and query as sent (escapes kept), its signatures hidden
 * (`shownQuery`): what a log line names when parseTarget fails.
 */
export function rawTarget(url: string): string {
  const pathStart = url.indexOf("/", url.indexOf("://") + 3);
  if (pathStart < 0) return "/";
  const q = url.indexOf("?", pathStart);
  return q < 0
    ? url.slice(pathStart)
    : `${url.slice(pathStart, q)}?${shownQuery(url.slice(q + 1))}`;
}

/** What a log line and the status page name: the path, and the query shown. */
export function shownTarget(target: Target): string {
  return target.query ? `${target.rawPath}?${shownQuery(target.query)}` : target.rawPath;
}

/**
 * A raw query with the value of each signature parameter (S3's presigned
 * `X-Amz-Signature`, Signature Version 2's `Signature`) replaced by
 * "(hidden)": a presigned URL is a bearer credential for days, and logs and
 * the status page's recent errors are read by more people than hold keys.
 */
export function shownQuery(query: string): string {
  if (!/signature/i.test(query) && !query.includes("%")) return query;
  return query.split("&").map((pair) => {
    const eq = pair.indexOf("=");
    if (eq < 0) return pair;
    let name: string;
    try {
      name = decodeURIComponent(pair.slice(0, eq).replaceAll("+", " "));
    } catch {
      return pair;
    }
    return SIGNATURES.has(name) ? `${pair.slice(0, eq)}=(hidden)` : pair;
  }).join("&");
}

const SIGNATURES = new Set(["X-Amz-Signature", "Signature"]);

/**
 * `rawPath` as a redirect's Location can carry it: a URI's path, each
 * character past ASCII percent-encoded as its UTF-8 bytes, and each ASCII
 * one no URI holds (" < > \ ^ ` { | }, which Deno takes raw), escapes sent kept.
 * A header holds bytes: a key sent as raw UTF-8 with a character past U+00FF
 * failed the answer (500), and "é" went out as the one byte 0xE9; a browser
 * following a raw backslash reads it as "/", another key.
 */
export function asciiPath(rawPath: string): string {
  return rawPath.replace(/[\x80-\u{10FFFF}]+/gu, (chars) => encodeURIComponent(chars))
    .replace(/["<>\\^`{|}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * Deno builds a request's URL as "http://" + its Host header + its path, so
 * a "/" in Host (no host holds one) would become the start of the key, and
 * a "?" or "#" would make the path part of the query (parseTarget).
 */
export function checkHost(host: string | null) {
  const bad = host ? /[/?#]/.exec(host) : null;
  if (bad) throw new BadRequest(`Bad Host header "${host}": a host holds no "${bad[0]}"`);
}

/**
 * UTF-8 bytes of s. A short ASCII string (most keys) is copied in JS into
 * slab memory (lib/bytes.ts): a new array per request cost a missing-key
 * GET a sixth of its time.
 */
export function utf8(s: string): Uint8Array {
  if (s.length > 256) return encoder.encode(s);
  const out = smallBytes(s.length);
  return asciiInto(s, out) ? out : encoder.encode(s);
}

/** Percent-decodes to bytes; `plusIsSpace` for query values (as Go). */
export function percentDecode(s: string, plusIsSpace: boolean): Uint8Array {
  if (!s.includes("%") && !(plusIsSpace && s.includes("+"))) {
    return utf8(s);
  }
  const src = utf8(s);
  const out = smallBytes(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === 0x25) {
      const hi = hexVal(src[i + 1]);
      const lo = hexVal(src[i + 2]);
      if (hi < 0 || lo < 0) {
        throw new BadRequest(`Broken percent-escape at byte ${i} of "${s}"`);
      }
      out[n++] = hi * 16 + lo;
      i += 2;
    } else if (c === 0x2b && plusIsSpace) {
      out[n++] = 0x20;
    } else {
      out[n++] = c;
    }
  }
  return out.subarray(0, n);
}

function hexVal(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

export interface Query {
  /**
   * The operation: the query's first parameter as sent ("list", "unlinked"),
   * a value included: mkv's, whose "list=1" is no operation it knows.
   */
  op: string;
  params: Map<string, Uint8Array>;
}

export function parseQuery(query: string): Query {
  const parts = query.split("&");
  const params = new Map<string, Uint8Array>();
  for (const part of parts) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = new TextDecoder().decode(
      percentDecode(eq < 0 ? part : part.slice(0, eq), true),
    );
    const value = percentDecode(eq < 0 ? "" : part.slice(eq + 1), true);
    if (!params.has(name)) params.set(name, value);
  }
  return { op: parts[0], params };
}
