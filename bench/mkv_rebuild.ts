// A straight port of mkv's rebuild (rebuild.go) to Deno KV, the yardstick
// for ours: 128 workers take the "/sv/ab/cd/" folders found by listing the
// folders that exist, and for each file found read its key's record, add
// the volume, order the volumes as key2volume would, and write it back, one
// commit per file (mkv: LevelDB get + put under a per-key lock).
//
//   deno run -A bench/mkv_rebuild.ts -volumes a,b,c -db DIR
import { parseFlagsOrExit } from "../lib/flags.ts";
import { FLAGS, requireDb, storeOptions } from "../lib/config.ts";
import { key2volume, name2key, orderByPlacement } from "../lib/keys.ts";
import { remoteList, volumeUrl } from "../lib/volumes.ts";
import { fromRecord, toRecord } from "../lib/record.ts";

const { flags } = parseFlagsOrExit(
  Deno.args,
  FLAGS,
  "deno run -A bench/mkv_rebuild.ts -volumes a,b,c -db DIR",
);
const opts = storeOptions(flags);
const kv = await Deno.openKv(`${requireDb(flags)}/index.sqlite3`);
const HEX2 = /^[0-9a-f]{2}$/;
const locks = new Set<string>();

async function files(url: string) {
  return await remoteList(url, 10_000).catch(() => null) ?? [];
}

async function rebuildFile(vol: string, name: string) {
  const key = name2key(name);
  if (!key) return;
  const id = String.fromCharCode(...key);
  while (locks.has(id)) await new Promise((r) => setTimeout(r, 1));
  locks.add(id);
  try {
    const kvolumes = key2volume(key, opts.volumes, opts.replicas, opts.subvolumes);
    const got = await kv.get(["k", key]);
    const rvolumes = got.versionstamp ? [...toRecord(got.value)!.rvolumes, vol] : [vol];
    await kv.set(
      ["k", key],
      fromRecord({
        state: "live",
        rvolumes: orderByPlacement(rvolumes, kvolumes),
        hash: "",
        size: -1,
      }),
    );
  } finally {
    locks.delete(id);
  }
}

const started = performance.now();
const queue: { vol: string; url: string }[] = [];
for (const vol of opts.volumes) {
  const svs = (await files(`http://${vol}/`)).filter((f) => /^sv[0-9A-F]{2}$/.test(f.name));
  const tvols = svs.length > 0 ? svs.map((f) => `${vol}/${f.name}`) : [vol];
  for (const tvol of tvols) {
    for (const i of await files(volumeUrl(tvol, "/"))) {
      if (i.type !== "directory" || !HEX2.test(i.name)) continue;
      for (const j of await files(volumeUrl(tvol, `/${i.name}/`))) {
        if (j.type === "directory" && HEX2.test(j.name)) {
          queue.push({ vol: tvol, url: volumeUrl(tvol, `/${i.name}/${j.name}/`) });
        }
      }
    }
  }
}
let n = 0;
await Promise.all(Array.from({ length: 128 }, async () => {
  for (let req = queue.pop(); req; req = queue.pop()) {
    for (const f of await files(req.url)) {
      if (f.type === "file") {
        await rebuildFile(req.vol, f.name);
        n++;
      }
    }
  }
}));
const secs = (performance.now() - started) / 1000;
console.log(`mkv-style rebuild: ${n} files in ${secs.toFixed(1)}s`);
kv.close();
