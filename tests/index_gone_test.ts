// A master whose index file is removed while it runs: what it would write
// there is lost when it closes, and a restart opens a new, empty index.
import { Cluster, randomKey, status, volumeFiles } from "./cluster.ts";
import { assertEquals } from "./assert.ts";
import { errorAnswer, errorXml } from "./s3_answers.ts";
import { escapeXml } from "../lib/s3_xml.ts";

const GONE = (db: string) =>
  `The index file "${db}/index.sqlite3" was removed while this master had it open: ` +
  `nothing more is written to it; restart the master (and rebuild the index if it is ` +
  `missing keys)`;

Deno.test("a PUT after the index file was removed answers 503 and stores nothing, not a 201 that a restart loses", async () => {
  const c = await Cluster.start();
  try {
    for await (const f of Deno.readDir(c.db)) await Deno.remove(`${c.db}/${f.name}`);
    const key = randomKey();
    const res = await fetch(c.url + key, { method: "PUT", body: "value" });
    assertEquals(res.status, 503);
    assertEquals(await res.text(), GONE(c.db) + "\n");
    // Refused before any volume was written: no file of the key anywhere.
    for (const v of c.volumes) assertEquals(await volumeFiles(v), []);
  } finally {
    await c.stop();
  }
});

Deno.test("a GET after the index file was removed answers 503 saying so, once a heartbeat has seen it", async () => {
  const c = await Cluster.start();
  try {
    const key = randomKey();
    assertEquals(await status(c.url + key, { method: "PUT", body: "value" }), 201);
    for await (const f of Deno.readDir(c.db)) await Deno.remove(`${c.db}/${f.name}`);
    await new Promise((r) => setTimeout(r, 1500)); // a heartbeat
    const res = await fetch(c.url + key, { redirect: "manual" });
    assertEquals(res.status, 503);
    assertEquals(await res.text(), GONE(c.db) + "\n");
  } finally {
    await c.stop();
  }
});

Deno.test("an S3 PutObject after the index file was removed answers 503 ServiceUnavailable in XML and stores nothing", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    for await (const f of Deno.readDir(c.db)) await Deno.remove(`${c.db}/${f.name}`);
    const path = `/gone${crypto.randomUUID().slice(0, 8)}/k`;
    // x-id: an S3 call, unsigned (-s3 with no keys checks no signature).
    const got = await errorAnswer(`${c.url}${path}?x-id=PutObject`, { method: "PUT", body: "v" });
    assertEquals(got, {
      status: 503,
      type: "application/xml",
      body: errorXml("ServiceUnavailable", escapeXml(GONE(c.db)), "", path),
    });
    for (const v of c.volumes) assertEquals(await volumeFiles(v), []);
  } finally {
    await c.stop();
  }
});

Deno.test("an S3 GetObject after the index file was removed answers 503 ServiceUnavailable in XML, once a heartbeat has seen it", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const path = `/gone${crypto.randomUUID().slice(0, 8)}/k`;
    assertEquals(await status(c.url + path, { method: "PUT", body: "value" }), 201);
    for await (const f of Deno.readDir(c.db)) await Deno.remove(`${c.db}/${f.name}`);
    await new Promise((r) => setTimeout(r, 1500)); // a heartbeat
    const got = await errorAnswer(`${c.url}${path}?x-id=GetObject`);
    assertEquals(got, {
      status: 503,
      type: "application/xml",
      body: errorXml("ServiceUnavailable", escapeXml(GONE(c.db)), "", path),
    });
  } finally {
    await c.stop();
  }
});

Deno.test("a signed S3 GET /?status (ListBuckets, not mkv's status) after the index file was removed answers 503 ServiceUnavailable, as ListBuckets does", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const bucket = `gone${crypto.randomUUID().slice(0, 8)}`;
    assertEquals(await status(`${c.url}/${bucket}/k`, { method: "PUT", body: "value" }), 201);
    for await (const f of Deno.readDir(c.db)) await Deno.remove(`${c.db}/${f.name}`);
    const refused = {
      status: 503,
      type: "application/xml",
      body: errorXml("ServiceUnavailable", escapeXml(GONE(c.db)), "", "/"),
    };
    // Once a heartbeat has seen the file gone, ListBuckets is refused.
    while ((await errorAnswer(`${c.url}/?x-id=ListBuckets`)).status !== 503) {
      await new Promise((r) => setTimeout(r, 50));
    }
    // Signed (any signature, -s3 with no keys): S3's, so "?status" is no view of mkv's.
    const signed = { authorization: "AWS x:y", "x-amz-date": new Date().toUTCString() };
    assertEquals(await errorAnswer(`${c.url}/?status`, { headers: signed }), refused);
  } finally {
    await c.stop();
  }
});

Deno.test("a REPLACE whose value was sent as the index file was removed answers 503 saying so", async () => {
  // Its switch's write found the file gone: answered 500, as a volume's failure.
  const c = await Cluster.start();
  const kv = await Deno.openKv(`${c.db}/index.sqlite3`);
  try {
    const key = randomKey();
    assertEquals(await status(c.url + key, { method: "PUT", body: "old value" }), 201);
    const body = new TransformStream<Uint8Array, Uint8Array>();
    const writer = body.writable.getWriter();
    const answer = fetch(c.url + key, { method: "REPLACE", body: body.readable });
    await writer.write(new TextEncoder().encode("new "));
    // Held: the record carries the REPLACE's lease.
    const path = new TextEncoder().encode(key);
    while ((await kv.get<{ u?: number }>(["k", path])).value?.u === undefined) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for await (const f of Deno.readDir(c.db)) await Deno.remove(`${c.db}/${f.name}`);
    await writer.write(new TextEncoder().encode("value"));
    await writer.close();
    const res = await answer;
    assertEquals(res.status, 503);
    assertEquals(await res.text(), GONE(c.db) + "\n");
  } finally {
    kv.close();
    await c.stop();
  }
});
