// Reads of a key some of whose replicas hold a file of another size than
// the value's (cut short on the volume's disk, as a disk's fault or a copy
// that died midway leaves it): GET/HEAD redirect only to a whole replica,
// S3's reads read only a whole one, and with none whole the answer says so.
import {
  CopyObjectCommand,
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { call, Cluster, randomKey, runMain, type SpawnedMaster } from "./cluster.ts";
import { s3Client } from "./s3_client.ts";
import { errorAnswer, errorXml } from "./s3_answers.ts";
import { assert, assertEquals } from "./assert.ts";
import { key2path } from "../lib/keys.ts";

const enc = new TextEncoder();

/** Enough reads that one going to a given replica of three is all but sure (1 - (2/3)^60). */
const READS = 60;

/**
 * Cuts the file of `key` on `replica` ("host:port[/svNN]") to `size` bytes,
 * on the volume's disk.
 */
async function cutShort(c: Cluster, key: string, replica: string, size: number): Promise<void> {
  const [volume, sv] = replica.split("/");
  const folder = c.volumeDir(c.volumes.indexOf(volume)) + (sv ? `/${sv}` : "");
  await Deno.truncate(folder + key2path(enc.encode(key)), size);
}

/** The key's replicas in its record's order, from a HEAD's Key-Volumes (the mkv API's). */
async function replicasOf(c: Cluster, key: string): Promise<string[]> {
  return (await call(c, key, "HEAD")).headers.get("key-volumes")!.split(",");
}

/** `replica`'s volume, as answers name it. */
function hostOf(replica: string): string {
  return replica.split("/")[0];
}

Deno.test("GET and HEAD of a key with replicas cut short", async (t) => {
  const c = await Cluster.start({ flags: ["-voltimeout", "300ms"] });
  try {
    await t.step("redirect only to a whole replica when one is cut short on disk", async () => {
      const key = randomKey("/cut");
      assertEquals((await call(c, key, "PUT", "hello world")).status, 201);
      const [cut, ...whole] = await replicasOf(c, key);
      await cutShort(c, key, cut, 5);
      const path = key2path(enc.encode(key));
      const wholeUrls = whole.map((v) => `http://${v}${path}`);
      for (let i = 0; i < READS; i++) {
        for (const method of ["GET", "HEAD"]) {
          const r = await call(c, key, method);
          assertEquals(r.status, 302, method);
          const to = r.headers.get("location")!;
          assertEquals(wholeUrls.includes(to), true, `${method} redirected to ${to}`);
        }
      }
      const read = await fetch(c.url + key);
      assertEquals(await read.text(), "hello world");
    });

    await t.step(
      "a RELINK of a key with one replica cut short: GETs redirect only to whole ones",
      async () => {
        const key = randomKey("/cut-relink");
        assertEquals((await call(c, key, "PUT", "hello world")).status, 201);
        const [cut, ...whole] = await replicasOf(c, key);
        assertEquals((await call(c, key, "UNLINK")).status, 204);
        await cutShort(c, key, cut, 5);
        assertEquals((await call(c, key, "RELINK")).status, 204);
        const path = key2path(enc.encode(key));
        const wholeUrls = whole.map((v) => `http://${v}${path}`);
        for (let i = 0; i < READS; i++) {
          const r = await call(c, key, "GET");
          assertEquals(r.status, 302);
          const to = r.headers.get("location")!;
          assertEquals(wholeUrls.includes(to), true, `GET redirected to ${to}`);
        }
      },
    );

    await t.step("every replica cut short: 410 naming each and its size", async () => {
      const key = randomKey("/cut-all");
      assertEquals((await call(c, key, "PUT", "hello world")).status, 201);
      const replicas = await replicasOf(c, key);
      for (const [i, v] of replicas.entries()) await cutShort(c, key, v, i + 1);
      const held = replicas.map((v, i) => `${hostOf(v)} holds ${i + 1} bytes`).join(", ");
      const reason = `Value lost: the index has the key live but no replica holds it whole ` +
        `(${held}, recorded 11); run verify to list every such key, then restore the file or ` +
        "DELETE the key\n";
      const r = await call(c, key, "GET");
      assertEquals([r.status, r.text], [410, reason]);
      assertEquals((await call(c, key, "HEAD")).status, 410);
    });

    await t.step("one replica cut short, the others gone: 410 naming it", async () => {
      const key = randomKey("/cut-gone");
      assertEquals((await call(c, key, "PUT", "hello world")).status, 201);
      const [cut, ...gone] = await replicasOf(c, key);
      await cutShort(c, key, cut, 5);
      const path = key2path(enc.encode(key));
      for (const v of gone) {
        assertEquals((await fetch(`http://${v}${path}`, { method: "DELETE" })).status, 204);
      }
      const r = await call(c, key, "GET");
      assertEquals([r.status, r.text], [
        410,
        `Value lost: the index has the key live but no replica holds it whole ` +
        `(${hostOf(cut)} holds 5 bytes, recorded 11); the others have no such file; run verify ` +
        "to list every such key, then restore the file or DELETE the key\n",
      ]);
    });

    await t.step("every other replica cut short and one volume down: 503 naming them", async () => {
      const key = randomKey("/cut-down");
      assertEquals((await call(c, key, "PUT", "hello world")).status, 201);
      const [down, ...cut] = await replicasOf(c, key);
      for (const v of cut) await cutShort(c, key, v, 5);
      const i = c.volumes.indexOf(hostOf(down));
      await c.stopVolume(i);
      let r;
      try {
        r = await call(c, key, "GET");
      } finally {
        await c.startVolume(i);
      }
      const held = cut.map((v) => `${hostOf(v)} holds 5 bytes`).join(", ");
      assertEquals([r.status, r.text], [
        503,
        `Some replicas of the key did not answer (within -voltimeout) and none that did holds ` +
        `it whole (${held}, recorded 11): retry once its volumes answer\n`,
      ]);
    });
  } finally {
    await c.stop();
  }
});

Deno.test("S3 reads of a key with replicas cut short", async (t) => {
  const c = await Cluster.start({ flags: ["-s3", "-voltimeout", "300ms"] });
  const s3 = s3Client(c.url);
  const Bucket = `cut-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await s3.send(new CreateBucketCommand({ Bucket }));

    await t.step("GetObject, a ranged one and HeadObject read only a whole replica", async () => {
      await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "hello world" }));
      const [cut] = await replicasOf(c, `/${Bucket}/k`);
      await cutShort(c, `/${Bucket}/k`, cut, 5);
      for (let i = 0; i < READS; i++) {
        const got = await s3.send(new GetObjectCommand({ Bucket, Key: "k" }));
        assertEquals([got.ContentLength, await got.Body!.transformToString()], [11, "hello world"]);
        const ranged = await s3.send(new GetObjectCommand({ Bucket, Key: "k", Range: "bytes=3-" }));
        assertEquals(
          [ranged.ContentRange, await ranged.Body!.transformToString()],
          ["bytes 3-10/11", "lo world"],
        );
      }
      // HeadObject asks the replicas in the record's order: the cut one first.
      const head = await s3.send(new HeadObjectCommand({ Bucket, Key: "k" }));
      assertEquals(head.ContentLength, 11);
    });

    await t.step(
      "GetObject of a range past a cut-short replica's end reads a whole one",
      async () => {
        await s3.send(new PutObjectCommand({ Bucket, Key: "tail", Body: "hello world" }));
        const [cut] = await replicasOf(c, `/${Bucket}/tail`);
        await cutShort(c, `/${Bucket}/tail`, cut, 5);
        for (let i = 0; i < READS; i++) {
          const got = await s3.send(
            new GetObjectCommand({ Bucket, Key: "tail", Range: "bytes=6-10" }),
          );
          assertEquals(await got.Body!.transformToString(), "world");
        }
      },
    );

    await t.step("CopyObject reads its source from a whole replica", async () => {
      await s3.send(new PutObjectCommand({ Bucket, Key: "src", Body: "hello world" }));
      const [cut] = await replicasOf(c, `/${Bucket}/src`);
      await cutShort(c, `/${Bucket}/src`, cut, 5);
      // Fewer than READS: each is a write too (1 - (2/3)^30 all but sure).
      for (let i = 0; i < 30; i++) {
        await s3.send(
          new CopyObjectCommand({ Bucket, Key: `dst${i}`, CopySource: `${Bucket}/src` }),
        );
        const got = await s3.send(new GetObjectCommand({ Bucket, Key: `dst${i}` }));
        assertEquals(await got.Body!.transformToString(), "hello world");
      }
    });

    await t.step("every replica cut short: NoSuchKey naming each, HeadObject 404", async () => {
      const key = `/${Bucket}/all`;
      await s3.send(new PutObjectCommand({ Bucket, Key: "all", Body: "hello world" }));
      const replicas = await replicasOf(c, key);
      for (const v of replicas) await cutShort(c, key, v, 5);
      // x-id: an S3 call, unsigned (-s3 with no keys checks no signature).
      const answer = await errorAnswer(`${c.url}${key}?x-id=GetObject`);
      const held = replicas.map((v) => `${hostOf(v)} holds 5 bytes`).join(", ");
      assertEquals(answer, {
        status: 404,
        type: "application/xml",
        body: errorXml(
          "NoSuchKey",
          `Every replica of the key is missing or of another size (${held}, recorded 11)`,
          "<Key>all</Key>",
          key,
        ),
      });
      const head = await fetch(`${c.url}${key}?x-id=HeadObject`, { method: "HEAD" });
      // S3's 404 to a HEAD (the mkv API's would be a 410).
      assertEquals(head.status, 404);
    });
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("a relinked key's replica cut short: verify names it, and -repair copies the value over it", async () => {
  const c = await Cluster.start();
  try {
    const key = randomKey("/cut-verify");
    assertEquals((await call(c, key, "PUT", "hello world")).status, 201);
    const [cut] = await replicasOf(c, key);
    assertEquals((await call(c, key, "UNLINK")).status, 204);
    await cutShort(c, key, cut, 5);
    assertEquals((await call(c, key, "RELINK")).status, 204);
    const verify = ["verify", "-volumes", c.volumes.join(","), "-db", c.db];
    const r = await runMain(verify);
    assertEquals(r.stdout.trimEnd().split("\n"), [
      `corrupt replica: "${key}" on ${cut} (size 5 bytes, recorded 11)`,
      `under-replicated: "${key}" has 2 healthy of 3 replicas`,
      "verify: 1 key, 2 problems",
    ]);
    assertEquals(r.code, 1, r.stderr);
    const fix = await runMain([...verify, "-repair"]);
    assertEquals(fix.code, 0, fix.stdout + fix.stderr);
    const repaired = `corrupt replica: "${key}" on ${cut} (size 5 bytes, recorded 11): ` +
      "repaired, copied from ";
    assert(fix.stdout.startsWith(repaired), fix.stdout);
    assertEquals((await runMain(verify)).code, 0);
    const file = await fetch(`http://${cut}${key2path(enc.encode(key))}`);
    assertEquals(await file.text(), "hello world");
  } finally {
    await c.stop();
  }
});

/** The replica of `key` ("host:port/svNN") on a one-replica master: its HEAD's Key-Volumes. */
async function replicaAt(m: SpawnedMaster, key: string): Promise<string> {
  const r = await fetch(m.url + key, { method: "HEAD", redirect: "manual" });
  return r.headers.get("key-volumes")!;
}

/**
 * What a master tells of `n` reads passing over `volume`'s replica of `key`
 * (5 bytes of 11), once stopped: its mkv_replicas_cut_short_total line, and
 * its stderr lines; the first is written at once, the others held back by
 * the throttle, counted in the lines after it (" (+N suppressed)").
 */
async function toldOfCutShort(
  m: SpawnedMaster,
  seen: { volume: string; key: string; n: number },
): Promise<void> {
  const { volume, key, n } = seen;
  const metrics = await (await fetch(`${m.url}/?metrics`)).text();
  assertEquals(
    metrics.split("\n").filter((l) => l.startsWith("mkv_replicas_cut_short_total")),
    [`mkv_replicas_cut_short_total{volume="${volume}"} ${n}`],
  );
  const stderr = new Response(m.proc.stderr).text();
  await m.stop();
  const lines = (await stderr).trimEnd().split("\n");
  const line = `volume ${volume} holds ${JSON.stringify(key)} of another size: 5 bytes, ` +
    "recorded 11 (passed over; verify -repair copies the value over it)";
  assertEquals(lines[0], line);
  let told = 1;
  for (const more of lines.slice(1)) {
    const held = /^(.*) \(\+(\d+) suppressed\)$/.exec(more);
    assertEquals(held?.[1], line, more);
    told += 1 + Number(held![2]);
  }
  assertEquals(told, n, lines.join("\n"));
}

Deno.test("GETs and HEADs passing over a replica of another size log a throttled warning naming the key, the volume and the sizes, and count it by volume", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  await c.stopMaster();
  const m = await c.spawnMaster([], {}, { stderr: "piped" });
  try {
    const key = randomKey("/cut-told");
    assertEquals((await fetch(m.url + key, { method: "PUT", body: "hello world" })).status, 201);
    await cutShort(c, key, await replicaAt(m, key), 5);
    for (let i = 0; i < 3; i++) {
      for (const method of ["GET", "HEAD"]) {
        const r = await fetch(m.url + key, { method, redirect: "manual" });
        await r.body?.cancel();
        assertEquals(r.status, 410, method);
      }
    }
    await toldOfCutShort(m, { volume: c.volumes[0], key, n: 6 });
  } finally {
    await m.stop();
    await c.stop();
  }
});

Deno.test("S3 GetObject, ranged ones and HeadObject passing over a replica of another size log a throttled warning and count it by volume", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1", "-s3"] });
  await c.stopMaster();
  const m = await c.spawnMaster([], {}, { stderr: "piped" });
  const s3 = s3Client(m.url);
  const Bucket = `cut-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await s3.send(new CreateBucketCommand({ Bucket }));
    await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "hello world" }));
    const key = `/${Bucket}/k`;
    await cutShort(c, key, await replicaAt(m, key), 5);
    // x-id: an S3 call, unsigned (-s3 with no keys checks no signature).
    const reads: RequestInit[] = [
      {},
      { headers: { Range: "bytes=0-2" } },
      // Past the file's end: the volume's 416 says its size.
      { headers: { Range: "bytes=6-10" } },
      { method: "HEAD" },
    ];
    for (const init of reads) {
      const r = await fetch(`${m.url}${key}?x-id=GetObject`, init);
      await r.body?.cancel();
      assertEquals(r.status, 404);
    }
    await toldOfCutShort(m, { volume: c.volumes[0], key, n: 4 });
  } finally {
    s3.destroy();
    await m.stop();
    await c.stop();
  }
});
