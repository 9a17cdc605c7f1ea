// Deno's HTTP server reading a chunked request body streamed from a pipe:
// fast when the reader never pauses, many times slower when it awaits
// anything between two reads (here one Deno.lstat), the time spent inside
// the body's read calls. The master awaits its replicas between reads, so
// `cat big | curl -T - master/key` is slow (README, Not there yet). For a
// report upstream.
//
//   deno run -A bench/chunked_pause.ts &
//   head -c 268435456 /dev/urandom > /tmp/big.bin
//   cat /tmp/big.bin | curl -s -T - "localhost:4510/?pause"   # 1.8-6.1 s here
//   cat /tmp/big.bin | curl -s -T - "localhost:4510/"         # 0.33-0.40 s
//   curl -s -T /tmp/big.bin 'localhost:4510/?pause'           # Content-Length: fast
Deno.serve({ port: 4510 }, async (req) => {
  const pause = new URL(req.url).searchParams.has("pause");
  const started = performance.now();
  let chunks = 0;
  let bytes = 0;
  for await (const chunk of req.body ?? []) {
    chunks++;
    bytes += chunk.length;
    if (pause) await Deno.lstat("/");
  }
  const ms = (performance.now() - started).toFixed(0);
  return new Response(`${bytes} bytes in ${chunks} chunks, ${ms} ms\n`);
});
