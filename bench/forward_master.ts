// A master that only forwards: the thrash cycle's volume calls and nothing
// else. No index (keys live in a Set in memory, lost on exit), no claims, no
// MD5, no metrics. PUT writes the value to every volume, GET HEAD-checks one
// replica and answers 302, DELETE removes every replica. The volume calls
// are those of the real master (pooled raw HTTP/1.1, mkv's paths with the
// default 10 subvolumes, the same files), so the
// gap between this and the real master is what the index and the checks
// cost; the gap between this and the direct cycle is what one more hop
// costs. tools/bench.ts measures all three side by side.
//
//   deno run -A bench/forward_master.ts -port 3100 -volumes a:1,b:2,c:3
import { poolFor } from "../lib/http1.ts";
import { key2path, key2volume } from "../lib/keys.ts";
import { parseFlagsOrExit } from "../lib/flags.ts";

const { flags } = parseFlagsOrExit(Deno.args, {
  port: { type: "int", default: 3100, usage: "Port to listen on" },
  volumes: { type: "string", default: "", usage: "Comma separated volumes (host:port)" },
}, "deno run -A bench/forward_master.ts [flags]");
const volumes = String(flags.volumes).split(",").filter((v) => v !== "");
const live = new Set<string>();
const TIMEOUT = 5_000;
const encoder = new TextEncoder();

function answer(status: number, headers?: HeadersInit): Response {
  return new Response(null, { status, headers });
}

/** Where a key's replicas go: host and path on it, as the master puts them. */
type Places = { host: string; path: string }[];

async function put(places: Places, req: Request): Promise<Response> {
  const body = await req.bytes();
  const written = await Promise.all(
    places.map((p) =>
      poolFor(p.host).request("PUT", p.path, { body, timeout: TIMEOUT, maxBody: 4096 })
    ),
  );
  if (!written.every((r) => r.status === 201 || r.status === 204)) return answer(500);
  live.add(places[0].path);
  return answer(201);
}

async function get(places: Places): Promise<Response> {
  if (!live.has(places[0].path)) return answer(404);
  const { host, path } = places[Math.floor(Math.random() * places.length)];
  const head = await poolFor(host).request("HEAD", path, { timeout: TIMEOUT, maxBody: 0 });
  if (head.status !== 200) return answer(404);
  return answer(302, { Location: `http://${host}${path}` });
}

async function del(places: Places): Promise<Response> {
  live.delete(places[0].path);
  await Promise.all(
    places.map((p) =>
      poolFor(p.host).request("DELETE", p.path, { timeout: TIMEOUT, maxBody: 4096 })
    ),
  );
  return answer(204);
}

Deno.serve({ port: flags.port as number, onListen() {} }, (req) => {
  const key = encoder.encode(decodeURIComponent(new URL(req.url).pathname));
  const path = key2path(key);
  const places = key2volume(key, volumes, volumes.length, 10).map((v) => {
    const slash = v.indexOf("/");
    return { host: v.slice(0, slash), path: v.slice(slash) + path };
  });
  switch (req.method) {
    case "PUT":
      return put(places, req);
    case "GET":
      return get(places);
    case "DELETE":
      return del(places);
    default:
      return answer(405);
  }
});
