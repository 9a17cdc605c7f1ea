// `mkv rebuild -volumes ... -db DIR`: recreates the index from the volumes,
// with the master stopped (as mkv). Every key found becomes live, its
// volumes ordered as key2volume places them (those not where they belong
// last), its size from the listing; the MD5 is unknown ("").
//
// It lists the top folders ("/ab/") first, then every key folder
// ("/ab/cd/"), at most -concurrency folders at once (each on every volume
// that has it), showing progress on stderr.
import type { FlagValues } from "../lib/flags.ts";
import { requireDb, storeOptions } from "../lib/config.ts";
import { joinIndex, openIndex } from "../lib/open.ts";
import { key2volume, orderByPlacement, placementKey } from "../lib/keys.ts";
import { pool } from "../lib/pool.ts";
import { Progress } from "../lib/progress.ts";
import { concurrencyOf } from "../lib/tool_flags.ts";
import { hexFolders, keysIn, subvolumesOf, type Walker } from "../lib/walk.ts";

export async function rebuild(flags: FlagValues): Promise<number> {
  const opts = storeOptions(flags);
  const concurrency = concurrencyOf(flags);
  const index = await openIndex(requireDb(flags));
  // A writer of the index: a master running by mistake stops trusting its caches.
  await joinIndex(index, `rebuild:${Deno.pid}`);
  const w: Walker = { timeout: Math.max(opts.voltimeout, 10_000), errors: [] };
  const started = performance.now();
  const progress = new Progress("rebuild", { main: "keys" });
  try {
    const cleared = await index.clear();
    if (cleared > 0) console.log(`rebuild: cleared ${cleared} records`);
    const vols = (await Promise.all(opts.volumes.map((v) => subvolumesOf(w, v)))).flat();
    progress.add("volumes", vols.length);
    const tops = await hexFolders(w, vols, "/");
    const folders: [string, string[]][] = [];
    await pool(tops.entries(), concurrency, async ([ab, abVols]) => {
      const subs = await hexFolders(w, abVols, `/${ab}/`);
      for (const [cd, cdVols] of subs) folders.push([`/${ab}/${cd}/`, cdVols]);
      progress.add("folders");
    });
    let keys = 0;
    await pool(folders, concurrency, async ([folder, cdVols]) => {
      const found = await keysIn(w, cdVols, folder);
      await Promise.all(found.map(({ key, volumes, size, mtimes }) => {
        const kvolumes = key2volume(
          placementKey(key, opts.colocate),
          opts.volumes,
          opts.replicas,
          opts.subvolumes,
        );
        // The newest copy's time: S3's Last-Modified survives a rebuild.
        const mtime = Math.max(...mtimes.filter((t) => Number.isFinite(t)));
        return index.set(key, {
          state: "live",
          rvolumes: orderByPlacement(volumes, kvolumes),
          hash: "",
          size,
          ...(Number.isFinite(mtime) ? { mtime } : {}),
        });
      }));
      keys += found.length;
      progress.add("folders");
      progress.add("keys", found.length);
    });
    progress.done();
    const secs = (performance.now() - started) / 1000;
    console.log(`rebuild: ${keys} keys from ${vols.length} (sub)volumes in ${secs.toFixed(1)}s`);
    if (w.errors.length > 0) {
      console.error(
        `rebuild: ${w.errors.length} folders could not be read; the index is incomplete:`,
      );
      for (const e of w.errors.slice(0, 50)) console.error(`  ${e}`);
      return 1;
    }
    return 0;
  } finally {
    progress.stop();
    await index.membership?.leave();
    index.close();
  }
}
