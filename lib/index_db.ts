// The index: every Deno KV access of the master and the tools goes through
// here. A key's record lives at ["k", <key bytes>]; Deno KV orders byte parts
// bytewise, so prefix listing is a range scan.
import { GroupCommit, retryBusy } from "./group_commit.ts";
import { fromRecord, type Record, type State, toRecord } from "./record.ts";

const NS = "k";

/** Deno KV's limit on an encoded key. */
export const KV_KEY_MAX = 2048;

/**
 * Encoded size of ["k", key] in Deno KV's tuple encoding: the "k" part takes
 * 3 bytes, a byte string 2 more, and each zero byte is escaped to two.
 */
export function encodedKeySize(key: Uint8Array): number {
  let zeros = 0;
  for (const b of key) if (b === 0) zeros++;
  return 3 + 2 + key.length + zeros;
}

export function keyFits(key: Uint8Array): boolean {
  return encodedKeySize(key) <= KV_KEY_MAX;
}

export interface Entry {
  rec: Record;
  versionstamp: string;
}

export interface ListOptions {
  /** Resume from this key (inclusive); keys before the prefix are skipped. */
  start?: Uint8Array;
  state: State;
  /** At most this many keys; 0 = no limit. */
  limit: number;
  /** Stop and report `tooMany` past this many keys (mkv: 413). */
  cap: number;
}

export interface ListResult {
  keys: Uint8Array[];
  /** First key of the next page, or null. */
  next: Uint8Array | null;
  tooMany: boolean;
}

export class Index {
  readonly kv: Deno.Kv;
  readonly commits: GroupCommit;

  constructor(kv: Deno.Kv) {
    this.kv = kv;
    this.commits = new GroupCommit(kv);
  }

  async get(key: Uint8Array): Promise<Entry | null> {
    const e = await retryBusy(() => this.kv.get([NS, key]));
    return entryOf(e);
  }

  /**
   * Sets (or with `rec: null` deletes) a key's record if its versionstamp is
   * still `expect` (null: the key must not exist). Resolves to the new
   * versionstamp, or null when another writer got there first. Durable when
   * it resolves: the commit is fsynced.
   */
  cas(
    key: Uint8Array,
    expect: string | null,
    rec: Record | null,
  ): Promise<string | null> {
    const value = rec === null ? null : fromRecord(rec);
    // Deno KV's own limits reject a commit; callers map that to 5xx.
    return this.commits.write({
      key: [NS, key],
      expect,
      value,
      size: rec === null ? 0 : recordSize(rec),
      keySize: encodedKeySize(key),
    });
  }

  /** Writes a record unconditionally (rebuild); group-committed too. */
  async set(key: Uint8Array, rec: Record): Promise<void> {
    await this.commits.write({
      key: [NS, key],
      expect: undefined,
      value: fromRecord(rec),
      size: recordSize(rec),
      keySize: encodedKeySize(key),
    });
  }

  /** Removes every record (rebuild starts from nothing, as mkv's). */
  async clear(): Promise<number> {
    let n = 0;
    let atomic = this.kv.atomic();
    let inAtomic = 0;
    for await (const e of this.kv.list({ prefix: [NS] })) {
      atomic.delete(e.key);
      n++;
      // Keys up to 2 KiB each: 30 stay under the 80 KiB key limit.
      if (++inAtomic === 30) {
        await atomic.commit();
        atomic = this.kv.atomic();
        inAtomic = 0;
      }
    }
    if (inAtomic > 0) await atomic.commit();
    return n;
  }

  /** Every record, in key order (rebalance, verify). */
  async *entries(): AsyncGenerator<[Uint8Array, Entry]> {
    for await (const e of this.kv.list({ prefix: [NS] })) {
      const entry = entryOf(e);
      if (entry) yield [e.key[1] as Uint8Array, entry];
    }
  }

  /** Keys starting with `prefix` in one state, bytewise order, paged. */
  async list(prefix: Uint8Array, opts: ListOptions): Promise<ListResult> {
    let from = opts.start && compare(opts.start, prefix) > 0 ? opts.start : prefix;
    // A start longer than any key can be: every key at or after it is after
    // its longest storable head, so list from that head, skipping the head.
    let skip: Uint8Array | null = null;
    if (!keyFits(from)) {
      from = skip = longestFittingHead(from);
      if (compare(from, prefix) < 0) return { keys: [], next: null, tooMany: false };
    }
    const end = successor(prefix);
    // A start past the prefix's range: nothing to list.
    if (end && compare(from, end) >= 0) return { keys: [], next: null, tooMany: false };
    const selector: Deno.KvListSelector = end
      ? { start: [NS, from], end: [NS, end] }
      : { prefix: [NS], start: [NS, from] };
    const keys: Uint8Array[] = [];
    for await (const e of this.kv.list(selector, { batchSize: 500 })) {
      const rec = toRecord(e.value);
      if (!rec || rec.state !== opts.state) continue;
      const key = e.key[1] as Uint8Array;
      if (skip && compare(key, skip) === 0) continue;
      if (opts.limit > 0 && keys.length === opts.limit) {
        return { keys, next: key, tooMany: false };
      }
      if (keys.length >= opts.cap) return { keys, next: null, tooMany: true };
      keys.push(key);
    }
    return { keys, next: null, tooMany: false };
  }

  close() {
    this.kv.close();
  }
}

function entryOf(e: Deno.KvEntryMaybe<unknown>): Entry | null {
  if (e.versionstamp === null) return null;
  const rec = toRecord(e.value);
  if (!rec) throw new Error(`Corrupt index record for key ${String(e.key[1])}`);
  return { rec, versionstamp: e.versionstamp };
}

function recordSize(rec: Record): number {
  let n = 64 + rec.hash.length + (rec.owner?.length ?? 0);
  for (const v of rec.rvolumes) n += v.length + 4;
  return n;
}

function compare(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function longestFittingHead(key: Uint8Array): Uint8Array {
  let n = 0;
  let size = encodedKeySize(new Uint8Array());
  while (n < key.length && size + (key[n] === 0 ? 2 : 1) <= KV_KEY_MAX) {
    size += key[n] === 0 ? 2 : 1;
    n++;
  }
  return key.slice(0, n);
}

/** The smallest byte string greater than every string starting with p. */
function successor(p: Uint8Array): Uint8Array | null {
  let end = p.length;
  while (end > 0 && p[end - 1] === 0xff) end--;
  if (end === 0) return null;
  const s = p.slice(0, end);
  s[end - 1]++;
  return s;
}
