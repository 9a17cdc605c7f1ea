// The rebalance tool moving a key whose MD5 the index does not know (a
// rebuilt one) from a volume that answers its GET with a body of another
// length and no Content-Length (chunked: a proxy in front of nginx, one
// cut off mid-file that ends its body cleanly). Only the recorded size can
// tell such a copy is not the value: it must be refused, the key left where
// it was. It was copied, the index switched to it and the whole value
// deleted: the acknowledged value lost, the copy a fraction of it.
import { Cluster, randomBytes, randomKey, runMain } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { VolumeProxy } from "./replace_faults.ts";
import { key2path, key2volume } from "../../lib/keys.ts";
import { openIndex } from "../../lib/open.ts";

const enc = new TextEncoder();

/** Forwards to nginx; GETs of `path` get `reshape` of the file, sent chunked. */
class ReshapingVolume extends VolumeProxy {
  path = "";
  reshape: ((file: Uint8Array) => Uint8Array) | null = null;

  protected override async handle(req: Request): Promise<Response> {
    const res = await this.forward(req);
    const reshape = this.reshape;
    if (!reshape || req.method !== "GET" || !req.url.endsWith(this.path)) return res;
    const sent = reshape(new Uint8Array(await res.arrayBuffer()));
    const headers = new Headers(res.headers);
    headers.delete("content-length");
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(sent);
        c.close();
      },
    });
    return new Response(body, { status: res.status, headers });
  }
}

for (
  const [what, reshape] of [
    ["half of it", (f: Uint8Array) => f.subarray(0, f.length >> 1)],
    ["it and more", (f: Uint8Array) => new Uint8Array([...f, ...f.subarray(0, 1000)])],
  ] as const
) {
  Deno.test(`rebalance of a rebuilt key whose volume sends ${what}, chunked: refused, the value kept`, async () => {
    const c = await Cluster.start({ volumes: 2, flags: ["-replicas", "1", "-subvolumes", "1"] });
    const from = new ReshapingVolume(c.volumes[0]);
    try {
      await c.stopMaster();
      // A key the hash puts on the second volume once both are in -volumes.
      const both = [from.volume, c.volumes[1]];
      let key: string;
      do key = randomKey("/short"); while (
        key2volume(enc.encode(key), both, 1, 1)[0] === from.volume
      );
      from.path = key2path(enc.encode(key));
      // Over 1 MiB: copied as a stream, not read whole.
      const value = randomBytes(3 << 20);
      const m = await c.spawnMaster(["-volumes", from.volume]);
      const put = await fetch(m.url + key, { method: "PUT", body: value });
      await put.body?.cancel();
      assertEquals(put.status, 201);
      await m.stop();
      const flags = ["-replicas", "1", "-subvolumes", "1", "-db", c.db];
      const rebuilt = await runMain(["rebuild", "-volumes", from.volume, ...flags]);
      assertEquals(rebuilt.code, 0, rebuilt.stderr);

      from.reshape = reshape;
      const moved = await runMain(["rebalance", "-volumes", both.join(","), ...flags]);
      from.reshape = null;
      assertEquals(moved.code, 1, moved.stdout + moved.stderr);
      assert(moved.stdout.includes("moved 0 keys, 1 failed"), moved.stdout);
      assert(
        moved.stdout.includes(`where the index records ${value.length}; not copied`),
        moved.stdout,
      );

      const index = await openIndex(c.db);
      const e = await index.get(enc.encode(key));
      index.close();
      assertEquals(e?.rec.rvolumes, [from.volume]);
      assertEquals(e?.rec.size, value.length);
      const kept = await fetch(`http://${c.volumes[0]}${from.path}`);
      assertEquals(new Uint8Array(await kept.arrayBuffer()), value);
      const copy = await fetch(`http://${c.volumes[1]}${from.path}`);
      await copy.body?.cancel();
      assertEquals(copy.status, 404);
    } finally {
      await from.stop();
      await c.stop();
    }
  });
}
