// A Bloom filter of keys: "certainly absent" or "maybe present". The master
// answers a GET of a key the filter has never seen without reading the
// index. Deletions are not removed (a deleted key only costs a lookup).

export class Bloom {
  readonly bits: Uint32Array;
  readonly size: number;
  readonly hashes: number;
  count = 0;

  /** Sized for `capacity` keys at about 1% false positives. */
  constructor(capacity: number) {
    const m = Math.max(1024, Math.ceil(capacity * 9.6));
    this.size = m;
    this.hashes = 7;
    this.bits = new Uint32Array(Math.ceil(m / 32));
  }

  add(key: Uint8Array) {
    const [h1, h2] = hash2(key);
    for (let i = 0; i < this.hashes; i++) {
      const bit = (h1 + Math.imul(i, h2) >>> 0) % this.size;
      this.bits[bit >>> 5] |= 1 << (bit & 31);
    }
    this.count++;
  }

  has(key: Uint8Array): boolean {
    const [h1, h2] = hash2(key);
    for (let i = 0; i < this.hashes; i++) {
      const bit = (h1 + Math.imul(i, h2) >>> 0) % this.size;
      if ((this.bits[bit >>> 5] & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }

  /** More keys than it was sized for: false positives climb. */
  get full(): boolean {
    return this.count > this.size / 9.6;
  }
}

/** Two independent 32-bit FNV-1a style hashes (double hashing). */
function hash2(key: Uint8Array): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ key.length;
  for (let i = 0; i < key.length; i++) {
    a = Math.imul(a ^ key[i], 0x01000193);
    b = Math.imul(b ^ key[i], 0x5bd1e995);
    b ^= b >>> 15;
  }
  a ^= a >>> 13;
  a = Math.imul(a, 0xc2b2ae35);
  a ^= a >>> 16;
  return [a >>> 0, (b | 1) >>> 0];
}
