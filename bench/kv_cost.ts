// What a Deno KV write costs in CPU, by how many writes share a commit: the
// master's index writes in the thrash cycle, without the master. Each key
// goes through the cycle's four compare-and-sets (claim, finish, delete
// mark, removal), `batch` keys per atomic, for a few seconds; the CPU of
// each thread (JS, Deno KV's SQLite thread "sw-0") is read from /proc.
//
//   deno run -A --unstable-kv bench/kv_cost.ts 1 5 20
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SECONDS = 4;
const TICK_MS = 1000 / 100; // CLK_TCK is 100 on Linux

const rec = {
  state: "writing",
  rvolumes: ["localhost:3001", "localhost:3002", "localhost:3003"],
  hash: "",
  size: -1,
  owner: "bench",
  until: Date.now(),
};

/** CPU ms so far of each thread of this process, by thread name. */
function threadCpu(): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of Deno.readDirSync("/proc/self/task")) {
    const stat = Deno.readTextFileSync(`/proc/self/task/${t.name}/stat`);
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) * TICK_MS);
  }
  return out;
}

async function run(kv: Deno.Kv, batch: number) {
  const start = performance.now();
  const before = threadCpu();
  let commits = 0;
  let writes = 0;
  while (performance.now() - start < SECONDS * 1000) {
    const keys = Array.from(
      { length: batch },
      () => ["k", crypto.getRandomValues(new Uint8Array(16))],
    );
    let expect: string | null = null;
    for (let step = 0; step < 4; step++) {
      const atomic = kv.atomic();
      for (const key of keys) {
        atomic.check({ key, versionstamp: expect });
        if (step === 3) atomic.delete(key);
        else atomic.set(key, { ...rec, size: step });
      }
      const res = await atomic.commit();
      if (!res.ok) throw new Error("A check failed: the keys are this run's own");
      expect = res.versionstamp;
      commits++;
      writes += batch;
    }
  }
  const ms = performance.now() - start;
  const after = threadCpu();
  const perWrite = [...after]
    .map(([name, cpu]) => [name, (cpu - (before.get(name) ?? 0)) / writes * 1000] as const)
    .filter(([, us]) => us >= 0.05)
    .map(([name, us]) => `${name} ${us.toFixed(1)}`)
    .join(", ");
  console.log(
    `${batch} per commit: ${Math.round(writes / ms * 1000)} writes/s, ` +
      `${Math.round(commits / ms * 1000)} commits/s; CPU µs per write: ${perWrite}`,
  );
}

const batches = Deno.args.length > 0 ? Deno.args.map(Number) : [1, 5, 20];
for (const batch of batches) {
  if (!Number.isInteger(batch) || batch < 1 || batch > 100) {
    throw new Error(`Bad batch "${batch}": expected 1-100 (an atomic holds 100 checks)`);
  }
  const dir = await mkdtemp(join(tmpdir(), "kv-cost-"));
  const kv = await Deno.openKv(join(dir, "index.sqlite3"));
  try {
    await run(kv, batch);
  } finally {
    kv.close();
    await rm(dir, { recursive: true });
  }
}
