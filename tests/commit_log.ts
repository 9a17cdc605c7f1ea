// Test-only, preloaded into a master (`deno run --preload`, see
// Cluster.spawnMaster's `commitLog`): each Deno KV atomic commit that writes
// a key's record appends the key to the file MKV_TEST_COMMIT_LOG, one line
// each, as the commit is handed to Deno KV. A test then knows a request's
// index write is under way (its fence taken, the commit waiting on a lock
// the test holds) rather than guess it from the time that passed.
const log = Deno.env.get("MKV_TEST_COMMIT_LOG");
if (!log) throw new Error("MKV_TEST_COMMIT_LOG names no file");
const decoder = new TextDecoder();
const openKv = Deno.openKv;

async function openLogging(path?: string): Promise<Deno.Kv> {
  const kv = await openKv(path);
  const atomic = kv.atomic.bind(kv);
  kv.atomic = () => {
    const op = atomic();
    const keys: string[] = [];
    const note = (key: Deno.KvKey) => {
      if (key[0] === "k" && key[1] instanceof Uint8Array) keys.push(decoder.decode(key[1]));
    };
    const set = op.set.bind(op);
    op.set = (key, value, opts) => (note(key), set(key, value, opts));
    const del = op.delete.bind(op);
    op.delete = (key) => (note(key), del(key));
    const commit = op.commit.bind(op);
    op.commit = () => {
      if (keys.length > 0) {
        Deno.writeTextFileSync(log!, keys.map((k) => `${k}\n`).join(""), { append: true });
      }
      return commit();
    };
    return op;
  };
  return kv;
}
Object.defineProperty(Deno, "openKv", { value: openLogging });
