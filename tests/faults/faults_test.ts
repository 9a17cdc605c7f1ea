// Faults against real nginx volumes and real master processes: hung and
// killed volumes, a master killed under load, two masters on one index.
// `deno task test:faults`.
import {
  Cluster,
  concatBytes,
  randomBytes,
  randomKey,
  runMain,
  type SpawnedMaster,
  status,
  volumeFiles,
} from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { createHash } from "node:crypto";
import { key2path, md5, toHex } from "../../lib/keys.ts";

/** The keys listed as "writing" (a failed write that could not clean up). */
async function writing(c: Cluster): Promise<string[]> {
  return (await (await fetch(`${c.url}/?writing`)).json() as { keys: string[] }).keys;
}

/** Stores n fresh keys, each holding its own name; returns them. */
async function putKeys(c: Cluster, n: number): Promise<string[]> {
  const keys = Array.from({ length: n }, () => randomKey());
  for (const k of keys) assertEquals(await status(c.url + k, { method: "PUT", body: k }), 201);
  return keys;
}

/**
 * Has `doomed` claim `key` with a PUT whose body never ends, waits until
 * the claim is seen from `c`'s master, then kills `doomed` (SIGKILL).
 */
async function killHoldingClaim(c: Cluster, doomed: SpawnedMaster, key: string): Promise<void> {
  // A PUT through the doomed master whose body never ends.
  const body = new ReadableStream<Uint8Array>({
    start: (ctl) => ctl.enqueue(new Uint8Array(10)),
  });
  const pending = fetch(doomed.url + key, { method: "PUT", body }).catch(() => null);
  // UNLINK probes the claim without creating the key (a PUT could win it).
  let claimed = false;
  for (let i = 0; i < 100 && !claimed; i++) {
    claimed = await status(c.url + key, { method: "UNLINK" }) === 409;
    if (!claimed) await new Promise((r) => setTimeout(r, 20));
  }
  assert(claimed, "the doomed master holds the claim");
  await doomed.stop("SIGKILL");
  await pending;
}

Deno.test("a hung volume (SIGSTOP): reads go to another replica, writes fail in bounded time", async () => {
  // -lease 2s: the DELETE left unanswered keeps the key from writers for
  // that long (tests/faults/linger_test.ts); the rebuild below outlasts it.
  const c = await Cluster.start({ flags: ["-voltimeout", "200ms", "-lease", "2s"] });
  try {
    const keys = await putKeys(c, 10);
    await c.pauseVolume(0);
    try {
      for (const k of keys) {
        const started = performance.now();
        const res = await fetch(c.url + k, { redirect: "manual" });
        await res.body?.cancel();
        assertEquals(res.status, 302, k);
        assert(
          !res.headers.get("location")!.includes(c.volumes[0]),
          "never redirected to the hung volume",
        );
        assert(performance.now() - started < 2000, "answered within a few timeouts");
      }
      const started = performance.now();
      const k = randomKey();
      const put = await fetch(c.url + k, { method: "PUT", body: "x" });
      const text = await put.text();
      assertEquals(put.status, 500);
      assert(text.includes("Stalled") || text.includes("timed out"), text);
      assert(performance.now() - started < 10_000, "the PUT gave up within the stall bound");
      assertEquals(await status(c.url + k), 404, "a failed write leaves no live key");
      // DELETE of a key with a replica on the hung volume: bounded, nothing live.
      const doomed = keys[0];
      const delStarted = performance.now();
      const del = await fetch(c.url + doomed, { method: "DELETE" });
      const delText = await del.text();
      assertEquals(del.status, 500);
      assert(delText.includes("timed out"), delText);
      // A value's DELETE gets the stall bound, as its PUT (a large file's unlink takes time).
      assert(performance.now() - delStarted < 10_000, "the DELETE gave up within the stall bound");
      assertEquals(await status(c.url + doomed), 404, "a half-done delete leaves no live key");
      // Listing the hung volume (rebuild) fails in bounded time, naming it.
      const listStarted = performance.now();
      const r = await runMain([
        "rebuild",
        "-voltimeout",
        "200ms",
        "-volumes",
        c.volumes.join(","),
        "-db",
        `${c.dir}/rebuilt`,
      ]);
      assertEquals(r.code, 1);
      assert(r.stdout.includes(`Cannot list "http://${c.volumes[0]}/"`), r.stdout);
      assert(performance.now() - listStarted < 30_000, "rebuild gave up on the hung volume");
    } finally {
      await c.resumeVolume(0);
    }
    // Once the volume is back, the key left mid-delete can be deleted.
    assertEquals(await status(c.url + keys[0], { method: "DELETE" }), 204);
  } finally {
    await c.stop();
  }
});

/** An S3 GetObject of `key` (`-s3`: the signature is not checked). */
function getObject(c: Cluster, key: string): Promise<Response> {
  const now = new Date().toISOString().replace(/[-:]|\.\d+/g, "");
  return fetch(c.url + key, {
    headers: {
      "x-amz-date": now,
      "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
      "authorization": `AWS4-HMAC-SHA256 Credential=a/${now.slice(0, 8)}/us-east-1/s3/` +
        `aws4_request, SignedHeaders=host;x-amz-date, Signature=${"0".repeat(64)}`,
    },
  });
}

/** Reads what is left of a body: its bytes, or the error that ended it. */
async function drain(r: ReadableStreamDefaultReader<Uint8Array>, chunks: Uint8Array[]) {
  try {
    for (let x = await r.read(); !x.done; x = await r.read()) chunks.push(x.value);
    return "done";
  } catch (err) {
    return err;
  }
}

Deno.test("an S3 GetObject from a volume that hangs mid-body ends at the stall bound; a paused reader does not", async () => {
  // -voltimeout 200ms: a transfer stalls after 2 s without a byte. One
  // replica: the hung volume is the one the object streams from.
  const c = await Cluster.start({ flags: ["-voltimeout", "200ms", "-s3", "-replicas", "1"] });
  try {
    // Larger than what the sockets between the volume, the master and this
    // client hold, so most of it must still come from the volume.
    const value = randomBytes(64 << 20);
    const key = `/b-${crypto.randomUUID().slice(0, 8)}/big`;
    assertEquals(await status(c.url + key, { method: "PUT", body: value }), 201);
    const head = await fetch(c.url + key, { method: "HEAD", redirect: "manual" });
    const i = c.volumes.indexOf(head.headers.get("key-volumes")!.split("/")[0]);
    assert(i >= 0, head.headers.get("key-volumes")!);

    // A reader that stops reading for 3x the stall time gets every byte.
    const paused = await getObject(c, key);
    assertEquals(paused.status, 200);
    const r1 = paused.body!.getReader();
    const got: Uint8Array[] = [(await r1.read()).value!];
    await new Promise((r) => setTimeout(r, 6000));
    assertEquals(await drain(r1, got), "done");
    assertEquals(md5Of(concatBytes(got)), md5Of(value));

    // The volume hangs after the first bytes: the answer ends within a few
    // stall times (it waited for the volume forever: Deno keeps a fetch's
    // body handed to Deno.serve going when the fetch is aborted).
    const res = await getObject(c, key);
    assertEquals(res.status, 200);
    const r2 = res.body!.getReader();
    const part: Uint8Array[] = [(await r2.read()).value!];
    await c.pauseVolume(i);
    const started = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = new Promise((r) => timer = setTimeout(() => r("still waiting"), 15_000));
    const end = await Promise.race([drain(r2, part), limit]);
    clearTimeout(timer);
    await c.resumeVolume(i);
    assert(end instanceof Error, `the body ended with an error, not ${end}`);
    assert(performance.now() - started < 15_000);
    assert(concatBytes(part).length < value.length, "cut short");
    // The volume is counted as timed out, and the master still serves.
    const metrics = await (await fetch(`${c.url}/?metrics`)).text();
    assert(
      metrics.includes(
        `mkv_volume_calls_total{volume="${c.volumes[i]}",call="get",outcome="timeout"}`,
      ),
      metrics,
    );
    const again = await getObject(c, key);
    assertEquals(md5Of(new Uint8Array(await again.arrayBuffer())), md5Of(value));
  } finally {
    await c.stop();
  }
});

function md5Of(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

Deno.test("a killed volume: every key stays readable; its writes fail, then succeed once it is back", async () => {
  const c = await Cluster.start();
  try {
    const keys = await putKeys(c, 10);
    await c.stopVolume(1);
    for (const k of keys) assertEquals(await (await fetch(c.url + k)).text(), k);
    const k = randomKey();
    assertEquals(await status(c.url + k, { method: "PUT", body: "x" }), 500);
    assertEquals(await status(c.url + k), 404);
    // Refused connections cannot have left a file: the copies on the other
    // volumes are removed and the key is not left "writing".
    assertEquals(await writing(c), []);
    await c.startVolume(1);
    assertEquals(await status(c.url + k, { method: "PUT", body: "x" }), 201);
    // Pooled HEAD connections to the restarted volume are stale: retried.
    for (let round = 0; round < 3; round++) {
      for (const key of keys) {
        const res = await fetch(c.url + key, { redirect: "manual" });
        await res.body?.cancel();
        assertEquals(res.status, 302, key);
      }
    }
  } finally {
    await c.stop();
  }
});

Deno.test("a volume that answers 5xx: the PUT fails and the copies on other volumes are removed", async () => {
  const c = await Cluster.start({ flags: ["-subvolumes", "1"] });
  try {
    // nginx's workers cannot create folders in a read-only volume: 500.
    await Deno.chmod(c.volumeDir(2), 0o555);
    const k = randomKey();
    const res = await fetch(c.url + k, { method: "PUT", body: "never" });
    const text = await res.text();
    assertEquals(res.status, 500);
    assert(text.includes(`"http://${c.volumes[2]}`) && text.includes("status 5"), text);
    await Deno.chmod(c.volumeDir(2), 0o755);
    for (const v of c.volumes) assertEquals(await volumeFiles(v), [], `no file left on ${v}`);
    assertEquals(await status(c.url + k, { method: "PUT", body: "now" }), 201);
  } finally {
    await c.stop();
  }
});

Deno.test("a file where the key's folder should be: the PUT fails and the key is not left writing", async () => {
  const c = await Cluster.start({ flags: ["-subvolumes", "1"] });
  try {
    const k = randomKey();
    // A file named as the key's first folder (a long key's segment, or an
    // operator's stray file): nginx cannot make the folder (500) and answers
    // the clean-up DELETE 409 (ENOTDIR), though no file of the key can exist.
    const folder = key2path(new TextEncoder().encode(k)).split("/")[1];
    await Deno.writeTextFile(`${c.volumeDir(1)}/${folder}`, "in the way");
    const res = await fetch(c.url + k, { method: "PUT", body: "never" });
    const text = await res.text();
    assertEquals(res.status, 500);
    assert(text.includes(`"http://${c.volumes[1]}`), text);
    assertEquals(await writing(c), []);
    assertEquals(await status(c.url + k), 404);
    for (const v of [0, 2]) assertEquals(await volumeFiles(c.volumes[v]), []);
    assertEquals(await volumeFiles(c.volumes[1]), [`/${folder}`]);
    await Deno.remove(`${c.volumeDir(1)}/${folder}`);
    assertEquals(await status(c.url + k, { method: "PUT", body: "now" }), 201);
  } finally {
    await c.stop();
  }
});

Deno.test("a folder where the key's file should be: the PUT fails and the key is not left writing", async () => {
  const c = await Cluster.start({ flags: ["-subvolumes", "1"] });
  try {
    const k = randomKey();
    // A longer key's folder of the long-key layout, where this key's file
    // goes: nginx answers the clean-up DELETE 409 (EISDIR).
    const path = key2path(new TextEncoder().encode(k));
    await Deno.mkdir(`${c.volumeDir(2)}${path}/more`, { recursive: true });
    await Deno.writeTextFile(`${c.volumeDir(2)}${path}/more/x`, "a longer key's");
    const res = await fetch(c.url + k, { method: "PUT", body: "never" });
    const text = await res.text();
    assertEquals(res.status, 500);
    assert(text.includes(`"http://${c.volumes[2]}`), text);
    assertEquals(await writing(c), []);
    assertEquals(await status(c.url + k), 404);
    for (const v of [0, 1]) assertEquals(await volumeFiles(c.volumes[v]), []);
    assertEquals(await volumeFiles(c.volumes[2]), [`${path}/more/x`]);
  } finally {
    await c.stop();
  }
});

Deno.test("the master killed (SIGKILL) under write load: every 201 survives exactly, no half keys", async () => {
  const c = await Cluster.start();
  try {
    const acked = new Map<string, string>();
    const tried = new Set<string>();
    let stop = false;
    const writer = async () => {
      while (!stop) {
        const k = randomKey("/crash");
        const value = randomBytes(20_000 + Math.floor(Math.random() * 200_000));
        tried.add(k);
        try {
          const res = await fetch(c.url + k, { method: "PUT", body: value });
          await res.body?.cancel();
          if (res.status === 201) acked.set(k, toHex(md5(value)));
        } catch {
          return; // the master is gone
        }
      }
    };
    const writers = Array.from({ length: 16 }, writer);
    await new Promise((r) => setTimeout(r, 1500));
    await c.stopMaster("SIGKILL");
    stop = true;
    await Promise.all(writers);
    assert(acked.size > 20, `only ${acked.size} writes acknowledged`);
    await c.startMaster();
    for (const [k, sum] of acked) {
      const res = await fetch(c.url + k);
      assertEquals(res.status, 200, `acknowledged ${k}`);
      assertEquals(toHex(md5(new Uint8Array(await res.arrayBuffer()))), sum, k);
    }
    // Keys caught mid-write are absent or complete, never live without files.
    const live: string[] = (await fetch(`${c.url}/crash/?list`).then((r) => r.json())).keys;
    for (const k of live) {
      assert(tried.has(k), k);
      const res = await fetch(c.url + k);
      assertEquals(res.status, 200, `live key ${k} has its files`);
      await res.body?.cancel();
    }
  } finally {
    await c.stop();
  }
});

Deno.test("two masters on one index: concurrent same-key PUTs give exactly one 201 per key", async () => {
  const c = await Cluster.start();
  const second = await c.spawnMaster();
  try {
    const urls = [c.url, second.url];
    for (let round = 0; round < 20; round++) {
      const k = randomKey("/race");
      const results = await Promise.all(
        Array.from(
          { length: 8 },
          (_, i) => status(urls[i % 2] + k, { method: "PUT", body: `writer ${i}` }),
        ),
      );
      assertEquals(results.filter((s) => s === 201).length, 1, `round ${round}: ${results}`);
      assert(results.every((s) => s === 201 || s === 409 || s === 403), `${results}`);
      // Both masters see the one value.
      const a = await (await fetch(urls[0] + k)).text();
      const b = await (await fetch(urls[1] + k)).text();
      assertEquals(a, b);
    }
  } finally {
    await second.stop();
    await c.stop();
  }
});

Deno.test("a master killed while holding a claim blocks that key only until the lease runs out", async () => {
  const c = await Cluster.start({ flags: ["-lease", "1s"] });
  const doomed = await c.spawnMaster();
  try {
    const k = randomKey("/lease");
    await killHoldingClaim(c, doomed, k);
    const killedAt = performance.now();
    let s = 409;
    while (s === 409 && performance.now() - killedAt < 5000) {
      s = await status(c.url + k, { method: "PUT", body: "after the lease" });
      if (s === 409) await new Promise((r) => setTimeout(r, 100));
    }
    assertEquals(s, 201);
    const waited = performance.now() - killedAt;
    assert(waited < 2500, `blocked ${waited}ms, lease is 1s`);
    assertEquals(await (await fetch(c.url + k)).text(), "after the lease");
  } finally {
    await doomed.stop("SIGKILL");
    await c.stop();
  }
});

Deno.test("a write of a key a killed master held answers 409 saying when its lease runs out", async () => {
  // After a crash and a restart, "Another write of this key is in progress"
  // sent the operator looking for a writer that no longer ran.
  const c = await Cluster.start({ flags: ["-lease", "20s"] });
  const doomed = await c.spawnMaster();
  try {
    const k = randomKey("/lease-message");
    await killHoldingClaim(c, doomed, k);
    const res = await fetch(c.url + k, { method: "PUT", body: "after the crash" });
    const text = await res.text();
    assertEquals(res.status, 409);
    const m = text.match(
      /^Another write of this key is in progress \(or its writer stopped mid-write: retry once its lease runs out, in (\d+) s\)\n$/,
    );
    assert(m !== null, text);
    const left = Number(m[1]);
    assert(left >= 1 && left <= 20, text);
  } finally {
    await doomed.stop("SIGKILL");
    await c.stop();
  }
});

Deno.test("SIGTERM: the master finishes the request in flight, then exits 0", async () => {
  const c = await Cluster.start();
  try {
    const k = randomKey();
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (cc) => void (ctl = cc) });
    ctl.enqueue(new TextEncoder().encode("before "));
    const put = fetch(c.url + k, { method: "PUT", body });
    // In flight once the master holds the key for it: its RELINK answers 409.
    while (await status(c.url + k, { method: "RELINK" }) !== 409) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const master = c.masterProcess!;
    master.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 200));
    ctl.enqueue(new TextEncoder().encode("and after SIGTERM"));
    ctl.close();
    const res = await put;
    await res.body?.cancel();
    assertEquals(res.status, 201);
    assertEquals((await master.status).code, 0);
    await c.startMaster();
    assertEquals(await (await fetch(c.url + k)).text(), "before and after SIGTERM");
  } finally {
    await c.stop();
  }
});
