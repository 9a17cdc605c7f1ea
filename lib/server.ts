// The master's HTTP edge: parses the target, dispatches by method (or by the
// query's operation) to lib/store.ts, and maps any unexpected error to a
// status once, here.
import { metrics, render } from "./metrics.ts";
import { recentErrors, traffic } from "./history.ts";
import { logRequest, logUnexpected } from "./log.ts";
import { statusPage } from "./status.ts";
import { health } from "./health.ts";
import { Store } from "./store.ts";
import type { Outcome } from "./store.ts";
import { Fenced, IndexGone, isBusy, LOCKED_ANSWER } from "./group_commit.ts";
import { keyFits } from "./index_db.ts";
import {
  BadRequest,
  checkHost,
  parseQuery,
  parseTarget,
  rawTarget,
  type Target,
} from "./target.ts";
import { type Membership, RebuildRunning } from "./membership.ts";
import type { State } from "./record.ts";
import { handleS3, isS3, type S3Options } from "./s3.ts";
import { headerValue } from "./s3_auth.ts";
import { received, sent } from "./sizes.ts";

export interface ServerOptions {
  /** Log one line per request. */
  verbose: boolean;
  /** The S3 gateway (lib/s3.ts); absent when it is off (-s3 or keys turn it on). */
  s3?: S3Options;
}

/** More keys than this in one unpaged list answer 413 (as mkv). */
const LIST_CAP = 1_000_000;

const METHODS = "GET, HEAD, PUT, REPLACE, DELETE, UNLINK, RELINK, REBALANCE";

const decoder = new TextDecoder();

/**
 * Requests in flight, for a graceful stop: Deno's `shutdown()` cuts off the
 * body of a request still uploading, so on SIGTERM the master first drains:
 * new requests get 503, those in flight finish, then it shuts down.
 */
export class Drain {
  #inflight = 0;
  #draining = false;
  #idle: (() => void) | null = null;

  get draining(): boolean {
    return this.#draining;
  }

  enter() {
    this.#inflight++;
  }

  leave() {
    if (--this.#inflight === 0) this.#idle?.();
  }

  /** Refuses new requests; resolves when none is in flight, or after `ms`. */
  drain(ms: number): Promise<void> {
    this.#draining = true;
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#idle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

export function createHandler(
  store: Store,
  opts: ServerOptions,
  drain = new Drain(),
): (req: Request) => Response | Promise<Response> {
  return (req) => {
    if (drain.draining) return shuttingDown(req, opts);
    const fast = fromMemory(store, req, opts);
    if (fast) {
      // Answered synchronously: no clock read, it counts as the quickest.
      metrics.request(req.method, fast.status, 0, 0, 0);
      traffic.request(req.method, fast.status);
      return fast;
    }
    return counted(store, opts, req, drain);
  };
}

/**
 * The 503 of a draining master, counted and logged as every answer is
 * (an operator watching a rolling restart sees them in ?metrics).
 */
function shuttingDown(req: Request, opts: ServerOptions): Response {
  const res = withBody("Shutting down\n", {
    status: 503,
    headers: { Connection: "close", "Content-Type": "text/plain; charset=utf-8" },
  });
  metrics.request(req.method, res.status, 0, 0, bodySize(res));
  traffic.request(req.method, res.status);
  if (opts.verbose) {
    const key = rawTarget(req.url);
    logRequest({ method: req.method, key, status: res.status, ms: 0, bytes: bodySize(res) });
  }
  return res;
}

/** handle(), timed and counted, inside the drain. */
async function counted(
  store: Store,
  opts: ServerOptions,
  req: Request,
  drain: Drain,
): Promise<Response> {
  const started = performance.now();
  drain.enter();
  try {
    const res = await handle(store, opts, req);
    const seconds = (performance.now() - started) / 1000;
    metrics.request(req.method, res.status, seconds, received.get(res) ?? 0, bodySize(res));
    traffic.request(req.method, res.status);
    return res;
  } finally {
    drain.leave();
  }
}

/** The reason in the body of a 5xx answer, for the status page's errors. */
const reasons = new WeakMap<Response, string>();

function bodySize(res: Response): number {
  return sent.get(res) ?? 0;
}

/** A response with a text body, its size noted for the metrics. */
function withBody(body: string, init: ResponseInit): Response {
  const bytes = encoder.encode(body);
  const res = new Response(bytes, init);
  sent.set(res, bytes.length);
  if (res.status >= 500) reasons.set(res, body.trim());
  return res;
}

const encoder = new TextEncoder();

/**
 * The hot path of GET/HEAD of a missing key, answered synchronously (no
 * promise, no index read) when a sole master's key filter has never seen
 * the key. Null sends the request down the full path. (An existing key
 * always takes it: its replica is HEAD-checked on every GET, so a redirect
 * never goes to a volume that just died.)
 */
function fromMemory(store: Store, req: Request, opts: ServerOptions): Response | null {
  if (opts.verbose || (req.method !== "GET" && req.method !== "HEAD") || store.opts.fallback) {
    return null;
  }
  const url = req.url;
  if (url.includes("?")) return null;
  let key: Uint8Array;
  try {
    key = parseTarget(url).key;
  } catch {
    return null;
  }
  // The Host is not checked here (lib/target.ts checkHost): reading headers
  // costs this path ~15%, and a bad one can only make this a 404 of a key
  // never seen (one seen goes down the full path, which answers 400).
  if (!keyFits(key) || !store.index.absent(key)) return null;
  // S3's GetObject of a missing key answers NoSuchKey in XML, and HEAD of a
  // bucket is no key at all. Reading the headers costs this path about 15%
  // of its rate: only when the gateway is on.
  if (opts.s3 && req.headers.has("authorization")) return null;
  // A null body is sent with "content-length: 0" by Deno itself.
  return new Response(null, { status: 404 });
}

async function handle(store: Store, opts: ServerOptions, req: Request): Promise<Response> {
  {
    const started = performance.now();
    let res: Response;
    let key = "";
    try {
      checkHost(req.headers.get("host"));
      const target = parseTarget(req.url);
      key = target.query ? `${target.rawPath}?${target.query}` : target.rawPath;
      const membership = store.index.membership;
      if (!membership || isView(target.query)) res = await route(store, opts, req, target);
      else if (membership.rebuilding) res = rebuildRunning();
      else if (store.index.gone) res = text(503, store.index.gone.message);
      else {
        res = await route(store, opts, req, target);
        if (readIndex(req, res) && !membership.answerable(started)) {
          // Its body (an S3 GetObject's stream from a volume) is not sent.
          await res.body?.cancel().catch(() => {});
          res = await afterStall(membership, () => route(store, opts, req, target), req);
        }
      }
    } catch (err) {
      // A target that did not parse (a broken percent-escape) is named as sent.
      if (key === "") key = rawTarget(req.url);
      // Fenced: the write was not made; once the master has joined again, it can be.
      res = err instanceof BadRequest
        ? text(400, err.message)
        : err instanceof RebuildRunning
        ? rebuildRunning()
        : err instanceof IndexGone
        ? text(503, err.message)
        : err instanceof Fenced
        ? text(503, `${err.message}: retry`)
        : isBusy(err)
        ? text(503, LOCKED_ANSWER)
        : text(500, `Internal error: ${err instanceof Error ? err.message : err}`);
      if (!(err instanceof BadRequest)) logUnexpected(`${req.method} ${key}`, err);
    }
    // A body nobody read (403, 409, ...) is cancelled, not left half-read.
    if (req.body && !req.bodyUsed) req.body.cancel().catch(() => {});
    if (res.status >= 500) {
      recentErrors.add(`${req.method} ${key} ${res.status}`, reasons.get(res) ?? "");
    }
    if (opts.verbose) {
      const ms = performance.now() - started;
      const bytes = (received.get(res) ?? 0) + bodySize(res);
      logRequest({ method: req.method, key, status: res.status, ms, bytes });
    }
    return res;
  }
}

/** The answer to a parsed request (any rebuild checked already). */
function route(
  store: Store,
  opts: ServerOptions,
  req: Request,
  target: Target,
): Promise<Response> {
  return opts.s3 && isS3(req, target)
    ? handleS3(store, opts.s3, req, target)
    : target.query
    ? query(store, req, target.key, target.query)
    : dispatch(store, req, target.key, target.rawPath);
}

/**
 * Whether `res` says what the index held rather than a write made: a read's
 * answer, or a write refused for what was read (404, 403, 409). A write the
 * index took was fenced (lib/membership.ts): it landed before any rebuild
 * took this master for stopped. 5xx answers stand as they are.
 */
function readIndex(req: Request, res: Response): boolean {
  if (res.status >= 500) return false;
  return req.method === "GET" || req.method === "HEAD" || res.status >= 300;
}

/**
 * The answer to a request that read the index while this master stalled,
 * or before a heartbeat since one had looked for a rebuild (a rebuild may
 * have taken it for stopped and emptied the index meanwhile): 503 while a
 * rebuild runs; otherwise a read (GET, HEAD: no body) is made again once a
 * heartbeat has looked, and anything else answers 503.
 */
async function afterStall(
  membership: Membership,
  again: () => Promise<Response>,
  req: Request,
): Promise<Response> {
  const settled = await membership.settle();
  if (membership.rebuilding) return rebuildRunning();
  if (settled && (req.method === "GET" || req.method === "HEAD")) {
    const since = performance.now();
    const res = await again();
    if (membership.answerable(since)) return res;
    await res.body?.cancel().catch(() => {});
    if (membership.rebuilding) return rebuildRunning();
  }
  return text(503, STALLED);
}

const STALLED = "This master stalled and has not yet checked whether a rebuild of the index " +
  "ran meanwhile: retry";

async function dispatch(
  store: Store,
  req: Request,
  key: Uint8Array,
  rawPath: string,
): Promise<Response> {
  switch (req.method) {
    case "GET":
    case "HEAD":
      return respond(await store.locate(key, rawPath));
    case "PUT":
      return respondSized(
        await store.put(key, req.body, {
          contentLength: contentLength(req),
          signal: req.signal,
        }),
      );
    case "REPLACE":
      return respondSized(
        await store.replace(key, req.body, {
          contentLength: contentLength(req),
          signal: req.signal,
        }),
      );
    case "DELETE":
      return respond(await store.delete(key));
    case "UNLINK":
      return respond(await store.unlink(key));
    case "RELINK":
      return respond(await store.relink(key));
    case "REBALANCE":
      return respond(await store.rebalance(key, { check: true }));
    default:
      return withBody(`Method ${req.method} not allowed\n`, {
        status: 405,
        headers: { Allow: METHODS, "Content-Type": "text/plain; charset=utf-8" },
      });
  }
}

async function query(
  store: Store,
  req: Request,
  prefix: Uint8Array,
  raw: string,
): Promise<Response> {
  const q = parseQuery(raw);
  if (q.op === "metrics") return await metricsPage(store, req);
  if (q.op === "status") {
    const read = req.method === "GET" || req.method === "HEAD";
    return read ? await statusPage(store, req) : notGet("?status");
  }
  const states: { [op: string]: State } = {
    list: "live",
    unlinked: "unlinked",
    writing: "writing",
  };
  const state = states[q.op];
  if (!state) {
    const known = "?list, ?unlinked, ?writing, ?status or ?metrics";
    return text(
      400,
      q.op === ""
        ? `The query must start with its operation: ${known}`
        : `Unknown operation "?${q.op}": expected ${known}`,
    );
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    return notGet(`?${q.op}`);
  }
  const limitRaw = q.params.get("limit");
  let limit = 0;
  if (limitRaw !== undefined && limitRaw.length > 0) {
    const s = decoder.decode(limitRaw);
    // Any whole number, as mkv's Atoi: one of 10 digits or more is no less
    // a limit (it was refused as "not a whole number"); past the cap, the cap answers.
    // A sign too: "+2" is 2, and 0 or less is no limit, as mkv's "limit > 0".
    if (!/^[+-]?\d+$/.test(s)) return text(400, `Bad limit "${s}": not a whole number`);
    limit = Math.max(0, Number(s));
  }
  const start = q.params.get("start");
  if (!keyFits(prefix)) {
    return text(414, "Prefix too long for the index (at most 2043 bytes)");
  }
  const result = await store.index.list(prefix, {
    start: start && start.length > 0 ? start : undefined,
    state,
    limit,
    cap: LIST_CAP,
  });
  if (result.tooMany) {
    return text(413, `More than ${LIST_CAP} keys: page with &limit=N`);
  }
  const body = JSON.stringify({
    next: result.next ? decoder.decode(result.next) : "",
    keys: result.keys.map((k) => decoder.decode(k)),
  });
  return withBody(body, { headers: { "Content-Type": "application/json" } });
}

async function metricsPage(store: Store, req: Request): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return notGet("?metrics");
  }
  const { commits } = store.index;
  const figures = await store.index.views();
  const body = render(metrics, {
    commits: commits.stats.commits,
    commitErrors: commits.stats.failures,
    writes: commits.stats.writes,
    batches: commits.batches,
    durations: commits.durations,
    keys: figures.counts,
    sole: store.index.membership?.sole ? 1 : 0,
    incomplete: figures.incomplete ? 1 : 0,
    unanswered: figures.unanswered === null ? 0 : 1,
  }, store.opts.volumes.map((volume) => ({ volume, up: health.get(volume).up })));
  return new Response(body, {
    headers: { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" },
  });
}

/**
 * The request's Content-Length. Deno takes a Content-Length sent twice with
 * the same number and joins it ("3, 3"): that is the number, not NaN (which
 * went on to the volumes and failed the write with a 500).
 */
function contentLength(req: Request): number | null {
  return req.headers.has("content-length")
    ? Number(headerValue(req.headers, "content-length"))
    : null;
}

function respondSized(o: Outcome): Response {
  const res = respond(o);
  if (o.bytes) received.set(res, o.bytes);
  return res;
}

function respond(o: Outcome): Response {
  const body = o.message && o.status >= 400 ? o.message + "\n" : null;
  // The plain object as it is: a Headers made first would be checked and
  // copied twice (a tenth of a GET's cost, measured).
  if (body === null) return new Response(null, { status: o.status, headers: o.headers });
  const headers = new Headers(o.headers);
  headers.delete("Content-Length");
  headers.set("Content-Type", "text/plain; charset=utf-8");
  return withBody(body, { status: o.status, headers });
}

/**
 * 503 while a rebuild empties and refills the index: what it holds then is
 * no answer (a rebuild runs with the masters stopped; one paused past its
 * heartbeat when the rebuild began looked stopped).
 */
function rebuildRunning(): Response {
  return text(503, "A rebuild of the index is running: retry once it is done");
}

/** ?status and ?metrics: they answer during a rebuild too. */
function isView(raw: string): boolean {
  if (!raw) return false;
  const { op } = parseQuery(raw);
  return op === "status" || op === "metrics";
}

/** 405 to a view (?list, ?metrics, ...) asked for with another method than GET or HEAD. */
function notGet(view: string): Response {
  return withBody(`${view} takes GET\n`, {
    status: 405,
    headers: { Allow: "GET, HEAD", "Content-Type": "text/plain; charset=utf-8" },
  });
}

function text(status: number, message: string): Response {
  return withBody(message + "\n", {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8" },
  });
}
