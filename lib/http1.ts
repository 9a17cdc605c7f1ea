// A small HTTP/1.1 client over pooled keep-alive connections, for the
// master's many small volume calls (HEAD checks, PUTs of values already in
// memory, DELETEs, GETs of small values). fetch costs several times more CPU
// per call (measured for HEAD: 3.7x the rate); large values keep using fetch
// with streams. Whole answers only, bounded by `maxBody`.
import { setImmediate } from "node:timers";
import { asciiInto, concat, smallBytes } from "./bytes.ts";

export interface Http1Response {
  status: number;
  body: Uint8Array;
}

export interface Http1Options {
  body?: Uint8Array;
  headers?: { [name: string]: string };
  /** Aborting closes the connection; the call rejects with its reason. */
  signal?: AbortSignal;
  /** Ms for the whole answer; past it the call rejects with a TimeoutError. */
  timeout: number;
  /** Longest body read (a longer answer rejects), 0 for none expected. */
  maxBody: number;
}

/** Idle connections kept per volume. */
const IDLE_MAX = 64;
/**
 * An idle connection is closed after this long: nginx closes its side at
 * its keepalive_timeout (120 s in volume.conf, 75 s by default), and ours
 * would then sit in CLOSE-WAIT, an fd held until the pool reached it.
 */
const IDLE_TTL = 60_000;
const HEAD_MAX = 16384;
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

const pools = new Map<string, Http1Pool>();

/** The pool of connections to "host:port". */
export function poolFor(host: string): Http1Pool {
  let p = pools.get(host);
  if (!p) pools.set(host, p = new Http1Pool(host));
  return p;
}

/**
 * Where a volume named "host:port", "[v6]:port", "host" or "[v6]" listens:
 * a name without a port is port 80, as mkv's Go client takes it (it was
 * port NaN here: every call of such a volume failed).
 */
export function addressOf(host: string): { hostname: string; port: number } {
  const close = host.startsWith("[") ? host.indexOf("]") : -1;
  const colon = host.indexOf(":", close + 1);
  const name = colon < 0 ? host : host.slice(0, colon);
  return {
    hostname: name.replace(/^\[|\]$/g, ""),
    port: colon < 0 ? 80 : Number(host.slice(colon + 1)),
  };
}

/**
 * A kept connection and its reader, which outlive each call. While idle,
 * the next answer's first read is already waiting (Reader.prefetch): a
 * volume that closes the connection (stopped, restarted, reloaded) ends that
 * read at once, and the connection leaves the pool then, not when a call
 * tries it. A call that then finds its connection closed unanswered knows
 * the request reached the volume (below: not an Unreachable).
 */
interface Kept {
  conn: Deno.TcpConn;
  reader: Reader;
  /** When it was put back (performance.now() ms). */
  since: number;
}

export class Http1Pool {
  /** Oldest first: the newest goes out again first (LIFO), the oldest ages out. */
  readonly #idle: Kept[] = [];
  readonly #hostname: string;
  readonly #port: number;
  readonly #ttl: number;

  constructor(readonly host: string, opts: { idleTtl?: number } = {}) {
    ({ hostname: this.#hostname, port: this.#port } = addressOf(host));
    this.#ttl = opts.idleTtl ?? IDLE_TTL;
  }

  /** Idle connections kept (for tests). */
  get idle(): number {
    return this.#idle.length;
  }

  /**
   * Closes the connections idle for longer than the pool's time to live.
   * Called by each request, and by the master's volume probes (every 2 s),
   * so no timer of its own keeps a tool's process alive.
   */
  sweep(now = performance.now()) {
    let old = 0;
    while (old < this.#idle.length && now - this.#idle[old].since > this.#ttl) old++;
    if (old === 0) return;
    for (const kept of this.#idle.splice(0, old)) closeQuietly(kept.conn);
  }

  /**
   * One request. A pooled connection the volume closed as the call took it
   * fails before any answer arrives: then the call is made once more on a
   * new connection (every call made here is idempotent). When that one
   * cannot be made, the first may still have landed (a volume killed after
   * acting on it closes so): no Unreachable then, which would tell the
   * caller that no byte reached the volume.
   */
  async request(method: string, path: string, opts: Http1Options): Promise<Http1Response> {
    const now = performance.now();
    // The whole call within opts.timeout: a new connection and its
    // exchange share it (each had all of it: twice the time a caller gave).
    const deadline = now + opts.timeout;
    // The oldest idle connection first: O(1) unless some have aged out.
    if (this.#idle.length > 0 && now - this.#idle[0].since > this.#ttl) this.sweep(now);
    const pooled = this.#idle.pop();
    let sent = false;
    if (pooled) {
      pooled.conn.ref();
      try {
        return await this.#exchange(pooled, method, path, opts, deadline);
      } catch (err) {
        if (opts.signal?.aborted || !(err instanceof Stale)) throw err;
        sent = err.sent;
      }
    }
    let conn;
    try {
      conn = await this.#connect(Math.max(Math.ceil(deadline - performance.now()), 1), opts.signal);
    } catch (err) {
      if (!sent || !(err instanceof Unreachable)) throw err;
      throw new Error(`${err.message}; the request went out whole before, unanswered`);
    }
    return await this.#exchange(keep(conn), method, path, opts, deadline);
  }

  /** One call on `kept`, answered by `deadline` (performance.now() ms). */
  async #exchange(
    kept: Kept,
    method: string,
    path: string,
    opts: Http1Options,
    deadline: number,
  ): Promise<Http1Response> {
    const { signal } = opts;
    const { conn, reader } = kept;
    if (signal?.aborted) {
      this.#release(kept, true);
      throw signal.reason;
    }
    const onAbort = () => closeQuietly(conn);
    signal?.addEventListener("abort", onAbort, { once: true });
    const call = { conn, deadline, timedOut: false };
    watch(call);
    try {
      const bytes = requestBytes(this.host, method, path, opts);
      // One write takes most requests: writeAll's loop (an async frame
      // more per call) only for the rest.
      try {
        const wrote = await conn.write(bytes);
        if (wrote < bytes.length) await writeAll(conn, bytes.subarray(wrote));
      } catch (err) {
        staleIfClosed(err, { sent: false });
      }
      // Most answers (201, 204, a HEAD's) come whole in one read: parsed
      // then and there, without the layers of awaits the general case takes.
      const isHead = method === "HEAD";
      await reader.fill();
      const res = reader.whole(isHead, opts.maxBody) ??
        await readResponse(reader, isHead, opts.maxBody);
      // The answer may have come in the same turn of the event loop as the
      // sweep or an abort that closed the connection: whole, it is still
      // the answer, but that connection must not go back to the pool.
      const closed = call.timedOut || (signal?.aborted ?? false);
      this.#release(kept, res.close || reader.pending > 0 || closed);
      return { status: res.status, body: res.body };
    } catch (err) {
      this.#release(kept, true);
      if (call.timedOut) throw new TimeoutError(opts.timeout);
      throw signal?.aborted ? signal.reason ?? err : err;
    } finally {
      unwatch(call);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * A request whose body streams (a large PUT), on a connection of its own;
   * it joins the pool after a whole answer.
   */
  async upload(method: string, path: string, opts: UploadOptions): Promise<Upload> {
    if (opts.signal?.aborted) throw opts.signal.reason;
    const conn = await this.#connect(opts.timeout, opts.signal);
    const up = new Upload(conn, opts, (close) => this.#release(keep(conn), close));
    await up.send(requestHead(this.host, method, path, opts.length));
    return up;
  }

  /**
   * A new connection within `ms` (a volume whose host drops the SYNs, or
   * whose accept queue is full, would otherwise hold the call for the
   * kernel's ~2 minutes of retries); failing, an Unreachable: no byte of
   * the request went out. The caller's abort ends the wait with its reason.
   */
  async #connect(ms: number, signal?: AbortSignal): Promise<Deno.TcpConn> {
    const limit = heardWithin(ms);
    try {
      return await Deno.connect({
        hostname: this.#hostname,
        port: this.#port,
        signal: signal ? AbortSignal.any([limit.signal, signal]) : limit.signal,
      });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (limit.signal.aborted) throw new Unreachable(`Cannot connect: timed out after ${ms}ms`);
      throw new Unreachable(err instanceof Error ? err.message : String(err));
    } finally {
      limit.clear();
    }
  }

  #release(kept: Kept, close: boolean) {
    if (close || this.#idle.length >= IDLE_MAX) {
      closeQuietly(kept.conn); // an abort may have closed it
      return;
    }
    kept.since = performance.now();
    this.#idle.push(kept);
    // Whatever ends the read while the connection is idle (the volume's
    // close, a reset, bytes no request asked for) ends the connection.
    // Taken meanwhile, the read is the call's (this reaction runs first).
    const drop = () => this.#drop(kept);
    kept.reader.prefetch().then(drop, drop);
    // A pending read holds a process open: not an idle connection's.
    kept.conn.unref();
  }

  #drop(kept: Kept) {
    const i = this.#idle.indexOf(kept);
    if (i < 0) return;
    this.#idle.splice(i, 1);
    closeQuietly(kept.conn);
  }
}

function keep(conn: Deno.TcpConn): Kept {
  return { conn, reader: new Reader(conn), since: 0 };
}

/** No connection could be made: the request never reached the server. */
export class Unreachable extends Error {}

/**
 * The connection was closed before any byte of an answer came; `sent`:
 * after the whole request went out.
 */
class Stale extends Error {
  constructor(message: string, readonly sent: boolean) {
    super(message);
  }
}

/**
 * A write the volume's end refused (it closed the connection: a restarted
 * volume's kept ones), or a reset before any byte of an answer, as Stale.
 * A request larger than the socket's send buffer takes several writes: the
 * first is taken, the volume resets the connection, the next fails (EPIPE).
 */
function staleIfClosed(err: unknown, opts: { sent: boolean }): never {
  if (err instanceof Deno.errors.BrokenPipe || err instanceof Deno.errors.ConnectionReset) {
    throw new Stale(err.message, opts.sent);
  }
  throw err;
}

function closeQuietly(conn: Deno.TcpConn) {
  try {
    conn.close();
  } catch { /* closed already */ }
}

/**
 * Calls in flight and their deadlines, checked by one sweep every
 * SWEEP_MS while any is in flight: a timer and an AbortSignal per call cost
 * more than the call's own parsing. A call past its deadline has its
 * connection closed, which ends its read. Deadlines count time this process
 * could hear an answer: a sweep that comes more than HELD ms late (the
 * thread was held: paused, a long GC or synchronous step) gives the calls
 * it finds overdue HELD ms more, so that an answer which came meanwhile and
 * waits to be read is read (else a held master would fail every call in
 * flight, and take their volumes for failing, for its own delay).
 */
interface Call {
  conn: Deno.TcpConn;
  deadline: number;
  timedOut: boolean;
}

const SWEEP_MS = 20;
/** How late a timer may fire before this process counts as held meanwhile, ms. */
const HELD = 50;
const calls = new Set<Call>();

/**
 * A time bound of its own (a connect's) counted the same way: a timer that
 * fires more than HELD ms late is armed again for HELD ms, so that what
 * came meanwhile is taken before the bound is given up. `clear` once done.
 */
function heardWithin(ms: number): { signal: AbortSignal; clear(): void } {
  const ac = new AbortController();
  let due = performance.now() + ms;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const fire = () => {
    if (performance.now() - due <= HELD) return ac.abort(new TimeoutError(ms));
    due = performance.now() + HELD;
    arm(HELD);
  };
  const arm = (after: number) => {
    timer = setTimeout(fire, after);
    Deno.unrefTimer(timer);
  };
  arm(ms);
  return { signal: ac.signal, clear: () => clearTimeout(timer) };
}

let sweeper: ReturnType<typeof setInterval> | undefined;
let swept = 0;

function watch(call: Call) {
  calls.add(call);
  if (sweeper === undefined) {
    sweeper = setInterval(sweep, SWEEP_MS);
    swept = performance.now();
  }
}

function unwatch(call: Call) {
  calls.delete(call);
  if (calls.size === 0 && sweeper !== undefined) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

function sweep() {
  const now = performance.now();
  const held = now - swept > SWEEP_MS + HELD;
  swept = now;
  for (const call of calls) {
    if (now < call.deadline) continue;
    if (held) {
      call.deadline = now + HELD;
      continue;
    }
    call.timedOut = true;
    calls.delete(call);
    closeQuietly(call.conn);
  }
}

export interface UploadOptions {
  /** The body's length: Content-Length; null sends it chunked. */
  length: number | null;
  /** Ms each write, and then the answer, may take: past it the upload fails with a TimeoutError. */
  timeout: number;
  /** Aborting closes the connection; the call rejects with its reason. */
  signal?: AbortSignal;
}

/** The volume answered before the body's end (nginx: an error, such as 507). */
export class EarlyAnswer extends Error {
  constructor(readonly status: number) {
    super(`status ${status} before the body's end`);
  }
}

/**
 * A streamed request body: write() sends each chunk as it comes (framed when
 * chunked), finish() sends the end and reads the answer. Callers write one
 * chunk at a time. No per-chunk stream machinery: this is what a large PUT
 * costs the master's CPU per replica (three fetch streams cost ~25% more).
 */
export class Upload {
  readonly #conn: Deno.TcpConn;
  readonly #opts: UploadOptions;
  readonly #release: (close: boolean) => void;
  readonly #reader: Reader;
  /** A read pending from the start: an answer before the end is an early one. */
  readonly #firstRead: Promise<void>;
  #answered = false;
  readonly #call: Call;
  #done = false;
  /** Where a chunk is framed (chunked bodies), reused from chunk to chunk. */
  #frame: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  /** Body bytes sent or being sent (known length), or 1 once the chunked end went out. */
  #sent = 0;
  /** The volume answered before the body's end: nothing of it is landing. */
  #answeredEarly = false;
  /** finish() waits for the answer: a write still in flight leaves its deadline. */
  #finishing = false;
  /**
   * An abort cuts off an unfinished body. A whole one may be landing: its
   * connection stays for the answer (PutStream.cancel waits for it, within
   * the timeout), so a DELETE after it cannot race the file into place.
   */
  readonly #onAbort = () => {
    if (!this.sentAll) this.close();
  };

  constructor(conn: Deno.TcpConn, opts: UploadOptions, release: (close: boolean) => void) {
    this.#conn = conn;
    this.#opts = opts;
    this.#release = release;
    this.#reader = new Reader(conn);
    this.#firstRead = this.#reader.answerBegun().then(() => {
      this.#answered = true;
    });
    this.#firstRead.catch(() => {});
    this.#call = { conn, deadline: Infinity, timedOut: false };
    watch(this.#call);
    opts.signal?.addEventListener("abort", this.#onAbort, { once: true });
    // Nagle on while the body streams: a 64 KiB chunk is one full loopback
    // segment and a 53-byte tail, which without it goes out as a packet of
    // its own (the master's CPU per 256 MiB PUT: 0.38-0.46 s with it,
    // 0.47-0.61 s without). Off again for the last bytes (setting it
    // flushes them) and for the pooled calls after.
    this.#nagle(true);
  }

  #nagle(on: boolean) {
    try {
      this.#conn.setNoDelay(!on);
    } catch { /* closed already: the write will say so */ }
  }

  /** Sends one chunk of the body. */
  write(chunk: Uint8Array): Promise<void> {
    if (chunk.length === 0) return Promise.resolve();
    if (this.#opts.length !== null) return this.#sendBody(chunk);
    // One write per chunk: its frame copied around it (a copy costs less
    // than two more writes), in one buffer the upload reuses (the write
    // before has completed: callers write one chunk at a time).
    const size = chunk.length.toString(16);
    const framed = this.#frameOf(size.length + 2 + chunk.length + 2);
    asciiInto(size + "\r\n", framed);
    framed.set(chunk, size.length + 2);
    framed[framed.length - 2] = 0x0d;
    framed[framed.length - 1] = 0x0a;
    return this.send(framed);
  }

  /** The upload's framing buffer, `n` bytes of it. */
  #frameOf(n: number): Uint8Array<ArrayBuffer> {
    if (this.#frame.length < n) this.#frame = new Uint8Array(Math.max(n, 2 * this.#frame.length));
    return this.#frame.subarray(0, n);
  }

  async #sendBody(chunk: Uint8Array) {
    if (this.#sent + chunk.length >= this.#opts.length!) this.#nagle(false);
    // Counted before the write settles: a write in flight may already be in
    // the kernel's buffers, whole, and the volume then stores the file even
    // if the connection is closed before the write is seen to complete.
    this.#sent += chunk.length;
    await this.send(chunk);
  }

  /**
   * Whether the whole body went out, or may have (its last write is in
   * flight): the volume may be storing it now, so an abandoned upload
   * should wait for its answer rather than close. Never once the volume
   * answered before the end (its last chunk may have been counted as sent
   * when the answer stopped it): that answer was the volume's last word.
   */
  get sentAll(): boolean {
    if (this.#answeredEarly) return false;
    const { length } = this.#opts;
    return length === null ? this.#sent > 0 : this.#sent >= length;
  }

  /** Sends the end (chunked), then reads the whole answer. */
  async finish(maxBody = 65536): Promise<Http1Response> {
    if (this.#opts.length === null) {
      this.#nagle(false);
      await this.send(LAST_CHUNK);
      this.#sent = 1;
    }
    try {
      this.#finishing = true;
      this.#call.deadline = performance.now() + this.#opts.timeout;
      await this.#firstRead;
      const res = this.#reader.whole(false, maxBody) ??
        await readResponse(this.#reader, false, maxBody);
      this.#end(res.close || this.#reader.pending > 0 || this.#call.timedOut);
      return { status: res.status, body: res.body };
    } catch (err) {
      throw this.#failure(err);
    } finally {
      this.close();
    }
  }

  /** Closes the connection (an abandoned upload); nothing after. */
  close() {
    this.#end(true);
  }

  /** Bytes as they are: a head, or a chunk of a body of known length. */
  async send(bytes: Uint8Array): Promise<void> {
    if (this.#answered) throw await this.#early();
    this.#call.deadline = performance.now() + this.#opts.timeout;
    try {
      let off = await this.#conn.write(bytes);
      while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    } catch (err) {
      // Refused midway: the answer, when there is one, says why.
      if (this.#answered) throw await this.#early();
      throw this.#failure(err);
    }
    // Waiting on the other replicas (or the client) is not this one's stall;
    // waiting for the answer (a cancelled PUT's, its last write in flight) is.
    if (!this.#finishing) this.#call.deadline = Infinity;
  }

  async #early(): Promise<Error> {
    this.#answeredEarly = true;
    try {
      const res = this.#reader.whole(false, 65536) ??
        await readResponse(this.#reader, false, 65536);
      return new EarlyAnswer(res.status);
    } catch (err) {
      return this.#failure(err);
    } finally {
      this.close();
    }
  }

  #failure(err: unknown): Error {
    this.close();
    if (this.#call.timedOut) return new TimeoutError(this.#opts.timeout);
    if (this.#opts.signal?.aborted) return this.#opts.signal.reason ?? err;
    return err instanceof Error ? err : new Error(String(err));
  }

  #end(close: boolean) {
    if (this.#done) return;
    this.#done = true;
    unwatch(this.#call);
    this.#opts.signal?.removeEventListener("abort", this.#onAbort);
    this.#release(close);
  }
}

const LAST_CHUNK = encoder.encode("0\r\n\r\n");

function requestHead(host: string, method: string, path: string, length: number | null) {
  const framing = length === null ? "Transfer-Encoding: chunked" : `Content-Length: ${length}`;
  return encoder.encode(`${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n${framing}\r\n\r\n`);
}

/** Head and body in one array (slab memory when small: lib/bytes.ts). */
function requestBytes(host: string, method: string, path: string, opts: Http1Options): Uint8Array {
  let head = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
  for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`;
  if (opts.body) head += `Content-Length: ${opts.body.length}\r\n`;
  head += "\r\n";
  const body = opts.body ?? new Uint8Array(0);
  const out = smallBytes(head.length + body.length);
  // Paths are base64 and hosts ASCII; anything else is encoded properly.
  if (!asciiInto(head, out)) return concat(encoder.encode(head), body);
  out.set(body, head.length);
  return out;
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array) {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** Buffered reads from a connection. */
class Reader {
  #buf = new Uint8Array(0);
  #pos = 0;
  #got = 0;
  /**
   * Reads land here, reused: what is taken out of the buffer is copied
   * (bytes) or decoded (head, line), so nothing outlives the next read. A
   * new 64 KiB array per read made a pipelined connection's reads the
   * master's largest source of garbage.
   */
  #chunk: Uint8Array<ArrayBuffer>;
  /** The first read's buffer, kept with the connection. */
  readonly #first: Uint8Array<ArrayBuffer>;
  /** A read started ahead (prefetch), the next fill's. */
  #next: Promise<number | null> | null = null;

  /** `size`: the read buffer; most answers (HEAD, 201, 204) are a few hundred bytes. */
  constructor(readonly conn: Deno.TcpConn, size = 1024) {
    this.#chunk = this.#first = new Uint8Array(size);
  }

  get pending(): number {
    return this.#buf.length - this.#pos;
  }

  /** Forgets the last answer and starts reading the next now: its promise. */
  prefetch(): Promise<number | null> {
    this.#buf = NO_BODY;
    this.#pos = 0;
    this.#got = 0;
    this.#chunk = this.#first;
    return this.#next = this.conn.read(this.#chunk);
  }

  /**
   * Reads more; throws Stale when the connection ends before any byte, or
   * is reset (the volume closed it with the request unread).
   */
  async fill() {
    // What is left is copied out first: the read overwrites the chunk.
    const rest = this.pending > 0 ? this.#buf.slice(this.#pos) : null;
    // Past the first answer's worth, read in larger steps.
    if (this.#got > 0 && this.#chunk.length < 65536) this.#chunk = new Uint8Array(65536);
    const next = this.#next;
    this.#next = null;
    let n;
    try {
      n = await (next ?? this.conn.read(this.#chunk));
    } catch (err) {
      if (this.#got === 0 && err instanceof Deno.errors.ConnectionReset) {
        staleIfClosed(err, { sent: true });
      }
      throw err;
    }
    if (n === null) {
      throw this.#got === 0
        ? new Stale("Connection closed", true)
        : new Error("Connection closed mid-answer");
    }
    this.#got += n;
    if (rest === null) {
      this.#buf = this.#chunk.subarray(0, n);
    } else {
      const next = new Uint8Array(rest.length + n);
      next.set(rest);
      next.set(this.#chunk.subarray(0, n), rest.length);
      this.#buf = next;
    }
    this.#pos = 0;
  }

  /**
   * Reads until a byte of the answer is here, past any whole interim
   * answers (consumed): what an Upload takes for the volume's answer.
   */
  async answerBegun() {
    do {
      await this.fill();
      for (let end; (end = headEnd(this.#buf, this.#pos)) >= 0;) {
        let status;
        try {
          status = parseHead(this.#buf, this.#pos, end).status;
        } catch {
          return; // not HTTP: finish() says so
        }
        if (!interim(status)) break;
        this.#pos = end + 4;
      }
    } while (this.pending === 0);
  }

  /**
   * The head of an answer, up to its empty line, which is consumed: parsed
   * in place (no strings, no header map), as most answers are a status and
   * nothing else the master needs.
   */
  async head(max: number): Promise<Head> {
    let end = headEnd(this.#buf, this.#pos);
    if (end < 0) end = await this.#wholeHead(max);
    const answer = parseHead(this.#buf, this.#pos, end);
    this.#pos = end + 4;
    return answer;
  }

  /**
   * The answer, when the buffer holds all of it (consumed then); else null,
   * nothing consumed: chunked bodies, errors of length and the rest are
   * readResponse's.
   */
  whole(
    isHead: boolean,
    maxBody: number,
  ): { status: number; body: Uint8Array; close: boolean } | null {
    let end = headEnd(this.#buf, this.#pos);
    if (end < 0) return null;
    let head = parseHead(this.#buf, this.#pos, end);
    // Consumed: readResponse goes on from the next head.
    while (interim(head.status)) {
      this.#pos = end + 4;
      end = headEnd(this.#buf, this.#pos);
      if (end < 0) return null;
      head = parseHead(this.#buf, this.#pos, end);
    }
    const { status, close, length, chunked } = head;
    const start = end + 4;
    if (!hasBody(isHead, status)) {
      this.#pos = start;
      return { status, body: NO_BODY, close };
    }
    if (chunked || length < 0 || length > maxBody || this.#buf.length - start < length) return null;
    const body = length > 0 ? this.#buf.slice(start, start + length) : NO_BODY;
    this.#pos = start + length;
    return { status, body, close };
  }

  /** Reads until the buffer holds a whole head; where its CRLF CRLF starts. */
  async #wholeHead(max: number): Promise<number> {
    let from = this.#pos;
    while (true) {
      const end = headEnd(this.#buf, from);
      if (end >= 0) return end;
      if (this.pending > max) throw new Error("Answer header too long");
      from = Math.max(this.#pos, this.#buf.length - 3);
      const before = this.#pos;
      await this.fill();
      from = from - before + this.#pos;
    }
  }

  /** A line without its CRLF. */
  async line(max: number): Promise<string> {
    while (true) {
      const nl = this.#buf.indexOf(0x0a, this.#pos);
      if (nl >= 0) {
        const end = nl > this.#pos && this.#buf[nl - 1] === 0x0d ? nl - 1 : nl;
        const s = latin1.decode(this.#buf.subarray(this.#pos, end));
        this.#pos = nl + 1;
        return s;
      }
      if (this.pending > max) throw new Error("Answer header too long");
      await this.fill();
    }
  }

  async bytes(n: number): Promise<Uint8Array> {
    while (this.pending < n) await this.fill();
    const out = this.#buf.slice(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }
}

/** Where CRLF CRLF starts in buf at or after `from`, or -1. */
function headEnd(buf: Uint8Array, from: number): number {
  for (
    let i = buf.indexOf(0x0d, from);
    i >= 0 && i + 3 < buf.length;
    i = buf.indexOf(0x0d, i + 1)
  ) {
    if (buf[i + 1] === 0x0a && buf[i + 2] === 0x0d && buf[i + 3] === 0x0a) return i;
  }
  return -1;
}

const HTTP1 = encoder.encode("HTTP/1.");
const CONNECTION = encoder.encode("connection:");
const CLOSE = encoder.encode("close");
const CONTENT_LENGTH = encoder.encode("content-length:");
const TRANSFER_ENCODING = encoder.encode("transfer-encoding:");
const IDENTITY = encoder.encode("identity");

/** What a HEAD's caller reads of its answer (HeadPipeline). */
export interface HeadAnswer {
  readonly status: number;
  /** Content-Length, -1 when not given. */
  readonly length: number;
}

/** What the client needs of an answer's head. */
interface Head extends HeadAnswer {
  status: number;
  /** "Connection: close", or HTTP/1.0. */
  close: boolean;
  length: number;
  /** A Transfer-Encoding other than identity. */
  chunked: boolean;
}

/** The head in buf[from, end), parsed in place. */
function parseHead(buf: Uint8Array, from: number, end: number): Head {
  let ok = end - from >= 12 && buf[from + 8] === 0x20;
  for (let i = 0; ok && i < HTTP1.length; i++) ok = buf[from + i] === HTTP1[i];
  const d = (i: number) => buf[from + i] - 0x30;
  const status = 100 * d(9) + 10 * d(10) + d(11);
  if (
    !ok || !(status >= 100 && status <= 999) || d(10) > 9 || d(11) > 9 || d(10) < 0 || d(11) < 0
  ) {
    const text = latin1.decode(buf.subarray(from, Math.min(end, from + 40)));
    throw new Error(`Not an HTTP answer: "${text}"`);
  }
  const head: Head = { status, close: buf[from + 7] === 0x30, length: -1, chunked: false };
  for (let i = buf.indexOf(0x0a, from); i >= 0 && i < end; i = buf.indexOf(0x0a, i + 1)) {
    const at = i + 1;
    if (lowerIs(buf, at, CONNECTION)) {
      head.close ||= valueIs(buf, at + CONNECTION.length, end, CLOSE);
    } else if (lowerIs(buf, at, CONTENT_LENGTH)) {
      head.length = lengthOf(buf, at + CONTENT_LENGTH.length, end);
    } else if (lowerIs(buf, at, TRANSFER_ENCODING)) {
      head.chunked = !valueIs(buf, at + TRANSFER_ENCODING.length, end, IDENTITY);
    }
  }
  return head;
}

/** A Content-Length value from `at` to its line's end; throws when it is not a number. */
function lengthOf(buf: Uint8Array, at: number, end: number): number {
  let i = at;
  while (i < end && (buf[i] === 0x20 || buf[i] === 0x09)) i++;
  let n = 0;
  let digits = 0;
  for (; i < end && buf[i] >= 0x30 && buf[i] <= 0x39; i++, digits++) n = n * 10 + buf[i] - 0x30;
  while (i < end && (buf[i] === 0x20 || buf[i] === 0x09)) i++;
  if (digits === 0 || digits > 15 || (i < end && buf[i] !== 0x0d && buf[i] !== 0x0a)) {
    let stop = i;
    while (stop < end && buf[stop] !== 0x0d) stop++;
    throw new Error(`Bad Content-Length "${latin1.decode(buf.subarray(at, stop)).trim()}"`);
  }
  return n;
}

/** buf at `at` holds `word` (lowercase), ASCII case ignored. */
function lowerIs(buf: Uint8Array, at: number, word: Uint8Array): boolean {
  for (let i = 0; i < word.length; i++) if ((buf[at + i] | 0x20) !== word[i]) return false;
  return true;
}

/** The header value from `at` to its line's end is `word`, spaces and case aside. */
function valueIs(buf: Uint8Array, at: number, end: number, word: Uint8Array): boolean {
  let i = at;
  while (i < end && (buf[i] === 0x20 || buf[i] === 0x09)) i++;
  if (!lowerIs(buf, i, word)) return false;
  for (i += word.length; i < end && buf[i] !== 0x0d && buf[i] !== 0x0a; i++) {
    if (buf[i] !== 0x20 && buf[i] !== 0x09) return false;
  }
  return true;
}

const NO_BODY = new Uint8Array(0);

/**
 * An interim answer (100 Continue, 103 Early Hints), which the answer
 * follows; not 101 Switching Protocols, which no call here asks for.
 */
function interim(status: number): boolean {
  return status >= 100 && status < 200 && status !== 101;
}

/** Whether an answer to this request with this status has a body. */
function hasBody(isHead: boolean, status: number): boolean {
  return !isHead && status !== 204 && status !== 304 && !(status >= 100 && status < 200);
}

async function readResponse(r: Reader, isHead: boolean, maxBody: number) {
  let head = await r.head(HEAD_MAX);
  while (interim(head.status)) head = await r.head(HEAD_MAX);
  const { status, close, length, chunked: isChunked } = head;
  let body: Uint8Array = NO_BODY;
  if (hasBody(isHead, status)) {
    if (isChunked) body = await chunked(r, maxBody);
    else if (length >= 0) {
      if (length > maxBody) {
        throw new Error(`Answer of ${length} bytes, more than the ${maxBody} expected`);
      }
      if (length > 0) body = await r.bytes(length);
    } else throw new Error("An answer with neither Content-Length nor chunked body");
  }
  return { status, body, close };
}

async function chunked(r: Reader, maxBody: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  while (true) {
    const size = parseInt((await r.line(HEAD_MAX)).split(";")[0], 16);
    if (Number.isNaN(size)) throw new Error("Bad chunk size");
    if (size === 0) break;
    total += size;
    if (total > maxBody) throw new Error(`Answer longer than the ${maxBody} bytes expected`);
    parts.push(await r.bytes(size));
    await r.line(2);
  }
  // Trailers, up to the empty line.
  while (await r.line(HEAD_MAX) !== "");
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * HEADs pipelined over a few connections per volume: the HEADs that
 * concurrent GETs ask for in one turn of the event loop go out in one write,
 * and their answers come back in order. A HEAD has no body, so answers are
 * short and cannot hold up the ones behind them for long.
 */
export class HeadPipeline {
  readonly #conns: PipelinedConn[] = [];
  constructor(readonly host: string, readonly width = 2) {}

  /**
   * The answer to HEAD path (its status and Content-Length: the parsed
   * head itself, nothing copied); rejects when the volume does not answer
   * in `ms`.
   */
  head(path: string, ms: number): Promise<HeadAnswer> {
    return new Promise((resolve, reject) => {
      this.#send({ path, ms, resolve, reject, retried: false });
    });
  }

  #send(p: PendingHead) {
    // The least loaded open connection, or a new one while under the width.
    let best: PipelinedConn | null = null;
    for (const c of this.#conns) {
      if (!c.open) continue;
      if (!best || c.load < best.load) best = c;
    }
    if (!best || (best.load > 0 && this.#conns.length < this.width)) {
      best = new PipelinedConn(
        this.host,
        p.ms,
        (c, unanswered, tried) => this.#lost(c, unanswered, tried),
      );
      this.#conns.push(best);
    }
    best.send(p);
  }

  /**
   * A connection ended. HEADs it never answered go on another: always after
   * the volume closed it in good order ("Connection: close", as nginx does
   * past keepalive_requests), once more after a failure.
   */
  #lost(c: PipelinedConn, unanswered: PendingHead[], tried: boolean) {
    const i = this.#conns.indexOf(c);
    if (i >= 0) this.#conns.splice(i, 1);
    for (const p of unanswered) {
      if (tried && p.retried) p.reject(new Error("Connection closed"));
      else this.#send({ ...p, retried: p.retried || tried });
    }
  }
}

interface PendingHead {
  path: string;
  ms: number;
  resolve: (answer: HeadAnswer) => void;
  reject: (err: unknown) => void;
  retried: boolean;
}

/**
 * One connection carrying pipelined HEADs; answers match requests in order.
 * So only the oldest unanswered HEAD can be late: one timer, armed for its
 * deadline, is checked and re-armed as answers come (a timer per HEAD cost
 * more than the HEAD's own parsing).
 */
class PipelinedConn {
  open = true;
  readonly #waiting: { p: PendingHead; deadline: number }[] = [];
  #queued: PendingHead[] = [];
  #conn: Promise<Deno.TcpConn>;
  #flushing = false;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** `ms`: how long the connection may take to open (the HEADs' own time). */
  constructor(
    readonly host: string,
    ms: number,
    readonly onLost: (c: PipelinedConn, unanswered: PendingHead[], tried: boolean) => void,
  ) {
    const limit = heardWithin(ms);
    this.#conn = Deno.connect({ ...addressOf(host), signal: limit.signal });
    this.#conn.finally(limit.clear).catch(() => {});
    // A connection that does not open in time fails its HEADs as late
    // answers do: at once, not again on another connection.
    this.#conn.then(
      (conn) => this.#readLoop(conn),
      (err) => this.#fail(limit.signal.aborted ? new TimeoutError(ms) : err),
    );
  }

  get load(): number {
    return this.#waiting.length + this.#queued.length;
  }

  send(p: PendingHead) {
    this.#queued.push(p);
    if (!this.#flushing) {
      this.#flushing = true;
      // After the event loop's I/O turn, not at the end of this task: the
      // HEADs of every request that came in that turn go out in one write.
      // (A microtask flushed each GET's HEAD alone: one syscall each.)
      setImmediate(() => this.#flush());
    }
  }

  /**
   * Fails the connection if its oldest HEAD is past its deadline, else waits
   * for that. A timer that fired more than HELD ms late (this thread was
   * held) gives the HEADs past their deadlines HELD ms more: answers that
   * came meanwhile are read first (see `calls` above).
   */
  #watch(due = performance.now()) {
    this.#timer = undefined;
    const oldest = this.#waiting[0];
    if (!oldest || !this.open) return;
    const now = performance.now();
    if (now - due > HELD) {
      for (const w of this.#waiting) w.deadline = Math.max(w.deadline, now + HELD);
    }
    const left = oldest.deadline - now;
    if (left <= 0) this.#fail(new TimeoutError(oldest.p.ms));
    else this.#timer = setTimeout(() => this.#watch(now + left), left);
  }

  async #flush() {
    let conn: Deno.TcpConn;
    try {
      conn = await this.#conn;
    } catch {
      return; // #fail hands the queue on
    }
    while (this.#queued.length > 0 && this.open) {
      const batch = this.#queued;
      this.#queued = [];
      let text = "";
      const now = performance.now();
      for (const p of batch) {
        text += `HEAD ${p.path} HTTP/1.1\r\nHost: ${this.host}\r\n\r\n`;
        this.#waiting.push({ p, deadline: now + p.ms });
      }
      // A volume that answers nothing in time: the connection is stuck.
      if (this.#timer === undefined) this.#watch();
      try {
        await writeAll(conn, encoder.encode(text));
      } catch (err) {
        this.#fail(err);
        return;
      }
    }
    this.#flushing = false;
  }

  async #readLoop(conn: Deno.TcpConn) {
    const reader = new Reader(conn, 65536);
    try {
      while (this.open) {
        const res = await reader.head(HEAD_MAX);
        if (interim(res.status)) continue;
        const w = this.#waiting.shift();
        if (!w) throw new Error("An answer to no request");
        w.p.resolve(res);
        if (res.close) return this.#fail(null);
      }
    } catch (err) {
      this.#fail(err);
    }
  }

  /** Ends the connection; `err` null: the volume closed it in good order. */
  #fail(err: unknown) {
    if (!this.open) return;
    this.open = false;
    this.#conn.then((c) => c.close(), () => {}).catch(() => {});
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const waiting = this.#waiting.splice(0);
    const unanswered = [...waiting.map((w) => w.p), ...this.#queued.splice(0)];
    // A timeout is the volume's: no second try elsewhere on the same volume.
    if (err instanceof TimeoutError) {
      for (const p of unanswered) p.reject(err);
      this.onLost(this, [], true);
    } else {
      this.onLost(this, unanswered, err !== null);
    }
  }
}

export class TimeoutError extends Error {
  constructor(ms: number) {
    super(`timed out after ${ms}ms`);
  }
}
