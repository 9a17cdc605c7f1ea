// A raw HTTP/1.1 server in a Worker: it answers every request 204 after
// `delay` ms, on its own thread, so it keeps answering while the test's
// event loop is blocked. Posts its port, then serves until terminated.
/// <reference lib="deno.worker" />
const delay = Number(new URL(import.meta.url).searchParams.get("delay") ?? 0);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
self.postMessage((listener.addr as Deno.NetAddr).port);

async function serve(conn: Deno.Conn) {
  const buf = new Uint8Array(65536);
  let text = "";
  while (true) {
    const n = await conn.read(buf);
    if (n === null) return;
    text += new TextDecoder().decode(buf.subarray(0, n));
    let end;
    while ((end = text.indexOf("\r\n\r\n")) >= 0) {
      text = text.slice(end + 4);
      await new Promise((r) => setTimeout(r, delay));
      await conn.write(new TextEncoder().encode("HTTP/1.1 204 No Content\r\n\r\n"));
    }
  }
}

for await (const conn of listener) serve(conn).catch(() => conn.close());
