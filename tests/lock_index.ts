// SQLite's write lock on an index file, held as another process's long write
// would hold it, for tests of what a locked index does to masters and tools.
import { DatabaseSync } from "node:sqlite";

/**
 * Takes the write lock on the SQLite file at `path` (a Deno KV index's
 * file): every index write waits until the returned function is called;
 * reads go on. A write in flight (a heartbeat) is waited out, up to 5 s,
 * rather than failing the take ("database is locked").
 */
export function lockIndex(path: string): () => void {
  const db = new DatabaseSync(path);
  try {
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("BEGIN IMMEDIATE");
  } catch (err) {
    db.close();
    throw err;
  }
  return () => {
    if (db.isTransaction) db.exec("COMMIT");
    db.close();
  };
}
