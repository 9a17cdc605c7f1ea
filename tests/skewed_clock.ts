// Test-only, preloaded into a master (`deno run --preload`, see
// Cluster.spawnMaster's `skew`, and bench/chaos.ts's "skew"): moves its wall clock (Date.now) by
// MKV_TEST_CLOCK_SKEW_MS, as a machine whose clock is off would.
const skew = Number(Deno.env.get("MKV_TEST_CLOCK_SKEW_MS") ?? "0");
if (!Number.isFinite(skew)) throw new Error("MKV_TEST_CLOCK_SKEW_MS is not a number of ms");
const now = Date.now;
Date.now = () => now() + skew;
