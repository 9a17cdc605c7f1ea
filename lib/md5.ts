// MD5 (RFC 1321) in plain JavaScript, for short inputs: keys and key +
// volume name, hashed several times per request to place a key. Through
// node:crypto each digest of a short input cost ~2.2 µs here (a Hash object,
// calls into the runtime, a new ArrayBuffer for the digest); this costs a
// few hundred nanoseconds. Long inputs (values) still go to node:crypto.

/** Each round's four rotations, each used four times in turn. */
const SHIFTS = [[7, 12, 17, 22], [5, 9, 14, 20], [4, 11, 16, 23], [6, 10, 15, 21]]
  .flatMap((r) => [...r, ...r, ...r, ...r]);
const K = Int32Array.from(
  { length: 64 },
  (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32),
);
/** Which message word each of the 64 steps adds. */
const WORD = Uint8Array.from(
  { length: 64 },
  (_, i) => i < 16 ? i : i < 32 ? (5 * i + 1) % 16 : i < 48 ? (3 * i + 5) % 16 : (7 * i) % 16,
);

/** The padded message as little-endian words; reused between calls. */
let words = new Int32Array(64);

/** The MD5 digest of the concatenation of `parts`, as 16 bytes into `out`. */
export function md5Into(parts: readonly Uint8Array[], out: Uint8Array): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const blocks = ((n + 8) >>> 6) + 1;
  if (words.length < blocks * 16) words = new Int32Array(blocks * 16);
  words.fill(0, 0, blocks * 16);
  let at = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++, at++) words[at >> 2] |= p[i] << ((at & 3) << 3);
  }
  words[n >> 2] |= 0x80 << ((n & 3) << 3);
  words[blocks * 16 - 2] = n << 3;
  words[blocks * 16 - 1] = Math.floor(n / 0x20000000);
  let a0 = 0x67452301, b0 = 0xefcdab89 | 0, c0 = 0x98badcfe | 0, d0 = 0x10325476;
  for (let blk = 0; blk < blocks * 16; blk += 16) {
    let a = a0, b = b0, c = c0, d = d0;
    for (let i = 0; i < 64; i++) {
      let f: number;
      if (i < 16) f = (b & c) | (~b & d);
      else if (i < 32) f = (d & b) | (~d & c);
      else if (i < 48) f = b ^ c ^ d;
      else f = c ^ (b | ~d);
      f = (f + a + K[i] + words[blk + WORD[i]]) | 0;
      a = d;
      d = c;
      c = b;
      b = (b + ((f << SHIFTS[i]) | (f >>> (32 - SHIFTS[i])))) | 0;
    }
    a0 = (a0 + a) | 0;
    b0 = (b0 + b) | 0;
    c0 = (c0 + c) | 0;
    d0 = (d0 + d) | 0;
  }
  const state = [a0, b0, c0, d0];
  for (let i = 0; i < 16; i++) out[i] = (state[i >> 2] >>> ((i & 3) << 3)) & 0xff;
  return out;
}
