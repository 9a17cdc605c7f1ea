// A write leaving the key's old copies on a volume it no longer places the
// key on removes them once its new record is in the index, while it still
// holds the key (tests/faults/old_copy_race_test.ts). A master stalled
// between that record and the removals, past its lease, may find the key
// taken meanwhile: those files may be the next writer's now, and none is
// removed; the write answers as done (201; 204), its record having gone
// in. A SIGSTOP cannot land in that window (no volume call marks it): here
// the index write of the new record returns only once the lease has run
// out and another writer has taken the key.
import { Cluster, randomBytes, randomKey, volumeFiles } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { withIndex } from "../temp_index.ts";
import { Store } from "../../lib/store.ts";
import { FLAGS, storeOptions } from "../../lib/config.ts";
import { parseFlags } from "../../lib/flags.ts";
import type { Index } from "../../lib/index_db.ts";
import type { Outcome } from "../../lib/store.ts";
import { key2path, key2volume } from "../../lib/keys.ts";

const LEASE = 600;

/** A store placing keys on `volume` alone, with a short lease. */
function storeOn(index: Index, volume: string): Store {
  const args = ["-volumes", volume, "-replicas", "1", "-lease", `${LEASE}ms`];
  return new Store(index, storeOptions(parseFlags(args, FLAGS).flags));
}

function bodyOf(bytes: Uint8Array<ArrayBuffer>): ReadableStream<Uint8Array> {
  return new Blob([bytes]).stream();
}

/**
 * Runs `write` with the index's write of a live record naming `volume`
 * (the write's new record, with its lease) returning only once that lease
 * has run out and another writer has deleted the key's record.
 */
async function takenOnceRecorded(
  index: Index,
  volume: string,
  write: () => Promise<Outcome>,
): Promise<Outcome> {
  const cas = index.cas.bind(index);
  let taken = false;
  index.cas = async (key, expect, rec, opts) => {
    const vs = await cas(key, expect, rec, opts);
    const ours = rec?.state === "live" && rec.owner && rec.rvolumes[0]?.startsWith(volume);
    if (taken || vs === null || !ours) return vs;
    taken = true;
    await new Promise((r) => setTimeout(r, LEASE + 100));
    assert(await cas(key, vs, null) !== null, "the key taken over");
    return vs;
  };
  try {
    return await write();
  } finally {
    index.cas = cas;
  }
}

/**
 * `key`'s old copy on volume 0 (written there, `unlink`ed when asked), then
 * `write` by a store placing it on volume 1, taken over once recorded: its
 * answer is `status`, the index has no record of the key (the taker deleted
 * it), and each volume still holds its file of the key: the old copy was
 * not removed.
 */
async function assertOldCopyKept(
  opts: {
    unlink: boolean;
    write: (store: Store, key: Uint8Array) => Promise<Outcome>;
    status: number;
  },
): Promise<void> {
  const c = await Cluster.start();
  await c.stopMaster();
  try {
    await withIndex(async (index) => {
      const old = storeOn(index, c.volumes[0]);
      const now = storeOn(index, c.volumes[1]);
      const key = new TextEncoder().encode(randomKey("/old-copy-lost-claim"));
      const value = randomBytes(100);
      assertEquals((await old.put(key, bodyOf(value), { contentLength: 100 })).status, 201);
      if (opts.unlink) assertEquals((await old.unlink(key)).status, 204);
      const out = await takenOnceRecorded(index, c.volumes[1], () => opts.write(now, key));
      assertEquals(out.status, opts.status);
      assertEquals(await index.get(key), null);
      for (const volume of c.volumes.slice(0, 2)) {
        const replica = key2volume(key, [volume], 1, 10)[0];
        const file = replica.slice(replica.indexOf("/")) + key2path(key);
        assertEquals(await volumeFiles(volume), [file], volume);
      }
    });
  } finally {
    await c.stop();
  }
}

Deno.test("a PUT whose claim is lost once its value is recorded live removes no old copy: 201, the copy left", async () => {
  await assertOldCopyKept({
    unlink: true,
    write: (store, key) => store.put(key, bodyOf(randomBytes(200)), { contentLength: 200 }),
    status: 201,
  });
});

Deno.test("a REPLACE whose claim is lost once its new record is in the index removes no old copy: 201, the copy left", async () => {
  await assertOldCopyKept({
    unlink: false,
    write: (store, key) => store.replace(key, bodyOf(randomBytes(200)), { contentLength: 200 }),
    status: 201,
  });
});

Deno.test("a REBALANCE whose claim is lost once its move is recorded removes no old copy: 204, the copy left", async () => {
  await assertOldCopyKept({
    unlink: false,
    write: (store, key) => store.rebalance(key),
    status: 204,
  });
});
