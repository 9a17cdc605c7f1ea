// Rebuild, rebalance and verify at scale: starts 5 nginx volumes (10
// subvolumes each) in a temp folder, writes N small keys straight to the
// volumes at their key2path paths (3 replicas, where the hash puts them on
// the 5 volumes) with their index records, then times, as separate processes:
//   rebuild (into a fresh index), rebalance -dry-run, rebalance onto 4 of
//   the volumes (the fifth drained), and verify.
//
// With -grow, the keys are written where the hash puts them on the first 4
// volumes and the rebalance spreads them onto all 5 (volumes added: each
// move's old copy stays recorded until removed, one index write more).
//
//   deno run -A bench/scale.ts [-keys 100000] [-concurrency N] [-grow]
import { freePort, waitUp } from "../tests/cluster.ts";
import { key2path, key2volume, md5, toHex } from "../lib/keys.ts";
import { openIndex } from "../lib/open.ts";
import { pool } from "../lib/pool.ts";
import { parseFlagsOrExit } from "../lib/flags.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const { flags } = parseFlagsOrExit(Deno.args, {
  keys: { type: "int", default: 100_000, usage: "keys to write" },
  concurrency: { type: "int", default: 0, usage: "the tools' -concurrency (0: each tool's own)" },
  "rebuild-only": { type: "bool", default: false, usage: "stop after the two rebuilds" },
  "skip-rebuild": { type: "bool", default: false, usage: "skip the two rebuilds" },
  grow: {
    type: "bool",
    default: false,
    usage: "write the keys on 4 volumes and rebalance onto 5 (instead of draining the fifth)",
  },
  yardstick: {
    type: "bool",
    default: false,
    usage: "run mkv's rebalance (bench/mkv_rebalance.ts) instead of ours, then stop",
  },
}, "deno run -A bench/scale.ts [flags]");
const N = flags.keys as number;
const REPLICAS = 3;
const SUBVOLUMES = 10;

const dir = await Deno.makeTempDir({ prefix: "mkv-scale-" });
await Deno.chmod(dir, 0o755);
const ports = Array.from({ length: 5 }, () => freePort());
const volumes = ports.map((p) => `127.0.0.1:${p}`);
// Where the keys are written, and what the rebalance spreads them onto.
const before = flags.grow ? volumes.slice(0, 4) : volumes;
const after = flags.grow ? volumes : volumes.slice(0, 4);
const procs = ports.map((port, i) =>
  new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "volume", `${dir}/volume${i}`],
    env: { PORT: String(port) },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn()
);

async function run(label: string, args: string[], script = MAIN): Promise<number> {
  const started = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdin: "null",
  }).output();
  const secs = (performance.now() - started) / 1000;
  const d = new TextDecoder();
  const tail = (d.decode(out.stdout) + d.decode(out.stderr)).trim().split("\n").slice(-3);
  console.log(`${label}: exit ${out.code} in ${secs.toFixed(1)}s\n  ${tail.join("\n  ")}`);
  return secs;
}

try {
  await Promise.all(volumes.map((v) => waitUp(`http://${v}/`)));
  const enc = new TextEncoder();
  const index = await openIndex(`${dir}/indexdb`);
  const started = performance.now();
  let done = 0;
  await pool(Array.from({ length: N }, (_, i) => i), 64, async (i) => {
    const key = enc.encode(`/scale/${i.toString(36)}/${i}`);
    const value = enc.encode(`value of key ${i}\n`);
    const kvolumes = key2volume(key, before, REPLICAS, SUBVOLUMES);
    await Promise.all(kvolumes.map(async (v) => {
      const res = await fetch(`http://${v}${key2path(key)}`, { method: "PUT", body: value });
      await res.body?.cancel();
      if (res.status !== 201 && res.status !== 204) throw new Error(`PUT: ${res.status}`);
    }));
    await index.set(key, {
      state: "live",
      rvolumes: kvolumes,
      hash: toHex(md5(value)),
      size: value.length,
    });
    if (++done % 20_000 === 0) console.log(`  written ${done}`);
  });
  index.close();
  let secs = (performance.now() - started) / 1000;
  console.log(
    `setup: ${N} keys x ${REPLICAS} replicas on ${before.length} volumes in ${secs.toFixed(1)}s ` +
      `(${Math.round(N / secs)} keys/s)`,
  );

  const common = ["-volumes", volumes.join(","), "-concurrency", String(flags.concurrency)];
  if (!flags["skip-rebuild"]) {
    secs = await run("rebuild", ["rebuild", ...common, "-db", `${dir}/rebuilt`]);
    console.log(`  => rebuild ${Math.round(N / secs)} keys/s`);
    // The yardstick: mkv's rebuild ported as it is (bench/mkv_rebuild.ts).
    await Deno.mkdir(`${dir}/mkv-style`, { recursive: true });
    const straight = await run(
      "mkv-style rebuild",
      ["-volumes", volumes.join(","), "-db", `${dir}/mkv-style`],
      new URL("./mkv_rebuild.ts", import.meta.url).pathname,
    );
    console.log(
      `  => mkv-style rebuild ${Math.round(N / straight)} keys/s; ` +
        `ours is ${(straight / secs).toFixed(1)}x faster`,
    );
  }
  const target = [
    "-volumes",
    after.join(","),
    "-concurrency",
    String(flags.concurrency),
  ];
  if (flags["rebuild-only"]) {
    // Done.
  } else if (flags.yardstick) {
    // mkv's rebalance ported as it is, on a fresh setup of its own (both
    // would move the same files).
    secs = await run(
      "mkv-style rebalance",
      ["-volumes", after.join(","), "-db", `${dir}/indexdb`],
      new URL("./mkv_rebalance.ts", import.meta.url).pathname,
    );
    console.log(`  => mkv-style rebalance ${Math.round(N / secs)} keys scanned/s`);
  } else {
    await run("rebalance -dry-run", ["rebalance", "-dry-run", ...target, "-db", `${dir}/indexdb`]);
    secs = await run("rebalance", ["rebalance", ...target, "-db", `${dir}/indexdb`]);
    console.log(`  => rebalance ${Math.round(N / secs)} keys scanned/s (see moved above)`);
    secs = await run("verify", ["verify", ...target, "-db", `${dir}/indexdb`]);
    console.log(`  => verify ${Math.round(N / secs)} keys/s`);
  }
} finally {
  for (const p of procs) {
    try {
      p.kill("SIGTERM");
    } catch { /* gone */ }
    await p.status;
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
