// The master's HTTP edge: parses the target, dispatches by method (or by the
// query's operation) to lib/store.ts, and maps any unexpected error to a
// status once, here.
import { metrics, render } from "./metrics.ts";
import { recentErrors, traffic } from "./history.ts";
import { logRefused, logRequest, logUndone, logUnexpected } from "./log.ts";
import { statusPage } from "./status.ts";
import { health } from "./health.ts";
import { Store } from "./store.ts";
import { requestBody } from "./request_body.ts";
import type { Outcome, PutOptions } from "./store.ts";
import { Fenced, IndexGone, isBusy, LOCKED_ANSWER } from "./group_commit.ts";
import { keyFits } from "./index_db.ts";
import {
  BadRequest,
  checkHost,
  parseQuery,
  parseTarget,
  rawTarget,
  shownTarget,
  type Target,
} from "./target.ts";
import { type Membership, REBUILD_RUNNING, RebuildRunning } from "./membership.ts";
import type { State } from "./record.ts";
import { handleS3, isS3, isSdkRequest, isVirtualHosted, type S3Options, s3Refusal } from "./s3.ts";
import { headerValue } from "./s3_auth.ts";
import { endings, reasons, received, sent, undone, unwritten } from "./sizes.ts";
import { CLIENT_CLOSED, ClientGone, isCutOff, ShuttingDown } from "./fanout.ts";
import { VolumeError } from "./volumes.ts";
import { MASTER_ANSWER, NAME_CHECK } from "./aliases.ts";
import { toHex } from "./keys.ts";
import { Buffer } from "node:buffer";

export interface ServerOptions {
  /** Log one line per request. */
  verbose: boolean;
  /** The S3 gateway (lib/s3.ts); absent when it is off (-s3 or keys turn it on). */
  s3?: S3Options;
  /**
   * Aborted when a stopping master cuts off the requests in flight (the
   * Drain's signal: createHandler sets it).
   */
  stop?: AbortSignal;
}

/** More keys than this in one unpaged list answer 413 (as mkv). */
const LIST_CAP = 1_000_000;

const METHODS = "GET, HEAD, PUT, REPLACE, DELETE, UNLINK, RELINK, REBALANCE";

const decoder = new TextDecoder();

export { ShuttingDown };

export interface DrainOptions {
  /** How long the requests in flight may go on, ms, before they are cut off. */
  deadline: number;
  /** How long those cut off then have to answer (503), ms. */
  grace: number;
}

/** How a drain ended. */
export interface Drained {
  /** Requests in flight at the deadline (or the second signal). */
  inflight: number;
  /**
   * Of those, the ones still being worked on (no answer made yet) that
   * the cut stopped within the grace: their 503 says so (`cutOffAnswer`).
   */
  cut: number;
  /**
   * Of those still being worked on, the ones that answered otherwise within
   * the grace (the cut did not stop them: a commit the index was trying
   * that lands, a 503 refused for a reason of its own, a volume down), by
   * status: how many answered each.
   */
  finished: { [status: number]: number };
  /** Of those still being worked on, the ones with no answer made by the end of the grace. */
  working: number;
  /**
   * Of those in flight, answers already being sent whose body the cut ended
   * short (an S3 GetObject's, streaming from a volume): fewer bytes than
   * their Content-Length, as at a volume's stall.
   */
  cutShort: number;
  /**
   * Of those in flight, answers already being sent whose work the cut then
   * stopped: their body ends with the cut's error (an S3
   * CompleteMultipartUpload's 200, ending with ServiceUnavailable).
   */
  cutMidAnswer: number;
  /** Of those, answers already being sent that the cut left to finish (a body the master holds). */
  leftToFinish: number;
  /** Requests (of the three kinds) whose answer was not delivered by the end of the grace. */
  unanswered: number;
}

/** What a drain that found nothing in flight (or has not ended) says. */
export function nothingDrained(): Drained {
  return {
    inflight: 0,
    cut: 0,
    finished: {},
    working: 0,
    cutShort: 0,
    cutMidAnswer: 0,
    leftToFinish: 0,
    unanswered: 0,
  };
}

/**
 * The stopping master's line saying what became of the requests still in
 * flight at the deadline (`drained`, of a drain with `opts`): each counted
 * by what it answered, not by what the cut meant for it.
 */
export function drainedLine(drained: Drained, opts: DrainOptions): string {
  const { inflight, cut, finished, working, cutShort, cutMidAnswer, leftToFinish, unanswered } =
    drained;
  const what = [
    cut > 0 ? `${cut} cut off (answered 503)` : "",
    notStopped(finished),
    working > 0 ? `${working} cut off with no answer yet` : "",
    cutShort > 0
      ? `${cutShort} cut short (an S3 GetObject streaming from a volume: its body ended ` +
        `before its Content-Length)`
      : "",
    cutMidAnswer > 0
      ? `${cutMidAnswer} cut off mid-answer (an S3 CompleteMultipartUpload: its 200 ended with ` +
        `ServiceUnavailable)`
      : "",
    leftToFinish > 0 ? `${leftToFinish} left to finish sending their answer` : "",
  ].filter((s) => s !== "");
  const late = unanswered > 0 ? `; ${unanswered} not answered in full within ${opts.grace} ms` : "";
  return `Stopping: ${inflight} request(s) still in flight after ${opts.deadline} ms (-drain): ` +
    `${what.join(", ")}${late}`;
}

/**
 * The requests the cut did not stop, by the status each answered: "1 not
 * stopped by the cut (answered 200)", "3 not stopped by the cut (2 answered
 * 200, 1 answered 204)"; "" when there were none.
 */
function notStopped(finished: { [status: number]: number }): string {
  const counts = Object.entries(finished).sort(([a], [b]) => Number(a) - Number(b));
  const total = counts.reduce((sum, [, n]) => sum + n, 0);
  if (total === 0) return "";
  const how = counts.length === 1
    ? `answered ${counts[0][0]}`
    : counts.map(([status, n]) => `${n} answered ${status}`).join(", ");
  return `${total} not stopped by the cut (${how})`;
}

/**
 * Requests in flight, for a graceful stop: Deno's `shutdown()` cuts off the
 * body of a request still uploading (which then failed as a client's body
 * ended early: 400), so on SIGTERM the master first drains: new requests
 * get 503, those in flight finish; at the deadline those left are cut off
 * (`signal`, ShuttingDown: 503, or a streaming body ended short); then it
 * shuts down. A request is in flight from enter() to leave(); answered()
 * says its answer is being sent, and with what status (what became of one
 * still being worked on at the cut: cut off, 503, or finished all the same).
 */
export class Drain {
  #inflight = 0;
  /** Of those in flight, the ones with no answer yet. */
  #working = 0;
  #draining = false;
  #idle = new Set<() => void>();
  #cut = new AbortController();
  /** What was in flight when the cut came. */
  #atCut = { inflight: 0, working: 0 };
  /**
   * The statuses answered since the cut (by those still being worked on at
   * it), how many each; those the cut stopped apart.
   */
  #sinceCut = new Map<number, number>();
  #cutSinceCut = 0;
  #cutShort = 0;
  #cutMidAnswer = 0;

  get draining(): boolean {
    return this.#draining;
  }

  /** Aborted (with ShuttingDown) when the requests in flight are cut off. */
  get signal(): AbortSignal {
    return this.#cut.signal;
  }

  enter() {
    this.#inflight++;
    this.#working++;
  }

  /**
   * The request's answer (of `status`) is made: it is being sent, until
   * leave(). `cutOff`: the answer is the cut's (its 503 says the master cut
   * the request off), not one the request came to for a reason of its own.
   */
  answered(status: number, opts: { cutOff?: boolean } = {}) {
    this.#working--;
    // No request enters once draining: one answered after the cut was being worked on at it.
    if (!this.#cut.signal.aborted) return;
    if (opts.cutOff) this.#cutSinceCut++;
    else this.#sinceCut.set(status, (this.#sinceCut.get(status) ?? 0) + 1);
  }

  /** `answered`: whether answered() was called for it. */
  leave(answered = false) {
    if (!answered) this.#working--;
    if (--this.#inflight === 0) { for (const idle of this.#idle) idle(); }
  }

  /**
   * A body being sent ended short by the cut (Deno.serve's report of it:
   * answerFailed).
   */
  endedShort() {
    this.#cutShort++;
  }

  /**
   * An answer being sent whose work the cut stopped: its body ended with
   * the cut's error (an S3 CompleteMultipartUpload's 200: counted).
   */
  endedCutOff() {
    this.#cutMidAnswer++;
  }

  /**
   * Refuses new requests; waits until none is in flight, or `deadline` ms
   * (or a cutOff()), then cuts off those left and waits up to `grace` ms
   * for their answers.
   */
  async drain(opts: DrainOptions): Promise<Drained> {
    this.#draining = true;
    if (await this.#idleWithin(opts.deadline)) return nothingDrained();
    this.cutOff();
    await this.#idleWithin(opts.grace);
    const { inflight, working } = this.#atCut;
    const sending = inflight - working;
    // A body cut short after its answer was made at the cut itself counts once.
    const cutShort = Math.min(this.#cutShort, sending);
    const cutMidAnswer = Math.min(this.#cutMidAnswer, sending - cutShort);
    const leftToFinish = sending - cutShort - cutMidAnswer;
    const finished: { [status: number]: number } = {};
    let answered = this.#cutSinceCut;
    for (const [status, n] of this.#sinceCut) {
      answered += n;
      finished[status] = n;
    }
    return {
      inflight,
      cut: this.#cutSinceCut,
      finished,
      // Gone with no answer made counts here too (its connection closed without one).
      working: working - answered,
      cutShort,
      cutMidAnswer,
      leftToFinish,
      unanswered: this.#inflight,
    };
  }

  /** Cuts off the requests in flight now (a second SIGTERM: the deadline is now). */
  cutOff() {
    this.#draining = true;
    if (this.#cut.signal.aborted) return;
    this.#atCut = { inflight: this.#inflight, working: this.#working };
    this.#cut.abort(new ShuttingDown());
  }

  /** True once no request is in flight; false after `ms`, or at a cut-off while waiting. */
  #idleWithin(ms: number): Promise<boolean> {
    if (this.#inflight === 0) return Promise.resolve(true);
    const signal = this.#cut.signal;
    return new Promise((resolve) => {
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.#idle.delete(onIdle);
        signal.removeEventListener("abort", onCut);
        resolve(idle);
      };
      const onIdle = () => done(true);
      const onCut = () => done(false);
      const timer = setTimeout(onCut, ms);
      this.#idle.add(onIdle);
      // The wait for the answers of those cut off is not ended by the cut.
      if (!signal.aborted) signal.addEventListener("abort", onCut, { once: true });
    });
  }
}

/**
 * Deno.serve's onError: what Deno reports itself is an answer's body that
 * failed mid-stream (its status and headers are sent: the Response returned
 * goes nowhere; handle() never throws). One ended on purpose is no error
 * of the master's, and has no stack printed: an S3 GetObject's cut short by
 * a stopping master is counted by `drain` (its Stopping line says so), one
 * cut short by its volume's stall is said by that volume's own line (lib/
 * volumes.ts, throttled). Anything else is unexpected: logged with its stack.
 */
export function answerFailed(drain: Drain): (err: unknown) => Response {
  return (err) => {
    if (err instanceof ShuttingDown) drain.endedShort();
    else if (!(err instanceof VolumeError)) logUnexpected("Response failed", err);
    return text(500, "Internal error");
  };
}

export function createHandler(
  store: Store,
  opts: ServerOptions,
  drain = new Drain(),
): (req: Request, info?: Deno.ServeHandlerInfo) => Response | Promise<Response> {
  opts = { ...opts, stop: drain.signal };
  return (req, info) => {
    if (drain.draining) return shuttingDown(req, opts);
    const fast = fromMemory(store, req, opts);
    if (fast) {
      // Answered synchronously: no clock read, it counts as the quickest.
      metrics.request(req.method, fast.status, 0, 0, 0);
      traffic.request(req.method, fast.status);
      return fast;
    }
    return counted(store, opts, req, { drain, completed: info?.completed });
  };
}

/**
 * The 503 of a draining master, counted and logged as every answer is
 * (an operator watching a rolling restart sees them in ?metrics), and as
 * every refusal is: one line saying why.
 */
function shuttingDown(req: Request, opts: ServerOptions): Response {
  const s3 = s3Target(req, opts);
  const res = s3
    ? s3Refusal(SHUTTING_DOWN_S3, s3, req.method === "HEAD")
    : withBody("Shutting down\n", {
      status: 503,
      headers: { "Content-Type": "text/plain; charset=utf-8" },
    });
  res.headers.set("Connection", "close");
  metrics.request(req.method, res.status, 0, 0, bodySize(res));
  traffic.request(req.method, res.status);
  const key = rawTarget(req.url);
  logRefused(`${req.method} ${key}`, 503, "Shutting down");
  if (opts.verbose) {
    logRequest({ method: req.method, key, status: res.status, ms: 0, bytes: bodySize(res) });
  }
  return res;
}

/** A draining master's refusal as S3 says it (S3's clients retry a 503 ServiceUnavailable). */
const SHUTTING_DOWN_S3 = "The master is shutting down: retry (on another master)";

/** The request's target when it is an S3 call (the gateway on), else null. */
function s3Target(req: Request, opts: ServerOptions): Target | null {
  if (opts.s3 === undefined) return null;
  try {
    const target = parseTarget(req.url);
    return isS3(req, target, opts.s3) ? target : null;
  } catch {
    return null; // A broken percent-escape: mkv's plain answer.
  }
}

/**
 * handle(), timed and counted, inside the drain: in flight until its answer
 * is delivered (`completed`, Deno.serve's; without it, until it is made).
 */
async function counted(
  store: Store,
  opts: ServerOptions,
  req: Request,
  inflight: { drain: Drain; completed?: Promise<void> },
): Promise<Response> {
  const { drain, completed } = inflight;
  const started = performance.now();
  drain.enter();
  let answered = false;
  let ending: Promise<void> | undefined;
  try {
    const res = await handle(store, opts, req);
    drain.answered(res.status, { cutOff: cutOffAnswer(res) });
    answered = true;
    ending = endings.get(res)?.then((reason) => {
      if (isCutOff(reason)) drain.endedCutOff();
    });
    // Cut off by a stopping master (or answered after): the connection
    // goes with the server, not back to a keep-alive pool.
    if (drain.signal.aborted || continueUnsent(req)) res.headers.set("Connection", "close");
    const seconds = (performance.now() - started) / 1000;
    metrics.request(req.method, res.status, seconds, received.get(res) ?? 0, bodySize(res));
    traffic.request(req.method, res.status);
    return res;
  } finally {
    // Delivered or not (the client gone), its answer is done with; one
    // whose body ends with how its work went, once that is counted too.
    const leave = () => drain.leave(answered);
    if (completed || ending) Promise.all([completed, ending]).then(leave, leave);
    else leave();
  }
}

/**
 * Whether `res` is the answer of a request a stopping master cut off: a 503
 * whose reason says so (lib/fanout.ts cutOffReason), mkv's or S3's. Not a
 * 503 the request came to for a reason of its own (a volume down, the
 * index locked), answered after the cut all the same.
 */
function cutOffAnswer(res: Response): boolean {
  return res.status === 503 && isCutOff(reasons.get(res) ?? "");
}

/**
 * Whether the client asked for a 100 Continue that Deno never sends: an
 * empty body's (Content-Length: 0, which botocore sends with
 * `Expect: 100-continue` on every empty PutObject and UploadPart). Its
 * answer says `Connection: close`, so the client drops the connection:
 * botocore before 1.43.77 parses the next answer on a connection whose
 * 100 Continue never came with this answer's status line, and its read then
 * stalls for its 60 s timeout (an `aws s3 sync` of a tree holding empty
 * files), then sends the request again.
 */
function continueUnsent(req: Request): boolean {
  return req.headers.get("expect")?.toLowerCase() === "100-continue" &&
    req.headers.get("content-length") === "0";
}

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
  // S3's GetObject of a missing key answers NoSuchKey in XML (an AWS SDK's
  // unsigned one too), HEAD of a bucket is no key at all, nor "/"
  // (ListBuckets); a bucket's Host (-s3-domain) makes the path another key.
  // Reading the headers costs this path about 15% of its rate: only when the
  // gateway is on.
  if (
    opts.s3 &&
    (req.headers.has("authorization") || isSdkRequest(req.headers) || isVirtualHosted(req, opts.s3))
  ) {
    return null;
  }
  // A null body is sent with "content-length: 0" by Deno itself.
  return new Response(null, { status: 404 });
}

/**
 * The answer to a volume name check's marker PUT (lib/aliases.ts) that
 * reached this master: another master (or tool) names it in -volumes. Taken
 * as a key, the marker let that master start, and every replica it wrote
 * here became a key.
 */
const NAMED_AS_VOLUME =
  "This is an mkv master, not a volume: a master or tool names it in -volumes";

async function handle(store: Store, opts: ServerOptions, req: Request): Promise<Response> {
  const started = performance.now();
  // How the log names the request: its target as sent; S3's by its path, as S3 names it.
  const named = { key: "", what: "" };
  let res: Response;
  // Whether the answer's error was logged with its stack already.
  let stacked = false;
  try {
    res = await answer(store, opts, req, { started, named });
  } catch (err) {
    // A target that did not parse (a broken percent-escape) is named as sent.
    if (named.key === "") named.key = rawTarget(req.url);
    if (named.what === "") named.what = `${req.method} ${named.key}`;
    res = errorAnswer(err);
    // A 500 with its stack; a 503 is a refusal its answer explains (below).
    if (res.status === 500) {
      logUnexpected(named.what, err);
      stacked = true;
    }
  }
  const { key, what } = named;
  // Every 5xx, wherever it was decided (here, lib/store.ts, the S3 calls),
  // is one line saying why: no stack, as in an incident every such request
  // is one (a 503's refusal, a replica write's failure), and an operator
  // must see why clients get them.
  if (res.status >= 500 && !stacked) logRefused(what, res.status, reasons.get(res) ?? "");
  // A body nobody read (403, 409, ...) is cancelled, not left half-read.
  if (req.body && !req.bodyUsed) req.body.cancel().catch(() => {});
  if (res.status >= 500) {
    recentErrors.add(`${req.method} ${key} ${res.status}`, reasons.get(res) ?? "");
  }
  // A write done with something left undone (its 2xx has no body to say
  // it in): the operator sees it, as a refusal's reason.
  const left = undone.get(res);
  if (left !== undefined) {
    logUndone(what, res.status, left);
    recentErrors.add(`${req.method} ${key} ${res.status}`, left);
  }
  if (opts.verbose) {
    const ms = performance.now() - started;
    const bytes = (received.get(res) ?? 0) + bodySize(res);
    logRequest({ method: req.method, key, status: res.status, ms, bytes });
  }
  return res;
}

/**
 * The answer to `req`, judged after a stall of this master when it was made
 * from what the index held (lib/membership.ts answerable). `named` gets how
 * the log names the request, as soon as its target is parsed.
 */
async function answer(
  store: Store,
  opts: ServerOptions,
  req: Request,
  at: { started: number; named: { key: string; what: string } },
): Promise<Response> {
  const { started, named } = at;
  checkHost(req.headers.get("host"));
  const target = parseTarget(req.url);
  named.key = shownTarget(target);
  const s3 = opts.s3 !== undefined && isS3(req, target, opts.s3);
  named.what = s3 ? `S3 ${req.method} ${target.rawPath}` : `${req.method} ${named.key}`;
  if (req.headers.has(NAME_CHECK)) return text(MASTER_ANSWER, NAMED_AS_VOLUME);
  const refuse = (message: string) =>
    s3 ? s3Refusal(message, target, req.method === "HEAD") : text(503, message);
  const routed = () => route(store, opts, req, { target, s3 });
  const membership = store.index.membership;
  // Why this master serves nothing from its index now, if it does not.
  const unserved = () =>
    membership?.rebuilding ? REBUILD_RUNNING : store.index.gone?.message ?? null;
  // mkv's ?status and ?metrics answer during a rebuild too; a signed
  // "/?status" is S3's ListBuckets, a read of the index as any other.
  if (!membership || (!s3 && isView(target.query))) return await routed();
  const refusal = unserved();
  if (refusal) return refuse(refusal);
  const res = await routed();
  if (!readIndex(req, res) || membership.answerable(started)) return res;
  // Its body (an S3 GetObject's stream from a volume) is not sent.
  await res.body?.cancel().catch(() => {});
  return await afterStall(membership, { again: routed, req, refuse, unserved });
}

/** What an error thrown by a request's handling answers (mkv's plain text). */
function errorAnswer(err: unknown): Response {
  // Fenced: the write was not made; once the master has joined again, it can be.
  return err instanceof BadRequest
    ? text(400, err.message)
    : err instanceof RebuildRunning
    ? text(503, REBUILD_RUNNING)
    : err instanceof IndexGone || err instanceof ShuttingDown
    ? text(503, err.message)
    : err instanceof Fenced
    ? text(503, `${err.message}: retry`)
    : isBusy(err)
    ? text(503, LOCKED_ANSWER)
    : text(500, `Internal error: ${err instanceof Error ? err.message : err}`);
}

/** The answer to a parsed request (any rebuild checked already); `s3`: one for the gateway. */
function route(
  store: Store,
  opts: ServerOptions,
  req: Request,
  call: { target: Target; s3: boolean },
): Promise<Response> {
  const { target, s3 } = call;
  return s3 && opts.s3
    ? handleS3(store, opts.s3, req, { target, signal: signalOf(req, opts.stop), stop: opts.stop })
    : target.query
    ? query(store, req, target.key, target.query)
    : dispatch(store, req, target, opts.stop);
}

/**
 * The signal a request's work stops at: the client gone, or the requests in
 * flight cut off by a stopping master (an S3 GetObject's body streaming
 * from a volume is cut off then too).
 */
function signalOf(req: Request, stop: AbortSignal | undefined): AbortSignal {
  const client = clientSignal(req.signal);
  return stop ? AbortSignal.any([client, stop]) : client;
}

/**
 * A request's `signal` (Deno aborts it only when the client has gone) as
 * one aborting with ClientGone: the work it stops fails with a 499, the
 * client's, not a 500 of Deno's "The request has been cancelled.".
 */
function clientSignal(signal: AbortSignal): AbortSignal {
  const gone = new AbortController();
  const abort = () => gone.abort(new ClientGone());
  if (signal.aborted) abort();
  else signal.addEventListener("abort", abort, { once: true });
  return gone.signal;
}

/**
 * A PUT's or REPLACE's options: its body's length, its signal (signalOf),
 * the cut-off, the MD5 its client sent (sentMd5).
 */
function writeOptions(req: Request, stop: AbortSignal | undefined): PutOptions {
  const opts: PutOptions = { contentLength: contentLength(req), signal: signalOf(req, stop), stop };
  const md5 = sentMd5(req.headers.get("content-md5"));
  if (md5) opts.expectMd5 = md5;
  return opts;
}

/**
 * A Content-MD5 header as hex: RFC 1864's base64 of the 16 bytes, or the
 * 32 hex digits a GET's Content-Md5 names (a value copied from one master
 * to another); null when there is none. One that is neither is refused
 * (400) before the body is read: checked against nothing, a corrupt body
 * would be stored all the same.
 */
function sentMd5(header: string | null): string | null {
  if (header === null) return null;
  if (/^[0-9a-fA-F]{32}$/.test(header)) return header.toLowerCase();
  if (/^[A-Za-z0-9+/]{22}==$/.test(header)) return toHex(Buffer.from(header, "base64"));
  throw new BadRequest(
    `Bad Content-MD5 "${header}": not an MD5 (16 bytes in base64, or 32 hex digits)`,
  );
}

/**
 * Whether `res` says what the index held rather than a write made: a read's
 * answer, a write refused for what was read (404, 403, 409, and any answer
 * marked `unwritten`: S3's DeleteObject of a missing key, a refusal of the
 * incomplete index's question to the volumes, its 503s too). A write the
 * index took was fenced (lib/membership.ts): it landed before any rebuild
 * took this master for stopped. Other 5xx answers stand as they are.
 */
function readIndex(req: Request, res: Response): boolean {
  if (unwritten.has(res)) return true;
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
  call: {
    again: () => Promise<Response>;
    req: Request;
    /** The request's 503 (S3's, or mkv's). */
    refuse: (message: string) => Response;
    /** Why the master serves nothing from its index now (a rebuild, the file gone), or null. */
    unserved: () => string | null;
  },
): Promise<Response> {
  const { again, req, refuse, unserved } = call;
  const settled = await membership.settle();
  if (unserved()) return refuse(unserved()!);
  if (settled && (req.method === "GET" || req.method === "HEAD")) {
    const since = performance.now();
    const res = await again();
    if (membership.answerable(since)) return res;
    await res.body?.cancel().catch(() => {});
  }
  // An index file found gone meanwhile fails the heartbeats too: that, not a stall, is why.
  return refuse(unserved() ?? STALLED);
}

const STALLED = "This master stalled and has not yet checked whether a rebuild of the index " +
  "ran meanwhile: retry";

/**
 * An mkv API call. `stop`: a stopping master's cut-off, which a GET's HEAD
 * checks stop at (no signal of the client's: a 302 is quick to make, and
 * one signal per GET costs the hot path), a DELETE's volume calls (not
 * given up when the client goes), and the writes' index writes while they
 * are unsent; PUT and REPLACE stop at the client's too while uploading.
 */
async function dispatch(
  store: Store,
  req: Request,
  target: Target,
  stop: AbortSignal | undefined,
): Promise<Response> {
  const { key, rawPath } = target;
  switch (req.method) {
    case "GET":
    case "HEAD":
      return respond(await store.locate(key, rawPath, { signal: stop }));
    case "PUT":
      return respondSized(await store.put(key, requestBody(req), writeOptions(req, stop)));
    case "REPLACE":
      return respondSized(await store.replace(key, requestBody(req), writeOptions(req, stop)));
    case "DELETE":
      return respond(await store.delete(key, { stop }));
    case "UNLINK":
      return respond(await store.unlink(key, { stop }));
    case "RELINK":
      return respond(await store.relink(key, { stop }));
    case "REBALANCE":
      return respond(await store.rebalance(key, { check: true, stop }));
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
  const state = Object.hasOwn(states, q.op) ? states[q.op] : undefined;
  if (!state) return text(400, unknownOperation(q.op, Object.keys(states)));
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

/**
 * Why `op` is no operation. One given a value ("list=1") is refused as mkv
 * refuses it (403 there): "?list=0" listing all the same would surprise.
 */
function unknownOperation(op: string, lists: string[]): string {
  const known = "?list, ?unlinked, ?writing, ?status or ?metrics";
  if (op === "") return `The query must start with its operation: ${known}`;
  const eq = op.indexOf("=");
  const name = eq < 0 ? "" : op.slice(0, eq);
  const valued = [...lists, "status", "metrics"].includes(name)
    ? ` (an operation takes no value: ?${name})`
    : "";
  return `Unknown operation "?${op}": expected ${known}${valued}`;
}

async function metricsPage(store: Store, req: Request): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return notGet("?metrics");
  }
  const { commits } = store.index;
  const figures = await store.index.views();
  const volumes = store.opts.volumes.map((volume) => {
    const { up, space } = health.get(volume);
    return { volume, up, space };
  });
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
    lookups: store.index.lookups,
    cache: store.index.cacheSize,
  }, volumes);
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
  // A client gone (499) is sent nothing: no byte of a reason counts as sent.
  const body = o.message && o.status >= 400 && o.status !== CLIENT_CLOSED ? o.message + "\n" : null;
  // The plain object as it is: a Headers made first would be checked and
  // copied twice (a tenth of a GET's cost, measured).
  if (body === null) {
    const res = new Response(null, { status: o.status, headers: o.headers });
    // What a write answered as done left undone: logged (handle), not sent.
    if (o.message && o.status < 400) undone.set(res, o.message);
    return res;
  }
  const headers = new Headers(o.headers);
  headers.delete("Content-Length");
  headers.set("Content-Type", "text/plain; charset=utf-8");
  const res = withBody(body, { status: o.status, headers });
  if (o.unindexed) unwritten.add(res);
  return res;
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
