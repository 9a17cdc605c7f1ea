// lib/bytes.ts's helpers for hot paths: byte strings as Map keys, base64,
// ASCII copies and slab memory.
import { Buffer } from "node:buffer";
import { asciiInto, base64, latin1, smallBytes } from "../lib/bytes.ts";
import { assert, assertEquals } from "./assert.ts";

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, i + 65536));
  return b;
}

Deno.test("latin1 and base64 hold every byte, also past the 8 KiB pieces", () => {
  for (const n of [0, 1, 8191, 8192, 8193, 20_000]) {
    const b = random(n);
    const s = latin1(b);
    assertEquals(s.length, n);
    assert(Array.from(s).every((ch, i) => ch.charCodeAt(0) === b[i]), `${n} bytes`);
    assertEquals(base64(b), Buffer.from(b).toString("base64"), `${n} bytes`);
  }
});

Deno.test("asciiInto copies ASCII and refuses anything else", () => {
  const out = new Uint8Array(8);
  assertEquals(asciiInto("GET /a", out, 1), true);
  assertEquals(Array.from(out), [0, 71, 69, 84, 32, 47, 97, 0]);
  assertEquals(asciiInto("/caf\u00e9", new Uint8Array(8)), false);
});

Deno.test("smallBytes: zeroed arrays that never share bytes; large ones get their own buffer", () => {
  const a = smallBytes(13);
  const b = smallBytes(13);
  assertEquals(Array.from(a), Array(13).fill(0));
  a.fill(0xff);
  assertEquals(Array.from(b), Array(13).fill(0));
  const many = Array.from({ length: 5000 }, () => smallBytes(100));
  many.forEach((m, i) => m.fill(i & 0xff));
  assert(many.every((m, i) => m.every((x) => x === (i & 0xff))), "an array was overwritten");
  const big = smallBytes(100_000);
  assertEquals(big.byteOffset, 0);
  assertEquals(big.buffer.byteLength, 100_000);
});
