// Test-only, preloaded into a master (`deno run --preload`, see
// Cluster.spawnMaster's `commitLog`): each Deno KV atomic commit that writes
// a key's record appends the key to the file MKV_TEST_COMMIT_LOG, one line
// each, as the commit is handed to Deno KV; one that writes a bucket's
// record (CreateBucket's, DeleteBucket's) appends "bucket <name>". A test
// then knows a request's index write is under way (its fence taken, the
// commit waiting on a lock the test holds) rather than guess it from the
// time that passed.
//
// MKV_TEST_COMMIT_HOLD (spawnMaster's `commitHold`), a file's path: while
// that file exists, a commit that logs one of its lines waits (logged
// first), so a test can run other requests between a call's reads and its
// write, then let the write go by removing the file. A line "read <key>"
// holds the reads of that key's record instead: each is made, logged as
// "read <key>", and its answer handed back only once the line is gone, so
// a test can run a write between a call's read of the key and what the
// call does next.
const log = Deno.env.get("MKV_TEST_COMMIT_LOG");
if (!log) throw new Error("MKV_TEST_COMMIT_LOG names no file");
const hold = Deno.env.get("MKV_TEST_COMMIT_HOLD");
const decoder = new TextDecoder();
const openKv = Deno.openKv;

/** The lines of the hold file, while it exists. */
function held(): string[] | null {
  if (!hold) return null;
  try {
    return Deno.readTextFileSync(hold).split("\n").filter(Boolean);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** Waits while the hold file exists and names one of `lines`. */
async function waitWhileHeld(lines: string[]): Promise<void> {
  while (held()?.some((l) => lines.includes(l))) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function openLogging(path?: string): Promise<Deno.Kv> {
  const kv = await openKv(path);
  const get = kv.get.bind(kv);
  kv.get = (async (key: Deno.KvKey, opts?: { consistency?: Deno.KvConsistencyLevel }) => {
    const got = await get(key, opts);
    if (key[0] !== "k" || !(key[1] instanceof Uint8Array)) return got;
    const line = `read ${decoder.decode(key[1])}`;
    if (!held()?.includes(line)) return got;
    Deno.writeTextFileSync(log!, `${line}\n`, { append: true });
    await waitWhileHeld([line]);
    return got;
  }) as typeof kv.get;
  const atomic = kv.atomic.bind(kv);
  kv.atomic = () => {
    const op = atomic();
    const keys: string[] = [];
    const note = (key: Deno.KvKey) => {
      if (key[0] === "k" && key[1] instanceof Uint8Array) keys.push(decoder.decode(key[1]));
      if (key[0] === "b" && typeof key[1] === "string") keys.push(`bucket ${key[1]}`);
    };
    const set = op.set.bind(op);
    op.set = (key, value, opts) => (note(key), set(key, value, opts));
    const del = op.delete.bind(op);
    op.delete = (key) => (note(key), del(key));
    const commit = op.commit.bind(op);
    op.commit = () => {
      if (keys.length === 0) return commit();
      Deno.writeTextFileSync(log!, keys.map((k) => `${k}\n`).join(""), { append: true });
      if (!held()?.some((l) => keys.includes(l))) return commit();
      return waitWhileHeld(keys).then(commit);
    };
    return op;
  };
  return kv;
}
Object.defineProperty(Deno, "openKv", { value: openLogging });
