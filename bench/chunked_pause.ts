// Deno 2.9.6's HTTP/1.1 server reading a chunked request body streamed from
// a pipe: fast when the reader never pauses, many times slower (and its
// memory grows with the body) when it awaits anything between two reads.
// The master awaits its replicas between reads, so `cat big | curl -T -
// master/key` is slow (README, Not there yet; BENCHMARKS.md, session 8).
// For a report upstream.
//
//   PORT=4510 deno run -A bench/chunked_pause.ts &
//   head -c 268435456 /dev/urandom > /tmp/big.bin
//   cat /tmp/big.bin | curl -s -T - "localhost:4510/?pause"          # 3-9 s
//   cat /tmp/big.bin | curl -s -T - "localhost:4510/"                # 0.2-0.7 s
//   curl -s -T /tmp/big.bin "localhost:4510/?pause"                  # Content-Length: 0.3-0.6 s
//   cat /tmp/big.bin | curl -s --http2-prior-knowledge -T - "localhost:4510/?pause"  # h2c: 0.6-1.1 s
//   cat /tmp/big.bin | curl -s -T - "localhost:4510/?pause&byob=1048576"  # bigger reads: 65 s
//
// The cause (read in denoland/deno, the Deno-owned HTTP/1.1 path that
// replaced hyper for HTTP/1 in 2.8.3, PR #34446; hyper still serves HTTP/2):
//
// - Every read of the body (ext/http/http_next.rs, `RawH1RequestBodyRead::poll`
//   and `RawH1RequestBodyReadByob::poll`) first calls `poll_peer_closed`, which
//   (libs/http_h1/conn.rs, `SharedConn::poll_peer_closed_with`) reads from the
//   socket into the per-connection scratch buffer, as much as the scratch holds
//   (the largest read size asked so far on the connection, 64 KiB for a
//   ReadableStream's default reads), and appends it to `SharedConn.buffered`,
//   a `Vec<u8>`, with no bound.
// - Then the read returns one decoded piece: `poll_read_body_chunk_limited_with`
//   parses `buffered[..limit]`, hands over at most one chunk of the chunked
//   encoding, and removes it with `buffered.drain(..consumed)`: a memmove of
//   everything behind it.
// - A reader slower than the client finds the kernel's socket buffer full at
//   every read, so each read appends a whole scratch (64 KiB) and removes one
//   chunk of the client's: curl -T - sends what it read from the pipe, 65,524
//   bytes or less (here 61,452, 4,096, 12...). The difference stays in
//   `buffered` for good: it grows for the whole body (RSS), and every read
//   memmoves all of it (CPU, quadratic). With a Content-Length the body has no
//   chunk boundaries, each read removes a whole 64 KiB, and `buffered` stays
//   flat. A reader that never pauses finds the kernel's buffer nearly empty at
//   each read, so `buffered` stays small.
//
// Seen from outside (perf record -g with --v8-flags=--perf-basic-prof): 74% of
// the samples in __memmove_avx512_unaligned_erms, called from op_read under
// ReadableStream's pull; gdb on that memmove (size > 200 KB) saw ~5,700 calls
// in one 256 MiB PUT, sizes growing to 76 MB, each moving the buffer down by
// exactly one wire chunk (65,532 = 65,524 + 8 bytes of framing; 61,460; 17 =
// 12 + 5...). The chunk sizes this server prints match those steps.
//
// Session 8 found nothing on the reader's side to escape it: bigger BYOB
// reads make it worse (each read appends more, still removes one chunk),
// smaller ones seemed only to slow the growth (measured with a pause after
// each read, four times as many pauses), and a bounded read-ahead
// pauses as soon as it is full. Outside Deno.serve's HTTP/1 path it does not
// happen: HTTP/2 (hyper), the legacy `Deno.serveHttp` (hyper) and `node:http`
// read the same body at full speed with RSS bounded, but the last two answer
// small requests at ~0.4x of Deno.serve's rate here.
//
// Found in session 22: reads smaller than the client's chunks escape it after
// all, if they are not each followed by a pause. A read of 4 KiB appends at
// most 4 KiB and takes out 4 KiB but at a chunk's end, so the buffer stays
// small; the master reads a chunked body so, joining the pieces into 64 KiB
// before each wait for its replicas (lib/request_body.ts): 256 MiB from a pipe
// in 1.3-1.5 s, 1 GiB in 6.3 s, +34 MiB. Left as it was, the buffer also
// holds the master's event loop once the client goes away mid-body: the
// connection then moves the rest out chunk by chunk (seconds, in one go).
//
// The same read explains the 400 for a client that half-closes its socket
// once its whole body is sent: `poll_peer_closed` sees the EOF (read() == 0)
// and cancels the body, "Cannot read request body as underlying resource
// unavailable", though the rest of the body sits in `buffered`.
Deno.serve({ port: Number(Deno.env.get("PORT") ?? 4510) }, async (req) => {
  const query = new URL(req.url).searchParams;
  const pause = query.has("pause");
  const byob = Number(query.get("byob") ?? 0);
  const started = performance.now();
  let chunks = 0;
  let bytes = 0;
  if (byob > 0 && req.body) {
    const reader = req.body.getReader({ mode: "byob" });
    let buf = new Uint8Array(byob);
    for (;;) {
      const { done, value } = await reader.read(buf);
      if (done) break;
      chunks++;
      bytes += value.length;
      buf = new Uint8Array(value.buffer);
      if (pause) await Deno.lstat("/");
    }
  } else {
    for await (const chunk of req.body ?? []) {
      chunks++;
      bytes += chunk.length;
      if (pause) await Deno.lstat("/");
    }
  }
  const ms = (performance.now() - started).toFixed(0);
  return new Response(`${bytes} bytes in ${chunks} chunks, ${ms} ms\n`);
});
