// What the REPLACE fault tests share: a proxy in front of one nginx volume
// that a test can make hold or refuse requests, where a key's replicas are,
// and the check that a master serves exactly a value.
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { assertEquals } from "../assert.ts";
import type { Cluster, SpawnedMaster } from "../cluster.ts";
import { key2path, key2volume, md5, toHex } from "../../lib/keys.ts";

/**
 * Forwards every request to the nginx volume `target`. A subclass's
 * `handle` decides otherwise for the requests it is after; an answer it
 * holds can wait on `released` (resolved by `release()` or `stop()`).
 */
export class VolumeProxy {
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  readonly #released = Promise.withResolvers<void>();

  constructor(readonly target: string) {
    this.server = Deno.serve(
      // A forward that fails (the master gave up on the call) is a 502, quietly.
      {
        hostname: "127.0.0.1",
        port: 0,
        onListen() {},
        onError: () => new Response(null, { status: 502 }),
      },
      (req) => this.handle(req),
    );
  }

  /** The volume's name for a master's -volumes. */
  get volume(): string {
    return `127.0.0.1:${this.server.addr.port}`;
  }

  get released(): Promise<void> {
    return this.#released.promise;
  }

  release() {
    this.#released.resolve();
  }

  async stop() {
    this.release();
    await this.server.shutdown();
  }

  protected handle(req: Request): Promise<Response> {
    return this.forward(req);
  }

  /** The request as the volume answers it. */
  protected async forward(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const headers = new Headers(req.headers);
    headers.delete("host");
    const destination = req.headers.get("destination");
    // nginx renames only within its own host.
    if (destination) {
      headers.set("destination", `http://${this.target}${new URL(destination).pathname}`);
    }
    const body = req.method === "PUT" ? req.body : null;
    const res = await fetch(`http://${this.target}${url.pathname}`, {
      method: req.method,
      headers,
      body,
    });
    return new Response(res.body, { status: res.status, headers: res.headers });
  }
}

/**
 * Holds the first request of `method` (of all its kind's proxies) of a path
 * holding `match` until released; `held` resolves when it comes.
 */
export class FirstRequestHolder extends VolumeProxy {
  static taken = false;
  readonly #held = Promise.withResolvers<void>();

  constructor(target: string, readonly match: string, readonly method = "GET") {
    super(target);
  }

  get held(): Promise<void> {
    return this.#held.promise;
  }

  protected override async handle(req: Request): Promise<Response> {
    if (
      req.method === this.method && new URL(req.url).pathname.includes(this.match) &&
      !FirstRequestHolder.taken
    ) {
      FirstRequestHolder.taken = true;
      this.#held.resolve();
      await this.released;
    }
    return await this.forward(req);
  }
}

/** Where the key's replicas go: "host:port/svNN" (default -replicas 3, -subvolumes 10). */
export function where(volumes: string[], key: string): string[] {
  return key2volume(new TextEncoder().encode(key), volumes, 3, 10);
}

/** The key's file on each of its replicas, null where there is none. */
export async function replicas(volumes: string[], key: string): Promise<(Uint8Array | null)[]> {
  const path = key2path(new TextEncoder().encode(key));
  return await Promise.all(where(volumes, key).map((v) => fileOn(v, path)));
}

async function fileOn(volume: string, path: string): Promise<Uint8Array | null> {
  const res = await fetch(`http://${volume}${path}`);
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  return new Uint8Array(await res.arrayBuffer());
}

/** A GET of `key` through `master` redirects to `value`, with its MD5; the answer. */
export async function assertServes(
  master: string,
  key: string,
  value: Uint8Array,
): Promise<Response> {
  const res = await fetch(master + key, { redirect: "manual" });
  await res.body?.cancel();
  assertEquals(res.status, 302);
  assertEquals(res.headers.get("content-md5"), toHex(md5(value)));
  const got = await fetch(res.headers.get("location")!);
  assertEquals(new Uint8Array(await got.arrayBuffer()), value);
  return res;
}

/** Sends a REPLACE of `key` with `value` to `master`, its answer never awaited: the master is killed before it answers. */
export function replaceUnanswered(master: string, key: string, value: BodyInit): void {
  fetch(master + key, { method: "REPLACE", body: value }).then((r) => r.body?.cancel())
    .catch(() => {});
}

/** A master of `c` started with `flags` serves `key` as exactly `value` (assertServes); stopped after. */
export async function assertNewMasterServes(
  c: Cluster,
  flags: string[],
  key: string,
  value: Uint8Array,
): Promise<void> {
  const m = await c.spawnMaster(flags);
  try {
    await assertServes(m.url, key, value);
  } finally {
    await m.stop();
  }
}

/** An S3 GetObject of `Key` in `Bucket` gives `value`, its ETag the value's MD5. */
export async function assertS3Serves(s3: S3Client, Bucket: string, Key: string, value: string) {
  const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
  assertEquals(await got.Body!.transformToString(), value);
  assertEquals(got.ETag, `"${toHex(md5(new TextEncoder().encode(value)))}"`);
}

/**
 * A master of `c` whose volumes sit behind `proxies` (one per volume of
 * `c`), with `flags`; `stop()` stops the master, then the proxies.
 */
export async function masterBehind(
  c: Cluster,
  proxies: VolumeProxy[],
  flags: string[] = [],
): Promise<{ m: SpawnedMaster; stop: () => Promise<void> }> {
  const m = await c.spawnMaster(["-volumes", proxies.map((p) => p.volume).join(","), ...flags]);
  return {
    m,
    async stop() {
      await m.stop();
      await Promise.all(proxies.map((p) => p.stop()));
    },
  };
}
