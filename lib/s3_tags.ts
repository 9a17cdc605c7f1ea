// S3's object tags as requests carry them: a PutObjectTagging body's
// (parsed in lib/s3_xml.ts), the x-amz-tagging header of PutObject,
// CreateMultipartUpload and CopyObject (with x-amz-tagging-directive
// REPLACE); judged by S3's limits, in S3's words.
import type { Meta } from "./record.ts";
import { S3Error, s3Error } from "./s3_xml.ts";

/** A tag set: [key, value] pairs, keys unique, in key order once judged. */
export type Tags = [string, string][];

/** S3's most tags on an object. */
const MAX_TAGS = 10;
/** S3's longest tag key and value, in UTF-16 code units ("Unicode characters", S3 says). */
const MAX_KEY = 128;
const MAX_VALUE = 256;
/** What a tag key or value may hold: letters, numbers, separators, _ . : / = + - @. */
const ALLOWED = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;

/**
 * A tag set held to S3's limits, in key order (as S3 gives tags back):
 * more than 10 tags is 400 BadRequest; a key empty, longer than 128, or
 * with a character outside the set, a value longer than 256 or with one, a
 * key given twice, or one starting with "aws:" (AWS's own prefix) is 400
 * InvalidTag, in S3's words, naming the tag as S3 does.
 */
export function checkTags(tags: Tags): Tags {
  if (tags.length > MAX_TAGS) {
    throw s3Error("BadRequest", `Object tags cannot be greater than ${MAX_TAGS}`);
  }
  const seen = new Set<string>();
  for (const [key, value] of tags) {
    if (key === "" || key.length > MAX_KEY || !ALLOWED.test(key)) {
      throw invalidTag("The TagKey you have provided is invalid", key);
    }
    if (key.startsWith("aws:")) {
      throw s3Error("InvalidTag", "Your TagKey cannot be prefixed with aws:");
    }
    if (value.length > MAX_VALUE || !ALLOWED.test(value)) {
      throw invalidTag("The TagValue you have provided is invalid", key, value);
    }
    if (seen.has(key)) throw invalidTag("Cannot provide multiple Tags with the same key", key);
    seen.add(key);
  }
  return tags.toSorted(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
}

function invalidTag(message: string, key: string, value?: string): S3Error {
  const err = s3Error("InvalidTag", message);
  err.names.TagKey = key;
  if (value !== undefined) err.names.TagValue = value;
  return err;
}

/**
 * The tags of x-amz-tagging, a URL query ("a=1&b=2"; none without the
 * header): "&"s of nothing between are skipped, a name without "=" has the
 * empty value, "+" is a space and %XX a byte of the UTF-8 text. A part with
 * two "=", an escape that is not one, bytes that are not UTF-8, or a name
 * given twice is 400 InvalidArgument, in S3's words; then checkTags.
 */
export function headerTags(h: Headers): Tags {
  const header = h.get("x-amz-tagging");
  if (header === null) return [];
  const tags: Tags = [];
  for (const part of header.split("&")) {
    if (part === "") continue;
    const [name, value, more] = part.split("=");
    if (more !== undefined) throw notUrlEncoded();
    tags.push([formDecode(name), formDecode(value ?? "")]);
  }
  if (new Set(tags.map(([key]) => key)).size < tags.length) throw notUrlEncoded();
  return checkTags(tags);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A URL query's name or value as text. Header values reach here as bytes
 * (each character one, below U+0100), so unescaped UTF-8 reads as well.
 */
function formDecode(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "%") {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw notUrlEncoded();
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(c === "+" ? 0x20 : c.charCodeAt(0));
  }
  try {
    return utf8.decode(new Uint8Array(bytes));
  } catch {
    throw notUrlEncoded();
  }
}

function notUrlEncoded(): S3Error {
  return s3Error(
    "InvalidArgument",
    "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters " +
      "without tag name duplicates.",
  );
}

/** `meta` with `tags` as its tags (none kept for an empty set). */
export function withTags(meta: Meta, tags: Tags | undefined): Meta {
  const out = { ...meta };
  if (tags?.length) out.tags = tags;
  else delete out.tags;
  return out;
}
