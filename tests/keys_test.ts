// Unit tests of lib/keys.ts: mkv's own vectors, the base64url fix for names
// holding "/", name/path parsing and the 255-byte segment cut.
import { Buffer } from "node:buffer";
import {
  key2name,
  key2path,
  key2volume,
  name2key,
  NAME_MAX,
  needsRebalance,
  orderByPlacement,
  path2key,
  toHex,
} from "../lib/keys.ts";
import { assert, assertEquals } from "./assert.ts";

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);
const VOLUMES = ["larry", "moe", "curly"];

function randomKey(len: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(len));
}

/** A small key whose standard base64 holds "/" (`last`: at the very end). */
function slashKey(last: boolean): Uint8Array {
  for (let i = 0; i < 1 << 24; i++) {
    const k = new Uint8Array([i >> 16, (i >> 8) & 0xff, i & 0xff]);
    const std = Buffer.from(k).toString("base64").replace(/=+$/, "");
    if (last ? std.endsWith("/") : std.includes("/") && !std.endsWith("/")) return k;
  }
  throw new Error("no such key");
}

Deno.test("key2path matches mkv's vectors", () => {
  assertEquals(key2path(bytes("hello")), "/5d/41/aGVsbG8=");
  assertEquals(key2path(bytes("helloworld")), "/fc/5e/aGVsbG93b3JsZA==");
});

Deno.test("key2volume picks mkv's volume for each of its vectors", () => {
  const want: [string, string][] = [
    ["hello", "larry"],
    ["helloworld", "curly"],
    ["world", "moe"],
    ["blah", "curly"],
  ];
  for (const [key, volume] of want) {
    const got = key2volume(bytes(key), VOLUMES, 1, 3);
    assertEquals(got.length, 1);
    assertEquals(got[0].split("/")[0], volume, key);
    assert(/^[a-z]+\/sv[0-9A-F]{2}$/.test(got[0]), `"${got[0]}" is volume/svNN, uppercase hex`);
  }
});

Deno.test("key2volume with subvolumes=1 gives the bare volume name", () => {
  assertEquals(key2volume(bytes("hello"), VOLUMES, 1, 1), ["larry"]);
  assertEquals(key2volume(bytes("world"), VOLUMES, 1, 1), ["moe"]);
});

Deno.test("key2volume's subvolume is below the subvolume count, two uppercase hex digits", () => {
  for (let i = 0; i < 200; i++) {
    const key = randomKey(1 + (i % 40));
    for (const sv of [2, 10, 16, 256]) {
      const [v] = key2volume(key, VOLUMES, 1, sv);
      const m = /^[a-z]+\/sv([0-9A-F]{2})$/.exec(v);
      assert(m, `"${v}"`);
      assert(parseInt(m[1], 16) < sv, `${v} with ${sv} subvolumes`);
    }
  }
});

Deno.test("key2volume with replicas=3 puts the copies on three distinct volumes", () => {
  for (let i = 0; i < 200; i++) {
    const got = key2volume(randomKey(1 + (i % 50)), VOLUMES, 3, 10);
    assertEquals(got.length, 3);
    assertEquals(new Set(got.map((v) => v.split("/")[0])).size, 3, got.join(","));
  }
});

Deno.test("key2volume ranks by volume name, not by position in the list", () => {
  const key = bytes("helloworld");
  const a = key2volume(key, VOLUMES, 3, 10);
  const b = key2volume(key, [...VOLUMES].reverse(), 3, 10);
  assertEquals(a, b);
});

Deno.test("a key whose base64 holds '/' is named in base64url and round-trips", () => {
  const keys = [new Uint8Array([0xff, 0xff]), slashKey(false), slashKey(true)];
  assertEquals(key2name(keys[0]), "__8=");
  for (const key of keys) {
    const std = Buffer.from(key).toString("base64");
    assert(std.includes("/"), std);
    const name = key2name(key);
    assert(name.includes("_") && !name.includes("/") && !name.includes("+"), name);
    assertEquals(name, Buffer.from(key).toString("base64url").padEnd(std.length, "="));
    assertEquals(name2key(name), key);
    const path = key2path(key);
    assertEquals(path.split("/").length, 4, path);
    assertEquals(path2key(path), key);
  }
});

Deno.test("a key whose base64 holds no '/' keeps standard base64 exactly", () => {
  const plus = new Uint8Array([0xfb]);
  assertEquals(key2name(plus), "+w==");
  assertEquals(name2key("+w=="), plus);
  assertEquals(key2name(bytes("hello")), "aGVsbG8=");
  assertEquals(key2name(new Uint8Array([0xfb, 0xef])), "++8=");
  assertEquals(path2key(key2path(plus)), plus);
});

Deno.test("a key whose base64 holds both '+' and '/' is named with '-' and '_'", () => {
  const key = new Uint8Array([0xfb, 0xff]);
  assertEquals(Buffer.from(key).toString("base64"), "+/8=");
  assertEquals(key2name(key), "-_8=");
  assertEquals(name2key("-_8="), key);
});

Deno.test("name2key rejects garbage and non-canonical names", () => {
  const bad = [
    "",
    "abc",
    "a/b=", // holds '/', and not canonical either
    "a/Y=", // canonical standard base64, but a '/' name is always written as base64url
    "-+8=", // mixes base64url and standard
    "+_8=", // mixes the other way
    "aGVsbG8", // unpadded
    "aGVsbG8==", // wrong length
    "aGVsbG9=", // non-zero trailing bits
    "aG=sbG8=", // '=' inside
    "====",
    "aGVs bG8=",
    "aGVsbG8=.tmp",
    "+w==\n",
  ];
  for (const name of bad) assertEquals(name2key(name), null, JSON.stringify(name));
});

Deno.test("name2key inverts key2name for random keys", () => {
  for (let i = 0; i < 500; i++) {
    const key = randomKey(1 + Math.floor(Math.random() * 64));
    assertEquals(name2key(key2name(key)), key);
  }
});

Deno.test("path2key rejects paths key2path would not give", () => {
  const bad = [
    "/zz/zz/aGVsbG8=", // wrong md5 folders
    "/5D/41/aGVsbG8=", // uppercase folders
    "/5d/41/aGVsbG8=/",
    "5d/41/aGVsbG8=",
    "/5d/41",
    "/5d/aGVsbG8=",
    "//5d/41/aGVsbG8=",
    "/5d/41/x/aGVsbG8=",
    "/5d/41/aGVsbG8",
  ];
  for (const p of bad) assertEquals(path2key(p), null, p);
  assertEquals(path2key("/5d/41/aGVsbG8="), bytes("hello"));
});

Deno.test("key2path round-trips 500 random keys, long names cut into 255-char segments", () => {
  let cut = 0;
  for (let i = 0; i < 500; i++) {
    const len = i < 20 ? 190 + i : 1 + Math.floor(Math.random() * 300);
    const key = randomKey(len);
    const path = key2path(key);
    assertEquals(path2key(path), key, path);
    const parts = path.split("/");
    assertEquals(parts[0], "");
    assert(/^[0-9a-f]{2}$/.test(parts[1]) && /^[0-9a-f]{2}$/.test(parts[2]), path);
    const segs = parts.slice(3);
    assert(segs.every((s) => s.length > 0 && s.length <= NAME_MAX), path);
    assert(segs.slice(0, -1).every((s) => s.length === NAME_MAX), path);
    assertEquals(segs.join(""), key2name(key));
    if (segs.length > 1) cut++;
    assertEquals(segs.length > 1, key2name(key).length > NAME_MAX);
  }
  assert(cut > 0, "some names were cut");
});

Deno.test("a 192-byte key is one segment, 190+ byte keys are cut", () => {
  assertEquals(key2path(randomKey(189)).split("/").length, 4);
  assertEquals(key2path(randomKey(190)).split("/").length, 5);
  assertEquals(key2path(randomKey(192)).split("/").length, 5);
});

Deno.test("a name that is exactly a multiple of 255 chars splits into whole segments", () => {
  // 765 bytes -> 1020 base64 chars = 4 * 255.
  const key = randomKey(765);
  const segs = key2path(key).split("/").slice(3);
  assertEquals(segs.map((s) => s.length), [255, 255, 255, 255]);
  assertEquals(path2key(key2path(key)), key);
});

Deno.test("path2key rejects a long name cut at the wrong places", () => {
  const key = randomKey(300);
  const name = key2name(key);
  const [, a, b] = key2path(key).split("/");
  assertEquals(path2key(`/${a}/${b}/${name}`), null, "uncut");
  assertEquals(path2key(`/${a}/${b}/${name.slice(0, 100)}/${name.slice(100)}`), null);
});

Deno.test("needsRebalance is false only for the exact placement in order", () => {
  assertEquals(needsRebalance(["a", "b", "c"], ["a", "b", "c"]), false);
  assertEquals(needsRebalance(["b", "a", "c"], ["a", "b", "c"]), true);
  assertEquals(needsRebalance(["a", "b"], ["a", "b", "c"]), true);
  assertEquals(needsRebalance(["a", "b", "c", "d"], ["a", "b", "c"]), true);
  assertEquals(needsRebalance(["a", "b", "x"], ["a", "b", "c"]), true);
  assertEquals(needsRebalance(["a/sv01"], ["a/sv02"]), true);
  assertEquals(needsRebalance([], []), false);
});

Deno.test("orderByPlacement orders held volumes as placed, strays last in their order", () => {
  assertEquals(orderByPlacement(["c", "a", "b"], ["a", "b", "c"]), ["a", "b", "c"]);
  assertEquals(orderByPlacement(["x", "c", "y", "a"], ["a", "b", "c"]), ["a", "c", "x", "y"]);
  assertEquals(orderByPlacement(["x"], ["a", "b"]), ["x"]);
  assertEquals(orderByPlacement([], ["a", "b"]), []);
  const kvolumes = key2volume(bytes("hello"), VOLUMES, 3, 10);
  const shuffled = [kvolumes[2], kvolumes[0], kvolumes[1]];
  assertEquals(orderByPlacement(shuffled, kvolumes), kvolumes);
  assertEquals(needsRebalance(orderByPlacement(shuffled, kvolumes), kvolumes), false);
});

Deno.test("any canonical base64 name, even a word like 'body', is a key's name", () => {
  // Names carry no marker: "body" is the canonical encoding of 6e 87 72.
  assertEquals(name2key("body"), new Uint8Array([0x6e, 0x87, 0x72]));
  assertEquals(key2name(new Uint8Array([0x6e, 0x87, 0x72])), "body");
});

Deno.test("the Bloom filter never forgets a key and rarely imagines one", async () => {
  const { Bloom } = await import("../lib/bloom.ts");
  const bloom = new Bloom(10_000);
  const enc = new TextEncoder();
  for (let i = 0; i < 10_000; i++) bloom.add(enc.encode(`/in/${i}`));
  for (let i = 0; i < 10_000; i++) {
    if (!bloom.has(enc.encode(`/in/${i}`))) throw new Error(`forgot /in/${i}`);
  }
  let imagined = 0;
  for (let i = 0; i < 10_000; i++) if (bloom.has(enc.encode(`/out/${i}`))) imagined++;
  if (imagined > 300) throw new Error(`${imagined} false positives in 10,000 (expected ~1%)`);
});

Deno.test("key2name and toHex agree with node's Buffer on random keys of every length to 300", () => {
  for (let n = 0; n <= 300; n++) {
    const key = new Uint8Array(n);
    crypto.getRandomValues(key);
    const std = Buffer.from(key).toString("base64");
    const want = std.includes("/") ? std.replaceAll("+", "-").replaceAll("/", "_") : std;
    assertEquals(key2name(key), want, `${n} bytes`);
    assertEquals(toHex(key), Buffer.from(key).toString("hex"), `${n} bytes`);
  }
});
