// Streams one body to several replicas at once, in lock step: a chunk is
// read from the client only when every replica has taken the one before, so
// one slow replica slows the upload instead of making the master buffer the
// difference (as ReadableStream.tee() would, without bound). Memory stays at
// a chunk or two whatever the value's size. The MD5 is taken on the way,
// by a worker thread for large values (lib/md5_stream.ts).
import { md5Stream } from "./md5_stream.ts";

export interface FanoutResult {
  bytes: number;
  /** Lowercase hex MD5 of everything streamed, "" when not asked for. */
  md5: string;
}

/** Where the chunks go: a replica's PUT (lib/volumes.ts openPut). */
export interface Sink {
  /** Resolves once the chunk is sent; the next write waits for it. */
  write(chunk: Uint8Array): Promise<void>;
}

/**
 * The source (a client's request body) failed: it ended before its end,
 * sent nothing for the stall time, or was empty where a value must not be.
 * Not the volumes' fault: `status` is what the client is answered (400,
 * 408, 411).
 */
export class SourceError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** How the reason of every answer a stopping master's cut-off makes begins. */
export const CUT_OFF = "The master is shutting down and cut";

/**
 * The source sent fewer or more bytes than its known length (`bytes`: as
 * many as arrived, up to the one past it): a 400 SourceError, which a copy
 * of a stored value (lib/store.ts) tells apart from a failed read.
 */
export class LengthMismatch extends SourceError {
  constructor(readonly bytes: number, readonly length: number) {
    super(
      400,
      bytes < length
        ? `The request body ended early: ${bytes} of ${length} bytes`
        : `The request body is longer than its ${length} bytes`,
    );
  }
}

/**
 * What a request still in flight when a stopping master's deadline passes
 * fails with: 503, as a volume's failure (S3: ServiceUnavailable). A body
 * cut off so is a failed body: nothing of it goes live, and
 * what the write put on the volumes is removed as for any failed write.
 */
export class ShuttingDown extends SourceError {
  constructor() {
    super(503, `${CUT_OFF} this request off: retry (on another master)`);
  }
}

/** nginx's status of a request whose client closed the connection before the answer. */
export const CLIENT_CLOSED = 499;

/**
 * What a request's work fails with when its client closes the connection
 * before the answer, its body sent whole or not: 499, nginx's "client closed
 * request", the client's doing, not the master's nor a volume's (no one
 * reads the answer; the log and the metrics say it). What its write put on
 * the volumes is removed as for any failed write.
 */
export class ClientGone extends SourceError {
  constructor() {
    super(CLIENT_CLOSED, "The client closed the connection before the answer");
  }
}

/**
 * Whether an answer's reason (a 503's) is a stopping master's cut-off's:
 * ShuttingDown's, or one saying what the cut left of a write it stopped
 * past its first index write (a REPLACE's recorded switch).
 */
export function isCutOff(reason: string): boolean {
  return reason.startsWith(CUT_OFF);
}

/** The writer's claim on the key ran out, not to be renewed (lib/claim.ts confirm): stop writing. */
export class LostClaim extends Error {
  constructor() {
    super("Lost the claim on the key (its lease ran out)");
  }
}

export interface FanoutOptions {
  md5: boolean;
  /** The source's length when known (Content-Length): more or fewer bytes is a SourceError. */
  length?: number | null;
  /** Ms the source may stay silent. */
  stall?: number;
  /**
   * Checked before the value's end goes to any sink (the last chunk, when
   * the length is known: the volumes store the file on its last byte).
   */
  fence?: () => Promise<boolean>;
  /** An empty source fails (411) before anything ends. */
  refuseEmpty?: boolean;
  /** Aborting stops the copy (the client left, the claim ran out). */
  signal?: AbortSignal;
  /**
   * The source's MD5 when known (a copy of a stored value): a source of
   * other bytes fails (DigestMismatch), with a known length before its end
   * goes to any sink, so that no replica stores it. Implies `md5`.
   */
  expectMd5?: string;
}

/** The source's bytes do not have the MD5 they should (a corrupt copy, a body sent wrong). */
export class DigestMismatch extends Error {
  constructor(readonly got: string, readonly expected: string) {
    super(`Bytes of MD5 ${got} where ${expected} was expected`);
  }
}

/**
 * Copies the source to every sink; resolves with its size and MD5 once every
 * sink has taken every chunk (the sinks' ends are the caller's). Rejects on
 * the first failure, on either side; the source is then cancelled.
 */
export async function fanout(
  source: ReadableStream<Uint8Array>,
  sinks: Sink[],
  options: FanoutOptions,
): Promise<FanoutResult> {
  if (options.signal?.aborted) throw options.signal.reason;
  const copy = new Copy(source.getReader(), sinks, options);
  try {
    return await copy.run();
  } catch (err) {
    copy.fail(err);
    throw err;
  } finally {
    copy.close();
  }
}

/** One fanout() under way: the source's reader, the hash, what has gone out. */
class Copy {
  readonly #length: number | null;
  readonly #silence: Silence | null;
  readonly #hash: ReturnType<typeof md5Stream> | null;
  readonly #expected: string;
  // An abort ends the wait for the source or for the sinks, whichever it
  // is: a promise per wait on the sinks (a long-lived one would keep every
  // wait's reactions until the end, see Silence.read).
  #stopWaiting: ((reason: unknown) => void) | null = null;
  readonly #onAbort = () => {
    const reason = this.options.signal!.reason;
    this.reader.cancel(reason).catch(() => {});
    this.#stopWaiting?.(reason);
  };
  #bytes = 0;
  /**
   * With a known length, the chunk that completes it is the value's end to
   * the volumes (they store the file on its last byte): it is held back
   * until the source has ended cleanly. The source can still fail after its
   * last byte (an aws-chunked body's final chunk or trailer, a connection
   * that breaks before the body's end is read), and a failed source must
   * leave no file on any replica: a PUT over an unlinked key keeps it then.
   */
  #last: Uint8Array | null = null;

  constructor(
    readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    readonly sinks: Sink[],
    readonly options: FanoutOptions,
  ) {
    this.#length = options.length ?? null;
    this.#silence = options.stall === undefined ? null : new Silence(options.stall);
    this.#expected = options.expectMd5 ?? "";
    this.#hash = options.md5 || this.#expected ? md5Stream(this.#length) : null;
    options.signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  async run(): Promise<FanoutResult> {
    const signal = this.options.signal;
    while (true) {
      const { value, done } =
        await (this.#silence ? this.#silence.read(this.reader) : readSource(this.reader));
      // A cancelled reader reads as done: the abort is what happened.
      if (signal?.aborted) throw signal.reason;
      if (done) return await this.#end();
      if (value.byteLength === 0) continue;
      if (this.#counted(value)) continue;
      await this.#send(value);
    }
  }

  /** Counts a chunk in; true when it is the held-back last one (see #last). */
  #counted(value: Uint8Array): boolean {
    this.#bytes += value.byteLength;
    const length = this.#length;
    if (length === null) return false;
    if (this.#bytes > length) throw new LengthMismatch(this.#bytes, length);
    if (this.#bytes < length) return false;
    this.#last = value;
    return true;
  }

  /** The source ended: the checks the value's end waits for, then the end. */
  async #end(): Promise<FanoutResult> {
    const bytes = this.#bytes, length = this.#length, last = this.#last;
    if (length !== null && bytes < length) throw new LengthMismatch(bytes, length);
    // An empty value fails before the end goes out: nginx would
    // otherwise put an empty file in place of what the path held.
    if (bytes === 0 && this.options.refuseEmpty) {
      throw new SourceError(411, "A value must not be empty");
    }
    // Nothing more goes out, not even the end, without the right to.
    const fence = this.options.fence;
    if (fence && !(await fence())) throw new LostClaim();
    if (this.#expected) return await this.#endChecked();
    if (last) await this.#send(last);
    return { bytes, md5: this.#hash ? await this.#hash.digest() : "" };
  }

  /**
   * The end of a source of known MD5: hashed before the end goes out, so
   * that bytes of another MD5 are stored on no sink (with an unknown length,
   * they are already).
   */
  async #endChecked(): Promise<FanoutResult> {
    const hash = this.#hash!, last = this.#last, expected = this.#expected;
    if (last) await hash.update(last);
    const got = await hash.digest();
    if (got !== expected) {
      throw new DigestMismatch(got, expected);
    }
    if (last) await this.#send(last, false);
    return { bytes: this.#bytes, md5: got };
  }

  /** Sends a chunk to every sink (and the hash); resolves once all took it. */
  async #send(chunk: Uint8Array, hashIt = true) {
    const sent = this.sinks.map((s) => s.write(chunk));
    const hashed = hashIt ? this.#hash?.update(chunk) : undefined;
    if (hashed) sent.push(hashed);
    if (!this.options.signal) {
      await Promise.all(sent);
      return;
    }
    const aborted = Promise.withResolvers<never>();
    this.#stopWaiting = aborted.reject;
    await Promise.race([Promise.all(sent), aborted.promise]);
    this.#stopWaiting = null;
  }

  /** The copy failed: the hash and the source are dropped. */
  fail(err: unknown) {
    this.#hash?.abort();
    this.reader.cancel(err).catch(() => {});
  }

  close() {
    this.#silence?.stop();
    this.options.signal?.removeEventListener("abort", this.#onAbort);
  }
}

/**
 * How long the source has kept silent while being read: a read that waits
 * `ms` fails with a 408 SourceError, and so does every read after it. One
 * timer for the whole body, re-armed when it fires early (a timer per read
 * cost a 256 MiB PUT ~20 ms of the master's thread); time spent between
 * reads (on the replicas) does not count.
 */
export class Silence {
  /** When the pending read began (performance.now()); -1: no read pending. */
  #since = -1;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Fails the pending read. A promise per read, not one for the body: see read(). */
  #fail: ((err: SourceError) => void) | null = null;
  #broken: SourceError | null = null;

  constructor(readonly ms: number) {
    const check = () => {
      const quiet = this.#since < 0 ? 0 : performance.now() - this.#since;
      if (quiet < ms) {
        this.#timer = setTimeout(check, ms - quiet);
        return;
      }
      this.#broken = new SourceError(408, `No byte of the request body in ${ms}ms`);
      this.#fail?.(this.#broken);
    };
    this.#timer = setTimeout(check, ms);
  }

  /** One read of the source, watched; its failure is a 400 SourceError. */
  async read(
    reader: ReadableStreamDefaultReader<Uint8Array>,
  ): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (this.#broken) throw this.#broken;
    // Racing each read against one long-lived promise would keep every
    // read's result (each chunk) reachable from that promise until the
    // body's end: 256 MiB held for a 256 MiB PUT.
    const stalled = Promise.withResolvers<never>();
    this.#fail = stalled.reject;
    this.#since = performance.now();
    try {
      return await Promise.race([reader.read(), stalled.promise]);
    } catch (err) {
      throw sourceError(err);
    } finally {
      this.#since = -1;
      this.#fail = null;
    }
  }

  stop() {
    clearTimeout(this.#timer);
  }
}

/** One read of a source not watched for silence; its failure is a 400 SourceError. */
async function readSource(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  try {
    return await reader.read();
  } catch (err) {
    throw sourceError(err);
  }
}

/** `err`, a failure of the client's body, as one (400 unless it says its status). */
export function sourceError(err: unknown): SourceError {
  if (err instanceof SourceError) return err;
  const why = err instanceof Error ? err.message : String(err);
  return new SourceError(400, `The request body ended early: ${why}`);
}
