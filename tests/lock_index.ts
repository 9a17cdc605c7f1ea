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

/**
 * lockIndex, taken by a process of its own (as another master or tool would
 * hold it): resolves once the lock is held, to the function that releases
 * it (the process ends).
 */
export async function lockIndexElsewhere(path: string): Promise<() => Promise<void>> {
  const code = `import { lockIndex } from ${JSON.stringify(import.meta.url)};
    const unlock = lockIndex(${JSON.stringify(path)});
    console.log("locked");
    for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
    unlock();`;
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await lines.read();
  if (!value?.startsWith("locked")) throw new Error(`The lock was not taken: ${value}`);
  lines.cancel().catch(() => {});
  return async () => {
    await proc.stdin.close().catch(() => {});
    await proc.status;
  };
}

/**
 * Runs `fn` while the write lock on the index in folder `db` is held
 * (lockIndex on its SQLite file); released once `fn` ends, or throws.
 */
export async function whileLocked<T>(db: string, fn: () => Promise<T>): Promise<T> {
  const unlock = lockIndex(`${db}/index.sqlite3`);
  try {
    return await fn();
  } finally {
    unlock();
  }
}
