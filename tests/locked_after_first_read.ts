// Test-only, preloaded into a master or tool (`deno run --preload`): once
// the index has answered its first read (firstAnswer, lib/open.ts), SQLite's
// write lock on its file is taken and held until the process exits, as
// another process taking it at that moment would: every write then fails
// "database is locked" past retrying, reads go on.
import { lockIndex } from "./lock_index.ts";

const openKv = Deno.openKv;
async function openLocking(path?: string): Promise<Deno.Kv> {
  const kv = await openKv(path);
  const get = kv.get.bind(kv);
  let locked = false;
  kv.get = (async (key: Deno.KvKey, opts?: { consistency?: Deno.KvConsistencyLevel }) => {
    const got = await get(key, opts);
    if (!locked && path) {
      locked = true;
      lockIndex(path);
    }
    return got;
  }) as typeof kv.get;
  return kv;
}
Object.defineProperty(Deno, "openKv", { value: openLocking });
