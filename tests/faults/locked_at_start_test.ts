// A master, verify or rebalance started on an index whose SQLite write lock
// another process holds (a stuck writer, a backup tool). Deno KV's first
// access of such a file waits as long as the lock is held: each waited
// without a word for as long. Each now gives it 15 s (as long as a write
// waits and is retried), then exits 1 saying so, the index unchanged.
import { Cluster, freePort, MAIN, randomBytes, randomKey, status } from "../cluster.ts";
import { assertEquals } from "../assert.ts";
import { lockIndex } from "../lock_index.ts";

const LOCKED_FOR = "the index stayed locked for over 15 s (another process holds its write lock)";

/**
 * Runs `run` on a cluster holding a fresh key (under `prefix`), its master
 * stopped, and checks the key is still in the index after: `run`'s result.
 */
async function keyKeptThrough<T>(prefix: string, run: (c: Cluster) => Promise<T>): Promise<T> {
  const c = await Cluster.start();
  try {
    const key = randomKey(prefix);
    assertEquals(await status(c.url + key, { method: "PUT", body: randomBytes(1000) }), 201);
    await c.stopMaster();
    const done = await run(c);
    await c.startMaster();
    assertEquals(await status(c.url + key), 302, "the key is still in the index");
    return done;
  } finally {
    await c.stop();
  }
}

/** main.ts run with `args`, after the `preload` flags given, its stderr piped. */
function spawnMain(args: string[], preload: string[] = []): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...preload, MAIN, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

/** `tool` and its flags, then the -db and -volumes of `c`. */
function onIndex(c: Cluster, ...tool: string[]): string[] {
  return [...tool, "-db", c.db, "-volumes", c.volumes.join(",")];
}

/**
 * Runs `args` on `c`'s index while its write lock is held (the master
 * stopped), and checks the key put before is still there after: its exit
 * code and stderr, and whether the lock was still held when it ended.
 */
async function underLock(args: (c: Cluster) => string[]) {
  return await keyKeptThrough("/locked-start", async (c) => {
    let unlock: (() => void) | null = lockIndex(`${c.db}/index.sqlite3`);
    let safety: ReturnType<typeof setTimeout> | undefined;
    try {
      const proc = spawnMain(args(c));
      // Stopped after a minute all the same (a master that waited on the lock
      // would run on once it is released), the lock released.
      safety = setTimeout(() => {
        proc.kill("SIGKILL");
        unlock?.();
        unlock = null;
      }, 60_000);
      const out = await proc.output();
      const done = { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
      return { ...done, held: unlock !== null };
    } finally {
      clearTimeout(safety);
      unlock?.();
    }
  });
}

Deno.test("a master started on a locked index exits 1 after 15 s saying so", async () => {
  const done = await underLock((c) => onIndex(c, "server", "-port", String(freePort())));
  assertEquals(
    [done.held, done.code, done.stderr],
    [
      true,
      1,
      `The master did not start: ${LOCKED_FOR}: start it again once the lock is released\n`,
    ],
  );
});

Deno.test("verify on a locked index exits 1 after 15 s saying so, nothing checked", async () => {
  const done = await underLock((c) => onIndex(c, "verify"));
  assertEquals(
    [done.held, done.code, done.stderr],
    [
      true,
      1,
      `verify: ${LOCKED_FOR}; nothing was checked: run verify again once the lock is released\n`,
    ],
  );
});

Deno.test("rebalance on a locked index exits 1 after 15 s saying so, nothing moved", async () => {
  const done = await underLock((c) => onIndex(c, "rebalance"));
  assertEquals(
    [done.held, done.code, done.stderr],
    [
      true,
      1,
      `rebalance: ${LOCKED_FOR}; nothing moved: run rebalance again once the lock is released\n`,
    ],
  );
});

/** Test-only (see it): takes the index's write lock once the index has answered its first read. */
const LOCK_AFTER_FIRST_READ = new URL("../locked_after_first_read.ts", import.meta.url).pathname;
const LOCKED =
  "the index stayed locked (another process holds its write lock) past 10 s of retries";

/**
 * Runs `args` on `c`'s index (the master stopped), its write lock taken once
 * the index answered the first read, as another process taking it between
 * that read and the registration would (held until `args` exits); checks
 * the key put before is still there after. Its exit code and stderr.
 */
async function lockedAfterFirstRead(args: (c: Cluster) => string[]) {
  return await keyKeptThrough("/locked-join", async (c) => {
    const proc = spawnMain(args(c), ["--preload", LOCK_AFTER_FIRST_READ]);
    // A master that registered all the same would serve on: stopped after a minute.
    const safety = setTimeout(() => proc.kill("SIGKILL"), 60_000);
    const out = await proc.output();
    clearTimeout(safety);
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
  });
}

Deno.test("a master whose index is locked between its first read and its registration exits 1 saying so", async () => {
  const done = await lockedAfterFirstRead((c) => onIndex(c, "server", "-port", "0"));
  assertEquals(
    [done.code, done.stderr],
    [1, `The master did not start: ${LOCKED}: start it again once the lock is released\n`],
  );
});

Deno.test("verify -repair on an index locked before it registers exits 1 saying so, nothing checked", async () => {
  const done = await lockedAfterFirstRead((c) => onIndex(c, "verify", "-repair"));
  assertEquals(
    [done.code, done.stderr],
    [1, `verify: ${LOCKED}; nothing was checked: run verify again once the lock is released\n`],
  );
});

Deno.test("rebalance on an index locked before it registers exits 1 saying so, nothing moved", async () => {
  const done = await lockedAfterFirstRead((c) => onIndex(c, "rebalance"));
  assertEquals(
    [done.code, done.stderr],
    [1, `rebalance: ${LOCKED}; nothing moved: run rebalance again once the lock is released\n`],
  );
});
