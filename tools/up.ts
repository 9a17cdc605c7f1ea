// `deno task up`: a local cluster to try the store: three nginx volumes on
// :3001-3003 (./data/volume1-3) and a master on :3000 (index in
// ./data/indexdb). `PORT=42000 deno task up` moves them all: the master on
// 42000, the volumes on 42001-42003. Ctrl-C stops everything it started.
import { MASTER_V8_FLAGS } from "../lib/runtime.ts";
import { resolve } from "node:path";
import { ensureNginx } from "./volume.ts";

const main = new URL("../main.ts", import.meta.url).pathname;
const data = resolve("data");
const deno = Deno.execPath();
const children: Deno.ChildProcess[] = [];

function start(args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(deno, {
    args: ["run", "-A", "--unstable-kv", MASTER_V8_FLAGS, main, ...args],
    env,
    stdin: "null",
  }).spawn();
  children.push(child);
  return child;
}

async function waitFor(url: string) {
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(url);
      await res.body?.cancel();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${url} did not come up`);
}

const base = Number(Deno.env.get("PORT") ?? "3000");
if (!Number.isInteger(base) || base < 1 || base > 65532) {
  console.error(`Bad PORT "${Deno.env.get("PORT")}": expected 1-65532 (the master's port)`);
  Deno.exit(2);
}
await ensureNginx();
const volumes = [base + 1, base + 2, base + 3];
// Another cluster on these ports would answer our readiness checks.
for (const port of [base, ...volumes]) {
  try {
    Deno.listen({ port }).close();
  } catch {
    console.error(
      `Port ${port} is in use: stop what runs there first (another 'deno task up'?), ` +
        `or move the cluster: PORT=42000 deno task up`,
    );
    Deno.exit(1);
  }
}
for (const port of volumes) {
  start(["volume", `${data}/volume${port - base}`], { PORT: String(port) });
}
await Promise.all(volumes.map((p) => waitFor(`http://localhost:${p}/`)));
start([
  "server",
  "-port",
  String(base),
  "-db",
  `${data}/indexdb`,
  "-volumes",
  volumes.map((p) => `localhost:${p}`).join(","),
  ...Deno.args,
]);
await waitFor(`http://localhost:${base}/?list&limit=1`);
console.log(`
mkv is up: master http://localhost:${base}, volumes ${volumes.map((p) => `:${p}`).join(" ")}
  curl -L -T README.md localhost:${base}/hello     # store
  curl -L localhost:${base}/hello                  # read
  curl 'localhost:${base}/?list'                   # list
Ctrl-C stops everything.`);

const stop = () => {
  for (const c of children) {
    try {
      c.kill("SIGTERM");
    } catch { /* already gone */ }
  }
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
// If any part dies, take the rest down too.
await Promise.race(children.map((c) => c.status));
stop();
await Promise.all(children.map((c) => c.status));
