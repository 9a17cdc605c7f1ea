// Masters placing keys otherwise (another -volumes, as while volumes are
// added one master at a time) share keys: a write on one that leaves the
// key's old copies on a volume it no longer places the key on (a PUT over
// an unlinked key, a REPLACE, a REBALANCE, the rebalance tool) removes them
// once the new value is live. Another master places the key on that very
// volume: a removal that lands after its write there (a DELETE slow to be
// carried out) took its acknowledged value. The key stays held until those
// removals are answered.
import {
  Cluster,
  MAIN,
  randomBytes,
  randomKey,
  recordOf,
  runMain,
  type SpawnedMaster,
  status,
  volumeFiles,
} from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { assertServes, VolumeProxy } from "./replace_faults.ts";
import { key2path, key2volume, md5, toHex } from "../../lib/keys.ts";
import { lockIndex } from "../lock_index.ts";

/**
 * Holds each DELETE of `path`, unsent, until released; `seen` resolves when
 * the first comes, `landed` once the volume has answered it.
 */
class HeldDelete extends VolumeProxy {
  readonly #seen = Promise.withResolvers<void>();
  readonly #landed = Promise.withResolvers<void>();
  path = "";

  get seen(): Promise<void> {
    return this.#seen.promise;
  }

  get landed(): Promise<void> {
    return this.#landed.promise;
  }

  protected override async handle(req: Request): Promise<Response> {
    if (req.method !== "DELETE" || !this.path || !new URL(req.url).pathname.endsWith(this.path)) {
      return await this.forward(req);
    }
    this.#seen.resolve();
    await this.released;
    const res = await this.forward(req);
    this.#landed.resolve();
    return res;
  }
}

/** What a story of the race is told with: the two placements and the held volume. */
interface Placements {
  c: Cluster;
  /** A master placing keys on `held` only. */
  old: string;
  /** A master placing keys on another volume only. */
  now: string;
  /** That master's process. */
  nowMaster: SpawnedMaster;
  held: HeldDelete;
  flags: string[];
}

const FLAGS = ["-replicas", "1", "-voltimeout", "200ms"];

/** Runs `story` on a cluster with two masters placing keys otherwise (`extra` flags added). */
async function withPlacements(
  story: (p: Placements) => Promise<void>,
  extra: string[] = [],
): Promise<void> {
  const c = await Cluster.start();
  const held = new HeldDelete(c.volumes[0]);
  const flags = [...FLAGS, ...extra];
  // The old placement writes through the proxy; the new one to another volume.
  const old = await c.spawnMaster(flags, {}, { volumes: [held.volume] });
  const now = await c.spawnMaster(flags, {}, { volumes: [c.volumes[1]] });
  try {
    await story({ c, old: old.url, now: now.url, nowMaster: now, held, flags });
  } finally {
    await now.stop();
    await old.stop();
    await held.stop();
    await c.stop();
  }
}

/**
 * `key`, its old copy on the held volume (written by the old placement),
 * is written by the new placement (`write`, answering `expected`): while
 * its removal of the old copy is held back, the old placement deletes the
 * key and writes its next value there (when it may: not while the key is
 * held), and that value is served once the removal is answered.
 */
async function assertNextValueKept(
  p: Placements,
  key: string,
  write: { run: () => Promise<Response>; expected: number },
): Promise<void> {
  const { old, held } = p;
  held.path = key2path(new TextEncoder().encode(key));
  const writing = write.run();
  await held.seen;
  let last = null;
  if (await status(old + key, { method: "DELETE" }) === 204) {
    // The key's new value is on a volume of its own: the old master puts its next one back.
    last = randomBytes(300);
    assertEquals(await status(old + key, { method: "PUT", body: last }), 201);
  }
  held.release();
  const res = await writing;
  assertEquals(res.status, write.expected, await res.text());
  if (last === null) {
    assertEquals(await status(old + key, { method: "DELETE" }), 204);
    last = randomBytes(300);
    assertEquals(await status(old + key, { method: "PUT", body: last }), 201);
  }
  await assertServes(old, key, last);
}

Deno.test("a PUT over an unlinked key placed elsewhere holds the key until its old copy is removed: another master's value written there meanwhile stays", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    assertEquals(await status(p.old + key, { method: "UNLINK" }), 204);
    await assertNextValueKept(p, key, {
      run: () => fetch(p.now + key, { method: "PUT", body: randomBytes(200) }),
      expected: 201,
    });
  });
});

Deno.test("a REPLACE of a key placed elsewhere holds the key until its old copy is removed: another master's value written there meanwhile stays", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    await assertNextValueKept(p, key, {
      run: () => fetch(p.now + key, { method: "REPLACE", body: randomBytes(200) }),
      expected: 201,
    });
  });
});

Deno.test("a REBALANCE off a volume dropped from -volumes holds the key until its old copy is removed: another master's value written there meanwhile stays", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    await assertNextValueKept(p, key, {
      run: () => fetch(p.now + key, { method: "REBALANCE" }),
      expected: 204,
    });
  });
});

Deno.test("the rebalance tool off a volume dropped from -volumes holds the key until its old copy is removed: another master's value written there meanwhile stays", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    await assertNextValueKept(p, key, {
      run: () => rebalanceTool(p),
      expected: 200,
    });
  });
});

/**
 * The rebalance tool run with the new placement's flags (-force: the old
 * placement's master runs beside it), as a Response: 200 when it exited 0,
 * else 500, its stderr the body.
 */
async function rebalanceTool(p: Placements): Promise<Response> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "rebalance", "-force", "-db", p.c.db, "-volumes", p.c.volumes[1]]
      .concat(p.flags),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  return new Response(stderr, { status: out.code === 0 ? 200 : 500 });
}

const WAITING =
  "A volume has yet to answer for this key's last write: retry once -lease has passed";

/**
 * `key`, its old copy on the held volume, is written by the new placement
 * (`write`, answering `expected`), its removal of the old copy never
 * answered (held past the master's bound on it, 2 s): the volume may carry
 * it out yet, so the key's writers wait out the lease.
 */
async function assertWritersWait(
  p: Placements,
  key: string,
  write: { run: () => Promise<Response>; expected: number },
): Promise<void> {
  p.held.path = key2path(new TextEncoder().encode(key));
  const res = await write.run();
  assertEquals(res.status, write.expected, await res.text());
  const del = await fetch(p.old + key, { method: "DELETE" });
  assertEquals([del.status, (await del.text()).startsWith(WAITING)], [409, true]);
}

Deno.test("a PUT over an unlinked key placed elsewhere whose old copy's removal went unanswered keeps the key from writers until its lease runs out", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    assertEquals(await status(p.old + key, { method: "UNLINK" }), 204);
    await assertWritersWait(p, key, {
      run: () => fetch(p.now + key, { method: "PUT", body: randomBytes(200) }),
      expected: 201,
    });
  });
});

Deno.test("a REPLACE of a key placed elsewhere whose old copy's removal went unanswered keeps the key from writers until its lease runs out", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    await assertWritersWait(p, key, {
      run: () => fetch(p.now + key, { method: "REPLACE", body: randomBytes(200) }),
      expected: 201,
    });
  });
});

Deno.test("a REBALANCE whose old copy's removal went unanswered keeps the key from writers until its lease runs out", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    await assertWritersWait(p, key, {
      run: () => fetch(p.now + key, { method: "REBALANCE" }),
      expected: 204,
    });
  });
});

/**
 * `key`, its old copy on the held volume (written by the old placement), is
 * written by the new placement (`write`): once its value is live and its
 * removal of the old copy is on its way (held back), its master is paused
 * (SIGSTOP) past its lease (2 s) and heartbeats. Meanwhile the old
 * placement takes the key and deletes it, the removal lands, and the old
 * placement puts the key's next value (`next`) on the held volume. The
 * write's answer once its master is resumed.
 */
async function pausedAmidOldCopyRemoval(
  p: Placements,
  key: string,
  write: { run: () => Promise<Response>; next: Uint8Array<ArrayBuffer> },
): Promise<Response> {
  p.held.path = key2path(new TextEncoder().encode(key));
  const writing = write.run();
  await p.held.seen;
  const pid = p.nowMaster.proc.pid;
  Deno.kill(pid, "SIGSTOP");
  try {
    await new Promise((r) => setTimeout(r, 2600));
    assertEquals(await status(p.old + key, { method: "DELETE" }), 204);
    p.held.release();
    await p.held.landed;
    assertEquals(await status(p.old + key, { method: "PUT", body: write.next }), 201);
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
  return await writing;
}

/**
 * After pausedAmidOldCopyRemoval, the resumed writer removed nothing more:
 * `next` is the key's value, the index names its replica alone, unleased,
 * and the held volume holds its file, the new placement's volume none.
 */
async function assertNextValueAlone(p: Placements, key: string, next: Uint8Array) {
  await assertServes(p.old, key, next);
  const encoded = new TextEncoder().encode(key);
  const replica = key2volume(encoded, [p.held.volume], 1, 10)[0];
  const { mtime: _, ...rec } = (await recordOf(p.c, key))!;
  assertEquals(rec, {
    state: "live",
    rvolumes: [replica],
    hash: toHex(md5(next)),
    size: next.length,
  });
  // The held volume, behind its proxy's name.
  const subvolume = replica.slice(replica.indexOf("/"));
  assertEquals(await volumeFiles(p.c.volumes[0]), [subvolume + key2path(encoded)]);
  assertEquals(await volumeFiles(p.c.volumes[1]), []);
}

/** A -lease the pause outlasts; a -voltimeout it does not, so the held removal counts as answered. */
const PAUSED = ["-lease", "2s", "-voltimeout", "10s"];

Deno.test("a PUT whose master is paused past its lease once its value is live answers 201, though another master took the key before its old copy's removal was answered", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    assertEquals(await status(p.old + key, { method: "UNLINK" }), 204);
    const next = randomBytes(300);
    const res = await pausedAmidOldCopyRemoval(p, key, {
      run: () => fetch(p.now + key, { method: "PUT", body: randomBytes(200) }),
      next,
    });
    assertEquals([res.status, await res.text()], [201, ""]);
    await assertNextValueAlone(p, key, next);
  }, PAUSED);
});

Deno.test("a REPLACE whose master is paused past its lease once its switch is recorded answers 201, though another master took the key before its old copy's removal was answered", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    const next = randomBytes(300);
    const res = await pausedAmidOldCopyRemoval(p, key, {
      run: () => fetch(p.now + key, { method: "REPLACE", body: randomBytes(200) }),
      next,
    });
    assertEquals([res.status, await res.text()], [201, ""]);
    await assertNextValueAlone(p, key, next);
  }, PAUSED);
});

Deno.test("a REBALANCE whose master is paused past its lease once its move is recorded answers 204, though another master took the key before its old copy's removal was answered", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    const next = randomBytes(300);
    const res = await pausedAmidOldCopyRemoval(p, key, {
      run: () => fetch(p.now + key, { method: "REBALANCE" }),
      next,
    });
    assertEquals([res.status, await res.text()], [204, ""]);
    await assertNextValueAlone(p, key, next);
  }, PAUSED);
});

/**
 * `key`, its old copy on the held volume (written by the old placement), is
 * written by the new placement (`write`, its value `value`, none for a
 * REBALANCE): once its new record is in the index and its removal of the
 * old copy is on its way (held back), another process takes the index's
 * write lock, and a GET on the old placement is served `value`. The
 * removal then lands, and the write ending the claim waits on the lock
 * past the master's retries (15 s). The write's answer, the lock released
 * after it.
 */
async function lockedAmidOldCopyRemoval(
  p: Placements,
  key: string,
  write: { run: () => Promise<Response>; value: Uint8Array },
): Promise<Response> {
  p.held.path = key2path(new TextEncoder().encode(key));
  const writing = write.run();
  await p.held.seen;
  const unlock = lockIndex(`${p.c.db}/index.sqlite3`);
  try {
    await assertServes(p.old, key, write.value);
    p.held.release();
    return await writing;
  } finally {
    unlock();
  }
}

/**
 * After lockedAmidOldCopyRemoval: the written `value` is the key's, where
 * the new placement put it (its claim's lease left to run out), its old
 * copy gone, and a PUT of the key meets it (403).
 */
async function assertWrittenAlone(p: Placements, key: string, value: Uint8Array) {
  await assertServes(p.now, key, value);
  const encoded = new TextEncoder().encode(key);
  const replica = key2volume(encoded, [p.c.volumes[1]], 1, 10)[0];
  const { mtime: _m, owner: _o, until: _u, ...rec } = (await recordOf(p.c, key))!;
  assertEquals(rec, {
    state: "live",
    rvolumes: [replica],
    hash: toHex(md5(value)),
    size: value.length,
  });
  assertEquals(await volumeFiles(p.c.volumes[0]), []);
  const subvolume = replica.slice(replica.indexOf("/"));
  assertEquals(await volumeFiles(p.c.volumes[1]), [subvolume + key2path(encoded)]);
  assertEquals(await status(p.now + key, { method: "PUT", body: "again" }), 403);
}

Deno.test("a PUT whose value is live answers 201 when the index, locked past retrying, refuses the write ending its claim: a reader was served the value", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    assertEquals(await status(p.old + key, { method: "UNLINK" }), 204);
    const value = randomBytes(200);
    const res = await lockedAmidOldCopyRemoval(p, key, {
      run: () => fetch(p.now + key, { method: "PUT", body: value }),
      value,
    });
    assertEquals([res.status, await res.text()], [201, ""]);
    await assertWrittenAlone(p, key, value);
  });
});

Deno.test("a REPLACE whose new value is live answers 201 when the index, locked past retrying, refuses the write ending its claim: a reader was served the value", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    const value = randomBytes(200);
    const res = await lockedAmidOldCopyRemoval(p, key, {
      run: () => fetch(p.now + key, { method: "REPLACE", body: value }),
      value,
    });
    assertEquals([res.status, await res.text()], [201, ""]);
    await assertWrittenAlone(p, key, value);
  });
});

Deno.test("a REBALANCE whose move is recorded answers 204 when the index, locked past retrying, refuses the write ending its claim: a reader was served the moved copy", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    const value = randomBytes(100);
    assertEquals(await status(p.old + key, { method: "PUT", body: value }), 201);
    const res = await lockedAmidOldCopyRemoval(p, key, {
      run: () => fetch(p.now + key, { method: "REBALANCE" }),
      value,
    });
    assertEquals([res.status, await res.text()], [204, ""]);
    await assertWrittenAlone(p, key, value);
  });
});

/**
 * `key`'s old copy on the held volume, is written by the new placement
 * (`write`, answering `expected`): its removal of the old copy is held,
 * never carried out (past the master's bound on it, 2 s), and the index is
 * locked meanwhile, so the write ending its claim is refused (past 10 s of
 * retries). The write's answer, and the old copy's file on the held volume.
 */
async function unansweredThenRefused(
  p: Placements,
  key: string,
  write: { run: () => Promise<Response>; expected: number },
): Promise<string> {
  p.held.path = key2path(new TextEncoder().encode(key));
  const [old] = await volumeFiles(p.c.volumes[0]);
  const writing = write.run();
  await p.held.seen;
  const unlock = lockIndex(`${p.c.db}/index.sqlite3`);
  try {
    const res = await writing;
    assertEquals([res.status, await res.text()], [write.expected, ""]);
  } finally {
    unlock();
  }
  return old;
}

/**
 * After unansweredThenRefused: the old copy (`old`, a file of the held
 * volume) is recorded nowhere, and once the key's lease has run out,
 * verify names it an orphan and -repair deletes it.
 */
async function assertVerifyRemoves(p: Placements, key: string, old: string) {
  const rec = (await recordOf(p.c, key))!;
  const subvolume = old.slice(0, old.indexOf("/", 1));
  assertEquals(rec.rvolumes.includes(p.held.volume + subvolume), false);
  assertEquals(await volumeFiles(p.c.volumes[0]), [old]);
  // verify passes over a key whose lease has yet to run out.
  await new Promise((r) => setTimeout(r, Math.max(0, rec.until! - Date.now()) + 100));
  const volumes = `${p.c.volumes[0]},${p.c.volumes[1]}`;
  const args = ["verify", "-volumes", volumes, "-replicas", "1", "-db", p.c.db];
  const repaired = await runMain([...args, "-repair", "-grace", "0s"]);
  const url = `http://${p.c.volumes[0]}${old}`;
  const named = `orphan file: ${url} (${JSON.stringify(key)} is not recorded on ` +
    `${p.c.volumes[0]}${subvolume})`;
  assert(repaired.stdout.includes(named), repaired.stdout + repaired.stderr);
  assertEquals(repaired.code, 0, repaired.stdout + repaired.stderr);
  assertEquals(await volumeFiles(p.c.volumes[0]), []);
}

Deno.test("a REPLACE whose old copy's removal went unanswered and whose last index write the index refused answers 201; verify -repair finds that copy, recorded nowhere, and removes it", async () => {
  await withPlacements(async (p) => {
    const key = randomKey();
    assertEquals(await status(p.old + key, { method: "PUT", body: randomBytes(100) }), 201);
    const value = randomBytes(200);
    const old = await unansweredThenRefused(p, key, {
      run: () => fetch(p.now + key, { method: "REPLACE", body: value }),
      expected: 201,
    });
    await assertServes(p.now, key, value);
    await assertVerifyRemoves(p, key, old);
  }, ["-lease", "3s"]);
});
