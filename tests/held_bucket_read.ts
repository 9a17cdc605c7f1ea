// Test-only, preloaded into a master (`deno run --preload`, see
// Cluster.spawnMaster's `holdBucketRead`): once the file MKV_TEST_HOLD_BUCKET_READ
// exists, the master's next read of an S3 bucket's record and its next read
// of the index's incomplete mark (a heartbeat's look, lib/membership.ts) are
// ordered: the mark is read once the bucket read is asked for, and the
// bucket is read once the mark has been. An S3 call taken up by a master
// just resumed (SIGCONT) then makes its first index reads before that
// heartbeat has seen a rebuild, and its later ones after: what a loaded
// machine did, now and then, to tests/faults/rebuild_inflight_test.ts.
const armed = Deno.env.get("MKV_TEST_HOLD_BUCKET_READ");
if (!armed) throw new Error("MKV_TEST_HOLD_BUCKET_READ names no file");

/** Whether the hold is armed (its file exists) and not yet spent. */
let spent = false;
function holding(): boolean {
  if (spent) return false;
  try {
    Deno.statSync(armed!);
    return true;
  } catch {
    return false;
  }
}

const bucketAsked = Promise.withResolvers<void>();
const markRead = Promise.withResolvers<void>();

const openKv = Deno.openKv;
async function openHolding(path?: string): Promise<Deno.Kv> {
  const kv = await openKv(path);
  const get = kv.get.bind(kv);
  kv.get = (async (key: Deno.KvKey, opts?: { consistency?: Deno.KvConsistencyLevel }) => {
    if (key[0] === "b" && holding()) {
      bucketAsked.resolve();
      await markRead.promise;
      spent = true;
    } else if (key.length === 1 && key[0] === "rebuild" && holding()) {
      await bucketAsked.promise;
      const got = await get(key, opts);
      // After this read's caller has taken its answer (a microtask on).
      queueMicrotask(() => markRead.resolve());
      return got;
    }
    return await get(key, opts);
  }) as typeof kv.get;
  return kv;
}
Object.defineProperty(Deno, "openKv", { value: openHolding });
