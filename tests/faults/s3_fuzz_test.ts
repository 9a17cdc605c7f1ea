// Hostile S3 input: random S3 calls with malformed parameters, XML and
// aws-chunked bodies against a real master (-s3, no keys, so every request
// reaches the gateway). None may get a 500; the master keeps answering
// right afterwards.
import { Cluster } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";

function pick<T>(xs: readonly T[]): T {
  return xs[Math.floor(Math.random() * xs.length)];
}

function junk(n: number, alphabet = "abcXYZ019/._-~!$&'()*+,;=:@%<>\"&#"): string {
  let s = "";
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(Math.random() * alphabet.length)];
  return s;
}

const QUERIES = [
  "list-type=2",
  "list-type=2&max-keys=-1",
  "list-type=2&max-keys=abc",
  "list-type=2&continuation-token=%%%",
  "list-type=2&continuation-token=" + btoa("/other/x"),
  "list-type=2&start-after=" + "z".repeat(3000),
  "list-type=2&prefix=" + "p".repeat(2500) + "&delimiter=/",
  "list-type=2&encoding-type=base64",
  "delimiter=&marker=%FF%FE",
  "uploads",
  "uploads&max-uploads=-5",
  "uploadId=" + "0".repeat(32),
  "uploadId=zz&partNumber=1",
  "uploadId=" + "0".repeat(32) + "&partNumber=0",
  "uploadId=" + "0".repeat(32) + "&partNumber=99999",
  "partNumber=1",
  "delete",
  "location",
  "versioning",
  "acl",
  "x-id=GetObject",
  "response-content-type=text%2Fhtml",
];

const BODIES = [
  "",
  "<Delete><Object><Key>a</Key></Object></Delete>",
  "<Delete><Object></Object></Delete>",
  "<Delete>" + "<Object><Key>k</Key></Object>".repeat(1200) + "</Delete>",
  "<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part></CompleteMultipartUpload>",
  "<CompleteMultipartUpload></CompleteMultipartUpload>",
  "<<<>>>",
  "<?xml version='1.0'?><!DOCTYPE a [<!ENTITY x 'y'>]><Delete>&x;</Delete>",
  "not xml at all",
];

const HEADERS: [string, string][][] = [
  [],
  [["range", "bytes=5-1"]],
  [["range", "bytes=-0"]],
  [["range", "bytes=999999999-"]],
  [["range", "items=0-1"]],
  [["if-match", '"nope"']],
  [["if-none-match", "*"]],
  [["if-modified-since", "yesterday"]],
  [["x-amz-copy-source", "%zz"]],
  [["x-amz-copy-source", "/nobucket"]],
  [["x-amz-copy-source", "/fz/missing"]],
  [["x-amz-copy-source", "/fz/seed"], ["x-amz-metadata-directive", "MOVE"]],
  [["x-amz-copy-source", "/fz/seed"], ["x-amz-copy-source-range", "bytes=0-999999"]],
  [["content-md5", "AAAA"]],
  [["x-amz-content-sha256", "0".repeat(64)]],
  [["x-amz-checksum-crc32", "AAAAAA=="]],
  [["x-amz-meta-big", "v".repeat(5000)]],
  [["content-encoding", "aws-chunked"], ["x-amz-decoded-content-length", "3"]],
  [["content-encoding", "aws-chunked"], ["x-amz-decoded-content-length", "zz"]],
  [
    ["content-encoding", "aws-chunked"],
    ["x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"],
    ["x-amz-decoded-content-length", "5"],
    ["x-amz-trailer", "x-amz-checksum-crc32"],
  ],
  [["authorization", "AWS4-HMAC-SHA256 garbage"]],
  [["authorization", "AWS onlyakey"]],
];

const CHUNKED = [
  "5\r\nhello\r\n0\r\n\r\n",
  "zz\r\nhello\r\n",
  "5\r\nhelloEXTRA\r\n0\r\n\r\n",
  "3\r\nhel",
  "10000000000\r\nx",
  "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
];

Deno.test("S3 fuzz: 1,500 malformed S3 calls get 4xx (or 501), never 500; the master stays right", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    for (const [key, value] of [["/fz/seed", "seed value"], ["/keep/seed", "kept value"]]) {
      assertEquals((await fetch(c.url + key, { method: "PUT", body: value })).status, 201);
    }
    const statuses = new Map<number, number>();
    for (let i = 0; i < 1500; i++) {
      const method = pick(["GET", "HEAD", "PUT", "POST", "DELETE"]);
      const path = pick([
        "/",
        "/fz",
        "/fz/",
        "/fz/seed",
        "/fz/" +
        junk(1 + Math.floor(Math.random() * 20)).replaceAll("%", "%25").replaceAll("#", "%23"),
        "/" + junk(3, "abc") + "/k",
      ]);
      const query = pick(QUERIES);
      const headers = new Headers(pick(HEADERS));
      let body: string | undefined;
      if (method === "PUT" || method === "POST") {
        body = headers.get("content-encoding") === "aws-chunked" ? pick(CHUNKED) : pick(BODIES);
      }
      let status: number;
      try {
        const res = await fetch(`${c.url}${path}?${query}`, { method, headers, body });
        await res.body?.cancel();
        status = res.status;
      } catch (err) {
        throw new Error(`${method} ${path}?${query} ${JSON.stringify([...headers])}: ${err}`);
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      assert(
        status < 500 || status === 501,
        `${method} ${path}?${query} ${JSON.stringify([...headers])} ${
          JSON.stringify(body?.slice(0, 80))
        }: ${status}`,
      );
    }
    // The mix reached the gateway's paths, not one early refusal.
    assertEquals([...statuses.values()].reduce((a, b) => a + b, 0), 1500);
    for (const seen of [200, 400, 404, 405]) {
      assert(statuses.has(seen), `no ${seen}`);
    }
    // Still right afterwards, on keys the fuzz never wrote.
    const keep = await fetch(`${c.url}/keep/seed`, { redirect: "manual" });
    await keep.body?.cancel();
    assertEquals(keep.status, 302, JSON.stringify([...keep.headers]));
    assertEquals(await (await fetch(keep.headers.get("location")!)).text(), "kept value");
    const list = await (await fetch(`${c.url}/keep?list-type=2`)).text();
    assert(list.includes("<Key>seed</Key>") && list.includes("<KeyCount>1</KeyCount>"), list);
  } finally {
    await c.stop();
  }
});
