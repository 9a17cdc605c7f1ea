// The thread behind lib/md5_stream.ts: hashes what the main thread copies
// into a shared ring, one job (one value) at a time. Between jobs it waits
// in its event loop for the next "start"; during a job it blocks on the
// ring's sequence word (a worker may block; the main thread never does).
import { createHash } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { ABORTED, ENDED, READ, type RingInit, SEQ, STATE, WRITTEN } from "./md5_ring.ts";

let ring: Uint8Array;
let ctl: Int32Array;

function job(): string | null {
  const hash = createHash("md5");
  const mask = ring.length - 1;
  let read = Atomics.load(ctl, READ);
  while (true) {
    const seq = Atomics.load(ctl, SEQ);
    const written = Atomics.load(ctl, WRITTEN);
    if (written !== read) {
      // Up to the ring's end, then from its start: counters wrap at 2^32.
      const used = (written - read) >>> 0;
      const at = read & mask;
      const first = Math.min(used, ring.length - at);
      hash.update(ring.subarray(at, at + first));
      if (first < used) hash.update(ring.subarray(0, used - first));
      read = written;
      Atomics.store(ctl, READ, read);
      Atomics.notify(ctl, READ);
      continue;
    }
    const state = Atomics.load(ctl, STATE);
    if (state === ABORTED) return null;
    if (state === ENDED) return hash.digest("hex");
    Atomics.wait(ctl, SEQ, seq);
  }
}

parentPort!.on("message", (msg: RingInit | "start") => {
  if (msg === "start") {
    parentPort!.postMessage(job());
  } else {
    ring = new Uint8Array(msg.ring);
    ctl = new Int32Array(msg.ctl);
  }
});
