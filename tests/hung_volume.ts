// A volume that hangs on the requests a test picks: the master waits on it
// while the test does what it is after (a SIGTERM, a look at ?status).
import { VolumeProxy } from "./faults/replace_faults.ts";
import { key2path } from "../lib/keys.ts";

/**
 * A volume that hangs on the requests `holds` picks (none until set): it
 * takes them and answers nothing (`midBody`: it answers, sends the first
 * KiB of the value, and nothing more) until released. `arrived` resolves
 * once it holds one: the master is waiting on it.
 */
export class HungVolume extends VolumeProxy {
  holds: ((req: Request) => boolean) | null = null;
  midBody = false;
  readonly #arrived = Promise.withResolvers<void>();

  get arrived(): Promise<void> {
    return this.#arrived.promise;
  }

  /** Hangs on `method` requests for `key`'s file. */
  hangOn(method: string, key: string) {
    const path = key2path(new TextEncoder().encode(key));
    this.holds = (req) => req.method === method && new URL(req.url).pathname.endsWith(path);
  }

  protected override async handle(req: Request): Promise<Response> {
    if (!this.holds?.(req)) return await this.forward(req);
    if (!this.midBody) {
      this.#arrived.resolve();
      await this.released;
      return new Response(null, { status: 502 });
    }
    const res = await this.forward(req);
    const reader = res.body!.getReader();
    const first = (await reader.read()).value!.subarray(0, 1024);
    const released = this.released;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => c.enqueue(first),
      pull: async (c) => {
        this.#arrived.resolve();
        await released;
        await reader.cancel();
        c.error(new Error("Released"));
      },
      cancel: () => reader.cancel(),
    });
    return new Response(body, { status: res.status, headers: res.headers });
  }
}

/**
 * A volume that holds the requests `holdOn` picks (none until set) until
 * letGo(), then passes them on: the master's call waits, then is answered
 * as the volume answers it. `arrived` resolves once it holds one.
 */
export class HeldVolume extends VolumeProxy {
  #holds: ((req: Request) => boolean) | null = null;
  readonly #arrived = Promise.withResolvers<void>();
  readonly #go = Promise.withResolvers<void>();

  get arrived(): Promise<void> {
    return this.#arrived.promise;
  }

  /** Holds `method` requests for `key`'s file. */
  holdOn(method: string, key: string) {
    const path = key2path(new TextEncoder().encode(key));
    this.holdWhen((req) => req.method === method && new URL(req.url).pathname.endsWith(path));
  }

  /** Holds the requests `holds` picks (a REPLACE's rename, a part's read). */
  holdWhen(holds: (req: Request) => boolean) {
    this.#holds = holds;
  }

  /** Passes on the requests held, and those that come after. */
  letGo() {
    this.#holds = null;
    this.#go.resolve();
  }

  protected override async handle(req: Request): Promise<Response> {
    if (this.#holds?.(req)) {
      this.#arrived.resolve();
      await this.#go.promise;
    }
    return await this.forward(req);
  }
}
