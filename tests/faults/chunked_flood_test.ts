// A chunked PUT whose client is far ahead of the master, as `cat big | curl
// -T -` is: Deno's HTTP/1.1 server then hands the body out of its own
// buffer, every read ready at once, and the master must still poll its
// sockets meanwhile (lib/fanout.ts pollSockets): before, its probes of the
// volumes went unread past -voltimeout and it took every volume for down.
// `deno task test:faults`.
import { createHash } from "node:crypto";
import { Cluster, randomKey } from "../cluster.ts";
import { assertEquals } from "../assert.ts";

const SIZE = 256 * 1024 * 1024;

/**
 * PUTs SIZE zero bytes chunked from a pipe, `head -c | curl -T -` (a client
 * of the test's own was not far enough ahead of the master to show it): the
 * answer's status.
 */
async function pipedPut(url: string): Promise<number> {
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      `head -c ${SIZE} /dev/zero | curl -s -o /dev/null -w '%{http_code}' -T - '${url}'`,
    ],
  }).output();
  return Number(new TextDecoder().decode(out.stdout));
}

Deno.test("a chunked PUT from a client far ahead of the master leaves its probes hearing every volume", async () => {
  const c = await Cluster.start({ volumes: 3 });
  const m = await c.spawnMaster(["-voltimeout", "300ms"], {}, { stderr: "piped" });
  const stderr = new Response(m.proc.stderr).text();
  try {
    const k = randomKey();
    assertEquals(await pipedPut(m.url + k), 201);
    const got = new Uint8Array(await (await fetch(m.url + k)).arrayBuffer());
    assertEquals(
      { size: got.length, md5: createHash("md5").update(got).digest("hex") },
      { size: SIZE, md5: createHash("md5").update(new Uint8Array(SIZE)).digest("hex") },
    );
    await m.stop();
    const downs = (await stderr).split("\n").filter((l) => / down: /.test(l));
    assertEquals(downs, []);
  } finally {
    await m.stop();
    await c.stop();
  }
});
