// The index: every Deno KV access of the master and the tools goes through
// here. A key's record lives at ["k", <key bytes>]; Deno KV orders byte parts
// bytewise, so prefix listing is a range scan.
import { unlessAborted } from "./abort.ts";
import { Bloom } from "./bloom.ts";
import { compare, latin1, successor } from "./bytes.ts";
import {
  type Cas,
  type Fence,
  Fenced,
  GroupCommit,
  IndexGone,
  lostRegistration,
  retryBusy,
  withMark,
} from "./group_commit.ts";
import { volumeOfReplica } from "./keys.ts";
import type { Membership, Placement } from "./membership.ts";
import { fromRecord, type Meta, type Record, type State, toRecord } from "./record.ts";
import { RecordCache } from "./record_cache.ts";
import type { Algorithm, Checksum } from "./s3_checksum.ts";

const NS = "k";
const MEMBERS = "members";
const FENCES = "fences";
const BUCKETS = "b";
/** A bucket's region, when CreateBucket named one other than us-east-1. */
const BUCKET_REGIONS = "br";
const UPLOADS = "mu";
/**
 * Per bucket, rewritten by each CreateMultipartUpload in it: DeleteBucket
 * removes the bucket's record only if none was made since it listed them.
 */
const BUCKET_UPLOADS = "bu";
const PARTS = "mp";
const COMPLETED = "mc";
/** Set while a rebuild runs, kept when it skipped a volume or could not read every folder. */
const REBUILT = "rebuild";

/** Deno KV's limit on an encoded key. */
export const KV_KEY_MAX = 2048;

/**
 * The longest key the index holds, as messages name it: Deno KV escapes a
 * zero byte to two, so a key with zero bytes is too long under 2043 bytes.
 */
export const KEY_LIMIT = `at most ${KV_KEY_MAX - 5} bytes, a zero byte counting twice`;

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

/** A member's heartbeat record: whose, and its versionstamp (new at every beat). */
export interface MemberRecord {
  id: string;
  versionstamp: string;
  /** How the member places keys (a master's record; older masters' carry none). */
  placement?: Placement;
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

/** Keys a sole master's key filter is sized for at least (1.2 MB). */
const FILTER_MIN = 1_000_000;

/** What the key count of Index.views counts. */
export type KeyCounts = { [s in State]: number } & {
  /** Live and unlinked keys by volume ("host:port", from rvolumes). */
  volumes: { [volume: string]: number };
  /** When the scan started, ms since epoch. */
  at: number;
};

/** Why and since when (ms since epoch) the index lacks keys the volumes hold (markIncomplete). */
export interface Incomplete {
  at: number;
  why: string;
}

/** What ?status and ?metrics show of the index (Index.views). */
export interface ViewFigures {
  /** The key counts of the last scan that finished; null until one has. */
  counts: KeyCounts | null;
  /** The incomplete mark as last read. */
  incomplete: Incomplete | null;
  /** When the read of the mark the views waited on in vain was sent (ms since epoch), or null. */
  unanswered: number | null;
}

/** How long ?status and ?metrics wait on a read of the index before showing the last figures, ms. */
export const VIEW_WAIT = 1000;

/**
 * A figure of the index the views show, read one read at a time: while a
 * read is in flight no other is sent (a view asked for every second must
 * not queue reads on an index that answers none), and the last figure read
 * stays until one answers.
 */
class ViewRead<T> {
  #read: () => Promise<T>;
  #last: { value: T; at: number } | null = null;
  #inFlight: { sent: number; answered: Promise<void> } | null = null;

  constructor(read: () => Promise<T>) {
    this.#read = read;
  }

  /** The figure last read; undefined before any. */
  get last(): T | undefined {
    return this.#last?.value;
  }

  /** When the read in flight was sent (ms since epoch), or null. */
  get sent(): number | null {
    return this.#inFlight?.sent ?? null;
  }

  /** Settles once the read in flight (if any) has: rejected when it failed. */
  get answered(): Promise<void> {
    return this.#inFlight?.answered ?? Promise.resolve();
  }

  /** A figure read elsewhere, sent at `at`: kept unless a newer one was. */
  set(value: T, at = Date.now()) {
    if (!this.#last || this.#last.at <= at) this.#last = { value, at };
  }

  /** Sends a read, unless one is in flight or the last was sent under `maxAge` ms ago. */
  refresh(maxAge: number) {
    if (this.#inFlight || (this.#last && Date.now() - this.#last.at < maxAge)) return;
    const sent = Date.now();
    const answered = this.#read().then((value) => this.set(value, sent)).finally(() => {
      this.#inFlight = null;
    });
    // A read that fails once nobody waits on it is sent again at the next view.
    answered.catch(() => {});
    this.#inFlight = { sent, answered };
  }
}

function countVolumes(byVolume: { [volume: string]: number }, rvolumes: string[]) {
  for (const rv of rvolumes) {
    const v = volumeOfReplica(rv);
    byVolume[v] = (byVolume[v] ?? 0) + 1;
  }
}

export class Index {
  readonly kv: Deno.Kv;
  readonly commits: GroupCommit;
  /** Set by the master: gates the caches below on being the sole writer. */
  membership: Membership | null = null;
  /** Every key in the index (maybe more); null while not known. */
  #bloom: Bloom | null = null;
  /** A filter being filled by a scan; writes meanwhile go to it too. */
  #building: Bloom | null = null;
  /** The scans of the index into a filter, the last one started. */
  #scanning: Promise<void> = Promise.resolve();
  /** Keys a filter is sized for at least. */
  readonly #filterMin: number;
  /** Recent records, by key; `entry: null` records a delete. */
  readonly #cache: RecordCache<Entry | null>;
  /**
   * Lookups of a key's record (get), by what answered: the record cache or
   * the key filter of a sole master, or a read of the index.
   */
  readonly lookups = { cache: 0, filter: 0, index: 0 };

  /** The SQLite file open, when the index is one (watchFile), and what was found of it. */
  #file: { path: string; dev: number; ino: number | null } | null = null;
  #gone: IndexGone | null = null;

  /**
   * `recount`: how old the views' key counts may be before a scan counts
   * again, ms; `filterMin`: keys the key filter is sized for at least;
   * `cacheBytes`: the bound of the record cache (RecordCache); `marked`: a
   * KV Connect index, whose commits carry marks (lib/group_commit.ts MARKS).
   */
  constructor(
    kv: Deno.Kv,
    opts: { recount?: number; filterMin?: number; cacheBytes?: number; marked?: boolean } = {},
  ) {
    this.kv = kv;
    this.#recount = opts.recount ?? 10_000;
    this.#filterMin = opts.filterMin ?? FILTER_MIN;
    this.#cache = new RecordCache(opts.cacheBytes);
    this.commits = new GroupCommit(kv, { check: () => this.checkFile(), marked: opts.marked });
  }

  /**
   * Watches the SQLite file at `path` (the one just opened): once it is
   * removed, or another file put in its place, every write fails with
   * IndexGone (checkFile), since what lands in the open file is lost when
   * it closes and another process would open a new, empty index there.
   */
  watchFile(path: string): void {
    const info = Deno.statSync(path);
    this.#file = { path, dev: info.dev, ino: info.ino };
  }

  /** Throws IndexGone when the watched file is no longer there as opened (it stays gone). */
  checkFile(): void {
    if (this.#gone) throw this.#gone;
    if (!this.#file) return;
    const { path, dev, ino } = this.#file;
    let info: Deno.FileInfo | null = null;
    try {
      info = Deno.statSync(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) return;
    }
    if (info && info.dev === dev && info.ino === ino) return;
    this.#gone = new IndexGone(
      `The index file "${path}" was ${info ? "replaced" : "removed"} while this master ` +
        `had it open: nothing more is written to it; restart the master (and rebuild the ` +
        `index if it is missing keys)`,
    );
    throw this.#gone;
  }

  /**
   * Whether the index answers a read within `ms`. Deno KV's first access
   * of a file whose write lock another process holds waits until the lock
   * is released, however long (a read too): a tool looks first, rather
   * than hang. A read that fails counts as an answer (the next access
   * throws the same). Unanswered, the index is not to be closed: Deno KV's
   * close blocks the process until the read in flight ends.
   */
  async answers(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.kv.get([REBUILT]).then(() => true, () => true),
        new Promise<boolean>((r) => timer = setTimeout(() => r(false), ms)),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Set once checkFile found the index's file removed or replaced. */
  get gone(): IndexGone | null {
    return this.#gone;
  }

  /**
   * A key's record. A sole master answers from memory where it can: a key
   * the filter never saw is absent, a cached record is current.
   */
  async get(key: Uint8Array): Promise<Entry | null> {
    const sole = this.membership?.sole ?? false;
    if (sole) {
      if (this.absent(key)) return null;
      const hit = this.#cache.get(cacheId(key));
      if (hit) {
        this.lookups.cache++;
        return hit.value;
      }
    }
    this.lookups.index++;
    // A read answered after a record was forgotten may be of a stale one.
    const readAt = this.#cache.forgotten;
    const e = await retryBusy(() => this.kv.get([NS, key]));
    const entry = entryOf(e);
    if (sole && entry) this.#cache.remember(cacheId(key), entry, entry.versionstamp, { readAt });
    return entry;
  }

  /** True when the key is certainly not in the index (sole master, filter ready). */
  absent(key: Uint8Array): boolean {
    if (!this.#bloom || !(this.membership?.sole ?? false) || this.#bloom.has(key)) return false;
    this.lookups.filter++;
    return true;
  }

  /** What the record cache holds: records, and the estimate of their memory in bytes. */
  get cacheSize(): { records: number; bytes: number } {
    return { records: this.#cache.size, bytes: this.#cache.bytes };
  }

  /** The cached record of a key (sole master only); undefined when not cached. */
  cached(key: Uint8Array): Entry | null | undefined {
    if (!(this.membership?.sole ?? false)) return undefined;
    const hit = this.#cache.get(cacheId(key));
    if (hit) this.lookups.cache++;
    return hit?.value;
  }

  /** Keeps the newest of what was read or written (versionstamps only grow). */
  #remember(key: Uint8Array, entry: Entry | null, versionstamp: string) {
    this.#cache.remember(cacheId(key), entry, versionstamp);
  }

  /**
   * Called as this master becomes, or stops being, the sole writer: what
   * others wrote meanwhile is unknown, so memory starts over.
   */
  onSole(sole: boolean) {
    this.#cache.clear();
    this.#bloom = null;
    if (sole) this.#scan(this.#filterMin);
  }

  /** Bits of the key filter in use (null: none); for tests. */
  get filterSize(): number | null {
    return this.#bloom?.size ?? null;
  }

  /** Resolves once the scan of the index into a new key filter under way, if any, is over. */
  filterBuilt(): Promise<void> {
    return this.#scanning;
  }

  #scan(capacity: number) {
    this.#scanning = this.#scanIntoBloom(capacity).catch(() => {});
  }

  /**
   * Fills a filter sized for `capacity` keys from the index, and uses it.
   * A full filter's count is of every write it was given (a key written
   * and deleted counts, a PUT's "writing" and "live" twice): the one made
   * from it is sized for twice that, and is made again at the size of the
   * keys it found when that is half as much or less. Otherwise a master
   * writing and deleting fresh keys doubled its filter at every fill, ~1.2
   * bytes kept per write ever made, and the scans' memory with it.
   */
  async #scanIntoBloom(capacity: number) {
    while (true) {
      const next = new Bloom(capacity);
      this.#building = next;
      for await (const e of this.kv.list({ prefix: [NS] }, { batchSize: 1000 })) {
        if (this.#building !== next) return;
        next.add(e.key[1] as Uint8Array);
      }
      if (this.#building !== next || !(this.membership?.sole ?? false)) return;
      this.#building = null;
      this.#bloom = next;
      const fits = this.#filterCapacity(next.count);
      if (fits > capacity / 2) return;
      capacity = fits;
    }
  }

  /** What a filter made now is sized for, given `keys` in it: twice as many. */
  #filterCapacity(keys: number): number {
    return Math.max(this.#filterMin, 2 * keys);
  }

  /** The key counts the views show: a scan at most every `recount` ms. */
  #counts = new ViewRead<KeyCounts>(() => this.#countByState());
  /** The incomplete mark the views show: read at every view. */
  #partial = new ViewRead<Incomplete | null>(() => this.#readIncomplete());
  #recount: number;

  /**
   * What ?status and ?metrics show of the index: its key counts and its
   * incomplete mark, read again (one read of each at a time) and waited on
   * for at most `VIEW_WAIT` ms, after which the figures last read stand in.
   * The mark's read is one key's: when the index has not answered it by
   * then (another process holds its write lock: Deno KV runs reads after
   * the writes it holds up, heartbeats among them), `unanswered` says
   * since when it was sent. A scan of many keys may just take longer. A
   * read that failed within the wait throws.
   */
  async views(): Promise<ViewFigures> {
    this.#counts.refresh(this.#recount);
    this.#partial.refresh(0);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        Promise.all([this.#counts.answered, this.#partial.answered]),
        new Promise((r) => timer = setTimeout(r, VIEW_WAIT)),
      ]);
    } finally {
      clearTimeout(timer);
    }
    return {
      counts: this.#counts.last ?? null,
      incomplete: this.#partial.last ?? null,
      unanswered: this.#partial.sent,
    };
  }

  async #countByState(): Promise<KeyCounts> {
    const n: KeyCounts = { live: 0, unlinked: 0, writing: 0, volumes: {}, at: Date.now() };
    for await (const e of this.kv.list({ prefix: [NS] }, { batchSize: 1000 })) {
      const rec = toRecord(e.value);
      if (!rec) continue;
      n[rec.state]++;
      if (rec.state !== "writing") countVolumes(n.volumes, rec.rvolumes);
    }
    return n;
  }

  /**
   * Marks the index as rebuilt from part of the volumes (`note`: why), or
   * with null as whole again. A rebuild marks it before it starts, so one
   * killed midway leaves the mark too. With the member's fence checked: a
   * rebuild taken for stopped (paused past its heartbeat) fails Fenced,
   * nothing written, rather than mark the index under masters writing again.
   */
  async markIncomplete(note: Incomplete | null): Promise<void> {
    await this.#commitFenced(() =>
      note === null ? this.kv.atomic().delete([REBUILT]) : this.kv.atomic().set([REBUILT], note)
    );
    this.#marked = { look: ++this.#looks, incomplete: note !== null };
  }

  /**
   * Why the index lacks what the volumes hold (see markIncomplete), or null.
   * Each read (the status page's too) also sets `markedIncomplete` (a read
   * that fails sets it too).
   */
  async incomplete(): Promise<Incomplete | null> {
    const partial = await this.#readIncomplete();
    this.#partial.set(partial);
    return partial;
  }

  async #readIncomplete(): Promise<Incomplete | null> {
    const look = ++this.#looks;
    // Until read: a look that fails says the index may be incomplete.
    let incomplete = true;
    try {
      const note = (await this.kv.get<Incomplete>([REBUILT])).value;
      incomplete = note !== null;
      return note;
    } finally {
      // The latest look wins: two heartbeats' reads may end out of order.
      if (look > this.#marked.look) this.#marked = { look, incomplete };
    }
  }

  #looks = 0;
  #marked = { look: 0, incomplete: false };

  /**
   * Whether the index was marked incomplete at the last look (a master
   * looks as it starts and at every heartbeat, lib/membership.ts), or the
   * last look failed: no await, for the writes that must then ask the
   * volumes first (lib/store.ts put).
   */
  get markedIncomplete(): boolean {
    return this.#marked.incomplete;
  }

  /**
   * Writes member `id`'s heartbeat record (`until: 0`: removes it and its
   * fence). Members judge each other by whether the record changes, not by
   * `until` (lib/membership.ts), which is kept for masters of versions that
   * read it.
   */
  async heartbeat(id: string, until: number, placement?: Placement): Promise<void> {
    if (until === 0) {
      await retryBusy(() => this.kv.atomic().delete([MEMBERS, id]).delete([FENCES, id]).commit());
      return;
    }
    // The commit every member makes each second: the status page's word on
    // whether the index takes writes, with no request writing. Not tried
    // again on a locked index once a stopping master has cut off its
    // requests (GroupCommit.stopRetrying): Deno KV runs one operation at a
    // time, and each try holds every commit and read of the master up to 5 s.
    try {
      const record = placement ? { until, placement } : { until };
      await retryBusy(() => this.kv.set([MEMBERS, id], record), 10_000, this.commits.stop);
    } catch (err) {
      this.commits.failed(err);
      throw err;
    }
    this.commits.succeeded();
  }

  /**
   * The fence of member `id` (see lib/membership.ts): `held` if it still
   * stands, else a new one.
   */
  async fence(id: string, held: string | null, opts: { renew?: boolean } = {}): Promise<Fence> {
    const key = [FENCES, id];
    const e = await retryBusy(() => this.kv.get(key));
    if (held !== null && e.versionstamp === held) return { key, versionstamp: held };
    // Removed by another member (this one taken for gone), not to be made anew.
    if (held !== null && opts.renew === false) {
      throw new Fenced(`Taken for stopped by another member of the index (fence of ${id} removed)`);
    }
    const res = await retryBusy(() => this.kv.set(key, { at: Date.now() }));
    return { key, versionstamp: res.versionstamp };
  }

  /** Every member's heartbeat record, and the ids of the members holding a fence. */
  async members(): Promise<{ records: MemberRecord[]; fenced: string[] }> {
    const records: MemberRecord[] = [];
    const list = this.kv.list<{ placement?: Placement }>({ prefix: [MEMBERS] });
    for await (const e of list) {
      const record: MemberRecord = { id: String(e.key[1]), versionstamp: e.versionstamp };
      if (e.value?.placement) record.placement = e.value.placement;
      records.push(record);
    }
    const fenced: string[] = [];
    for await (const f of this.kv.list({ prefix: [FENCES] })) fenced.push(String(f.key[1]));
    return { records, fenced };
  }

  /**
   * Removes the heartbeat records and fences of members taken for gone, so
   * that an index write any of them sent before it stopped can no longer
   * land. Each only while its record is still the one judged (versionstamp
   * null: it had none): a member that beat meanwhile keeps both. True when
   * every one went.
   */
  async evict(gone: { id: string; versionstamp: string | null }[]): Promise<boolean> {
    let all = true;
    for (const m of gone) {
      const key = [MEMBERS, m.id];
      const atomic = this.kv.atomic().check({ key, versionstamp: m.versionstamp })
        .delete(key).delete([FENCES, m.id]);
      if (!(await retryBusy(() => atomic.commit())).ok) all = false;
    }
    return all;
  }

  /**
   * Removes the heartbeat records and fences of every member `kept` does
   * not name (a rebuild, before it empties the index: a write of theirs
   * sent before they stopped then fails rather than land in it). Each
   * record only while it is as `judged` (seen lapsed); a fence without a
   * record, while it has none. Returns the ids of the members whose record
   * is not as judged (they beat since, or joined): those are live, and
   * nothing of theirs is removed.
   */
  async evictAll(judged: MemberRecord[], kept: (id: string) => boolean): Promise<string[]> {
    const was = new Map(judged.map((r) => [r.id, r.versionstamp]));
    const { records, fenced } = await this.members();
    const recorded = new Set(records.map((r) => r.id));
    const live: string[] = [];
    const gone: { id: string; versionstamp: string | null }[] = [];
    for (const r of records) {
      if (kept(r.id)) continue;
      if (was.get(r.id) === r.versionstamp) gone.push(r);
      else live.push(r.id);
    }
    for (const id of fenced) {
      if (!kept(id) && !recorded.has(id)) gone.push({ id, versionstamp: null });
    }
    if (live.length > 0) return live;
    for (const m of gone) {
      // Refused: the record changed, unless another member evicted it meanwhile.
      if (!(await this.evict([m])) && !(await this.#evicted(m.id))) live.push(m.id);
    }
    return live;
  }

  /** Whether member `id` has neither a heartbeat record nor a fence. */
  async #evicted(id: string): Promise<boolean> {
    const [record, fence] = await retryBusy(() => this.kv.getMany([[MEMBERS, id], [FENCES, id]]));
    return record.versionstamp === null && fence.versionstamp === null;
  }

  /**
   * Sets (or with `rec: null` deletes) a key's record if its versionstamp is
   * still `expect` (null: the key must not exist). Resolves to the new
   * versionstamp, or null when another writer got there first. Durable when
   * it resolves: the commit is fsynced. `signal`: dropped, unwritten, if
   * at its abort it still waits for this member to join the index (behind
   * a heartbeat a locked index holds) or is queued for a commit
   * (GroupCommit.write); it then rejects with the signal's reason.
   */
  async cas(
    key: Uint8Array,
    expect: string | null,
    rec: Record | null,
    opts: { signal?: AbortSignal } = {},
  ): Promise<string | null> {
    const fence = await this.#ready(opts.signal);
    // The filter must hold a key before the key can exist.
    if (rec !== null) this.#addToFilters(key);
    let vs: string | null;
    try {
      vs = await this.#write({
        key: [NS, key],
        expect,
        value: rec === null ? null : fromRecord(rec),
        size: rec === null ? 0 : recordSize(rec),
        keySize: encodedKeySize(key),
        fence,
      }, opts);
    } catch (err) {
      // Mostly nothing was written, but a KV Connect commit whose client
      // threw and whose mark could not be read may have landed: what we
      // remember may be stale.
      this.#cache.delete(cacheId(key));
      throw err;
    }
    if (vs !== null) {
      this.#remember(key, rec === null ? null : { rec, versionstamp: vs }, vs);
    } else {
      // Lost to another writer: what we remember may be stale.
      this.#cache.delete(cacheId(key));
    }
    return vs;
  }

  #addToFilters(key: Uint8Array) {
    this.#bloom?.add(key);
    this.#building?.add(key);
    if (this.#bloom?.full && !this.#building) this.#scan(this.#filterCapacity(this.#bloom.count));
  }

  /** Writes a record unconditionally (rebuild); group-committed too. */
  async set(key: Uint8Array, rec: Record): Promise<void> {
    const fence = await this.#ready();
    this.#addToFilters(key);
    this.#cache.delete(cacheId(key));
    await this.#write({
      key: [NS, key],
      expect: undefined,
      value: fromRecord(rec),
      size: recordSize(rec),
      keySize: encodedKeySize(key),
      fence,
    });
  }

  /**
   * Waits until this member may write; its fence then (null: not a member).
   * `signal`: given up at its abort, rejecting with its reason (the wait, to
   * join the index again, goes on for the member's other writes).
   */
  async #ready(signal?: AbortSignal): Promise<Fence | null> {
    const ready = this.membership?.ready();
    if (!ready) return null;
    return await (signal ? unlessAborted(ready, signal) : ready);
  }

  async #write(cas: Cas, opts: { signal?: AbortSignal } = {}): Promise<string | null> {
    try {
      return await this.commits.write(cas, opts);
    } catch (err) {
      // Taken for gone by another member: join again before the next write.
      if (err instanceof Fenced) this.membership?.lapsed();
      throw err;
    }
  }

  /**
   * Removes every record (rebuild starts from nothing, as mkv's), each
   * batch with the member's fence checked: once a rebuild is taken for
   * stopped, the next batch fails Fenced, rather than empty the index
   * under masters writing again.
   */
  async clear(): Promise<number> {
    let n = 0;
    let batch: Deno.KvKey[] = [];
    for await (const e of this.kv.list({ prefix: [NS] })) {
      batch.push(e.key);
      n++;
      // Keys up to 2 KiB each: 30 stay under the 80 KiB key limit.
      if (batch.length === 30) {
        await this.#deleteFenced(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await this.#deleteFenced(batch);
    return n;
  }

  /** Deletes `keys` in one commit with this member's fence checked (#commitFenced). */
  async #deleteFenced(keys: Deno.KvKey[]): Promise<void> {
    await this.#commitFenced(() => {
      const atomic = this.kv.atomic();
      for (const key of keys) atomic.delete(key);
      return atomic;
    });
  }

  /** Whether the index holds a key's record at all, in any state (one record read). */
  async holdsKeys(): Promise<boolean> {
    for await (const _ of this.kv.list({ prefix: [NS] }, { limit: 1 })) return true;
    return false;
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
    // A prefix longer than any key can be starts no key.
    if (!keyFits(prefix)) return { keys: [], next: null, tooMany: false };
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

  // S3's buckets and multipart uploads. Rare next to key writes: plain
  // commits, outside the group commit, each with the member's fence
  // checked as the group commit checks it (#commitFenced).

  /**
   * Commits the atomic `make()` builds, with this member's fence checked
   * too: a write sent before this member was taken for stopped (a rebuild
   * may have emptied the index since) fails Fenced, nothing written, as a
   * key's write does. `refuse`: asked once this member may write (the
   * incomplete mark read since the last rebuild it saw); true answers null,
   * nothing written. `signal` (a stopping master's cut-off): not made,
   * rejecting with its reason, if at its abort it still waits for this
   * member to join the index again (behind a heartbeat a locked index holds).
   * Past that cut-off, a try the index refuses as locked is not made again
   * (GroupCommit.retrying): it rejects with the cut-off's reason, nothing
   * written, as a key's record does. A commit whose checks are said to have
   * failed but that landed (KV Connect sent it again: GroupCommit's MARKS)
   * answers as made.
   */
  async #commitFenced(
    make: () => Deno.AtomicOperation,
    opts: { refuse?: () => boolean; signal?: AbortSignal } = {},
  ): Promise<Deno.KvCommitResult | Deno.KvCommitError | null> {
    const fence = await this.#ready(opts.signal);
    if (opts.refuse?.()) return null;
    this.checkFile();
    const mark = this.commits.outsideMark();
    let res: Deno.KvCommitResult | Deno.KvCommitError;
    try {
      // Bounded by a stopping master's cut-off as keys' records are.
      res = await this.commits.retrying(() => {
        const atomic = make();
        if (fence) atomic.check(fence);
        return withMark(atomic, mark).commit();
      });
    } catch (err) {
      // KV Connect's client throws when the answer's body cannot be read,
      // the commit made all the same.
      const landed = mark && await this.commits.landed(mark).catch(() => null);
      if (landed) return { ok: true, versionstamp: landed };
      throw err;
    }
    if (res.ok) return res;
    const landed = mark && await this.commits.landed(mark);
    if (landed) return { ok: true, versionstamp: landed };
    if (!fence) return res;
    if ((await retryBusy(() => this.kv.get(fence.key))).versionstamp === fence.versionstamp) {
      return res;
    }
    this.membership?.lapsed();
    throw lostRegistration();
  }

  /** A bucket made by CreateBucket: its creation time, or null. */
  async bucket(name: string): Promise<number | null> {
    const e = await this.kv.get<number>([BUCKETS, name]);
    return e.value ?? null;
  }

  /**
   * False when the bucket was made already (its region stays the one it
   * was made in). `region`: its LocationConstraint, kept with it. `signal`:
   * as #commitFenced's (so for the other S3 writes below).
   */
  async createBucket(
    name: string,
    at: number,
    opts: { region?: string; signal?: AbortSignal } = {},
  ): Promise<boolean> {
    const { region, signal } = opts;
    const res = await this.#commitFenced(() => {
      const atomic = this.kv.atomic().check({ key: [BUCKETS, name], versionstamp: null })
        .set([BUCKETS, name], at);
      return region
        ? atomic.set([BUCKET_REGIONS, name], region)
        : atomic.delete([BUCKET_REGIONS, name]);
    }, { signal });
    return res!.ok;
  }

  /** The LocationConstraint a bucket was made with; null for none (us-east-1). */
  async bucketRegion(name: string): Promise<string | null> {
    return (await this.kv.get<string>([BUCKET_REGIONS, name])).value;
  }

  /** The LocationConstraints buckets were made with, by name (none: us-east-1's). */
  async bucketRegions(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for await (const e of this.kv.list<string>({ prefix: [BUCKET_REGIONS] })) {
      out.set(e.key[1] as string, e.value);
    }
    return out;
  }

  /**
   * Where a bucket's uploads stand: changed by every CreateMultipartUpload
   * in it since. Read before listing them, for deleteBucket.
   */
  async uploadsMark(bucket: string): Promise<string | null> {
    return (await this.kv.get([BUCKET_UPLOADS, bucket])).versionstamp;
  }

  /**
   * Removes a bucket's record, found empty in the index, if no upload was
   * made in it since `uploadsMark` (read before its uploads were listed):
   * "changed" otherwise, nothing removed (list them again). "refused",
   * nothing removed, while the index is marked incomplete: it may lack the
   * bucket's keys.
   */
  async deleteBucket(
    name: string,
    opts: { uploadsMark: string | null; signal?: AbortSignal },
  ): Promise<"deleted" | "changed" | "refused"> {
    const res = await this.#commitFenced(
      () =>
        this.kv.atomic()
          .check({ key: [BUCKET_UPLOADS, name], versionstamp: opts.uploadsMark })
          .delete([BUCKETS, name])
          .delete([BUCKET_REGIONS, name])
          .delete([BUCKET_UPLOADS, name]),
      { refuse: () => this.markedIncomplete, signal: opts.signal },
    );
    if (res === null) return "refused";
    return res.ok ? "deleted" : "changed";
  }

  /** Buckets made by CreateBucket, with their creation times. */
  async buckets(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for await (const e of this.kv.list<number>({ prefix: [BUCKETS] })) {
      out.set(e.key[1] as string, e.value);
    }
    return out;
  }

  /** Records at and after `start` in key order, every state (S3 listings). */
  async *from(start: Uint8Array, end: Uint8Array | null): AsyncGenerator<[Uint8Array, Record]> {
    let from = keyFits(start) ? start : longestFittingHead(start);
    let seen: Uint8Array | null = null;
    // A few records first: a delimiter listing reads one key of a folder
    // and skips the rest (a batch of 200 there cost ~1 ms per folder), then
    // full batches for a caller that keeps reading.
    for (const limit of [8, 0]) {
      const selector: Deno.KvListSelector = end
        ? { start: [NS, from], end: [NS, end] }
        : { prefix: [NS], start: [NS, from] };
      const opts = limit ? { limit, batchSize: limit } : { batchSize: 200 };
      let n = 0;
      for await (const e of this.kv.list(selector, opts)) {
        n++;
        const key = e.key[1] as Uint8Array;
        if (seen !== null && compare(key, seen) <= 0) continue;
        seen = key;
        const rec = toRecord(e.value);
        if (rec && compare(key, start) >= 0) yield [key, rec];
      }
      if (limit === 0 || n < limit || seen === null) return;
      // Resume just after the last key read (at it, skipped, if the key
      // one byte longer would not fit the index).
      const next = new Uint8Array(seen.length + 1);
      next.set(seen);
      from = keyFits(next) ? next : seen;
    }
  }

  async upload(id: string): Promise<{ upload: Upload; versionstamp: string } | null> {
    const e = await this.kv.get<Upload>([UPLOADS, id]);
    return e.versionstamp === null ? null : { upload: e.value, versionstamp: e.versionstamp };
  }

  /** Records an upload in `opts.bucket`, that bucket's uploadsMark changed with it. */
  async createUpload(
    id: string,
    upload: Upload,
    opts: { bucket: string; signal?: AbortSignal },
  ): Promise<void> {
    // A key may be a view of shared slab memory (lib/bytes.ts), and a value
    // is stored with its whole buffer: store a copy of just its bytes.
    const value = { ...upload, key: upload.key.slice() };
    await this.#commitFenced(
      () => this.kv.atomic().set([UPLOADS, id], value).set([BUCKET_UPLOADS, opts.bucket], id),
      { signal: opts.signal },
    );
  }

  /** Every multipart upload in progress, by id. */
  async *uploads(): AsyncGenerator<[string, Upload]> {
    for await (const e of this.kv.list<Upload>({ prefix: [UPLOADS] })) {
      yield [e.key[1] as string, e.value];
    }
  }

  /**
   * Records a part, replacing any earlier upload of its number (returned,
   * so its file can go). Null when the upload is gone (aborted, completed).
   */
  async putPart(
    id: string,
    versionstamp: string,
    number: number,
    part: Part,
    opts: { signal?: AbortSignal } = {},
  ): Promise<{ replaced: Part | null } | null> {
    while (true) {
      const old = await this.kv.get<Part>([PARTS, id, number]);
      const res = await this.#commitFenced(() =>
        this.kv.atomic()
          .check({ key: [UPLOADS, id], versionstamp })
          .check(old)
          .set([PARTS, id, number], part), { signal: opts.signal });
      if (res!.ok) return { replaced: old.value };
      if ((await this.kv.get([UPLOADS, id])).versionstamp !== versionstamp) return null;
    }
  }

  /**
   * Part records of uploads that have ended: a master killed inside
   * endUpload, between its commits, leaves them (verify).
   */
  async *endedParts(): AsyncGenerator<{ id: string; number: number; part: Part }> {
    let id = "";
    let ended = false;
    for await (const e of this.kv.list<Part>({ prefix: [PARTS] })) {
      if (e.key[1] !== id) {
        id = e.key[1] as string;
        ended = (await this.kv.get([UPLOADS, id])).versionstamp === null;
      }
      if (ended) yield { id, number: e.key[2] as number, part: e.value };
    }
  }

  /** Drops the record of a part of an upload that has ended (none can start again). */
  async dropEndedPart(id: string, number: number): Promise<boolean> {
    const res = await this.#commitFenced(() =>
      this.kv.atomic().check({ key: [UPLOADS, id], versionstamp: null }).delete([PARTS, id, number])
    );
    return res!.ok;
  }

  /** An upload's parts, by part number. */
  async parts(id: string): Promise<Map<number, Part>> {
    const out = new Map<number, Part>();
    for await (const e of this.kv.list<Part>({ prefix: [PARTS, id] })) {
      out.set(e.key[2] as number, e.value);
    }
    return out;
  }

  /**
   * Ends an upload: drops its record, then its parts' records, and returns
   * those parts (listed after the upload record is gone, so no part can be
   * added meanwhile: putPart checks the upload). Null when it was ended
   * already (by another Complete or Abort). `signal`: the first commit's
   * (#commitFenced); once the upload's record is gone, its parts' go too.
   */
  async endUpload(
    id: string,
    versionstamp: string,
    opts: { signal?: AbortSignal } = {},
  ): Promise<Part[] | null> {
    const res = await this.#commitFenced(
      () => this.kv.atomic().check({ key: [UPLOADS, id], versionstamp }).delete([UPLOADS, id]),
      { signal: opts.signal },
    );
    if (!res!.ok) return null;
    const parts: Part[] = [];
    let keys: Deno.KvKey[] = [];
    for await (const e of this.kv.list<Part>({ prefix: [PARTS, id] })) {
      parts.push(e.value);
      keys.push(e.key);
      if (keys.length === 500) {
        await this.#deleteFenced(keys);
        keys = [];
      }
    }
    if (keys.length > 0) await this.#deleteFenced(keys);
    return parts;
  }

  /**
   * Remembers a completed upload for a day: a retried Complete gets its
   * answer. `signal`: as #commitFenced's.
   */
  async completed(
    id: string,
    done: { key: Uint8Array; etag: string },
    opts: { signal?: AbortSignal } = {},
  ): Promise<void> {
    const value = { ...done, key: done.key.slice() }; // as in createUpload
    await this.#commitFenced(
      () => this.kv.atomic().set([COMPLETED, id], value, { expireIn: 86_400_000 }),
      opts,
    );
  }

  async completedUpload(id: string): Promise<{ key: Uint8Array; etag: string } | null> {
    return (await this.kv.get<{ key: Uint8Array; etag: string }>([COMPLETED, id])).value;
  }

  close() {
    this.kv.close();
  }
}

/** A multipart upload in progress (S3). */
export interface Upload {
  key: Uint8Array;
  /** ms since epoch. */
  created: number;
  meta?: Meta;
  /** CreateMultipartUpload's x-amz-checksum-algorithm and -type. */
  checksum?: { alg: Algorithm; type: "COMPOSITE" | "FULL_OBJECT" };
}

/** One uploaded part: a file on `volumes` at `path`. */
export interface Part {
  path: string;
  volumes: string[];
  /** Hex MD5 of the part (its ETag). */
  md5: string;
  size: number;
  mtime: number;
  /** The part's x-amz-checksum-* as uploaded (checked), or as computed for a copy. */
  checksum?: Checksum;
}

function cacheId(key: Uint8Array): string {
  return latin1(key);
}

function entryOf(e: Deno.KvEntryMaybe<unknown>): Entry | null {
  if (e.versionstamp === null) return null;
  const rec = toRecord(e.value);
  if (!rec) throw new Error(`Corrupt index record for key ${String(e.key[1])}`);
  return { rec, versionstamp: e.versionstamp };
}

/**
 * An estimate of a record's stored size, bytes (at least it), for the
 * group commit's 800 KiB a commit: a REPLACE's holds the record it
 * switches to too (uncounted, a batch of them was refused whole, then
 * committed one write at a time).
 */
function recordSize(rec: Record): number {
  let n = 64 + rec.hash.length + (rec.owner?.length ?? 0);
  for (const v of rec.rvolumes) n += v.length + 4;
  if (rec.meta) n += JSON.stringify(rec.meta).length + twoByteExtra(rec.meta.tags ?? []);
  if (rec.next) n += 16 + rec.next.tmp.length + recordSize(rec.next.rec);
  return n;
}

/**
 * What tags' strings add to their JSON length once stored: V8's serializer
 * (Deno KV's) keeps a string with any character past U+00FF at two bytes
 * a UTF-16 unit. Only tags hold such strings (headers are bytes).
 */
function twoByteExtra(tags: [string, string][]): number {
  let n = 0;
  for (const s of tags.flat()) if (/[\u0100-\uffff]/.test(s)) n += s.length;
  return n;
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
