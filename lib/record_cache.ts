// The records a sole master remembers, by key, the longest remembered
// first out. Bounded by an estimate of the memory they hold, not by
// their count: a key may be 2,043 bytes, and 200,000 records of such keys
// would hold ~460 MiB where as many 50-byte ones hold ~65 MiB.

/**
 * What one cached record holds beside its key, bytes: ~280 in V8's heap
 * for a record of three volumes (20,000 of 48-byte keys written by a sole
 * master, the heap measured after a full GC before and after the cache and
 * the key filter were cleared: ~384 each, the filter's share ~60).
 */
export const RECORD_COST = 300;

/** The default bound, bytes: ~190,000 records of 50-byte keys, ~28,000 of 2,043-byte ones. */
export const CACHE_BYTES = 64 * 1024 * 1024;

export class RecordCache<T> {
  #map = new Map<string, { value: T; versionstamp: string }>();
  #bytes = 0;
  readonly #max: number;
  #forgotten = 0;

  /** `max`: the bound, bytes (estimated as key length + RECORD_COST each). */
  constructor(max: number = CACHE_BYTES) {
    this.#max = max;
  }

  get size(): number {
    return this.#map.size;
  }

  /** The estimate of what the records cached hold, bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  get(id: string): { value: T; versionstamp: string } | undefined {
    return this.#map.get(id);
  }

  /**
   * How many times records were forgotten (delete, clear): a read sent
   * before may answer what a record forgotten since held (stale), and a
   * newer one it would be told from is no longer cached.
   */
  get forgotten(): number {
    return this.#forgotten;
  }

  /**
   * Keeps `value` unless a newer one (by versionstamp: they only grow) is
   * cached. `readAt`: `forgotten` when the read that answered `value` was
   * sent; kept only if nothing was forgotten since.
   */
  remember(id: string, value: T, versionstamp: string, opts: { readAt?: number } = {}): void {
    if (opts.readAt !== undefined && opts.readAt !== this.#forgotten) return;
    const had = this.#map.get(id);
    if (had && had.versionstamp >= versionstamp) return;
    this.#drop(id);
    this.#map.set(id, { value, versionstamp });
    this.#bytes += cost(id);
    // Map iterates in insertion order: the first key is the oldest.
    for (const old of this.#map.keys()) {
      if (this.#bytes <= this.#max) break;
      this.#drop(old);
    }
  }

  /** Forgets a key's record: it may be stale. */
  delete(id: string): void {
    this.#forgotten++;
    this.#drop(id);
  }

  clear(): void {
    this.#forgotten++;
    this.#map.clear();
    this.#bytes = 0;
  }

  #drop(id: string): void {
    if (this.#map.delete(id)) this.#bytes -= cost(id);
  }
}

function cost(id: string): number {
  return id.length + RECORD_COST;
}
