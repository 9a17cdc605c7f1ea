// `mkv rebalance -volumes NEW_LIST -db DIR`: moves every key whose recorded
// volumes differ from where the hash now puts it, with the master stopped.
// Each move copies first, switches the index, then deletes (lib/store.ts),
// so it can be killed at any moment and run again.
import type { FlagValues } from "../lib/flags.ts";
import { requireDb, storeOptions } from "../lib/config.ts";
import { joinIndex, openIndex } from "../lib/open.ts";
import { needsRebalance } from "../lib/keys.ts";
import { pool } from "../lib/pool.ts";
import { Store } from "../lib/store.ts";

export async function rebalance(flags: FlagValues): Promise<number> {
  const opts = storeOptions(flags);
  const index = await openIndex(requireDb(flags));
  // A writer of the index: a master running by mistake stops trusting its caches.
  await joinIndex(index, `rebalance:${Deno.pid}`);
  const store = new Store(index, opts);
  let moved = 0;
  const failed: string[] = [];
  const decoder = new TextDecoder();
  try {
    const todo = async function* () {
      for await (const [key, e] of index.entries()) {
        if (e.rec.state === "writing") continue;
        if (needsRebalance(e.rec.rvolumes, store.kvolumes(key))) yield key;
      }
    };
    await pool(todo(), 16, async (key) => {
      const out = await store.rebalance(key, { unlinked: true });
      if (out.status === 204) moved++;
      else failed.push(`${decoder.decode(key)}: ${out.status} ${out.message ?? ""}`);
    });
    console.log(`rebalance: moved ${moved} keys, ${failed.length} failed`);
    for (const f of failed.slice(0, 50)) console.error(`  ${f}`);
    return failed.length > 0 ? 1 : 0;
  } finally {
    await index.membership?.leave();
    index.close();
  }
}
