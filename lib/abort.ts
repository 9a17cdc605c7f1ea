// Waiting on work that goes on regardless, up to an abort: what a request
// gives up at a stopping master's cut-off while the work it shares or has
// no way to take back (a HEAD others wait on too, a wait to join the index)
// runs its course.

/**
 * `p`, or a rejection with `signal`'s reason as soon as it aborts; `p` goes
 * on, its outcome (a failure included) no longer this caller's.
 */
export function unlessAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
