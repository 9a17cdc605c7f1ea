// The master's listener: Deno.serve, listening again when it stops
// accepting. Deno 2.9.6's Deno.serve ends its accept loop at the first
// accept() that fails, closing the listening socket and rejecting
// `finished`: "Too many open files (os error 24)" once the connections
// open hold every file descriptor `ulimit -n` allows (idle keep-alive
// clients, a burst of requests). The requests in flight on the
// connections it had go on being served, but alone no new connection
// would ever be taken again (the master exited). Here a server that ends
// so is replaced by a new one on the same port, after RELISTEN_MS
// (meanwhile connections are refused); once its requests are answered,
// its shutdown closes its idle connections, giving their descriptors back.
import { logWarn } from "./log.ts";

/** How long after its listener stopped the master listens again, ms. */
export const RELISTEN_MS = 100;

/** At most one line per this many ms says the listener stopped (and how often since). */
const LOG_EVERY_MS = 1_000;

export interface ServingOptions {
  /** The port to listen on (0: a free one, kept for every listener after the first). */
  port: number;
  handler: Deno.ServeHandler;
  /** Called once, when the first listener listens. */
  onListen: (addr: { port: number }) => void;
  onError: (err: unknown) => Response | Promise<Response>;
}

/**
 * Deno.serve on a port for as long as the master runs: a listener whose
 * accept loop dies is replaced. `finished` settles once shutdown() has
 * ended every listener (and the connections each still had).
 */
export class Serving {
  readonly #opts: ServingOptions;
  /** Every server started: an ended one may still serve its open connections. */
  readonly #servers = new Set<Deno.HttpServer>();
  readonly #finished = Promise.withResolvers<void>();
  #port: number;
  #stopping = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Listeners lost since the last line said so, and when that was. */
  #lost = 0;
  #saidAt = -Infinity;

  /** Listens at once: throws as Deno.serve does when the port cannot be listened on. */
  constructor(opts: ServingOptions) {
    this.#opts = opts;
    this.#port = opts.port;
    const srv = this.#serve(opts.onListen);
    this.#port = srv.addr.port;
  }

  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /** Stops listening, then waits for every server's connections to end (Deno's shutdown()). */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    const all = [...this.#servers].map((s) => s.shutdown().catch(() => {}));
    await Promise.all(all);
    this.#finished.resolve();
  }

  #serve(onListen: (addr: { port: number }) => void): Deno.HttpServer & { addr: Deno.NetAddr } {
    const { onError } = this.#opts;
    // Its requests whose answer is still being made. Deno's shutdown()
    // lets an answer being made or sent finish, but cuts off a request
    // body still being read (a PUT's: 400): only those are waited for,
    // and they end with their handler's promise. An answer made at once
    // (a missing key's 404, the hottest path) has read all it will: not
    // counted, no promise made for it (Deno's info.completed makes one
    // per request, only once asked for).
    let serving = 0;
    let lost = false;
    const done = () => --serving === 0 && lost && release();
    const handler: Deno.ServeHandler = (req, info) => {
      const res = this.#opts.handler(req, info);
      if (!(res instanceof Promise)) return res;
      serving++;
      res.then(done, done);
      return res;
    };
    const srv = Deno.serve({ port: this.#port, onListen, onError }, handler);
    this.#servers.add(srv);
    // A lost listener's server keeps serving the requests it had; once
    // their answers are made, its shutdown closes its idle connections.
    // Kept among the servers until that is over: shutdown() waits for it.
    const release = () => {
      srv.shutdown().catch(() => {}).finally(() => this.#servers.delete(srv));
    };
    srv.finished.then(
      () => this.#servers.delete(srv),
      (err) => {
        lost = true;
        if (serving === 0) release();
        this.#lostListener(err);
      },
    );
    return srv as Deno.HttpServer & { addr: Deno.NetAddr };
  }

  #lostListener(err: unknown) {
    if (this.#stopping) return;
    this.#lost++;
    const now = performance.now();
    if (now - this.#saidAt >= LOG_EVERY_MS) {
      const why = err instanceof Error ? err.message : String(err);
      const times = this.#lost === 1 ? "" : `, ${this.#lost} times since the last such line`;
      logWarn(
        `The master stopped taking connections on :${this.#port} (${why}${times})${
          hintFor(why)
        }: ` +
          `it listens again every ${RELISTEN_MS} ms until it can, refusing connections ` +
          `meanwhile; those open are still served`,
        { port: this.#port, error: why, lost: this.#lost },
      );
      this.#saidAt = now;
      this.#lost = 0;
    }
    this.#relisten();
  }

  #relisten() {
    this.#timer = setTimeout(() => {
      if (this.#stopping) return;
      try {
        this.#serve(() => {});
      } catch (err) {
        // Binding needs a descriptor too, and the port may have been taken.
        this.#lostListener(err);
      }
    }, RELISTEN_MS);
  }
}

/** What to do about the error that ended a listener, when it is a known one. */
function hintFor(why: string): string {
  if (!/os error 2[34]\b/.test(why)) return "";
  return ": the connections open hold every file descriptor ulimit -n allows; close idle " +
    "clients, raise the limit, or put a proxy with timeouts in front (README, Security)";
}
