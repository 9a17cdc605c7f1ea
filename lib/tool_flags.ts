// Flags of the offline tools (rebuild, rebalance, verify). main.ts parses
// them with FLAGS, so every command accepts them; only the tools read them.
import type { FlagSpec, FlagValues } from "./flags.ts";
import { FlagError } from "./flags.ts";

export const TOOL_FLAGS: { [name: string]: FlagSpec } = {
  concurrency: {
    type: "int",
    default: 0,
    usage:
      "rebuild/rebalance/verify: folder listings or keys worked on at once (0: the tool's own, 16 or 64 for rebalance)",
  },
  "dry-run": {
    type: "bool",
    default: false,
    usage: "rebalance: print how many keys and bytes would move, change nothing",
  },
  "skip-unreadable": {
    type: "bool",
    default: false,
    usage:
      "rebuild: rebuild from the volumes whose root can be read, leaving the index marked incomplete (without it, one unreadable volume stops the run)",
  },
  force: {
    type: "bool",
    default: false,
    usage: "rebalance: move keys even while a live master places keys otherwise (other " +
      "-volumes, -replicas, -subvolumes or -colocate)",
  },
  md5: { type: "bool", default: false, usage: "verify: also read every replica and check its MD5" },
  repair: {
    type: "bool",
    default: false,
    usage:
      "verify: re-copy bad replicas, delete old orphans, expired writes, ended uploads' part records",
  },
  grace: {
    type: "duration",
    default: 3_600_000,
    usage: "verify -repair: delete only orphan files older than this",
  },
};

/**
 * -concurrency, checked; 0 (unset) is the tool's own default. Listings
 * (rebuild, verify) go best at 16 here, rebalance's small requests at 64
 * (BENCHMARKS.md: 100k keys on 2 cores).
 */
export function concurrencyOf(flags: FlagValues, byDefault = 16): number {
  const n = (flags.concurrency ?? 0) as number;
  if (n === 0) return byDefault;
  if (!(n >= 1)) {
    throw new FlagError(
      "-concurrency must be at least 1 (0, the default, is the tool's own: 16, 64 for rebalance)",
    );
  }
  return n;
}

/**
 * -grace, checked: orphans younger than it are kept. A negative one would
 * take the files of writes still in flight.
 */
export function graceOf(flags: FlagValues): number {
  const ms = (flags.grace ?? 3_600_000) as number;
  if (ms < 0) throw new FlagError("-grace must not be negative");
  return ms;
}
