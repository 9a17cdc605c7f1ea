// The shared ring between lib/md5_stream.ts (writes) and lib/md5_worker.ts
// (hashes): the bytes, and four Int32 control words.

/** Bumped (and notified) at every change the worker must see. */
export const SEQ = 0;
/** Bytes copied in since the job began; wraps at 2^32 (the ring's size divides it). */
export const WRITTEN = 1;
/** Bytes hashed since the job began; the writer waits on it for room. */
export const READ = 2;
export const STATE = 3;
export const RUNNING = 0;
export const ENDED = 1;
export const ABORTED = 2;

export interface RingInit {
  ring: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
}
