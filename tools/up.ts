// `deno task up`: a local cluster to try the store: three nginx volumes on
// :3001-3003 (./data/volume1-3) and a master on :3000 (index in
// ./data/indexdb). Ctrl-C stops everything it started.
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

await ensureNginx();
const volumes = [3001, 3002, 3003];
// Another cluster on these ports would answer our readiness checks.
for (const port of [3000, ...volumes]) {
  try {
    Deno.listen({ port }).close();
  } catch {
    console.error(`Port ${port} is in use: stop what runs there first (another 'deno task up'?)`);
    Deno.exit(1);
  }
}
for (const port of volumes) {
  start(["volume", `${data}/volume${port - 3000}`], { PORT: String(port) });
}
await Promise.all(volumes.map((p) => waitFor(`http://localhost:${p}/`)));
start([
  "server",
  "-port",
  "3000",
  "-db",
  `${data}/indexdb`,
  "-volumes",
  volumes.map((p) => `localhost:${p}`).join(","),
  ...Deno.args,
]);
await waitFor("http://localhost:3000/?list&limit=1");
console.log(`
mkv is up: master http://localhost:3000, volumes ${volumes.map((p) => `:${p}`).join(" ")}
  curl -L -T README.md localhost:3000/hello     # store
  curl -L localhost:3000/hello                  # read
  curl 'localhost:3000/?list'                   # list
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
