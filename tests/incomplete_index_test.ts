// Writes while the index is marked incomplete (a rebuild died or stopped
// before it had read every folder): the index then lacks keys whose values
// the volumes hold. A PUT of such a key was taken for a create (201) and
// wrote over the value the index had not been refilled with; PUT never
// overwrites. It answers 409 now, and the old value stays for rebuild to
// bring back.
import { Cluster, randomBytes, randomKey, status, uploadBegun, volumeFiles } from "./cluster.ts";
import { assertEquals } from "./assert.ts";
import { deleteObjects, errorAnswer, errorXml } from "./s3_answers.ts";
import { key2path, key2volume } from "../lib/keys.ts";
import { openIndex } from "../lib/open.ts";

const encoder = new TextEncoder();

const UNINDEXED = "The index is incomplete (a rebuild has not finished) and the volumes " +
  "hold a value for this key: run rebuild\n";

/**
 * What a rebuild that died before it reached `keys` leaves: the index
 * marked incomplete, and no record of them (their files stay). Written
 * straight into the index, with no master on it.
 */
async function loseRecords(db: string, keys: string[]): Promise<void> {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  try {
    await kv.set(["rebuild"], { at: Date.now(), why: "a rebuild began and has not finished" });
    for (const key of keys) await kv.delete(["k", encoder.encode(key)]);
  } finally {
    kv.close();
  }
}

/** The bytes of `key`'s file on `volume` ("host:port", any subvolume), or null when it has none. */
async function fileOn(volume: string, key: string): Promise<Uint8Array | null> {
  const path = key2path(encoder.encode(key));
  const file = (await volumeFiles(volume)).find((f) => f.endsWith(path));
  return file === undefined ? null : await fetch(`http://${volume}${file}`).then((r) => r.bytes());
}

/**
 * A cluster holding `key` (value `old`) on every volume, its master
 * restarted on an index that lacks the key and is marked incomplete.
 */
async function withLostKey(
  fn: (c: Cluster, key: string, old: Uint8Array) => Promise<void>,
  opts: { flags?: string[]; prefix?: string } = {},
): Promise<void> {
  const c = await Cluster.start({ flags: opts.flags });
  try {
    const key = randomKey(opts.prefix ?? "/incomplete");
    const old = randomBytes(1000);
    if (opts.prefix) {
      const bucket = opts.prefix.slice(1);
      assertEquals(await status(`${c.url}/${bucket}?x-id=CreateBucket`, { method: "PUT" }), 200);
    }
    assertEquals(await status(c.url + key, { method: "PUT", body: old }), 201);
    await c.stopMaster();
    await loseRecords(c.db, [key]);
    await c.startMaster();
    await fn(c, key, old);
  } finally {
    await c.stop();
  }
}

/** withLostKey with -s3, the key in a bucket made by CreateBucket. */
async function withLostS3Key(fn: (c: Cluster, key: string, old: Uint8Array) => Promise<void>) {
  await withLostKey(fn, { flags: ["-s3"], prefix: "/incomplete-s3" });
}

/** An S3 call's answer on `resource` refused as UNINDEXED. */
function unindexedS3(resource: string) {
  return {
    status: 503,
    type: "application/xml",
    body: errorXml("ServiceUnavailable", UNINDEXED.trim(), "", resource),
  };
}

Deno.test("a PUT of a key the incomplete index lacks, whose value the volumes hold, answers 409 and keeps the value", async () => {
  await withLostKey(async (c, key, old) => {
    const res = await fetch(c.url + key, { method: "PUT", body: "new value" });
    assertEquals([res.status, await res.text()], [409, UNINDEXED]);
    for (const v of c.volumes) assertEquals(await fileOn(v, key), old);
    const listed = await fetch(`${c.url}/incomplete/?writing`).then((r) => r.json());
    assertEquals(listed.keys, [], "no record left by the refused PUT");
  });
});

/**
 * What a master killed amid a PUT of `key` leaves (its claim: a "writing"
 * record on `rvolumes` whose lease has run out), the index marked incomplete;
 * `givenUp`: what a live master leaves when a write or delete of it failed.
 * Written straight into the index, with no master on it.
 */
async function leaveExpiredWrite(
  db: string,
  key: string,
  rvolumes: string[],
  opts: { givenUp?: boolean } = {},
): Promise<void> {
  const index = await openIndex(db);
  try {
    await index.markIncomplete({ at: Date.now(), why: "a rebuild began and has not finished" });
    await index.set(encoder.encode(key), {
      state: "writing",
      rvolumes,
      hash: "",
      size: -1,
      owner: "dead-master",
      // Given up (a failed write's or delete's claim released): lease 0.
      until: opts.givenUp ? 0 : Date.now() - 1000,
    });
  } finally {
    index.close();
  }
}

/**
 * A cluster whose master was restarted on an index marked incomplete that
 * holds an expired write of `key` on the key's volumes (leaveExpiredWrite,
 * `givenUp` passed on); `value`: PUT first (201), so the volumes hold it.
 */
async function withExpiredWrite(
  fn: (c: Cluster, key: string) => Promise<void>,
  opts: { value?: Uint8Array<ArrayBuffer> | string; givenUp?: boolean } = {},
): Promise<void> {
  const c = await Cluster.start();
  try {
    const key = randomKey("/incomplete");
    if (opts.value !== undefined) {
      assertEquals(await status(c.url + key, { method: "PUT", body: opts.value }), 201);
    }
    const kvolumes = key2volume(encoder.encode(key), c.volumes, 3, 10);
    await c.stopMaster();
    await leaveExpiredWrite(c.db, key, kvolumes, { givenUp: opts.givenUp });
    await c.startMaster();
    await fn(c, key);
  } finally {
    await c.stop();
  }
}

Deno.test("a PUT taking over an expired write on the incomplete index, whose volumes hold a value it lacks, answers 409 and keeps the value", async () => {
  const old = randomBytes(1000);
  // A master killed after it claimed the lost key and found its value,
  // before it dropped the claim.
  await withExpiredWrite(async (c, key) => {
    const res = await fetch(c.url + key, { method: "PUT", body: "new value" });
    assertEquals([res.status, await res.text()], [409, UNINDEXED]);
    for (const v of c.volumes) assertEquals(await fileOn(v, key), old);
  }, { value: old });
});

Deno.test("a PUT taking over an expired write on the incomplete index is made when the volumes lack the key", async () => {
  await withExpiredWrite(async (c, key) => {
    assertEquals(await status(c.url + key, { method: "PUT", body: "value" }), 201);
    assertEquals(await fetch(c.url + key).then((r) => r.text()), "value");
  });
});

/**
 * A key of one replica whose file is on volume 2 of `c` (its place among
 * the first three volumes), where the hash over all four puts it on volume 3.
 */
function movedByVolume3(c: Cluster): string {
  for (;;) {
    const key = randomKey("/incomplete");
    const placed = (vols: string[]) => key2volume(encoder.encode(key), vols, 1, 10)[0];
    const [was, is] = [placed(c.volumes.slice(0, 3)), placed(c.volumes)];
    if (was.startsWith(`${c.volumes[2]}/`) && is.startsWith(`${c.volumes[3]}/`)) return key;
  }
}

Deno.test("a DELETE of an expired write on the incomplete index, whose volumes hold a value it lacks, answers 409 and keeps the value", async () => {
  const old = randomBytes(1000);
  // A master killed after it claimed the lost key and found its value,
  // before it dropped the claim.
  await withExpiredWrite(async (c, key) => {
    const res = await fetch(c.url + key, { method: "DELETE" });
    assertEquals([res.status, await res.text()], [409, UNINDEXED]);
    for (const v of c.volumes) assertEquals(await fileOn(v, key), old);
  }, { value: old });
});

Deno.test("a DELETE of an expired write on the incomplete index removes its record when the volumes lack the key", async () => {
  await withExpiredWrite(async (c, key) => {
    assertEquals(await status(c.url + key, { method: "DELETE" }), 204);
    const listed = await fetch(`${c.url}/incomplete/?writing`).then((r) => r.json());
    assertEquals(listed.keys, []);
  });
});

Deno.test("a DELETE retried after a failed one on the incomplete index deletes the files its writing record names", async () => {
  // A DELETE that removed no file (a volume failed it) gave its claim up.
  await withExpiredWrite(async (c, key) => {
    assertEquals(await status(c.url + key, { method: "DELETE" }), 204);
    for (const v of c.volumes) assertEquals(await fileOn(v, key), null);
  }, { value: "value", givenUp: true });
});

Deno.test("a PUT of a key the incomplete index lacks, whose value is on a volume the hash no longer puts it on, answers 409 and keeps the value", async () => {
  const c = await Cluster.start({ volumes: 4, flags: ["-replicas", "1"] });
  try {
    // Written before volume 3 was added, and not rebalanced since.
    const key = movedByVolume3(c);
    const old = randomBytes(1000);
    await c.stopMaster();
    await c.startMaster([], c.volumes.slice(0, 3));
    assertEquals(await status(c.url + key, { method: "PUT", body: old }), 201);
    await c.stopMaster();
    await loseRecords(c.db, [key]);
    await c.startMaster();
    const res = await fetch(c.url + key, { method: "PUT", body: "new value" });
    assertEquals([res.status, await res.text()], [409, UNINDEXED]);
    assertEquals(await fileOn(c.volumes[2], key), old);
    assertEquals(await fileOn(c.volumes[3], key), null);
  } finally {
    await c.stop();
  }
});

Deno.test("a PUT while the index is incomplete answers 503 when a volume the key is not placed on is down, and writes nothing", async () => {
  await withLostKey(async (c) => {
    // Any volume may hold a value the index lacks (added since it was written).
    let fresh;
    do fresh = randomKey("/incomplete"); while (
      key2volume(encoder.encode(fresh), c.volumes, 1, 10)[0].startsWith(`${c.volumes[0]}/`)
    );
    const down = key2volume(encoder.encode(fresh), c.volumes, 3, 10)
      .find((v) => v.startsWith(`${c.volumes[0]}/`))!;
    await c.stopVolume(0);
    const res = await fetch(c.url + fresh, { method: "PUT", body: "value" });
    assertEquals([res.status, await res.text()], [
      503,
      `The index is incomplete (a rebuild has not finished) and ${down} did not say ` +
      `whether it holds a value for this key: retry once it answers, or run rebuild\n`,
    ]);
    for (const v of c.volumes.slice(1)) assertEquals(await fileOn(v, fresh), null);
  }, { flags: ["-replicas", "1"] });
});

Deno.test("a PUT retried after its failed write on the incomplete index is made over the copies that write left", async () => {
  const c = await Cluster.start();
  try {
    const key = randomKey("/incomplete");
    const kvolumes = key2volume(encoder.encode(key), c.volumes, 3, 10);
    // A copy the failed write left (a volume failed its removal)...
    const path = key2path(encoder.encode(key));
    const put = await fetch(`http://${kvolumes[0]}${path}`, { method: "PUT", body: "cut" });
    await put.body?.cancel();
    assertEquals(put.status, 201);
    await c.stopMaster();
    // ...and its claim, given up.
    await leaveExpiredWrite(c.db, key, kvolumes, { givenUp: true });
    await c.startMaster();
    assertEquals(await status(c.url + key, { method: "PUT", body: "value" }), 201);
    for (const v of c.volumes) assertEquals(await fileOn(v, key), encoder.encode("value"));
  } finally {
    await c.stop();
  }
});

Deno.test("a PUT of a key the volumes lack is made while the index is incomplete", async () => {
  await withLostKey(async (c) => {
    const fresh = randomKey("/incomplete");
    assertEquals(await status(c.url + fresh, { method: "PUT", body: "value" }), 201);
    assertEquals(await fetch(c.url + fresh).then((r) => r.text()), "value");
  });
});

Deno.test("a PUT while the index is incomplete answers 503 when a volume cannot say whether it holds the key, and writes nothing", async () => {
  await withLostKey(async (c) => {
    const fresh = randomKey("/incomplete");
    const kvolumes = key2volume(encoder.encode(fresh), c.volumes, 3, 10);
    const silent = kvolumes.find((v) => v.startsWith(`${c.volumes[0]}/`))!;
    await c.pauseVolume(0);
    let res;
    try {
      res = await fetch(c.url + fresh, { method: "PUT", body: "value" });
    } finally {
      await c.resumeVolume(0);
    }
    assertEquals([res.status, await res.text()], [
      503,
      `The index is incomplete (a rebuild has not finished) and ${silent} did not say ` +
      `whether it holds a value for this key: retry once it answers, or run rebuild\n`,
    ]);
    for (const v of c.volumes) assertEquals(await fileOn(v, fresh), null);
    assertEquals(await status(c.url + fresh), 404);
  });
});

Deno.test("an S3 PutObject of a key the incomplete index lacks, whose value the volumes hold, answers 503 ServiceUnavailable and keeps the value", async () => {
  await withLostS3Key(async (c, key, old) => {
    const got = await errorAnswer(`${c.url}${key}?x-id=PutObject`, {
      method: "PUT",
      body: "new value",
    });
    assertEquals(got, unindexedS3(key));
    for (const v of c.volumes) assertEquals(await fileOn(v, key), old);
  });
});

Deno.test("an S3 CompleteMultipartUpload to a key the incomplete index lacks, whose value the volumes hold, fails ServiceUnavailable and keeps the value", async () => {
  await withLostS3Key(async (c, key, old) => {
    const id = await uploadBegun(c, key);
    const part = await fetch(`${c.url}${key}?partNumber=1&uploadId=${id}`, {
      method: "PUT",
      body: "new value",
    });
    const etag = part.headers.get("etag");
    await part.body?.cancel();
    const xml = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>` +
      `<ETag>${etag}</ETag></Part></CompleteMultipartUpload>`;
    const res = await fetch(`${c.url}${key}?uploadId=${id}`, { method: "POST", body: xml });
    const body = await res.text();
    assertEquals(res.status, 200, "S3 answers a Complete 200 at once, its <Error> after");
    assertEquals(body.match(/<Code>(.*)<\/Code><Message>(.*)<\/Message>/)?.slice(1), [
      "ServiceUnavailable",
      UNINDEXED.trim(),
    ]);
    for (const v of c.volumes) assertEquals(await fileOn(v, key), old);
  });
});

const MAYBE_UNINDEXED = "the index is incomplete (a rebuild has not finished): the volumes " +
  "may hold this key, run rebuild";

Deno.test("a REPLACE of a key the incomplete index lacks answers 404 saying the volumes may hold it, and keeps the value", async () => {
  await withLostKey(async (c, key, old) => {
    const res = await fetch(c.url + key, { method: "REPLACE", body: "new value" });
    assertEquals([res.status, await res.text()], [
      404,
      `No live key to replace (PUT creates); ${MAYBE_UNINDEXED}\n`,
    ]);
    for (const v of c.volumes) assertEquals(await fileOn(v, key), old);
  });
});

Deno.test("a DELETE of a key the incomplete index lacks answers 404 saying the volumes may hold it, and keeps the value", async () => {
  await withLostKey(async (c, key, old) => {
    const res = await fetch(c.url + key, { method: "DELETE" });
    assertEquals([res.status, await res.text()], [404, `No such key; ${MAYBE_UNINDEXED}\n`]);
    for (const v of c.volumes) assertEquals(await fileOn(v, key), old);
  });
});

Deno.test("an S3 DeleteBucket of a bucket whose keys the incomplete index lacks answers 503 ServiceUnavailable and keeps the bucket", async () => {
  await withLostS3Key(async (c, key, old) => {
    const bucket = key.split("/")[1];
    const got = await errorAnswer(`${c.url}/${bucket}?x-id=DeleteBucket`, { method: "DELETE" });
    assertEquals(got, {
      status: 503,
      type: "application/xml",
      body: errorXml(
        "ServiceUnavailable",
        "The index is incomplete (a rebuild has not finished): the volumes may hold keys of " +
          "this bucket; run rebuild",
        "",
        `/${bucket}`,
      ),
    });
    assertEquals(await status(`${c.url}/${bucket}?x-id=HeadBucket`, { method: "HEAD" }), 200);
    for (const v of c.volumes) assertEquals(await fileOn(v, key), old);
  });
});

Deno.test("an S3 DeleteObject of a key the incomplete index lacks, whose value the volumes hold, answers 503 ServiceUnavailable and keeps the value", async () => {
  await withLostS3Key(async (c, key, old) => {
    const got = await errorAnswer(`${c.url}${key}?x-id=DeleteObject`, { method: "DELETE" });
    assertEquals(got, unindexedS3(key));
    for (const v of c.volumes) assertEquals(await fileOn(v, key), old);
  });
});

Deno.test("an S3 DeleteObjects of a key the incomplete index lacks, whose value the volumes hold, answers it ServiceUnavailable and deletes the others", async () => {
  await withLostS3Key(async (c, key, old) => {
    const [, bucket, name] = key.split("/");
    const other = randomKey("");
    assertEquals(await status(`${c.url}/${bucket}${other}`, { method: "PUT", body: "v" }), 201);
    const deleted = await deleteObjects(`${c.url}/${bucket}`, [name, other.slice(1)]);
    assertEquals(deleted.status, 200);
    assertEquals(
      deleted.entries,
      [
        ["Deleted", other.slice(1), undefined, undefined],
        ["Error", name, "ServiceUnavailable", UNINDEXED.trim()],
      ],
    );
    for (const v of c.volumes) assertEquals(await fileOn(v, key), old);
    assertEquals(await status(`${c.url}/${bucket}${other}`), 404);
  });
});

Deno.test("an S3 DeleteObject of a key neither the incomplete index nor the volumes hold answers 204", async () => {
  await withLostS3Key(async (c, key) => {
    const bucket = key.split("/")[1];
    const fresh = randomKey(`/${bucket}`);
    assertEquals(await status(`${c.url}${fresh}?x-id=DeleteObject`, { method: "DELETE" }), 204);
  });
});

Deno.test("an S3 DeleteObject while the index is incomplete answers 503 when a volume cannot say whether it holds the key", async () => {
  await withLostS3Key(async (c, key) => {
    const bucket = key.split("/")[1];
    const fresh = randomKey(`/${bucket}`);
    const kvolumes = key2volume(encoder.encode(fresh), c.volumes, 3, 10);
    const silent = kvolumes.find((v) => v.startsWith(`${c.volumes[0]}/`))!;
    await c.pauseVolume(0);
    let got;
    try {
      got = await errorAnswer(`${c.url}${fresh}?x-id=DeleteObject`, { method: "DELETE" });
    } finally {
      await c.resumeVolume(0);
    }
    assertEquals(got, {
      status: 503,
      type: "application/xml",
      body: errorXml(
        "ServiceUnavailable",
        `The index is incomplete (a rebuild has not finished) and ${silent} did not say ` +
          `whether it holds a value for this key: retry once it answers, or run rebuild`,
        "",
        fresh,
      ),
    });
  });
});
