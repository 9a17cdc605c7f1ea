// A client that closes its connection once its whole request is sent, before
// the answer, is the client's doing: logged and counted 499 (nginx's "client
// closed request"), not a 500 of the master's. A volume that holds the write
// keeps the answer from coming before the client has gone.
import { Cluster, randomKey, type SpawnedMaster, status } from "./cluster.ts";
import { HungVolume } from "./hung_volume.ts";
import { unsignedHeaders } from "./s3_client.ts";
import { assert, assertEquals } from "./assert.ts";

/** A one-volume cluster whose master (-v) writes through a volume that can hang. */
interface Gone {
  c: Cluster;
  hung: HungVolume;
  m: SpawnedMaster;
  /** The master's stdout lines (-v: one per request). */
  stdout: string[];
  stop(): Promise<void>;
}

/** `s3`: the master serves S3 too (-s3, no keys: no signature checked). */
async function goneCluster(opts: { s3?: boolean } = {}): Promise<Gone> {
  const flags = ["-replicas", "1", ...(opts.s3 ? ["-s3"] : [])];
  const c = await Cluster.start({ volumes: 1, flags });
  const hung = new HungVolume(c.volumes[0]);
  await c.stopMaster();
  const stdout: string[] = [];
  const m = await c.spawnMaster(["-v", ...flags], {}, {
    stderr: "piped",
    stdout,
    volumes: [hung.volume],
  });
  return {
    c,
    hung,
    m,
    stdout,
    async stop() {
      await m.stop();
      await hung.stop();
      await c.stop();
    },
  };
}

/**
 * Sends `method key` with the whole of `body` on a connection of its own,
 * waits until the master's write of it hangs on the volume (it has read the
 * body whole), closes the connection, then waits until the master has
 * counted its `n`th `method` request: its answer to the client gone.
 */
async function leaveAfterBody(
  g: Gone,
  req: { method: string; key: string; body: string; n: number; headers?: Record<string, string> },
) {
  g.hung.holds = (r) => r.method === "PUT";
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(g.m.url).port) });
  const headers = Object.entries(req.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const head = `${req.method} ${req.key} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}` +
    `Content-Length: ${req.body.length}\r\n\r\n`;
  const bytes = new TextEncoder().encode(head + req.body);
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
  await g.hung.arrived;
  conn.close();
  for (let i = 0; i < 500 && (await counted(g.m.url, req.method)).total < req.n; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  g.hung.holds = null;
}

/** The master's request counts of `method`: its ?metrics lines, and their sum. */
async function counted(url: string, method: string): Promise<{ lines: string[]; total: number }> {
  const text = await (await fetch(`${url}/?metrics`)).text();
  const lines = text.split("\n").filter((l) =>
    l.startsWith(`mkv_requests_total{method="${method}",`)
  );
  const total = lines.reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
  return { lines, total };
}

/** The master's stderr, once it has stopped. */
async function stderrOf(g: Gone): Promise<string> {
  const text = new Response(g.m.proc.stderr).text();
  await g.m.stop();
  return await text;
}

/**
 * The master's stderr says nothing and its -v log has one line for the PUT
 * of `target` (path and query), a 499 with no bytes.
 */
async function assertPutGone(g: Gone, target: string) {
  assertEquals(await stderrOf(g), "");
  const lines = g.stdout.filter((l) => l.startsWith(`PUT ${target} `));
  assertEquals(lines.length, 1, g.stdout.join("\n"));
  assert(/ 499 \d+\.\dms 0B$/.test(lines[0]), lines[0]);
}

/** PutObject of `bucket`/source, a copy's source. */
async function putSource(g: Gone, bucket: string) {
  const put = await fetch(`${g.m.url}${bucket}/source`, {
    method: "PUT",
    body: "the source",
    headers: unsignedHeaders(),
  });
  assertEquals(put.status, 200);
}

/** CreateMultipartUpload of `key`: its upload id. */
async function createUpload(g: Gone, key: string): Promise<string> {
  const created = await (await fetch(`${g.m.url}${key}?uploads`, {
    method: "POST",
    headers: unsignedHeaders(),
  })).text();
  return /<UploadId>([0-9a-f]{32})<\/UploadId>/.exec(created)![1];
}

Deno.test("a PUT whose client closes once its body is sent, before the answer, is logged 499 (-v), with no error line", async () => {
  const g = await goneCluster();
  try {
    const key = randomKey("/gone");
    await leaveAfterBody(g, { method: "PUT", key, body: "a whole value", n: 1 });
    assertEquals(await stderrOf(g), "");
    const lines = g.stdout.filter((l) => l.includes(key));
    assertEquals(lines.length, 1, g.stdout.join("\n"));
    assert(new RegExp(`^PUT ${key} 499 \\d+\\.\\dms 0B$`).test(lines[0]), lines[0]);
  } finally {
    await g.stop();
  }
});

Deno.test("a PUT whose client closes once its body is sent is counted 499 in ?metrics, and is no recent error on ?status", async () => {
  const g = await goneCluster();
  try {
    await leaveAfterBody(g, { method: "PUT", key: randomKey("/gone"), body: "value", n: 1 });
    assertEquals((await counted(g.m.url, "PUT")).lines, [
      `mkv_requests_total{method="PUT",status="499"} 1`,
    ]);
    const page = await (await fetch(`${g.m.url}/?status`, {
      headers: { Accept: "application/json" },
    })).json();
    assertEquals(page.errors, []);
  } finally {
    await g.stop();
  }
});

Deno.test("a PUT whose client closes once its body is sent stores nothing", async () => {
  const g = await goneCluster();
  try {
    const key = randomKey("/gone");
    await leaveAfterBody(g, { method: "PUT", key, body: "value", n: 1 });
    assertEquals(await status(g.m.url + key), 404);
    assertEquals(await status(g.m.url + key, { method: "PUT", body: "again" }), 201);
    assertEquals(await (await fetch(g.m.url + key)).text(), "again");
  } finally {
    await g.stop();
  }
});

Deno.test("a PUT over an unlinked key whose client closes once its body is sent keeps the unlinked value, as any failed write does", async () => {
  const g = await goneCluster();
  try {
    const key = randomKey("/gone");
    assertEquals(await status(g.m.url + key, { method: "PUT", body: "unlinked" }), 201);
    assertEquals(await status(g.m.url + key, { method: "UNLINK" }), 204);
    await leaveAfterBody(g, { method: "PUT", key, body: "new value", n: 2 });
    assertEquals((await counted(g.m.url, "PUT")).lines, [
      `mkv_requests_total{method="PUT",status="201"} 1`,
      `mkv_requests_total{method="PUT",status="499"} 1`,
    ]);
    assertEquals(await status(g.m.url + key, { method: "RELINK" }), 204);
    assertEquals(await (await fetch(g.m.url + key)).text(), "unlinked");
  } finally {
    await g.stop();
  }
});

Deno.test("a REPLACE whose client closes once its body is sent is counted 499 and leaves the old value", async () => {
  const g = await goneCluster();
  try {
    const key = randomKey("/gone");
    assertEquals(await status(g.m.url + key, { method: "PUT", body: "old value" }), 201);
    await leaveAfterBody(g, { method: "REPLACE", key, body: "new value", n: 1 });
    assertEquals((await counted(g.m.url, "REPLACE")).lines, [
      `mkv_requests_total{method="REPLACE",status="499"} 1`,
    ]);
    assertEquals(await (await fetch(g.m.url + key)).text(), "old value");
  } finally {
    await g.stop();
  }
});

/** A fresh bucket on `g`'s master: its path ("/name"). */
async function freshBucket(g: Gone): Promise<string> {
  const bucket = `/${crypto.randomUUID().slice(0, 8)}`;
  assertEquals(await status(g.m.url + bucket, { method: "PUT", headers: unsignedHeaders() }), 200);
  return bucket;
}

Deno.test("an S3 PutObject whose client closes once its body is sent, before the answer, is logged 499 (-v), with no error line", async () => {
  const g = await goneCluster({ s3: true });
  try {
    const key = `${await freshBucket(g)}/gone`;
    await leaveAfterBody(g, {
      method: "PUT",
      key,
      body: "a value",
      n: 2,
      headers: unsignedHeaders(),
    });
    assertEquals(await stderrOf(g), "");
    const lines = g.stdout.filter((l) => l.includes(key));
    assertEquals(lines.length, 1, g.stdout.join("\n"));
    assert(new RegExp(`^PUT ${key} 499 \\d+\\.\\dms 0B$`).test(lines[0]), lines[0]);
  } finally {
    await g.stop();
  }
});

Deno.test("an S3 PutObject whose client closes once its body is sent is counted 499 in ?metrics, and is no recent error on ?status", async () => {
  const g = await goneCluster({ s3: true });
  try {
    const key = `${await freshBucket(g)}/gone`;
    await leaveAfterBody(g, {
      method: "PUT",
      key,
      body: "a value",
      n: 2,
      headers: unsignedHeaders(),
    });
    assertEquals((await counted(g.m.url, "PUT")).lines, [
      `mkv_requests_total{method="PUT",status="200"} 1`,
      `mkv_requests_total{method="PUT",status="499"} 1`,
    ]);
    const page = await (await fetch(`${g.m.url}/?status`, {
      headers: { Accept: "application/json" },
    })).json();
    assertEquals(page.errors, []);
  } finally {
    await g.stop();
  }
});

/** An S3 GetObject of `key` on `g`'s master: its status and body. */
async function getObject(g: Gone, key: string): Promise<{ status: number; body: string }> {
  const res = await fetch(g.m.url + key, { headers: unsignedHeaders() });
  return { status: res.status, body: await res.text() };
}

Deno.test("an S3 PutObject whose client closes once its body is sent stores nothing", async () => {
  const g = await goneCluster({ s3: true });
  try {
    const bucket = await freshBucket(g);
    const key = `${bucket}/gone`;
    await leaveAfterBody(g, {
      method: "PUT",
      key,
      body: "a value",
      n: 2,
      headers: unsignedHeaders(),
    });
    assertEquals((await getObject(g, key)).status, 404);
    const list = await (await fetch(`${g.m.url}${bucket}?list-type=2`, {
      headers: unsignedHeaders(),
    })).text();
    assert(list.includes("<KeyCount>0</KeyCount>"), list);
  } finally {
    await g.stop();
  }
});

Deno.test("an S3 PutObject over an object whose client closes once its body is sent leaves the old value", async () => {
  const g = await goneCluster({ s3: true });
  try {
    const key = `${await freshBucket(g)}/old`;
    const put = await fetch(g.m.url + key, {
      method: "PUT",
      body: "old",
      headers: unsignedHeaders(),
    });
    assertEquals(put.status, 200);
    await leaveAfterBody(g, {
      method: "PUT",
      key,
      body: "new value",
      n: 3,
      headers: unsignedHeaders(),
    });
    assertEquals(await getObject(g, key), { status: 200, body: "old" });
  } finally {
    await g.stop();
  }
});

Deno.test("an S3 UploadPart whose client closes once its body is sent is logged and counted 499, and uploads no part", async () => {
  const g = await goneCluster({ s3: true });
  try {
    const key = `${await freshBucket(g)}/big`;
    const id = await createUpload(g, key);
    const part = `${key}?partNumber=1&uploadId=${id}`;
    await leaveAfterBody(g, {
      method: "PUT",
      key: part,
      body: "a part",
      n: 2,
      headers: unsignedHeaders(),
    });
    const parts = await (await fetch(`${g.m.url}${key}?uploadId=${id}`, {
      headers: unsignedHeaders(),
    })).text();
    assert(parts.includes("<ListPartsResult") && !parts.includes("<Part>"), parts);
    await assertPutGone(g, part);
  } finally {
    await g.stop();
  }
});

Deno.test("an S3 CopyObject whose client closes while the copy is written is logged and counted 499, and copies nothing", async () => {
  const g = await goneCluster({ s3: true });
  try {
    const bucket = await freshBucket(g);
    await putSource(g, bucket);
    const copy = `${bucket}/copy`;
    const headers = unsignedHeaders({ "x-amz-copy-source": `${bucket}/source` });
    await leaveAfterBody(g, { method: "PUT", key: copy, body: "", n: 3, headers });
    assertEquals((await getObject(g, copy)).status, 404);
    await assertPutGone(g, copy);
  } finally {
    await g.stop();
  }
});

Deno.test("an S3 UploadPartCopy whose client closes while the part is written is logged and counted 499, and uploads no part", async () => {
  const g = await goneCluster({ s3: true });
  try {
    const bucket = await freshBucket(g);
    await putSource(g, bucket);
    const key = `${bucket}/big`;
    const id = await createUpload(g, key);
    const part = `${key}?partNumber=1&uploadId=${id}`;
    const headers = unsignedHeaders({ "x-amz-copy-source": `${bucket}/source` });
    await leaveAfterBody(g, { method: "PUT", key: part, body: "", n: 3, headers });
    const parts = await (await fetch(`${g.m.url}${key}?uploadId=${id}`, {
      headers: unsignedHeaders(),
    })).text();
    assert(parts.includes("<ListPartsResult") && !parts.includes("<Part>"), parts);
    await assertPutGone(g, part);
  } finally {
    await g.stop();
  }
});
