// An Index on a fresh Deno KV file in a temporary folder, for unit tests.
import { Index } from "../lib/index_db.ts";

/**
 * Runs `fn` with an Index on a fresh Deno KV file (`path`: the SQLite file),
 * closed and removed after; `opts` as Index's.
 */
export async function withIndex(
  fn: (index: Index, path: string) => Promise<void>,
  opts: ConstructorParameters<typeof Index>[1] = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mkv_index_test_" });
  const path = `${dir}/index.kv`;
  const index = new Index(await Deno.openKv(path), opts);
  try {
    await fn(index, path);
  } finally {
    index.close();
    await Deno.remove(dir, { recursive: true });
  }
}
