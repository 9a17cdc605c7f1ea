// `Expect: 100-continue`, as botocore (boto3, the AWS CLI) sends it on every
// PutObject and UploadPart, empty bodies included. Deno sends no interim
// "100 Continue" for an empty body, and botocore before 1.43.77 then parses
// the next answer on that connection with this one's status line (a stalled
// read for its 60 s timeout, then a retry: `aws s3 sync` of a tree holding
// empty files). Each check opens its own socket: the connection is the point.
import { Cluster } from "./cluster.ts";
import { assertEquals } from "./assert.ts";

/**
 * Sends a request's head (`body` after it, once a 100 Continue came) on a
 * fresh connection and returns every interim and final status line with
 * the final answer's headers, lowercased.
 */
async function expectContinue(
  port: number,
  path: string,
  body: string,
): Promise<{ statuses: string[]; headers: Map<string, string> }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const enc = new TextEncoder();
  try {
    await conn.write(enc.encode(
      `PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nExpect: 100-continue\r\n` +
        `Content-Length: ${enc.encode(body).length}\r\n\r\n`,
    ));
    const statuses: string[] = [];
    let text = "";
    const buf = new Uint8Array(65536);
    while (true) {
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const [status, ...lines] = text.slice(0, end).split("\r\n");
        text = text.slice(end + 4);
        statuses.push(status);
        if (status.startsWith("HTTP/1.1 100")) {
          await conn.write(enc.encode(body));
          continue;
        }
        const headers = new Map(lines.map((l) => {
          const colon = l.indexOf(":");
          return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()];
        }));
        return { statuses, headers };
      }
      const n = await conn.read(buf);
      if (n === null) throw new Error(`The connection closed before an answer: ${text}`);
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } finally {
    conn.close();
  }
}

Deno.test("Expect: 100-continue on S3 writes", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const bucket = `x-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await t.step(
      "an empty PutObject answered without a 100 Continue closes its connection",
      async () => {
        const key = `/${bucket}/empty-${crypto.randomUUID()}?x-id=PutObject`;
        const { statuses, headers } = await expectContinue(c.masterPort, key, "");
        assertEquals(statuses, ["HTTP/1.1 200 OK"]);
        assertEquals(headers.get("connection"), "close");
        assertEquals(headers.get("etag"), '"d41d8cd98f00b204e9800998ecf8427e"');
      },
    );
    await t.step(
      "a PutObject with a body gets its 100 Continue and keeps its connection",
      async () => {
        const key = `/${bucket}/one-${crypto.randomUUID()}?x-id=PutObject`;
        const { statuses, headers } = await expectContinue(c.masterPort, key, "x");
        assertEquals(statuses, ["HTTP/1.1 100 Continue", "HTTP/1.1 200 OK"]);
        assertEquals(headers.get("connection"), undefined);
        assertEquals(headers.get("etag"), '"9dd4e461268c8034f5c8564e155c67a6"');
      },
    );
  } finally {
    await c.stop();
  }
});
