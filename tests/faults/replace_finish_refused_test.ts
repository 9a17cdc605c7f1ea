// A master SIGKILLed amid a REPLACE's renames leaves the switch recorded,
// some replicas renamed already (their temporary gone, the new value at the
// key's path). The master that finishes the switch renames again on each
// replica; when those renames are refused, a refusal alone says nothing of
// what the replica holds: the dead master's rename may have landed there.
// Taken for "not renamed", every replica refused meant "the old value
// stays": the index kept the old record (the old MD5) over replicas holding
// the new bytes. A REPLACE of the key whose switch could not be finished
// dropped that switch for its own the same way.
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { Cluster, randomBytes, randomKey, type SpawnedMaster, volumeFiles } from "../cluster.ts";
import { s3Client } from "../s3_client.ts";
import { assert, assertEquals } from "../assert.ts";
import { key2path, md5, toHex } from "../../lib/keys.ts";
import { assertServes, replaceUnanswered, replicas, VolumeProxy, where } from "./replace_faults.ts";
import { openIndex } from "../../lib/open.ts";

const enc = new TextEncoder();

/**
 * MOVEs, never sent on unless forwarded: `holdFirst` holds the first until
 * `release()` (then 503), `refuse` answers 403. `refuseHeads` answers HEADs
 * 500.
 */
class Renames extends VolumeProxy {
  holdFirst = false;
  refuse = false;
  refuseHeads = false;
  /** Resolved once `holdFirst` held a MOVE. */
  readonly held = Promise.withResolvers<void>();

  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "HEAD" && this.refuseHeads) return new Response(null, { status: 500 });
    if (req.method !== "MOVE") return await this.forward(req);
    if (this.holdFirst) {
      this.holdFirst = false;
      this.held.resolve();
      await this.released;
      return new Response(null, { status: 503 });
    }
    if (this.refuse) return new Response("refused", { status: 403 });
    return await this.forward(req);
  }
}

interface Killed {
  proxies: Renames[];
  volumes: string[];
  /** The key's replicas the dead master renamed. */
  renamed: string[];
}

/**
 * PUTs `before`, then REPLACEs it with `after` (`overUnlinked`: UNLINKs it,
 * then PUTs `after`, which switches as REPLACE) through a master SIGKILLed
 * once two replicas are renamed, the third's rename held. Waits out its lease.
 */
async function killedMidRename(
  c: Cluster,
  key: string,
  values: {
    before: Uint8Array<ArrayBuffer>;
    after: Uint8Array<ArrayBuffer>;
    overUnlinked?: boolean;
  },
): Promise<Killed> {
  const { before, after } = values;
  const proxies = c.volumes.map((v) => new Renames(v));
  const volumes = proxies.map((p) => p.volume);
  const replicaOf = where(volumes, key);
  const flags = ["-volumes", volumes.join(","), "-lease", "1s", "-voltimeout", "5s"];
  const m = await c.spawnMaster(flags);
  try {
    const put = await fetch(m.url + key, { method: "PUT", body: before });
    assertEquals([put.status, await put.text()], [201, ""]);
    if (values.overUnlinked) {
      const unlink = await fetch(m.url + key, { method: "UNLINK" });
      assertEquals([unlink.status, await unlink.text()], [204, ""]);
    }
    proxies[2].holdFirst = true;
    if (values.overUnlinked) {
      fetch(m.url + key, { method: "PUT", body: after }).then((r) => r.body?.cancel())
        .catch(() => {});
    } else replaceUnanswered(m.url, key, after);
    await proxies[2].held.promise;
    for (let i = 0; i < 100; i++) {
      const files = await replicas(volumes, key);
      if (files.filter((f) => same(f, after)).length === 2) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await m.stop("SIGKILL");
  }
  const files = await replicas(volumes, key);
  const renamed = replicaOf.filter((_, i) => same(files[i], after));
  assertEquals(renamed.length, 2, "two replicas renamed before the kill");
  await new Promise((r) => setTimeout(r, 1100)); // the dead master's lease
  return { proxies, volumes, renamed };
}

function same(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Every replica a GET of `key` names holds the bytes of the MD5 it names. */
async function assertHonest(m: SpawnedMaster, key: string) {
  const res = await fetch(m.url + key, { redirect: "manual" });
  await res.body?.cancel();
  assertEquals(res.status, 302);
  const hash = res.headers.get("content-md5");
  assert(hash, "the GET names an MD5");
  const files = await Promise.all(
    res.headers.get("key-volumes")!.split(",").map(async (v) => {
      const r = await fetch(`http://${v}${key2path(new TextEncoder().encode(key))}`);
      return new Uint8Array(await r.arrayBuffer());
    }),
  );
  assertEquals(files.map((f) => toHex(md5(f))), files.map(() => hash));
}

/** Sets whether every proxy refuses renames and HEADs: no volume can say what it holds. */
function refuseAll(proxies: Renames[], on: boolean) {
  for (const p of proxies) {
    p.refuse = on;
    p.refuseHeads = on;
  }
}

interface Unfinished extends Killed {
  c: Cluster;
  key: string;
}

/**
 * A fresh cluster's `key` PUT as `before` and left amid its REPLACE with
 * `after` by a killed master (killedMidRename); `prepare` sets the proxies
 * (or the index), then `run` gets a new master on them (-lease 1s, `flags`
 * added). Everything is stopped after.
 */
async function afterKilledReplace(
  opts: {
    key: string;
    before: Uint8Array<ArrayBuffer>;
    after: Uint8Array<ArrayBuffer>;
    overUnlinked?: boolean;
    flags?: string[];
    prepare: (u: Unfinished) => Promise<void> | void;
  },
  run: (m: SpawnedMaster, u: Unfinished) => Promise<void>,
) {
  const c = await Cluster.start();
  const killed = await killedMidRename(c, opts.key, opts);
  const u = { ...killed, c, key: opts.key };
  try {
    await opts.prepare(u);
    const m = await c.spawnMaster(
      ["-volumes", u.volumes.join(","), "-lease", "1s", ...opts.flags ?? []],
    );
    try {
      await run(m, u);
    } finally {
      await m.stop();
    }
  } finally {
    await Promise.all(u.proxies.map((p) => p.stop()));
    await c.stop();
  }
}

/**
 * Each of `methods` (with a body for PUT and REPLACE) answers 503: the
 * switch (of a REPLACE, or of `verb`) cannot be finished now.
 */
async function assertUnfinished(
  m: SpawnedMaster,
  key: string,
  methods: string[],
  verb = "REPLACE",
) {
  for (const method of methods) {
    const body = method === "PUT" || method === "REPLACE" ? randomBytes(2000) : undefined;
    const res = await fetch(m.url + key, { method, body });
    assertEquals(
      [method, res.status, await res.text()],
      [
        method,
        503,
        `The key's last ${verb} is yet to be finished: retry once its volumes answer\n`,
      ],
    );
  }
}

/** No REPLACE temporary is left on any of `c`'s volumes. */
async function assertNoTemporary(c: Cluster) {
  const left = (await Promise.all(c.volumes.map((v) => volumeFiles(v)))).flat();
  assertEquals(left.filter((f) => f.includes("replace.")), [], "no temporary left");
}

async function refusedFinish(before: Uint8Array<ArrayBuffer>, after: Uint8Array<ArrayBuffer>) {
  const key = randomKey("/replace-finish-refused");
  await afterKilledReplace({
    key,
    before,
    after,
    prepare: ({ proxies }) => {
      for (const p of proxies) p.refuse = true;
    },
  }, async (m, { c, renamed }) => {
    // The GET finishes the switch: the two renamed replicas hold the new
    // value (the third, refused with its temporary there, did not switch).
    await assertHonest(m, key);
    const res = await assertServes(m.url, key, after);
    assertEquals(res.headers.get("key-volumes")!.split(",").sort(), renamed.toSorted());
    await assertNoTemporary(c);
  });
}

Deno.test("a dead master's REPLACE finished with every rename refused: the replicas it renamed serve the new MD5", async () => {
  await refusedFinish(randomBytes(3000), randomBytes(5000));
});

Deno.test("a dead master's REPLACE finished with every rename refused, values of one size: the new MD5", async () => {
  await refusedFinish(randomBytes(4000), randomBytes(4000));
});

Deno.test("a dead master's REPLACE finished by S3 GetObject with every rename refused: the new ETag and bytes", async () => {
  const bucket = `b-${crypto.randomUUID().slice(0, 8)}`;
  const after = randomBytes(3000);
  await afterKilledReplace({
    key: `/${bucket}/k`,
    before: randomBytes(3000),
    after,
    flags: ["-s3"],
    prepare: ({ proxies }) => {
      for (const p of proxies) p.refuse = true;
    },
  }, async (m) => {
    const s3 = s3Client(m.url);
    try {
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "k" }));
      assertEquals(got.ETag, `"${toHex(md5(after))}"`);
      assertEquals(await got.Body!.transformToByteArray(), after);
    } finally {
      s3.destroy();
    }
  });
});

Deno.test("a dead master's REPLACE finished while no volume can say what it holds: kept, finished later", async () => {
  const key = randomKey("/replace-finish-unknown");
  const after = randomBytes(5000);
  await afterKilledReplace({
    key,
    before: randomBytes(3000),
    after,
    prepare: ({ proxies }) => {
      // The renamed replicas answer the rename (no such temporary) but not
      // the HEAD that would tell what their file is; the third refuses the
      // rename and the HEAD that would tell whether its temporary is there.
      for (const p of proxies) p.refuseHeads = true;
      proxies[2].refuse = true;
    },
  }, async (m, { proxies, volumes }) => {
    const res = await fetch(m.url + key, { redirect: "manual" });
    await res.body?.cancel();
    assertEquals(res.status, 503, "no replica answers a HEAD");
    refuseAll(proxies, false);
    await assertHonest(m, key);
    await assertServes(m.url, key, after);
    assertEquals(await replicas(volumes, key), [after, after, after]);
  });
});

Deno.test("writes of a key whose dead master's REPLACE cannot be finished now: 503, the switch kept", async () => {
  const key = randomKey("/replace-over-unfinished");
  const after = randomBytes(5000);
  await afterKilledReplace({
    key,
    before: randomBytes(3000),
    after,
    // No volume can say what it holds. Each write of the key tries to
    // finish the switch first, and cannot.
    prepare: ({ proxies }) => refuseAll(proxies, true),
  }, async (m, { c, proxies, volumes }) => {
    // REPLACE dropped the switch for its own (the dead master's
    // temporary left behind; and had its own renames been refused, "the
    // old value stays" over replicas of the new one); UNLINK answered 204
    // and the next GET finished the switch, the key live again; DELETE
    // left the temporary behind; REBALANCE copied from replicas that may
    // hold either value.
    await assertUnfinished(m, key, ["REPLACE", "UNLINK", "DELETE", "REBALANCE"]);
    refuseAll(proxies, false);
    await assertServes(m.url, key, after);
    await assertHonest(m, key);
    assertEquals(await replicas(volumes, key), [after, after, after]);
    await assertNoTemporary(c);
  });
});

Deno.test("PUT and RELINK of an unlinked key whose unfinished switch cannot be finished now: 503, the switch kept", async () => {
  const key = randomKey("/relink-over-unfinished");
  const after = randomBytes(5000);
  await afterKilledReplace({
    key,
    before: randomBytes(3000),
    after,
    prepare: async ({ c, proxies }) => {
      // An UNLINK of a version before the 503 checks took such a key out
      // of service with its switch still recorded.
      const index = await openIndex(c.db);
      try {
        const e = (await index.get(enc.encode(key)))!;
        assert(e.rec.next, "the switch is recorded");
        assert(await index.cas(enc.encode(key), e.versionstamp, { ...e.rec, state: "unlinked" }));
      } finally {
        index.close();
      }
      refuseAll(proxies, true);
    },
  }, async (m, { proxies, volumes }) => {
    // PUT wrote its own value over replicas that may yet take the dead
    // master's rename; RELINK made the key live, the switch to finish
    // by a reader whatever it found.
    await assertUnfinished(m, key, ["PUT", "RELINK"]);
    refuseAll(proxies, false);
    const relink = await fetch(m.url + key, { method: "RELINK" });
    assertEquals([relink.status, await relink.text()], [204, ""]);
    await assertServes(m.url, key, after);
    await assertHonest(m, key);
    assertEquals(await replicas(volumes, key), [after, after, after]);
  });
});

Deno.test("writes of a key whose dead master's PUT over its unlinked value cannot be finished now: 503 naming the PUT", async () => {
  // They named a REPLACE, which nobody sent.
  const key = randomKey("/unlinked-put-unfinished");
  const after = randomBytes(5000);
  await afterKilledReplace({
    key,
    before: randomBytes(3000),
    after,
    overUnlinked: true,
    prepare: ({ proxies }) => refuseAll(proxies, true),
  }, async (m, { proxies, volumes }) => {
    await assertUnfinished(m, key, ["PUT", "RELINK", "DELETE"], "PUT");
    refuseAll(proxies, false);
    await assertServes(m.url, key, after);
    assertEquals(await replicas(volumes, key), [after, after, after]);
  });
});
