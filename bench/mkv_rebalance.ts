// A straight port of mkv's rebalance (rebalance.go) to Deno KV, the
// yardstick for ours: 16 workers; for each record, HEAD its volumes, read
// the whole value from the first that has it into memory, PUT it to each
// volume it now belongs on, write the record (one commit), then DELETE the
// copies it left.
//
//   deno run -A bench/mkv_rebalance.ts -volumes a,b,c -db DIR
import { parseFlagsOrExit } from "../lib/flags.ts";
import { FLAGS, requireDb, storeOptions } from "../lib/config.ts";
import { key2path, key2volume, needsRebalance } from "../lib/keys.ts";
import { fromRecord, toRecord } from "../lib/record.ts";

const { flags } = parseFlagsOrExit(
  Deno.args,
  FLAGS,
  "deno run -A bench/mkv_rebalance.ts -volumes a,b,c -db DIR",
);
const opts = storeOptions(flags);
const kv = await Deno.openKv(`${requireDb(flags)}/index.sqlite3`);

async function call(url: string, init: RequestInit = {}): Promise<Response> {
  return await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
}

async function rebalance(key: Uint8Array, rvolumes: string[]): Promise<boolean> {
  const kvolumes = key2volume(key, opts.volumes, opts.replicas, opts.subvolumes);
  const kp = key2path(key);
  const have: string[] = [];
  for (const v of rvolumes) {
    const r = await call(`http://${v}${kp}`, { method: "HEAD" });
    await r.body?.cancel();
    if (r.status === 200) have.push(v);
  }
  if (have.length === 0) return false;
  if (!needsRebalance(have, kvolumes)) return true;
  const got = await call(`http://${have[0]}${kp}`);
  const value = new Uint8Array(await got.arrayBuffer());
  for (const v of kvolumes) {
    if (have.includes(v)) continue;
    const r = await call(`http://${v}${kp}`, { method: "PUT", body: value });
    await r.body?.cancel();
    if (r.status !== 201 && r.status !== 204) return false;
  }
  await kv.set(
    ["k", key],
    fromRecord({ state: "live", rvolumes: kvolumes, hash: "", size: value.length }),
  );
  for (const v of have) {
    if (kvolumes.includes(v)) continue;
    const r = await call(`http://${v}${kp}`, { method: "DELETE" });
    await r.body?.cancel();
  }
  return true;
}

const started = performance.now();
const entries = kv.list({ prefix: ["k"] });
let scanned = 0, failed = 0;
await Promise.all(Array.from({ length: 16 }, async () => {
  while (true) {
    const next = await entries.next();
    if (next.done) return;
    scanned++;
    const key = next.value.key[1] as Uint8Array;
    if (!await rebalance(key, toRecord(next.value.value)!.rvolumes)) failed++;
  }
}));
const secs = (performance.now() - started) / 1000;
console.log(`mkv-style rebalance: ${scanned} keys in ${secs.toFixed(1)}s, ${failed} failed`);
kv.close();
