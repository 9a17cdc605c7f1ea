// S3 error answers as the tests compare them: whole, RequestId aside; and an SDK call's failure.
import { createHash } from "node:crypto";
import { assert } from "./assert.ts";

/** An error answer: its status, Content-Type and body, its RequestId shown as "ID". */
export async function errorAnswer(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const id = res.headers.get("x-amz-request-id") ?? "";
  const body = await res.text();
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    body: id ? body.replace(`<RequestId>${id}</RequestId>`, "<RequestId>ID</RequestId>") : body,
  };
}

/** S3's <Error> document with the fields given, in S3's order, and RequestId "ID". */
export function errorXml(code: string, message: string, fields: string, resource: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>${message}</Message>${fields}<Resource>${resource}</Resource>` +
    `<RequestId>ID</RequestId></Error>`;
}

/** The S3 error a call fails with: its code and HTTP status. */
export async function s3Fails(p: Promise<unknown>): Promise<{ name: string; status: number }> {
  try {
    await p;
  } catch (err) {
    const e = err as { name: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, status: e.$metadata?.httpStatusCode ?? 0 };
  }
  throw new Error("Expected the call to fail");
}

/** A time as S3 writes it in an error: whole seconds, "2026-01-02T03:04:05Z". */
export function errorTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/**
 * The Content-MD5 header of `body`: what S3 asks DeleteObjects and
 * PutBucketOwnershipControls to come with.
 */
export function md5Header(body: string | Uint8Array): { "content-md5": string } {
  return { "content-md5": createHash("md5").update(body).digest("base64") };
}

/**
 * A DeleteObjects of `keys` in the bucket at `bucketUrl` (with its
 * Content-MD5): its status and its answer's entries in order, each
 * [Deleted or Error, Key, Code, Message] (Code and Message undefined for a
 * Deleted).
 */
export async function deleteObjects(
  bucketUrl: string,
  keys: string[],
): Promise<{ status: number; entries: (string | undefined)[][] }> {
  const body = `<Delete>${keys.map((k) => `<Object><Key>${k}</Key></Object>`).join("")}</Delete>`;
  const res = await fetch(`${bucketUrl}?delete`, {
    method: "POST",
    headers: md5Header(body),
    body,
  });
  const xml = await res.text();
  const entries = [...xml.matchAll(
    /<(Deleted|Error)><Key>([^<]*)<\/Key>(?:<Code>([^<]*)<\/Code><Message>([^<]*)<\/Message>)?/g,
  )].map((m) => m.slice(1));
  return { status: res.status, entries };
}

/**
 * The <ServerTime> of an error answer's body, checked to be the master's
 * time while the request was answered (between `before` and `after`).
 */
export function serverTime(body: string, before: number, after: number): string {
  const server = /<ServerTime>([^<]*)<\/ServerTime>/.exec(body)?.[1] ?? "";
  const at = Date.parse(server);
  assert(server.endsWith("Z") && at >= before - 1000 && at <= after, server);
  return server;
}
