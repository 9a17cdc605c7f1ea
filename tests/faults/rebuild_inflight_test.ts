// Requests a master takes up while a rebuild empties and refills the index,
// before any heartbeat of its has seen the rebuild: here, requests sent
// while the master was paused (SIGSTOP), past its heartbeat, and handled
// once it resumed. The rebuild took it for stopped and cleared the index;
// the master checked for a rebuild at each request's start, with what its
// last heartbeat (from before the pause) had seen. A GET of a live key then
// answered 404 from the emptied index, and a PUT landed in the index the
// rebuild was refilling (201). Both answer 503 now.
import {
  type Cluster,
  commitSent,
  justBeaten,
  randomBytes,
  randomKey,
  runMain,
  type SpawnedMaster,
  status,
} from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { errorAnswer, errorXml, md5Header } from "../s3_answers.ts";
import { lockIndex } from "../lock_index.ts";
import {
  REBUILD_RUNNING,
  servedAgain,
  sleep,
  type SlowCluster,
  slowCluster,
} from "./rebuild_faults.ts";

/** Waits until the index at `db` has a rebuild registered and holds no key's record. */
async function cleared(db: string): Promise<void> {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  try {
    for (let i = 0; i < 300; i++) {
      let rebuilding = false;
      for await (const e of kv.list({ prefix: ["members"] })) {
        if (String(e.key[1]).startsWith("rebuild:")) rebuilding = true;
      }
      const records = await Array.fromAsync(kv.list({ prefix: ["k"] }, { limit: 1 }));
      if (rebuilding && records.length === 0) return;
      await sleep(50);
    }
    throw new Error("The index was not cleared by a rebuild within 15 s");
  } finally {
    kv.close();
  }
}

/** Whether the index at `db` holds CreateBucket's record of `bucket`. */
async function bucketRecorded(db: string, bucket: string): Promise<boolean> {
  const kv = await Deno.openKv(`${db}/index.sqlite3`);
  try {
    return (await kv.get(["b", bucket])).versionstamp !== null;
  } finally {
    kv.close();
  }
}

/** Starts another master on the same index and volumes. */
type Spawn = () => Promise<SpawnedMaster>;

/**
 * A master on volumes that list slowly, holding one live key, paused while a
 * rebuild clears the index; `run` gets them with the master still paused.
 * `pausing`: what the master is doing as it is paused. `flags`: the
 * master's own (-s3); `commitLog`, `holdBucketRead`: as slowCluster's.
 */
async function pausedThroughClear(
  run: (
    m: SpawnedMaster,
    key: string,
    rebuilt: Promise<void>,
    another: Spawn,
    c: Cluster,
    slow: SlowCluster,
  ) => Promise<void>,
  opts: {
    pausing?: (slow: SlowCluster, key: string) => Promise<void>;
    flags?: string[];
    commitLog?: boolean;
    holdBucketRead?: boolean;
  } = {},
): Promise<void> {
  const pausing = opts.pausing ?? (async () => {});
  const { flags, commitLog, holdBucketRead } = opts;
  const slow = await slowCluster({ flags, commitLog, holdBucketRead });
  const { c, volumes, m } = slow;
  try {
    const key = randomKey("/rebuild-inflight");
    assertEquals(await status(m.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    await pausing(slow, key);
    m.proc.kill("SIGSTOP");
    const rebuild = runMain(["rebuild", "-db", c.db, "-volumes", volumes]);
    const rebuilt = rebuild.then((done) => assertEquals(done.code, 0, done.stdout + done.stderr));
    rebuilt.catch(() => {}); // awaited below, unless run() fails first
    await cleared(c.db);
    const others: SpawnedMaster[] = [];
    try {
      const another = async () => {
        others.push(await c.spawnMaster(["-volumes", volumes]));
        return others.at(-1)!;
      };
      await run(m, key, rebuilt, another, c, slow);
    } finally {
      await Promise.all(others.map((o) => o.stop()));
    }
    await rebuilt;
  } finally {
    await slow.stop();
  }
}

/** The answer to `init` at `key`, sent while master `m` is paused, once it is resumed. */
async function sentWhilePaused(
  m: SpawnedMaster,
  key: string,
  init: RequestInit,
): Promise<[number, string]> {
  // Read by the master once resumed.
  const res = fetch(m.url + key, { redirect: "manual", ...init });
  await sleep(200);
  m.proc.kill("SIGCONT");
  const got = await res;
  return [got.status, await got.text()];
}

/**
 * `url`'s status once `rebuilt` is done, served again once a heartbeat has
 * seen the rebuild gone (not after a guessed time).
 */
async function servedOnceRebuilt(rebuilt: Promise<void>, url: string): Promise<number> {
  await rebuilt;
  return await servedAgain(url);
}

Deno.test("a GET taken up by a master resumed amid a rebuild answers 503, not 404 from the emptied index", async () => {
  await pausedThroughClear(async (m, key) => {
    assertEquals(await sentWhilePaused(m, key, {}), [503, REBUILD_RUNNING]);
  });
});

Deno.test("a PUT taken up by a master resumed amid a rebuild answers 503 and leaves no key", async () => {
  await pausedThroughClear(async (m, _key, rebuilt) => {
    const fresh = randomKey("/rebuild-inflight");
    const put = { method: "PUT", body: "late" };
    assertEquals(await sentWhilePaused(m, fresh, put), [503, REBUILD_RUNNING]);
    assertEquals(await servedOnceRebuilt(rebuilt, m.url + fresh), 404);
  });
});

Deno.test("a PUT whose index write a locked index held up, its master paused through a rebuild's start, fails 503 and leaves no record", async () => {
  const fresh = randomKey("/rebuild-inflight");
  let put: Promise<Response> | null = null;
  await pausedThroughClear(async (m, _key, rebuilt) => {
    m.proc.kill("SIGCONT");
    // Its commit, tried again once resumed, carries a fence the rebuild removed.
    const res = await put!;
    const said = await res.text();
    assertEquals(await servedOnceRebuilt(rebuilt, m.url + fresh), 404);
    const listed = await fetch(`${m.url}/rebuild-inflight/?writing`).then((r) => r.json());
    assertEquals(listed.keys, [], "no record of the PUT");
    assertEquals(
      [res.status, said],
      [
        503,
        "Cannot write the index: this process lost its registration in it (paused past its heartbeat?): retry\n",
      ],
    );
  }, {
    pausing: async ({ c, m, commitLog }) => {
      // Held by SQLite's write lock: the PUT's first commit (its claim) waits
      // on it, and is tried again on and on (up to 10 s) until the lock goes.
      // Taken just after a heartbeat: the claim takes its fence before the
      // next heartbeat waits on the lock (a write asked for later waits for
      // a heartbeat that lands: after the pause, when the rebuild is seen).
      await justBeaten(c.db, m.proc.pid);
      const unlock = lockIndex(`${c.db}/index.sqlite3`);
      put = fetch(m.url + fresh, { method: "PUT", body: "late" });
      // Paused once that commit, its fence in it, is sent: not after a guessed time.
      await commitSent(commitLog!, fresh);
      m.proc.kill("SIGSTOP");
      unlock();
    },
    commitLog: true,
  });
});

Deno.test("a DELETE taken up by a master resumed amid a rebuild answers 503, not 404 from the emptied index, and the key stays", async () => {
  await pausedThroughClear(async (m, key, rebuilt) => {
    assertEquals(await sentWhilePaused(m, key, { method: "DELETE" }), [503, REBUILD_RUNNING]);
    assertEquals(await servedOnceRebuilt(rebuilt, m.url + key), 302);
  });
});

/** The 503 of an S3 call on `resource` a master refuses while a rebuild runs, before the call is made. */
function rebuildRunningS3(resource: string) {
  return {
    status: 503,
    type: "application/xml",
    body: errorXml("ServiceUnavailable", REBUILD_RUNNING.trimEnd(), "", resource),
  };
}

/** errorAnswer to `init` at `url`, sent while master `m` is paused, once it is resumed. */
async function s3SentWhilePaused(m: SpawnedMaster, url: string, init: RequestInit) {
  // Read by the master once resumed.
  const res = errorAnswer(url, init);
  await sleep(200);
  m.proc.kill("SIGCONT");
  return await res;
}

/** pausedThroughClear's options for S3 calls: -s3, and the key's bucket made by CreateBucket. */
const S3_BUCKET_MADE = {
  flags: ["-s3"],
  pausing: async ({ m }: SlowCluster, key: string) => {
    const bucket = key.split("/")[1];
    assertEquals(await status(`${m.url}/${bucket}?x-id=CreateBucket`, { method: "PUT" }), 200);
  },
};

// The bucket made by CreateBucket outlives the rebuild (it empties keys
// only): DeleteObject found it, took the key the rebuild had yet to refill
// for missing, and answered 204 with nothing written, the key live again
// once the rebuild was done.
Deno.test("an S3 DeleteObject taken up by a master resumed amid a rebuild answers 503, not 204 from the emptied index, and the key stays", async () => {
  await pausedThroughClear(async (m, key, rebuilt) => {
    const url = `${m.url}${key}?x-id=DeleteObject`;
    // In S3's XML, as every S3 answer (it was mkv's plain text).
    assertEquals(await s3SentWhilePaused(m, url, { method: "DELETE" }), rebuildRunningS3(key));
    assertEquals(await servedOnceRebuilt(rebuilt, m.url + key), 302);
  }, S3_BUCKET_MADE);
});

// The heartbeat that first looked once the master resumed overtook the
// call amid its index reads: the call began before that heartbeat had seen
// the rebuild, and read the key missing from the emptied index with the
// rebuild's incomplete mark seen since. It asked the volumes, found the
// key's file, and answered that a rebuild is needed ("... run rebuild")
// while one was running: a 503 decided by what it read, which the master
// let stand, as a write's own failure, without judging it after the stall.
Deno.test("an S3 DeleteObject whose reads a resumed master's heartbeat overtook answers the rebuild's 503, not run rebuild", async () => {
  await pausedThroughClear(async (m, key, rebuilt, _another, _c, slow) => {
    await Deno.writeTextFile(slow.holdBucketRead!, "");
    m.proc.kill("SIGCONT");
    assertEquals(
      await errorAnswer(`${m.url}${key}?x-id=DeleteObject`, { method: "DELETE" }),
      rebuildRunningS3(key),
    );
    assertEquals(await servedOnceRebuilt(rebuilt, m.url + key), 302);
  }, {
    ...S3_BUCKET_MADE,
    holdBucketRead: true,
  });
});

Deno.test("an S3 DeleteObjects taken up by a master resumed amid a rebuild answers 503, not its keys deleted from the emptied index, and the key stays", async () => {
  await pausedThroughClear(async (m, key, rebuilt) => {
    const [, bucket, ...rest] = key.split("/");
    const xml = `<Delete><Object><Key>${rest.join("/")}</Key></Object></Delete>`;
    const init = { method: "POST", headers: md5Header(xml), body: xml };
    assertEquals(
      await s3SentWhilePaused(m, `${m.url}/${bucket}?delete`, init),
      rebuildRunningS3(`/${bucket}`),
    );
    assertEquals(await servedOnceRebuilt(rebuilt, m.url + key), 302);
  }, S3_BUCKET_MADE);
});

// DeleteBucket found the bucket empty in the emptied index and removed its
// record outside the fenced commits: 204 for a bucket whose key the rebuild
// had yet to refill. The removal carries the master's fence now, which the
// rebuild removed: nothing is written, and the answer is 503.
Deno.test("an S3 DeleteBucket taken up by a master resumed amid a rebuild answers 503, not 204 from the emptied index, and the bucket stays", async () => {
  await pausedThroughClear(async (m, key, rebuilt, _another, c) => {
    const bucket = key.split("/")[1];
    const url = `${m.url}/${bucket}?x-id=DeleteBucket`;
    assertEquals(
      await s3SentWhilePaused(m, url, { method: "DELETE" }),
      rebuildRunningS3(`/${bucket}`),
    );
    assertEquals(await servedOnceRebuilt(rebuilt, m.url + key), 302);
    assertEquals(await bucketRecorded(c.db, bucket), true);
  }, S3_BUCKET_MADE);
});

Deno.test("a master started while a rebuild refills the index answers 503 from its first request", async () => {
  await pausedThroughClear(async (_paused, key, rebuilt, another) => {
    const m = await another();
    const res = await fetch(m.url + key, { redirect: "manual" });
    assertEquals([res.status, await res.text()], [503, REBUILD_RUNNING]);
    await rebuilt;
  });
});
