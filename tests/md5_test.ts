// lib/md5.ts against node:crypto's MD5: every length around the padding
// boundaries, random bytes, inputs in several parts, and the RFC's vectors.
import { createHash } from "node:crypto";
import { md5Into } from "../lib/md5.ts";
import { assertEquals } from "./assert.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const native = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
const js = (...parts: Uint8Array[]) => hex(md5Into(parts, new Uint8Array(16)));

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b);
  return b;
}

Deno.test("md5: RFC 1321's test suite", () => {
  const enc = new TextEncoder();
  const vectors: [string, string][] = [
    ["", "d41d8cd98f00b204e9800998ecf8427e"],
    ["a", "0cc175b9c0f1b6a831c399e269772661"],
    ["abc", "900150983cd24fb0d6963f7d28e17f72"],
    ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
    ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
    [
      "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
      "57edf4a22be3c955ac49da2e2107b67a",
    ],
  ];
  for (const [text, want] of vectors) assertEquals(js(enc.encode(text)), want, text);
});

Deno.test("md5: every length from 0 to 300 bytes, and 4 KiB, as node:crypto", () => {
  for (const n of [...Array(301).keys(), 1023, 1024, 4095, 4096]) {
    const b = random(n);
    assertEquals(js(b), native(b), `${n} bytes`);
  }
});

Deno.test("md5: an input in parts hashes as the parts joined", () => {
  for (let i = 0; i < 200; i++) {
    const a = random(Math.floor(Math.random() * 100));
    const b = random(Math.floor(Math.random() * 100));
    const joined = new Uint8Array(a.length + b.length);
    joined.set(a);
    joined.set(b, a.length);
    assertEquals(js(a, b), native(joined));
  }
});
