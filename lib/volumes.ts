// Every request the master or a tool makes to a volume goes through here.
// Each call is bounded (a timeout, or the caller's signal) and each response
// body is consumed or cancelled, so connections return to the pool. No call
// follows a redirect: nginx answers a file's path where a folder stands with
// 301 to "path/", whose listing is no file of the key (isFolder).

import { unlessAborted } from "./abort.ts";
import { health, type Probe, type Space, SPACE_PATH } from "./health.ts";
import { fanout, type Sink } from "./fanout.ts";
import {
  EarlyAnswer,
  type HeadAnswer,
  HeadPipeline,
  poolFor,
  TimeoutError,
  Unreachable,
  type Upload,
} from "./http1.ts";
import { metrics } from "./metrics.ts";

export type { HeadAnswer } from "./http1.ts";

/** "host:port" of a volume URL, for the metrics. */
function volumeOf(url: string): string {
  const start = url.indexOf("//") + 2;
  const end = url.indexOf("/", start);
  return url.slice(start, end < 0 ? undefined : end);
}

function outcome(err: unknown): "timeout" | "error" {
  const timedOut = (err instanceof DOMException && err.name === "TimeoutError") ||
    (err instanceof VolumeError && err.message.includes("Stalled"));
  return timedOut ? "timeout" : "error";
}

export class VolumeError extends Error {
  /**
   * `status`: the volume's answer, 0 when it gave none. `unsent`: nothing
   * of the request reached the volume (no connection), so a failed PUT
   * cannot have left a file there.
   */
  constructor(message: string, readonly status = 0, readonly unsent = false) {
    super(message);
  }
}

/** A volume call that was sent and never answered: the volume may still carry it out. */
export function unanswered(err: unknown): boolean {
  return err instanceof VolumeError && err.status === 0 && !err.unsent;
}

/** A volume's 416 to a ranged GET, with the file's size from its Content-Range when given. */
export class UnsatisfiableRange extends VolumeError {
  constructor(message: string, readonly size: number | null) {
    super(message, 416);
  }
}

/** Counts a call the volume answered as it should. */
function succeeded(volume: string, call: string) {
  metrics.volumeCall(volume, call, "ok");
  health.answered(volume);
}

/**
 * Counts and reports a failed call (lib/health.ts logs it, throttled);
 * returns the error to throw. `status` 0: the volume did not answer.
 */
function failed(
  volume: string,
  call: string,
  outcome: "error" | "timeout",
  message: string,
  status = 0,
  unsent = false,
): VolumeError {
  metrics.volumeCall(volume, call, outcome);
  // Not the volume's doing: it may be up, and is not marked down for it.
  const ours = status === 0 && outOfDescriptors();
  const reason = ours ? `${message} (${NO_DESCRIPTORS})` : message;
  health.failed({ volume, call, outcome, reason }, ours ? null : status > 0);
  return new VolumeError(reason, status, unsent);
}

const NO_DESCRIPTORS = "this process has no file descriptor left, ulimit -n: " +
  "that says nothing of the volume";

/**
 * Whether this process has no file descriptor left (`ulimit -n`): a volume
 * call it could not make then (a connection, a name's lookup: EMFILE,
 * EBUSY, EINVAL) says nothing of the volume. Asked on the failure path
 * only, by opening /dev/null (a GET's 503 asks too: lib/store.ts).
 */
export function outOfDescriptors(): boolean {
  try {
    Deno.openSync("/dev/null").close();
    return false;
  } catch (err) {
    const code = (err as { code?: string }).code;
    return code === "EMFILE" || code === "ENFILE";
  }
}

/** nginx's answer at a file's path where a folder stands: 301 to "path/". */
export function isFolder(status: number): boolean {
  return status === 301;
}

export function volumeUrl(volume: string, path: string): string {
  return `http://${volume}${path}`;
}

function withTimeout(ms: number, signal?: AbortSignal): AbortSignal {
  const t = AbortSignal.timeout(ms);
  return signal ? AbortSignal.any([t, signal]) : t;
}

export function describe(err: unknown): string {
  if (err instanceof DOMException && err.name === "TimeoutError") {
    return "timed out";
  }
  if (err instanceof VolumeError) return err.message;
  // fetch says only "fetch failed"; the why (refused, reset, DNS) is its cause,
  // after "error sending request for url (URL): " (Deno 2.9: "error sending
  // request from ADDR for URL (HOST): "), which the caller names already.
  if (err instanceof Error && err.cause instanceof Error) {
    return err.cause.message.replace(
      /^error sending request (for url \([^)]*\)|from \S+ for \S+ \([^)]*\)): /,
      "",
    );
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * The answer a HEAD of url gets: its status (0 when the volume did not
 * answer in time) and Content-Length (-1 when not given: a proxy in front
 * of nginx may send none). Every GET of the master HEAD-checks a replica,
 * so this is the hot volume call: it speaks HTTP/1.1 itself over pooled
 * keep-alive connections, about 3.7x the rate of fetch here (measured:
 * 123-137k/s vs 33-36k/s), and hands on the head it parsed as it is.
 * Concurrent HEADs of one url share the one in flight: its answer is as
 * fresh as one's own would be (at most a round trip old), and a hot key's
 * GETs then cost nginx one HEAD per round trip instead of one each.
 * `signal` (a stopping master's cut-off): this caller stops waiting at its
 * abort, rejecting with its reason; the HEAD goes on for the others that
 * share it, and its failure, if any, is the volume's.
 */
export function headFile(
  url: string,
  timeout: number,
  opts: { signal?: AbortSignal } = {},
): Promise<HeadAnswer> {
  let p = inflightHeads.get(url);
  if (!p) {
    p = freshHead(url, timeout).finally(() => inflightHeads.delete(url));
    inflightHeads.set(url, p);
  }
  return opts.signal ? unlessAborted(p, opts.signal) : p;
}

/** headFile's status alone: for the checks that ask only whether a file is there. */
export async function headStatus(
  url: string,
  timeout: number,
  opts: { signal?: AbortSignal } = {},
): Promise<number> {
  return (await headFile(url, timeout, opts)).status;
}

const inflightHeads = new Map<string, Promise<HeadAnswer>>();

/** headFile's answer when the volume gave none (one, shared: none is made per HEAD). */
const NO_ANSWER: HeadAnswer = Object.freeze({ status: 0, length: -1 });

async function freshHead(url: string, timeout: number): Promise<HeadAnswer> {
  const at = splitUrl(url);
  if (!at) return NO_ANSWER;
  let pipeline = pipelines.get(at.host);
  if (!pipeline) pipelines.set(at.host, pipeline = new HeadPipeline(at.host));
  try {
    const answer = await pipeline.head(at.path, timeout);
    succeeded(at.host, "head");
    return answer;
  } catch (err) {
    const timedOut = err instanceof TimeoutError;
    const why = timedOut ? `timed out after ${timeout}ms` : describe(err);
    failed(at.host, "head", timedOut ? "timeout" : "error", `Cannot HEAD "${url}": ${why}`);
    return NO_ANSWER;
  }
}

/** HEADs of each volume, pipelined (lib/http1.ts). */
const pipelines = new Map<string, HeadPipeline>();

/** "http://host:port/path" to its host and path. */
function splitUrl(url: string): { host: string; path: string } | null {
  const start = url.indexOf("//") + 2;
  const slash = url.indexOf("/", start);
  if (start < 2 || slash < 0) return null;
  return { host: url.slice(start, slash), path: url.slice(slash) };
}

/**
 * One small call over the pooled HTTP/1.1 client (lib/http1.ts): a value
 * already in memory, a DELETE. Rejects with a VolumeError, counted, when
 * the volume does not answer within `ms`.
 */
async function smallCall(
  call: string,
  method: string,
  url: string,
  opts: {
    ms: number;
    signal?: AbortSignal;
    body?: Uint8Array;
    maxBody?: number;
    headers?: { [name: string]: string };
  },
) {
  const at = splitUrl(url);
  if (!at) throw new VolumeError(`Bad volume URL "${url}"`);
  try {
    return await poolFor(at.host).request(method, at.path, {
      signal: opts.signal,
      timeout: opts.ms,
      body: opts.body,
      headers: opts.headers,
      maxBody: opts.maxBody ?? 65536,
    });
  } catch (err) {
    // The caller's own abort (client gone, claim lost) is not the volume's.
    if (opts.signal?.aborted) throw err;
    const timedOut = err instanceof TimeoutError;
    const why = timedOut ? `timed out after ${opts.ms}ms` : describe(err);
    throw failed(
      at.host,
      call,
      timedOut ? "timeout" : "error",
      `Cannot ${method} "${url}": ${why}`,
      0,
      err instanceof Unreachable,
    );
  }
}

/**
 * A watchdog for calls too long for a plain timeout (a 1 GB GET): the call
 * is aborted when no progress (a chunk moved) happens for `stall` ms. So a
 * volume that accepts connections and then hangs cannot hold a request of
 * the master forever.
 */
class Stall {
  readonly #ac = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The watched body's (see watch), errored when the volume stalls. */
  #watched: TransformStreamDefaultController<Uint8Array> | undefined;
  /** Removes the watch's listener from the caller's signal. */
  #unlisten = () => {};

  constructor(readonly ms: number, readonly url: string) {
    this.progress();
  }

  get signal(): AbortSignal {
    return this.#ac.signal;
  }

  progress() {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      const message = `Stalled: no progress from "${this.url}" in ${this.ms}ms`;
      const watched = this.#watched;
      if (!watched) return this.#ac.abort(new VolumeError(message));
      // A chunk still waits for the reader (a slow or paused client): the
      // volume is not the one stalling.
      if ((watched.desiredSize ?? 1) <= 0) return this.progress();
      this.#end(failed(volumeOf(this.url), "get", "timeout", message));
    }, this.ms);
  }

  /**
   * Aborts the fetch and errors the watched body with `err`. Aborting the
   * fetch alone does not stop a body already handed to Deno.serve as a
   * response (Deno 2.9.6 keeps waiting on it: a GetObject from a volume
   * hung mid-body hung too): erroring the watched stream ends the answer
   * and cancels the volume's body.
   */
  #end(err: unknown) {
    this.stop();
    this.#ac.abort(err);
    try {
      this.#watched?.error(err);
    } catch { /* already ended */ }
  }

  /**
   * Passes a response body through, each chunk counted as progress; the
   * watch ends with it. One chunk may wait in it for the reader: while one
   * does, the reader is the one behind, and the time does not count against
   * the volume.
   */
  watch(body: ReadableStream<Uint8Array>, signal: AbortSignal): ReadableStream<Uint8Array> {
    // The caller's abort ends the answer too (see the stall's), at once.
    // The listener goes when the watch ends, however it ends (stop): a
    // request's signal lives as long as the master when it is
    // AbortSignal.any([req.signal, stop]) with a listener (Deno aborts
    // req.signal only for a client gone), so one left by a stall was kept,
    // with the stream and its chunk, for as long as the master ran.
    const cut = () => this.#end(signal.reason);
    signal.addEventListener("abort", cut, { once: true });
    this.#unlisten = () => signal.removeEventListener("abort", cut);
    const end = () => this.stop();
    return body.pipeThrough(
      new TransformStream(
        {
          start: (ctl) => {
            this.#watched = ctl;
          },
          transform: (chunk, ctl) => {
            this.progress();
            ctl.enqueue(chunk);
          },
          flush: end,
          cancel: end,
        },
        undefined,
        { highWaterMark: 1 },
      ),
    );
  }

  stop() {
    clearTimeout(this.#timer);
    this.#unlisten();
  }
}

/**
 * PUTs `body` to url: a value in memory in one write over a pooled
 * connection, a stream chunk by chunk (openPut). nginx writes the body to a
 * temp file and renames it into place only when complete, so a failed PUT
 * leaves no file at the path.
 */
export async function remotePut(
  url: string,
  body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer>,
  opts: {
    signal: AbortSignal;
    stall: number;
    length?: number | null;
    /** Sent with a value in memory only. */
    headers?: { [name: string]: string };
  },
): Promise<void> {
  if (body instanceof Uint8Array) {
    // The whole call bounded by the stall time.
    const res = await smallCall("put", "PUT", url, {
      ms: opts.stall,
      signal: opts.signal,
      body,
      headers: opts.headers,
    });
    return putAnswered(volumeOf(url), url, res.status);
  }
  const length = opts.length ?? null;
  const put = await openPut(url, { ...opts, length });
  try {
    await fanout(body, [put], { md5: false, length, stall: opts.stall, signal: opts.signal });
  } catch (err) {
    await put.cancel();
    throw err;
  }
  await put.end();
}

/** A PUT's answer: 201 or 204 is the volume's success, anything else its failure. */
function putAnswered(volume: string, url: string, status: number) {
  if (status !== 201 && status !== 204) {
    throw failed(
      volume,
      "put",
      "error",
      putFailure(volume, url, `status ${status}`, status),
      status,
    );
  }
  succeeded(volume, "put");
}

/**
 * A volume's answer to a write it could not store for want of space: our
 * volumes answer it for a full disk (tools/volume_space.ts), where stock
 * nginx answers 500.
 */
export const NO_SPACE = 507;

/**
 * Why a PUT to `url` failed (`what`), said as a full disk when the volume
 * says so (whether before the body's end or after: the same failure).
 */
function putFailure(volume: string, url: string, what: string, status: number): string {
  if (status !== NO_SPACE) return `Cannot PUT "${url}": ${what}`;
  return `Cannot PUT "${url}": status ${status}: the disk of volume ${volume} is full ` +
    `(free space there, or add volumes)`;
}

/**
 * The status of a write that failed on a volume: 507 when a volume's disk
 * is full (its answer, NO_SPACE), else 500.
 */
export function writeFailureStatus(err: unknown): 500 | 507 {
  return err instanceof VolumeError && err.status === NO_SPACE ? NO_SPACE : 500;
}

/** A PUT to one volume whose body goes out a chunk at a time (lib/fanout.ts drives it). */
export interface PutStream extends Sink {
  /** Sends the end and reads the answer: resolves on 201/204. */
  end(): Promise<void>;
  /**
   * Gives the PUT up. An unfinished body is cut off (nginx then drops its
   * temp file); a finished one may be landing, so its answer is awaited.
   */
  cancel(): Promise<void>;
  /** Cancelled before the whole body went out: no file of this PUT can have landed. */
  readonly cutOff: boolean;
  /** The whole body went out and no answer came: the volume may store it yet. */
  readonly unanswered: boolean;
}

/** How openPut's PUT goes: its length when known, its abort, its stall limit in ms. */
export interface OpenPutOptions {
  length: number | null;
  signal: AbortSignal;
  stall: number;
}

/**
 * Opens a PUT of a streamed body on its own connection. Each chunk's send,
 * and then the answer, may take at most `stall` ms ("Stalled"); waiting for
 * the client or the other replicas between chunks does not count. A
 * failure is the volume's (counted, VolumeError) unless `signal` ended it.
 */
export async function openPut(url: string, opts: OpenPutOptions): Promise<PutStream> {
  const at = splitUrl(url);
  if (!at) throw new VolumeError(`Bad volume URL "${url}"`);
  const put = new VolumePut(url, at.host, opts);
  await put.open(at.path);
  return put;
}

/** openPut's PUT: its upload over a pooled connection, and how it ended. */
class VolumePut implements PutStream {
  #up: Upload | null = null;
  /** end() or cancel() was called: at most one of them, once. */
  #settled = false;
  /** Cut off by cancel(): the failures that follow are the caller's doing. */
  #cancelled = false;
  /** The whole body went out and its answer never came: the volume may store it yet. */
  #mayLand = false;

  constructor(
    readonly url: string,
    readonly host: string,
    readonly opts: OpenPutOptions,
  ) {}

  async open(path: string) {
    const { length, stall, signal } = this.opts;
    try {
      this.#up = await poolFor(this.host).upload("PUT", path, { length, timeout: stall, signal });
    } catch (err) {
      throw this.#fail(err);
    }
  }

  async write(chunk: Uint8Array) {
    try {
      await this.#up!.write(chunk);
    } catch (err) {
      throw this.#fail(err);
    }
  }

  end() {
    this.#settled = true;
    return this.#answer();
  }

  async cancel() {
    if (this.#settled) return;
    this.#settled = true;
    if (this.#up!.sentAll) return await this.#answer().catch(() => {});
    this.#cancelled = true;
    this.#up!.close();
  }

  get cutOff() {
    return this.#cancelled;
  }

  get unanswered() {
    return this.#mayLand;
  }

  async #answer() {
    const res = await this.#up!.finish().catch((err) => {
      const e = this.#fail(err);
      // Not the volume's error (the caller's abort) counts too: the body went out.
      this.#mayLand = !(e instanceof VolumeError) || unanswered(e);
      throw e;
    });
    putAnswered(this.host, this.url, res.status);
  }

  /** A failure, as the volume's (counted) or as what ended it otherwise. */
  #fail(err: unknown) {
    const { url, host, opts } = this;
    // Ended by the caller (the client, another replica failed): not this volume's failure.
    if (opts.signal.aborted) return opts.signal.reason ?? err;
    if (this.#cancelled) return err;
    if (err instanceof EarlyAnswer) {
      const message = putFailure(host, url, err.message, err.status);
      return failed(host, "put", "error", message, err.status);
    }
    if (err instanceof TimeoutError) {
      const message = `Cannot PUT "${url}": Stalled: no progress in ${opts.stall}ms`;
      return failed(host, "put", "timeout", message);
    }
    const message = `Cannot PUT "${url}": ${describe(err)}`;
    return failed(host, "put", "error", message, 0, err instanceof Unreachable);
  }
}

/**
 * Renames `from` to `to` on one volume (WebDAV MOVE, over what is there):
 * an atomic rename, so a reader of `to` sees the old file or the new one.
 * "gone" when `from` does not exist (nothing was renamed). `signal` (a
 * stopping master's cut-off): the call is given up at its abort, rejecting
 * with its reason (the volume may still carry the rename out).
 */
export async function remoteMove(
  from: string,
  to: string,
  timeout: number,
  opts: { signal?: AbortSignal } = {},
): Promise<"moved" | "gone"> {
  let res: Response;
  try {
    res = await fetch(from, {
      method: "MOVE",
      headers: { Destination: to, Overwrite: "T" },
      redirect: "manual",
      signal: withTimeout(timeout, opts.signal),
    });
  } catch (err) {
    // The caller's own abort is not the volume's.
    if (opts.signal?.aborted) throw opts.signal.reason;
    throw failed(volumeOf(from), "move", outcome(err), `Cannot MOVE "${from}": ${describe(err)}`);
  }
  await res.body?.cancel();
  if (res.status !== 201 && res.status !== 204 && res.status !== 404) {
    const message = `Cannot MOVE "${from}" to "${to}": status ${res.status}`;
    throw failed(volumeOf(from), "move", "error", message, res.status);
  }
  succeeded(volumeOf(from), "move");
  return res.status === 404 ? "gone" : "moved";
}

/**
 * A HEAD of url: the volume's status, whatever it is (one but 200, 404 or
 * isFolder's is counted a failure of the volume, and logged), and its
 * Content-Length (null when not given). Rejects with a VolumeError when the
 * volume does not answer within `timeout`.
 */
export async function remoteHead(
  url: string,
  timeout: number,
): Promise<{ status: number; length: number | null }> {
  const res = await head(url, timeout);
  if (res.status === 200 || res.status === 404 || isFolder(res.status)) {
    succeeded(volumeOf(url), "head");
  } else {
    failed(
      volumeOf(url),
      "head",
      "error",
      `Cannot HEAD "${url}": status ${res.status}`,
      res.status,
    );
  }
  return res;
}

/**
 * The size of the file at url, null when there is none. A HEAD answered
 * without Content-Length (a proxy in front of nginx sending it chunked)
 * does not say the size: the file is then read in full to learn it
 * (readSize). `signal` (a stopping master's cut-off): the HEAD, or the
 * read, is given up at its abort, rejecting with its reason.
 */
export async function remoteSize(
  url: string,
  timeout: number,
  opts: { signal?: AbortSignal } = {},
): Promise<number | null> {
  const { status, length } = await head(url, timeout, opts);
  if (status === 404) return null;
  if (status !== 200) {
    const message = `Cannot HEAD "${url}": status ${status}`;
    throw failed(volumeOf(url), "head", "error", message, status);
  }
  succeeded(volumeOf(url), "head");
  if (length !== null) return length;
  return await readSize(url, { stall: timeout, signal: opts.signal });
}

/**
 * A HEAD over fetch, uncounted but for no answer (a VolumeError): its
 * status and Content-Length. `signal`: given up at its abort, rejecting
 * with its reason.
 */
async function head(
  url: string,
  timeout: number,
  opts: { signal?: AbortSignal } = {},
): Promise<{ status: number; length: number | null }> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: "HEAD",
      redirect: "manual",
      signal: withTimeout(timeout, opts.signal),
    });
  } catch (err) {
    // The caller's own abort is not the volume's.
    if (opts.signal?.aborted) throw opts.signal.reason;
    throw failed(volumeOf(url), "head", outcome(err), `Cannot HEAD "${url}": ${describe(err)}`);
  }
  await res.body?.cancel();
  const length = res.headers.get("content-length");
  return { status: res.status, length: length === null ? null : Number(length) };
}

/**
 * Reads url in full, counting its bytes (none kept): its size, null when
 * there is no file (gone since a HEAD found it). Rejects as remoteGet does,
 * and when no byte comes for `stall` ms (a value may take longer in all).
 * `signal`: the read is given up at its abort, rejecting with its reason.
 */
export async function readSize(
  url: string,
  opts: { stall: number; signal?: AbortSignal },
): Promise<number | null> {
  const signal = opts.signal ?? new AbortController().signal;
  const res = await remoteGet(url, { signal, stall: opts.stall, ifThere: true });
  if (res.status === 404) return null;
  let bytes = 0;
  // Read to its end or its error (a stall, the abort: the watch ends it).
  for await (const chunk of res.body!) bytes += chunk.byteLength;
  return bytes;
}

/**
 * Deletes url; a file that is already gone counts as deleted. `signal`: the
 * call is given up at its abort, rejecting with its reason (the volume may
 * still carry the DELETE out).
 */
export async function remoteDelete(
  url: string,
  timeout: number,
  opts: { signal?: AbortSignal } = {},
): Promise<void> {
  const res = await smallCall("delete", "DELETE", url, { ms: timeout, signal: opts.signal });
  const gone = res.status === 204 || res.status === 404 ||
    (res.status === 409 && await noFileAt(url, { timeout, signal: opts.signal }));
  if (!gone) {
    const message = `Cannot DELETE "${url}": status ${res.status}`;
    throw failed(volumeOf(url), "delete", "error", message, res.status);
  }
  succeeded(volumeOf(url), "delete");
}

/**
 * True when a HEAD finds no file at url: after a DELETE's 409, which nginx
 * answers when a file stands where a folder of the path should be (ENOTDIR;
 * HEAD 404) or a folder where the file should be (EISDIR; HEAD 301), and
 * also for a `min_delete_depth` refusal, which leaves the file there (200).
 */
async function noFileAt(
  url: string,
  opts: { timeout: number; signal?: AbortSignal },
): Promise<boolean> {
  const head = await headStatus(url, opts.timeout, { signal: opts.signal });
  return head === 404 || head === 301;
}

/**
 * Opens a GET of url, its body watched for stalls; the caller owns the body.
 * Rejects on any status but 200 (and 206 when a `range` was asked for);
 * with `ifThere`, a 404 (an answer, no failure of the volume) is returned,
 * its body consumed.
 */
export async function remoteGet(
  url: string,
  opts: { signal: AbortSignal; stall: number; range?: string; ifThere?: boolean },
): Promise<Response> {
  const stall = new Stall(opts.stall, url);
  let res: Response;
  try {
    res = await fetch(url, {
      signal: AbortSignal.any([opts.signal, stall.signal]),
      headers: opts.range ? { Range: opts.range } : undefined,
      redirect: "manual",
    });
  } catch (err) {
    stall.stop();
    // The caller's own abort (client gone, a stopping master's cut-off) is not the volume's.
    if (opts.signal.aborted) throw opts.signal.reason;
    const reason = stall.signal.aborted ? stall.signal.reason : err;
    const outcome = stall.signal.aborted ? "timeout" : "error";
    throw failed(volumeOf(url), "get", outcome, `Cannot GET "${url}": ${describe(reason)}`);
  }
  const ok = res.status === 200 || (res.status === 206 && opts.range !== undefined);
  if (!ok || !res.body) {
    stall.stop();
    await res.body?.cancel();
    if (res.status === 404 && opts.ifThere) {
      succeeded(volumeOf(url), "get");
      return new Response(null, { status: 404, headers: res.headers });
    }
    const message = `Cannot GET "${url}": status ${res.status}`;
    // A range past the end is the client's mistake, not the volume's.
    if (res.status === 416) {
      succeeded(volumeOf(url), "get");
      const size = /^bytes \*\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
      throw new UnsatisfiableRange(message, size ? Number(size[1]) : null);
    }
    throw failed(volumeOf(url), "get", "error", message, res.status);
  }
  succeeded(volumeOf(url), "get");
  const body = stall.watch(res.body, opts.signal);
  return new Response(body, { status: res.status, headers: res.headers });
}

/** GETs a small value whole (at most `maxBody` bytes) over a pooled connection. */
export async function remoteGetSmall(
  url: string,
  opts: { signal: AbortSignal; stall: number; maxBody: number },
): Promise<Uint8Array<ArrayBuffer>> {
  return smallBody(url, await getSmall(url, opts));
}

/**
 * remoteGetSmall of a file that may not be there: null when the volume
 * answers 404, which is an answer (no failure of the volume, none logged).
 */
export async function remoteGetSmallIfThere(
  url: string,
  opts: { signal: AbortSignal; stall: number; maxBody: number },
): Promise<Uint8Array<ArrayBuffer> | null> {
  const res = await getSmall(url, opts);
  if (res.status !== 404) return smallBody(url, res);
  succeeded(volumeOf(url), "get");
  return null;
}

function getSmall(url: string, opts: { signal: AbortSignal; stall: number; maxBody: number }) {
  return smallCall("get", "GET", url, {
    ms: opts.stall,
    signal: opts.signal,
    maxBody: opts.maxBody,
  });
}

/** The body of a small GET's 200; any other status is a failure of the volume. */
function smallBody(
  url: string,
  res: Awaited<ReturnType<typeof getSmall>>,
): Uint8Array<ArrayBuffer> {
  if (res.status !== 200) {
    const message = `Cannot GET "${url}": status ${res.status}`;
    throw failed(volumeOf(url), "get", "error", message, res.status);
  }
  succeeded(volumeOf(url), "get");
  return res.body as Uint8Array<ArrayBuffer>;
}

/** One entry of nginx's JSON autoindex. */
export interface FileEntry {
  name: string;
  type: "file" | "directory" | string;
  mtime: string;
  size?: number;
}

/** Lists a folder of a volume; null when the folder does not exist. */
export async function remoteList(
  url: string,
  timeout: number,
): Promise<FileEntry[] | null> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: "manual", signal: withTimeout(timeout) });
  } catch (err) {
    throw failed(volumeOf(url), "list", outcome(err), `Cannot list "${url}": ${describe(err)}`);
  }
  if (res.status === 404) {
    await res.body?.cancel();
    succeeded(volumeOf(url), "list");
    return null;
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    throw failed(
      volumeOf(url),
      "list",
      "error",
      `Cannot list "${url}": status ${res.status}`,
      res.status,
    );
  }
  succeeded(volumeOf(url), "list");
  try {
    return await res.json() as FileEntry[];
  } catch (err) {
    throw new VolumeError(`Cannot list "${url}": ${describe(err)}`);
  }
}

/**
 * Asks a volume whether it is there (HEAD /, within `timeout`), for the
 * master's periodic probes: up when it answers below 500, with the time
 * the answer took. Not counted in the metrics (no request waits on it).
 * Over the pooled connections, as the volume calls themselves: their
 * deadlines count time the master could hear an answer (lib/http1.ts), so
 * a master held past `timeout` does not take every volume for down.
 */
export async function remoteProbe(volume: string, timeout: number): Promise<Probe> {
  // Every 2 s: also when the master is otherwise idle, old pooled
  // connections to the volume are closed.
  const pool = poolFor(volume);
  pool.sweep();
  const started = performance.now();
  try {
    const { status } = await pool.request("HEAD", "/", { timeout, maxBody: 0 });
    const ms = performance.now() - started;
    if (status >= 500) return { up: false, ms, reason: `HEAD / answered ${status}`, space: null };
    return { up: true, ms, reason: "", space: await remoteSpace(volume, timeout) };
  } catch (err) {
    const ms = performance.now() - started;
    if (outOfDescriptors()) {
      return { up: false, ms, reason: NO_DESCRIPTORS, unknown: true, space: null };
    }
    return { up: false, ms, reason: `HEAD / failed: ${describe(err)}`, space: null };
  }
}

/**
 * A volume's disk: its size and free bytes, as the volume says them;
 * null when it does not (stock nginx, mkv's: 404) or did not answer.
 */
export async function remoteSpace(volume: string, timeout: number): Promise<Space | null> {
  try {
    const res = await poolFor(volume).request("GET", SPACE_PATH, { timeout, maxBody: 1024 });
    if (res.status !== 200) return null;
    const v = JSON.parse(new TextDecoder().decode(res.body));
    const bytes = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
    return bytes(v?.size) && bytes(v?.free) ? { size: v.size, free: v.free } : null;
  } catch {
    return null;
  }
}
