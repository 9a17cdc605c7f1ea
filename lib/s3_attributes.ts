// S3's GetObjectAttributes (GET /<bucket>/<key>?attributes): what HeadObject
// and ListParts would say of an object, the attributes asked for in
// x-amz-object-attributes, from the key's record.
import type { Record } from "./record.ts";
import type { S3Request } from "./s3.ts";
import { type Checksum, checksumType } from "./s3_checksum.ts";
import { countParam } from "./s3_list.ts";
import { headRecord, httpDate } from "./s3_objects.ts";
import { argumentError, s3Error, type XmlNode, xmlResponse } from "./s3_xml.ts";

/** The attributes S3 answers, as x-amz-object-attributes names them. */
const ATTRIBUTES = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"] as const;
type Attribute = typeof ATTRIBUTES[number];

/** Which of a multipart object's parts to list: x-amz-max-parts, x-amz-part-number-marker. */
interface Paging {
  max: number;
  marker: number;
}

export async function getObjectAttributes(s3: S3Request): Promise<Response> {
  const asked = attributesAsked(s3.headers);
  const paging = pagingOf(s3.headers);
  // As HeadObject finds the object: a key no replica holds whole is NoSuchKey.
  const rec = await headRecord(s3);
  const res = xmlResponse("GetObjectAttributesResponse", attributesXml(rec, asked, paging));
  if (rec.mtime !== undefined) res.headers.set("Last-Modified", httpDate(rec.mtime));
  return res;
}

/**
 * The attributes x-amz-object-attributes names, comma-separated (one header
 * or several): none is 400 InvalidRequest, one S3 does not have 400
 * InvalidArgument naming it, in S3's words.
 */
function attributesAsked(headers: Headers): Set<Attribute> {
  const names = (headers.get("x-amz-object-attributes") ?? "").split(",")
    .map((name) => name.trim()).filter((name) => name !== "");
  if (names.length === 0) {
    throw s3Error(
      "InvalidRequest",
      "The x-amz-object-attributes header specifying the attributes to be retrieved is " +
        "either missing or empty",
    );
  }
  const unknown = names.find((name) => !(ATTRIBUTES as readonly string[]).includes(name));
  if (unknown !== undefined) {
    throw argumentError("Invalid attribute name specified.", "x-amz-object-attributes", unknown);
  }
  return new Set(names as Attribute[]);
}

/** The headers' paging, read as ListParts reads its max-parts and part-number-marker. */
function pagingOf(headers: Headers): Paging {
  const q = new Map<string, string>();
  for (const name of ["x-amz-max-parts", "x-amz-part-number-marker"]) {
    const value = headers.get(name);
    if (value !== null) q.set(name, value);
  }
  return {
    max: countParam(q, "x-amz-max-parts"),
    marker: countParam(q, "x-amz-part-number-marker", { cap: Infinity, absent: 0 }),
  };
}

/** The answer's elements, in S3's order; those not asked for, or not known, left out. */
function attributesXml(rec: Record, asked: Set<Attribute>, paging: Paging): XmlNode {
  const etag = rec.meta?.etag ?? rec.hash;
  const sum = rec.meta?.checksum;
  return {
    // Unquoted, unlike the ETag header, as S3 writes it here.
    ETag: asked.has("ETag") && etag ? etag : undefined,
    Checksum: asked.has("Checksum") && sum ? checksumXml(sum) : undefined,
    ObjectParts: asked.has("ObjectParts") ? partsXml(rec, paging) : undefined,
    StorageClass: asked.has("StorageClass") ? "STANDARD" : undefined,
    ObjectSize: asked.has("ObjectSize") && rec.size >= 0 ? rec.size : undefined,
  };
}

/**
 * The object's checksum: a composite one without the "-<parts>" its header
 * carries, as S3 gives it here.
 */
function checksumXml(sum: Checksum): XmlNode {
  return {
    [`Checksum${sum.alg.toUpperCase()}`]: sum.value.replace(/-\d+$/, ""),
    ChecksumType: checksumType(sum),
  };
}

/**
 * A multipart object's parts (none for an object not uploaded in parts, as
 * S3): their count; S3 lists the parts themselves only for an object with
 * a COMPOSITE checksum, with each part's checksum. The gateway keeps the
 * parts' sizes (lib/s3_multipart.ts), not their checksums: such an
 * object's parts are listed by number and size, paged as ListParts pages,
 * and by count alone when their sizes were not kept either.
 */
function partsXml(rec: Record, paging: Paging): XmlNode | undefined {
  const count = Number(/-(\d+)$/.exec(rec.meta?.etag ?? "")?.[1] ?? 0);
  if (count === 0) return undefined;
  const sizes = partSizes(rec.meta?.parts ?? []);
  const composite = rec.meta?.checksum && checksumType(rec.meta.checksum) === "COMPOSITE";
  if (!composite || sizes.length !== count) return { PartsCount: count };
  const rest = sizes.map((size, i) => ({ PartNumber: i + 1, Size: size }))
    .filter((p) => p.PartNumber > paging.marker);
  const page = rest.slice(0, paging.max);
  const truncated = paging.max > 0 && rest.length > paging.max;
  return {
    PartsCount: count,
    PartNumberMarker: paging.marker,
    NextPartNumberMarker: page.at(-1)?.PartNumber ?? 0,
    MaxParts: paging.max,
    IsTruncated: truncated,
    Part: page,
  };
}

/** Runs of [size, count] as one size per part, in order. */
function partSizes(runs: [number, number][]): number[] {
  return runs.flatMap(([size, times]) => Array<number>(times).fill(size));
}
