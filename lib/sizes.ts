// What a request did, noted by its response where it is known (lib/server.ts
// for mkv's API, the S3 handlers for theirs) for lib/server.ts to read: the
// bytes it moved through the master, for the metrics' byte counters and the
// -v log line; whether a write's answer was made with nothing written; why
// it failed.

/** Value bytes received and stored: PUT, REPLACE, PutObject, UploadPart. */
export const received = new WeakMap<Response, number>();

/** Body bytes the master sends itself: lists, errors, S3 objects streamed through it. */
export const sent = new WeakMap<Response, number>();

/**
 * Answers to a write made from what the index held, with no index write:
 * a success (S3's DeleteObject of a missing key: 204), or a refusal the
 * incomplete index's question to the volumes decided (its 503, "... run
 * rebuild", or "... did not say ..."; lib/store.ts `unindexed`). A write
 * that commits is fenced; these are not, so lib/server.ts judges them as it
 * judges reads after this master stalled: a rebuild may have emptied the
 * index meanwhile (and marked it), and the key be one it has yet to refill.
 */
export const unwritten = new WeakSet<Response>();

/**
 * Why a 5xx answer failed, as its body says it (mkv's text, S3's <Message>):
 * for the log line of a refusal (503) and the status page's errors.
 */
export const reasons = new WeakMap<Response, string>();

/**
 * What a write answered as done (2xx) left undone, as its outcome's
 * message says it ("Old copy on host:port not deleted ...", "Lost the claim
 * on the key once ..."): sent to no client (a 201 or 204 has no reason in
 * its body), so lib/server.ts logs it as a warning and lists it among the
 * status page's errors.
 */
export const undone = new WeakMap<Response, string>();

/**
 * Answers whose status is sent before their work is done (S3's
 * CompleteMultipartUpload: a 200 at once, then its result or an <Error>):
 * the reason of the <Error> their body ends with, once known ("" when it
 * ends with the result), for a stopping master's count of what its cut
 * stopped (lib/server.ts Drain). Never rejected.
 */
export const endings = new WeakMap<Response, Promise<string>>();
