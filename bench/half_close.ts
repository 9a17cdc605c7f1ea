// A PUT whose client half-closes its socket (shutdown SHUT_WR) as soon as
// the whole body is written, as some clients do: Deno 2.9.6's HTTP/1.1
// server can see that EOF while the body's tail is still in its buffer and
// cancel the body ("Cannot read request body as underlying resource
// unavailable"; the master answers 400). Cause: bench/chunked_pause.ts.
//
//   deno run -A bench/half_close.ts localhost:3000/some-key [MiB=8] [tries=5]
const [target = "localhost:3000/half-close", mib = "8", tries = "5"] = Deno.args;
const slash = target.indexOf("/");
const [hostname, port] = target.slice(0, slash).split(":");
const path = target.slice(slash);
const size = Number(mib) << 20;
const body = new Uint8Array(size);
for (let i = 0; i < Number(tries); i++) {
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const head = `PUT ${path}-${i} HTTP/1.1\r\nHost: ${hostname}\r\n` +
    `Content-Length: ${size}\r\nConnection: close\r\n\r\n`;
  await conn.write(new TextEncoder().encode(head));
  for (let off = 0; off < size;) off += await conn.write(body.subarray(off));
  await conn.closeWrite();
  const answer = new Uint8Array(await new Response(conn.readable).arrayBuffer());
  console.log(new TextDecoder().decode(answer).split("\r\n")[0]);
}
