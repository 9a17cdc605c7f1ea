// User metadata (x-amz-meta-*) beyond ASCII, as GetObject and HeadObject
// answer it: RFC 2047-encoded, as S3 documents ("encoded as per RFC 2047
// to make them mail-safe before returning"), ASCII values as they are.
import { Cluster } from "./cluster.ts";
import { unsignedHeaders } from "./s3_client.ts";
import { assertEquals } from "./assert.ts";

/** A string of one character per byte of `text`'s UTF-8: a header's raw bytes, as fetch sends them. */
function utf8Bytes(text: string): string {
  return String.fromCharCode(...new TextEncoder().encode(text));
}

/** The x-amz-meta-* headers of the answers to a GET and a HEAD of `url`, as their bytes. */
async function answeredMeta(url: string): Promise<[string, string][][]> {
  const answers = [];
  for (const method of ["GET", "HEAD"]) {
    const res = await fetch(url, { method, headers: unsignedHeaders() });
    await res.body?.cancel();
    assertEquals(res.status, 200, method);
    answers.push([...res.headers].filter(([name]) => name.startsWith("x-amz-meta-")));
  }
  return answers;
}

Deno.test("x-amz-meta-* beyond ASCII is answered RFC 2047-encoded by GetObject and HeadObject, ASCII values as they are", async () => {
  // The stored bytes went out raw (0xC3 0xA9 for é): not ASCII, which a
  // header should be, and no S3 client decodes them.
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const bucket = `m-${crypto.randomUUID().slice(0, 8)}`;
    const made = await fetch(`${c.url}/${bucket}`, { method: "PUT", headers: unsignedHeaders() });
    assertEquals(made.status, 200);
    const put = await fetch(`${c.url}/${bucket}/k`, {
      method: "PUT",
      body: "x",
      headers: unsignedHeaders({
        "x-amz-meta-utf8": utf8Bytes("café ☕"),
        // No UTF-8: each byte its Latin-1 character (fetch sends "é" so), as it is signed.
        "x-amz-meta-latin1": "caf\xe9",
        "x-amz-meta-ascii": "a=b ?=_ =?UTF-8?B?x?=",
      }),
    });
    assertEquals(put.status, 200);
    const meta = [
      ["x-amz-meta-ascii", "a=b ?=_ =?UTF-8?B?x?="],
      ["x-amz-meta-latin1", "=?UTF-8?B?Y2Fmw6k=?="],
      ["x-amz-meta-utf8", "=?UTF-8?B?Y2Fmw6kg4piV?="],
    ];
    assertEquals(await answeredMeta(`${c.url}/${bucket}/k`), [meta, meta]);
  } finally {
    await c.stop();
  }
});
