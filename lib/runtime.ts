// How the master's process is started (deno.json's `master` and `compile`
// tasks say the same). V8's young generation is kept small: a large PUT
// streams many short-lived chunks, and with V8's default semi-space the
// heap swells by tens of MiB before a scavenge; at 2 MiB the 256 MiB PUT
// grew the master by 15 MiB instead of 27 (measured by deno task bench, see BENCHMARKS.md).
export const MASTER_V8_FLAGS = "--v8-flags=--max-semi-space-size=2";
