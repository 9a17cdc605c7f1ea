// Whether a bare Deno.serve hears of a client that closes its connection
// once its whole request is sent and read, before the answer: the handler
// reads the body whole, then waits; its request.signal aborts, or not. Deno 2.9.6:
// yes for a body of 200 bytes, no from ~500 bytes up (the master then
// stores such a write, see README's Logs and tests/faults/large_client_gone_test.ts).
//
//   deno run -A bench/client_close.ts [bytes...=200 500 100000]
const sizes = Deno.args.length > 0 ? Deno.args.map(Number) : [200, 500, 100_000];
for (const size of sizes) {
  const heard = Promise.withResolvers<boolean>();
  const read = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const aborted = new Promise<boolean>((r) =>
      req.signal.addEventListener("abort", () => r(true))
    );
    await req.arrayBuffer();
    read.resolve();
    heard.resolve(
      await Promise.race([aborted, new Promise<boolean>((r) => setTimeout(r, 1000, false))]),
    );
    return new Response("late");
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const head = `PUT /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${size}\r\n\r\n`;
  for (const b of [new TextEncoder().encode(head), new Uint8Array(size)]) {
    for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
  }
  await read.promise;
  conn.close();
  console.log(
    `${size} bytes: request.signal ${(await heard.promise) ? "aborted" : "not aborted within 1 s"}`,
  );
  await server.shutdown();
}
