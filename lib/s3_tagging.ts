// S3's object tagging calls on /<bucket>/<key>?tagging: GetObjectTagging,
// PutObjectTagging, DeleteObjectTagging. An object's tags live in its
// index record with the rest of its metadata (lib/record.ts Meta.tags):
// reading or changing them asks no volume, and changes neither the value,
// its ETag nor its Last-Modified, as in S3.
import { isClaimed } from "./claim.ts";
import type { S3Request } from "./s3.ts";
import { readWhole, requireDigest } from "./s3_body.ts";
import { bucketExists, noSuchBucket } from "./s3_list.ts";
import { keyFits } from "./index_db.ts";
import { Backoff, failure, keyTooLong, liveRecord, noSuchKey, XML_MAX } from "./s3_objects.ts";
import { checkTags, type Tags, withTags } from "./s3_tags.ts";
import { parseTagging, S3Error, xmlResponse, xmlText } from "./s3_xml.ts";

/** GET ?tagging: the object's tags, in key order (an empty <TagSet> for none). */
export async function getObjectTagging(s3: S3Request): Promise<Response> {
  let tags: Tags;
  try {
    tags = (await liveRecord(s3.store, s3.key, { stop: s3.stop })).meta?.tags ?? [];
  } catch (err) {
    throw await missing(s3, err);
  }
  const res = xmlResponse("Tagging", {
    TagSet: { Tag: tags.map(([Key, Value]) => ({ Key, Value })) },
  });
  return namingVersion(s3, res);
}

/**
 * PUT ?tagging: the body's tag set replaces the object's (an empty one
 * removes them). Its body comes with a digest, as S3 asks (requireDigest).
 */
export async function putObjectTagging(s3: S3Request): Promise<Response> {
  requireDigest(s3.headers);
  const xml = await readWhole(s3.body(), XML_MAX);
  await setTags(s3, checkTags(parseTagging(xmlText(xml))));
  return namingVersion(s3, new Response(null, { status: 200 }));
}

/** DELETE ?tagging: the object's tags removed; 204. */
export async function deleteObjectTagging(s3: S3Request): Promise<Response> {
  await setTags(s3, []);
  return namingVersion(s3, new Response(null, { status: 204 }));
}

/**
 * As S3, an answer names the version asked for (null, the only one), as
 * DeleteObject's does.
 */
function namingVersion(s3: S3Request, res: Response): Response {
  const version = s3.query.get("versionId");
  if (version !== undefined) res.headers.set("x-amz-version-id", version);
  return res;
}

/**
 * The live key's record rewritten with `tags`, in one compare-and-set of
 * the record read: a write of the key in flight (a PUT, REPLACE, REBALANCE,
 * an S3 write) is waited for as writes wait for one another (Backoff, then
 * 409 OperationAborted), so the tags land on the value that is live once it
 * is done (an overwrite after them replaces them, as S3's does).
 */
async function setTags(s3: S3Request, tags: Tags): Promise<void> {
  const conflicts = new Backoff(s3.signal);
  if (!keyFits(s3.key)) throw keyTooLong();
  while (true) {
    const e = await s3.store.entry(s3.key, { stop: s3.stop });
    if (e?.rec.state !== "live") throw await missing(s3, noSuchKey());
    if (!isClaimed(e.rec)) {
      const rec = { ...e.rec, meta: withTags(e.rec.meta ?? {}, tags) };
      if (await s3.store.index.cas(s3.key, e.versionstamp, rec, { signal: s3.stop }) !== null) {
        return;
      }
    }
    if (!await conflicts.wait()) throw failure({ status: 409 });
  }
}

/** A missing key's error: NoSuchBucket when its bucket does not exist either, as GetObject's. */
async function missing(s3: S3Request, err: unknown): Promise<unknown> {
  if (err instanceof S3Error && err.code === "NoSuchKey" && !await bucketExists(s3)) {
    return noSuchBucket();
  }
  return err;
}
