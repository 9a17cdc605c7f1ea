// `mkv rebalance -volumes NEW_LIST -db DIR`: moves every key whose recorded
// volumes differ from where the hash now puts it; masters may run beside it
// (each key is held while it moves, as REBALANCE holds it).
// Each move copies first, switches the index, then deletes (lib/store.ts),
// so it can be killed at any moment and run again.
//
// -concurrency keys move at once; progress goes to stderr. -dry-run prints
// how many keys and bytes would move and changes nothing.
//
// It places keys by its own flags: while a live master (or tool) of the
// index places them otherwise, it refuses (exit 1, naming the flags that
// differ) unless -force; its heartbeat record carries its flags, so the
// masters name it on ?status and in their log (lib/membership.ts).
import type { FlagValues } from "../lib/flags.ts";
import { requireDb, storeOptions } from "../lib/config.ts";
import {
  firstAnswer,
  joinIndex,
  LOCKED_FOR,
  MEMBER_INTERVAL,
  openExistingIndex,
} from "../lib/open.ts";
import {
  describePlacement,
  livePlacements,
  memberName,
  type OtherPlacement,
  type Placement,
  placementDifference,
  placementOf,
} from "../lib/membership.ts";
import { needsRebalance } from "../lib/keys.ts";
import { pool } from "../lib/pool.ts";
import { nameSome, plural, Progress } from "../lib/progress.ts";
import { checkNames, namesProblem } from "../lib/aliases.ts";
import { type Outcome, Store } from "../lib/store.ts";
import type { Index } from "../lib/index_db.ts";
import { Fenced, LOCKED } from "../lib/group_commit.ts";
import { concurrencyOf } from "../lib/tool_flags.ts";
import { logError, logInfo, logWarn } from "../lib/log.ts";

export async function rebalance(flags: FlagValues): Promise<number> {
  const opts = storeOptions(flags);
  const concurrency = concurrencyOf(flags, 64);
  const dryRun = flags["dry-run"] === true;
  const index = await openExistingIndex(requireDb(flags), "rebalance");
  const locked = (why: string) =>
    `rebalance: ${why}; nothing moved: run rebalance again once the lock is released`;
  await firstAnswer(index, locked(LOCKED_FOR));
  const id = `rebalance:${Deno.pid}`;
  const placement = placementOf(opts);
  const warned = new Set<string>();
  if (!(await othersAgree(index, { id, placement, force: flags.force === true, dryRun, warned }))) {
    index.close();
    return 1;
  }
  // A writer of the index: a master running by mistake stops trusting its caches.
  if (!dryRun) {
    await joinIndex(index, id, {
      placement,
      locked: locked(LOCKED),
      // One that starts meanwhile: said as it is seen.
      onPlacements: (seen) => {
        for (const o of seen) logPlacement(o, placement, { refused: false, dryRun, warned });
      },
    });
  }
  const store = new Store(index, opts);
  const progress = new Progress("rebalance", { main: "keys" });
  try {
    const plan = await planMoves(index, store, progress);
    if (dryRun) {
      progress.done();
      logInfo(
        `rebalance: dry run: ${plan.todo.length} of ${plural(progress.get("scanned"), "key")} ` +
          `would move, ${plural(plan.bytes, "byte")}` +
          (plan.unknown > 0 ? ` (and ${plural(plan.unknown, "key")} of unknown size)` : ""),
      );
      return 0;
    }
    // A master among -volumes would take each copy for a key of its own.
    const names = await checkNames(opts.volumes, plan.recorded, Math.max(opts.voltimeout, 10_000));
    const wrong = namesProblem(names);
    if (wrong !== null) {
      progress.stop();
      logError(`rebalance: ${wrong}; nothing moved`);
      return 1;
    }
    progress.total = plan.todo.length;
    const moves = await moveAll(index, store, { todo: plan.todo, concurrency, progress });
    progress.done();
    return report(moves, progress.get("gone"));
  } finally {
    progress.stop();
    await index.membership?.leave();
    index.close();
  }
}

/**
 * Whether rebalance may go on beside the live members of the index: each
 * one placing keys otherwise is said (once), and refuses the run unless
 * -force.
 */
async function othersAgree(
  index: Index,
  run: { id: string; placement: Placement; force: boolean; dryRun: boolean; warned: Set<string> },
): Promise<boolean> {
  const { id, placement, force, dryRun, warned } = run;
  const others = await livePlacements(index, { id, mine: placement, interval: MEMBER_INTERVAL });
  for (const o of others) logPlacement(o, placement, { refused: !force, dryRun, warned });
  return others.length === 0 || force;
}

/** The keys to move, known up front for the ETA (keys are small), and what they hold. */
interface Plan {
  todo: Uint8Array[];
  /** The volumes their records name (checked for aliases before anything moves). */
  recorded: Set<string>;
  bytes: number;
  /** Keys of unknown size (rebuilt from mkv's volumes). */
  unknown: number;
}

async function planMoves(index: Index, store: Store, progress: Progress): Promise<Plan> {
  const plan: Plan = { todo: [], recorded: new Set(), bytes: 0, unknown: 0 };
  for await (const [key, e] of index.entries()) {
    progress.add("scanned");
    if (e.rec.state === "writing") continue;
    if (!needsRebalance(e.rec.rvolumes, store.kvolumes(key))) continue;
    plan.todo.push(key);
    for (const v of e.rec.rvolumes) plan.recorded.add(v);
    if (e.rec.size >= 0) plan.bytes += e.rec.size;
    else plan.unknown++;
  }
  return plan;
}

/** What the moves came to: keys moved, failures and old copies left, each named. */
interface Moves {
  moved: number;
  failed: string[];
  leftovers: string[];
}

/**
 * Moves every key of `todo`, `concurrency` at once. A key held by another
 * writer (409) is tried once more when the leases on such keys have run out.
 */
async function moveAll(
  index: Index,
  store: Store,
  run: { todo: Uint8Array[]; concurrency: number; progress: Progress },
): Promise<Moves> {
  const { todo, concurrency, progress } = run;
  const moves: Moves = { moved: 0, failed: [], leftovers: [] };
  let held: Uint8Array[] = [];
  const move = async (key: Uint8Array, last: boolean) => {
    // A rebuilt key's replicas are compared before one is copied (Store's #compareUnhashed).
    const out = await store.rebalance(key, { unlinked: true }).catch(thrown);
    if (out.status === 204) {
      moves.moved++;
      progress.add("keys");
      if (out.message) moves.leftovers.push(`${nameOf(key)}: ${out.message}`);
    } else if (out.status === 409 && !last) {
      held.push(key);
    } else if (out.status === 404) {
      // Deleted (or unlinked then deleted) since the scan, by a master
      // running beside: nothing left to move, and nothing failed.
      progress.add("gone");
    } else {
      moves.failed.push(`${nameOf(key)}: ${out.status} ${out.message ?? ""}`);
      progress.add("failed");
    }
  };
  await pool(todo, concurrency, (key) => move(key, false));
  if (held.length > 0) {
    // Claimed by a write in flight, or by a rebalance killed midway (its
    // holds last their lease): once the leases run out, once more.
    const retry = held;
    held = [];
    const wait = await leaseLeft(index, retry);
    logWarn(
      `rebalance: ${plural(retry.length, "key")} held by another writer; retrying in ${
        Math.ceil(wait / 1000)
      }s`,
    );
    await new Promise((r) => setTimeout(r, wait));
    await pool(retry, concurrency, (key) => move(key, true));
  }
  return moves;
}

/** Says what the moves came to; the exit code: 1 when a key failed. */
function report(moves: Moves, gone: number): number {
  const { moved, failed, leftovers } = moves;
  logInfo(
    `rebalance: moved ${plural(moved, "key")}, ${failed.length} failed` +
      (gone > 0 ? `, ${gone} deleted meanwhile` : ""),
  );
  nameSome(failed);
  if (leftovers.length > 0) {
    logInfo(
      `rebalance: ${plural(leftovers.length, "old copy", "old copies")} could not be deleted ` +
        `(each named: on a volume of -volumes, kept in its key's record, the key unbalanced ` +
        `for the next rebalance; on one not in them, an orphan, which verify -repair removes ` +
        `on the volumes it is given)`,
    );
    nameSome(leftovers, 50, "warn");
  }
  return failed.length > 0 ? 1 : 0;
}

/**
 * Says that `o`, a live member of the index, places keys otherwise than this
 * rebalance (once per member): refused (nothing moved), or, -force, moving
 * keys where that member does not place them.
 */
function logPlacement(
  o: OtherPlacement,
  mine: Placement,
  run: { refused: boolean; dryRun: boolean; warned: Set<string> },
) {
  if (run.warned.has(o.id)) return;
  run.warned.add(o.id);
  const what = `rebalance: live ${memberName(o.id)} places keys by ` +
    `${describePlacement(o.placement)}; this rebalance by ${
      placementDifference(mine, o.placement)
    }`;
  const fields = { other: o.id, placement: o.placement, mine };
  if (run.refused) {
    logError(
      `${what}: it would move keys where that member does not place them (its REBALANCE moves ` +
        `them back, its PUTs go elsewhere; a lower -replicas deletes copies); ` +
        `${run.dryRun ? "nothing counted" : "nothing moved"}: give rebalance the masters' flags, ` +
        `or restart (or stop) the masters with the new ones first, or -force`,
      fields,
    );
  } else {
    logWarn(
      `Warning: ${what}: -force: keys are moved where that member does not place them`,
      fields,
    );
  }
}

/**
 * A move that threw: its key fails, and the others go on. Fenced: the index
 * refused this tool's write (taken for gone by another member: paused past
 * its heartbeat), and the tool joins again before its next one.
 */
function thrown(err: unknown): Outcome {
  if (err instanceof Fenced) return { status: 503, message: `${err.message}: run rebalance again` };
  return { status: 500, message: `Internal error: ${err instanceof Error ? err.message : err}` };
}

const decoder = new TextDecoder();

/** A key as the tools name it: quoted, so that one with a newline stays on its line. */
function nameOf(key: Uint8Array): string {
  return JSON.stringify(decoder.decode(key));
}

/** Ms until the longest lease on these keys runs out (a little more, for clocks). */
async function leaseLeft(index: Index, keys: Uint8Array[]): Promise<number> {
  let until = 0;
  for (const key of keys) until = Math.max(until, (await index.get(key))?.rec.until ?? 0);
  return Math.max(0, until - Date.now()) + 100;
}
