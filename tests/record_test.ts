// Unit tests of lib/record.ts: the stored form round-trips, and mkv's LevelDB
// value strings load (and are given back by toMkvString).
import { fitsRecord, fromRecord, type Record, toMkvString, toRecord } from "../lib/record.ts";
import { assertEquals } from "./assert.ts";

const HASH = "5d41402abc4b2a76b9719d911017c592";

Deno.test("a live record round-trips through fromRecord/toRecord", () => {
  const rec: Record = { state: "live", rvolumes: ["a:1/sv01", "b:2/sv0A"], hash: HASH, size: 5 };
  assertEquals(toRecord(fromRecord(rec)), rec);
});

Deno.test("an unlinked record round-trips", () => {
  const rec: Record = { state: "unlinked", rvolumes: ["a:1"], hash: "", size: -1 };
  assertEquals(toRecord(fromRecord(rec)), rec);
});

Deno.test("a writing record round-trips with its owner and lease expiry", () => {
  const rec: Record = {
    state: "writing",
    rvolumes: ["a:1", "b:2", "c:3"],
    hash: "",
    size: -1,
    owner: "host:123:abcdef01",
    until: 1_700_000_000_000,
  };
  const back = toRecord(fromRecord(rec))!;
  assertEquals(back, rec);
  assertEquals(back.owner, "host:123:abcdef01");
  assertEquals(back.until, 1_700_000_000_000);
});

Deno.test("a live record being replaced round-trips with its lease and the switch it awaits", () => {
  const rec: Record = {
    state: "live",
    rvolumes: ["a:1", "b:2"],
    hash: HASH,
    size: 5,
    owner: "host:123:abcdef01",
    until: 1_700_000_000_000,
    next: {
      rec: {
        state: "live",
        rvolumes: ["a:1", "c:3"],
        hash: "7d793037a0760186574b0282f2f435e7",
        size: 5,
        mtime: 1_700_000_000_001,
        meta: { type: "text/plain" },
      },
      tmp: "/ab/cd/replace.0b8e0e1c-43a1-4a2e-9a58-a1bf1b8de8d3",
    },
  };
  assertEquals(toRecord(fromRecord(rec)), rec);
});

Deno.test("an unlinked record a PUT switches round-trips with the switch marked as a PUT's", () => {
  const rec: Record = {
    state: "unlinked",
    rvolumes: ["a:1"],
    hash: HASH,
    size: 5,
    owner: "host:123:abcdef01",
    until: 1_700_000_000_000,
    next: {
      rec: { state: "live", rvolumes: ["a:1"], hash: "", size: 3, mtime: 1_700_000_000_001 },
      tmp: "/ab/cd/replace.0b8e0e1c-43a1-4a2e-9a58-a1bf1b8de8d3",
      put: true,
    },
  };
  assertEquals(fromRecord(rec).n?.[2], 1);
  assertEquals(toRecord(fromRecord(rec)), rec);
});

Deno.test("a zero-size value keeps size 0, not unknown", () => {
  const rec: Record = {
    state: "live",
    rvolumes: ["a:1"],
    hash: "d41d8cd98f00b204e9800998ecf8427e",
    size: 0,
  };
  assertEquals(toRecord(fromRecord(rec))!.size, 0);
});

Deno.test("a live record's stored form holds no lease fields unless it has a lease", () => {
  const stored = fromRecord({ state: "live", rvolumes: ["a:1"], hash: "", size: -1 });
  assertEquals(stored, { s: 0, v: ["a:1"] });
});

Deno.test("a live record being replaced keeps its lease through a round trip", () => {
  const rec = {
    state: "live" as const,
    rvolumes: ["a:1"],
    hash: "",
    size: 3,
    owner: "x",
    until: 5,
  };
  assertEquals(fromRecord(rec), { s: 0, v: ["a:1"], z: 3, o: "x", u: 5 });
  assertEquals(toRecord(fromRecord(rec)), rec);
});

Deno.test("a record survives Deno KV's structured clone", () => {
  const rec: Record = {
    state: "writing",
    rvolumes: ["a:1"],
    hash: HASH,
    size: 9,
    owner: "o",
    until: 1,
  };
  assertEquals(toRecord(structuredClone(fromRecord(rec))), rec);
});

Deno.test("an S3 object's checksum round-trips with its other metadata", () => {
  const rec: Record = {
    state: "live",
    rvolumes: ["a:1"],
    hash: HASH,
    size: 5,
    mtime: 1,
    meta: { type: "text/plain", checksum: { alg: "crc64nvme", value: "nOKPHLnWviI=" } },
  };
  assertEquals(toRecord(structuredClone(fromRecord(rec))), rec);
  const alone: Record = { ...rec, meta: { checksum: { alg: "crc32", value: "DUoRhQ==-3" } } };
  assertEquals(toRecord(fromRecord(alone)), alone);
});

Deno.test("an S3 object's tags round-trip, stored as one field beside its other metadata", () => {
  const rec: Record = {
    state: "live",
    rvolumes: ["a:1"],
    hash: HASH,
    size: 5,
    mtime: 1,
    meta: { type: "text/plain", tags: [["env", "prod"], ["ünï", ""]] },
  };
  const stored = fromRecord(rec);
  assertEquals(stored, {
    s: 0,
    v: ["a:1"],
    h: HASH,
    z: 5,
    m: 1,
    t: "text/plain",
    g: [["env", "prod"], ["ünï", ""]],
  });
  assertEquals(toRecord(structuredClone(stored)), rec);
  const alone: Record = { ...rec, meta: { tags: [["a", "b"]] } };
  assertEquals(toRecord(fromRecord(alone)), alone);
});

Deno.test("a record stored before tags were kept reads back with its metadata and no tags", () => {
  const before = { s: 0, v: ["a:1"], h: HASH, z: 5, m: 1, t: "text/plain", x: [["k", "v"]] };
  assertEquals(toRecord(before), {
    state: "live",
    rvolumes: ["a:1"],
    hash: HASH,
    size: 5,
    mtime: 1,
    meta: { type: "text/plain", amz: [["k", "v"]] },
  });
});

Deno.test("an empty tag set is stored as none", () => {
  const rec: Record = { state: "live", rvolumes: ["a:1"], hash: "", size: 1, meta: { tags: [] } };
  assertEquals(fromRecord(rec), { s: 0, v: ["a:1"], z: 1 });
});

Deno.test("toRecord returns null for values that are not records", () => {
  for (
    const v of [null, undefined, 42, true, {}, [], { s: 0 }, { v: [] }, { s: 7, v: [] }, {
      s: "0",
      v: [],
    }]
  ) {
    assertEquals(toRecord(v), null, JSON.stringify(v));
  }
});

Deno.test("mkv's LevelDB strings parse", () => {
  assertEquals(toRecord("DELETEDhello,world"), {
    state: "unlinked",
    rvolumes: ["hello", "world"],
    hash: "",
    size: -1,
  });
  assertEquals(toRecord("hello,world"), {
    state: "live",
    rvolumes: ["hello", "world"],
    hash: "",
    size: -1,
  });
  assertEquals(toRecord("hello"), { state: "live", rvolumes: ["hello"], hash: "", size: -1 });
  assertEquals(toRecord("DELETEDhello"), {
    state: "unlinked",
    rvolumes: ["hello"],
    hash: "",
    size: -1,
  });
  assertEquals(toRecord(`HASH${HASH}a,b`), {
    state: "live",
    rvolumes: ["a", "b"],
    hash: HASH,
    size: -1,
  });
  assertEquals(toRecord(`DELETEDHASH${HASH}a:1/sv02`), {
    state: "unlinked",
    rvolumes: ["a:1/sv02"],
    hash: HASH,
    size: -1,
  });
});

Deno.test("toMkvString gives back mkv's strings", () => {
  for (
    const s of [
      "DELETEDhello,world",
      "hello,world",
      "hello",
      "DELETEDhello",
      `HASH${HASH}a,b`,
      `DELETEDHASH${HASH}a:1/sv02`,
    ]
  ) {
    assertEquals(toMkvString(toRecord(s)!), s);
  }
});

Deno.test("toMkvString writes a writing record as DELETED, as mkv's PUT in progress", () => {
  const rec: Record = {
    state: "writing",
    rvolumes: ["a", "b"],
    hash: "",
    size: -1,
    owner: "o",
    until: 1,
  };
  assertEquals(toMkvString(rec), "DELETEDa,b");
});

Deno.test("an S3 object's time and metadata round-trip; a plain record stores none", () => {
  const rec: Record = {
    state: "live",
    rvolumes: ["a:1"],
    hash: "0123456789abcdef0123456789abcdef",
    size: 3,
    mtime: 1_790_000_000_123,
    meta: { type: "image/png", etag: "aa-2", parts: [[2, 1], [1, 1]], amz: [["owner", "alice"]] },
  };
  assertEquals(fromRecord(rec), {
    s: 0,
    v: ["a:1"],
    h: "0123456789abcdef0123456789abcdef",
    z: 3,
    m: 1_790_000_000_123,
    t: "image/png",
    e: "aa-2",
    p: [[2, 1], [1, 1]],
    x: [["owner", "alice"]],
  });
  assertEquals(toRecord(structuredClone(fromRecord(rec))), rec);
  const plain = toRecord({ s: 0, v: ["a:1"], h: "", z: 3 })!;
  assertEquals(plain.meta, undefined);
  assertEquals(plain.mtime, undefined);
});

Deno.test("fitsRecord: a file fits its record's size, any size when either is not known", () => {
  const rec: Record = { state: "live", rvolumes: ["a:1"], hash: HASH, size: 11 };
  assertEquals([11, 5, 12, 0, -1].map((n) => fitsRecord(rec, n)), [
    true,
    false,
    false,
    false,
    true,
  ]);
  const rebuilt: Record = { ...rec, hash: "", size: -1 };
  assertEquals([11, 5, 0].map((n) => fitsRecord(rebuilt, n)), [true, true, true]);
});

Deno.test("fitsRecord: while a REPLACE switches the record, a file of either value's size fits", () => {
  const next: Record = { state: "live", rvolumes: ["a:1"], hash: "", size: 3 };
  const rec: Record = {
    state: "live",
    rvolumes: ["a:1"],
    hash: HASH,
    size: 11,
    next: { rec: next, tmp: "/ab/cd/replace.x" },
  };
  assertEquals([11, 3, 5].map((n) => fitsRecord(rec, n)), [true, true, false]);
  const unsized = { ...rec, next: { rec: { ...next, size: -1 }, tmp: "/ab/cd/replace.x" } };
  assertEquals(fitsRecord(unsized, 5), true);
});
