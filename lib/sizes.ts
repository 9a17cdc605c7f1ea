// Bytes a request moved through the master, by its response: for the
// metrics' byte counters and the -v log line. Noted where they are known:
// lib/server.ts for mkv's API, the S3 handlers for theirs.

/** Value bytes received and stored: PUT, REPLACE, PutObject, UploadPart. */
export const received = new WeakMap<Response, number>();

/** Body bytes the master sends itself: lists, errors, S3 objects streamed through it. */
export const sent = new WeakMap<Response, number>();
