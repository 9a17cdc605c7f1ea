// A large write (streamed to the volumes, lib/fanout.ts) whose client closes
// its connection once the whole body went out, before the answer. Deno
// 2.9.6's HTTP server tells the handler that a client left (request.signal)
// only for a request of a few hundred bytes at most, head and body
// (tests/client_gone_test.ts: 499, nothing stored); of a larger one it says
// nothing until the answer is sent, so the write goes on and is stored, as
// README's Logs section says. Should Deno start telling, this test fails:
// then the 499 holds for every size, and README says so.
// `deno task test:faults`.
import {
  Cluster,
  randomBytes,
  randomKey,
  type SpawnedMaster,
  status,
  volumeFiles,
} from "../cluster.ts";
import { VolumeProxy } from "./replace_faults.ts";
import { key2path } from "../../lib/keys.ts";
import { assertEquals } from "../assert.ts";

const SIZE = 32 << 20;

/** A volume that stores the PUTs of one key's file, then holds their answers until released. */
class AnswerHolder extends VolumeProxy {
  readonly #stored = Promise.withResolvers<void>();
  #path = "";

  /** Holds the answers to PUTs of `key`'s file. */
  holdOn(key: string) {
    this.#path = key2path(new TextEncoder().encode(key));
  }

  /** Resolves once nginx has answered a held PUT: the whole body went through. */
  get stored(): Promise<void> {
    return this.#stored.promise;
  }

  protected override async handle(req: Request): Promise<Response> {
    const res = await this.forward(req);
    const path = new URL(req.url).pathname;
    if (req.method !== "PUT" || !this.#path || !path.endsWith(this.#path)) return res;
    this.#stored.resolve();
    await this.released;
    return res;
  }
}

interface Held {
  c: Cluster;
  holder: AnswerHolder;
  m: SpawnedMaster;
  stop(): Promise<void>;
}

/** A one-volume cluster whose master writes through an AnswerHolder. */
async function heldCluster(): Promise<Held> {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const holder = new AnswerHolder(c.volumes[0]);
  await c.stopMaster();
  const m = await c.spawnMaster([], {}, { volumes: [holder.volume] });
  return {
    c,
    holder,
    m,
    async stop() {
      await m.stop();
      await holder.stop();
      await c.stop();
    },
  };
}

/** The master's count of PUTs answered `code`. */
async function counted(url: string, code: number): Promise<number> {
  const text = await (await fetch(`${url}/?metrics`)).text();
  const line = text.split("\n").find((l) =>
    l.startsWith(`mkv_requests_total{method="PUT",status="${code}"} `)
  );
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

Deno.test("a large PUT whose client closes once its body went out whole is stored and counted 201: Deno does not tell the master the client left", async () => {
  const g = await heldCluster();
  try {
    const key = randomKey("/gone-large");
    g.holder.holdOn(key);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(g.m.url).port) });
    const head = `PUT ${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${SIZE}\r\n\r\n`;
    for (const b of [new TextEncoder().encode(head), randomBytes(SIZE)]) {
      for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
    }
    await g.holder.stored;
    conn.close();
    // Answered after the close: the master has read what the client's
    // connection had to say (a small request's close it takes for a 499).
    assertEquals(await status(`${g.m.url}/?list`), 200);
    g.holder.release();
    while (await counted(g.m.url, 201) + await counted(g.m.url, 499) === 0) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assertEquals(await counted(g.m.url, 201), 1);
    assertEquals(await status(g.m.url + key), 302);
    assertEquals((await volumeFiles(g.c.volumes[0])).length, 1);
  } finally {
    await g.stop();
  }
});
