// An Index on a fresh Deno KV file in a temporary folder, for unit tests.
import { Index } from "../lib/index_db.ts";
import { Membership } from "../lib/membership.ts";
import type { Record } from "../lib/record.ts";

/** A live record: 5 bytes ("hello") on three volumes. */
export const LIVE: Record = {
  state: "live",
  rvolumes: ["a:1", "b:2", "c:3"],
  hash: "5d41402abc4b2a76b9719d911017c592",
  size: 5,
};

/** Index's options, and `wrap`: what the Index is given in place of the Deno KV opened. */
export type TempIndexOptions = ConstructorParameters<typeof Index>[1] & {
  wrap?: (kv: Deno.Kv) => Deno.Kv;
};

/**
 * Runs `fn` with an Index on a fresh Deno KV file (`path`: the SQLite file),
 * closed and removed after; `opts` as Index's.
 */
export async function withIndex(
  fn: (index: Index, path: string) => Promise<void>,
  opts: TempIndexOptions = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mkv_index_test_" });
  const path = `${dir}/index.kv`;
  const { wrap = (kv: Deno.Kv) => kv, ...indexOpts } = opts;
  const index = new Index(wrap(await Deno.openKv(path)), indexOpts);
  try {
    await fn(index, path);
  } finally {
    index.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * withIndex, the index's sole master's: a member joined (its heartbeat a
 * minute apart, so none comes during a test) for as long as `fn` runs.
 */
export async function withSoleIndex(
  fn: (index: Index) => Promise<void>,
  opts: TempIndexOptions = {},
): Promise<void> {
  await withIndex(async (index) => {
    const m = new Membership(index, `m-${crypto.randomUUID()}`, {
      interval: 60_000,
      onSole: (sole) => index.onSole(sole),
    });
    index.membership = m;
    try {
      await m.join();
      await fn(index);
    } finally {
      await m.leave();
    }
  }, opts);
}
