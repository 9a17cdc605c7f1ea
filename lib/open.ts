// Opening the index: the one place that touches the disk for it.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { Index } from "./index_db.ts";
import { Membership } from "./membership.ts";

/** Heartbeat interval of index members (masters and writing tools). */
export const MEMBER_INTERVAL = 1000;

/**
 * Opens the index at `db`: a KV Connect URL (https://...) as is, otherwise a
 * folder (created if missing) holding the SQLite file, as mkv's -db names a
 * LevelDB folder. An existing plain file is opened as the SQLite file itself.
 */
export async function openIndex(db: string): Promise<Index> {
  try {
    return await open(db);
  } catch (err) {
    // Alone, "file is not a database" or an ENOENT named neither the index nor -db.
    throw new Error(`Cannot open the index "${db}": ${err instanceof Error ? err.message : err}`);
  }
}

async function open(db: string): Promise<Index> {
  if (/^https?:\/\//.test(db)) return new Index(await Deno.openKv(db));
  let path = db;
  const info = await Deno.stat(db).catch(() => null);
  if (!info || info.isDirectory) {
    await mkdir(db, { recursive: true });
    path = join(db, "index.sqlite3");
  }
  return new Index(await Deno.openKv(path));
}

/**
 * Registers `id` as a writer of the index (see lib/membership.ts) and lets
 * the index cache what it reads while this is its sole writer.
 */
export async function joinIndex(index: Index, id: string): Promise<void> {
  const m = new Membership(index, id, {
    interval: MEMBER_INTERVAL,
    onSole: (sole) => index.onSole(sole),
  });
  index.membership = m;
  await m.join();
}
