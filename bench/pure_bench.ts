// Micro-benchmarks of the pure parts: hashing a key to its path and volumes,
// MD5 and small allocations, the record codec, the request target parser,
// and one group commit of 100 concurrent compare-and-set writes on a
// temporary Deno KV.
//
//   deno bench -A bench/
import { createHash } from "node:crypto";
import { smallBytes } from "../lib/bytes.ts";
import { key2path, key2volume } from "../lib/keys.ts";
import { md5Into } from "../lib/md5.ts";
import { fromRecord, type Record, toRecord } from "../lib/record.ts";
import { parseQuery, parseTarget } from "../lib/target.ts";
import { Index } from "../lib/index_db.ts";

const enc = new TextEncoder();
const KEY = enc.encode("/photos/2024/06/holiday/IMG_0042.jpg");
const LONG_KEY = crypto.getRandomValues(new Uint8Array(1000));
const VOL3 = ["localhost:3001", "localhost:3002", "localhost:3003"];
const VOL10 = Array.from({ length: 10 }, (_, i) => `volume${i}.internal:80`);
/** Results go here so the optimizer cannot drop the calls. */
let sink: unknown;

Deno.bench({ name: "key2path (36-byte key)", group: "keys", baseline: true }, () => {
  sink = key2path(KEY);
});

Deno.bench({ name: "key2path (1000-byte key, cut into segments)", group: "keys" }, () => {
  sink = key2path(LONG_KEY);
});

Deno.bench({ name: "key2volume (3 volumes, 3 replicas, 10 subvolumes)", group: "keys" }, () => {
  sink = key2volume(KEY, VOL3, 3, 10);
});

Deno.bench({ name: "key2volume (10 volumes, 3 replicas, 10 subvolumes)", group: "keys" }, () => {
  sink = key2volume(KEY, VOL10, 3, 10);
});

// Why keys are hashed in JS (lib/md5.ts) and parsed into slab memory
// (lib/bytes.ts): node:crypto's digest and a new ArrayBuffer each cost far
// more here than the work they wrap.
Deno.bench({ name: "md5 of a 36-byte key, lib/md5.ts", group: "md5", baseline: true }, () => {
  sink = md5Into([KEY], smallBytes(16));
});

Deno.bench({ name: "md5 of a 36-byte key, node:crypto", group: "md5" }, () => {
  sink = createHash("md5").update(KEY).digest();
});

Deno.bench({ name: "16 bytes from the slab (smallBytes)", group: "alloc", baseline: true }, () => {
  sink = smallBytes(16);
});

Deno.bench({ name: "16 bytes as a new Uint8Array", group: "alloc" }, () => {
  sink = new Uint8Array(16);
});

const REC: Record = {
  state: "live",
  rvolumes: ["localhost:3001/sv03", "localhost:3002/sv07", "localhost:3003/sv01"],
  hash: "5d41402abc4b2a76b9719d911017c592",
  size: 123_456,
};
const STORED = fromRecord(REC);
const MKV = "HASH5d41402abc4b2a76b9719d911017c592localhost:3001/sv03,localhost:3002/sv07";

Deno.bench({ name: "fromRecord", group: "record", baseline: true }, () => {
  sink = fromRecord(REC);
});

Deno.bench({ name: "toRecord (stored object)", group: "record" }, () => {
  sink = toRecord(STORED);
});

Deno.bench({ name: "toRecord (mkv LevelDB string)", group: "record" }, () => {
  sink = toRecord(MKV);
});

Deno.bench({ name: "parseTarget (plain path)", group: "target", baseline: true }, () => {
  sink = parseTarget("http://localhost:3000/photos/2024/06/holiday/IMG_0042.jpg");
});

Deno.bench({ name: "parseTarget (escapes + list query)", group: "target" }, () => {
  const t = parseTarget("http://localhost:3000/photos/%C3%A9t%C3%A9%202024/?list&limit=100");
  sink = parseQuery(t.query);
});

// ---- group commit on a real Deno KV ----

const dir = await Deno.makeTempDir({ prefix: "mkv_bench_" });
const index = new Index(await Deno.openKv(`${dir}/index.kv`));
globalThis.addEventListener("unload", () => {
  if (sink === Symbol.for("never")) console.log(sink);
  index.close();
  Deno.removeSync(dir, { recursive: true });
});
let round = 0;

Deno.bench({
  name: "group commit: 100 concurrent cas creates",
  group: "kv",
  baseline: true,
  async fn() {
    const r = round++;
    const stamps = await Promise.all(
      Array.from({ length: 100 }, (_, i) => index.cas(enc.encode(`/b/${r}/${i}`), null, REC)),
    );
    if (stamps.includes(null)) throw new Error("a create lost");
  },
});

Deno.bench({
  name: "single cas create (one commit, for comparison)",
  group: "kv",
  async fn() {
    const r = round++;
    if ((await index.cas(enc.encode(`/s/${r}`), null, REC)) === null) {
      throw new Error("a create lost");
    }
  },
});
