// S3's signatures and aws-chunked bodies, against the examples in AWS's
// Signature Version 4 documentation (same keys, dates and signatures).
import { createHash, createHmac } from "node:crypto";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import {
  canonicalPath,
  checkSignature,
  type Credentials,
  isSigned,
  parseQueryPairs,
  signingKey,
  stringToSign,
} from "../lib/s3_auth.ts";
import { s3Body } from "../lib/s3_body.ts";
import { presignedHeaders } from "../lib/s3_presigned.ts";
import { S3Error } from "../lib/s3_xml.ts";
import { assertEquals, assertThrows } from "./assert.ts";
import { Cluster } from "./cluster.ts";
import { chunkedUpload, crc32, s3Client, SigV4, type Streaming } from "./s3_client.ts";
import { errorAnswer, errorXml, s3Fails } from "./s3_answers.ts";

const CREDS: Credentials = {
  accessKey: "AKIAIOSFODNN7EXAMPLE",
  secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};
const AT = Date.UTC(2013, 4, 24);
const CREDENTIAL = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";
const EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

function authorization(signed: string, signature: string): string {
  return `AWS4-HMAC-SHA256 Credential=${CREDENTIAL},SignedHeaders=${signed},Signature=${signature}`;
}

function getObject(signature: string) {
  return {
    method: "GET",
    path: "/test.txt",
    query: "",
    headers: new Headers({
      host: "examplebucket.s3.amazonaws.com",
      range: "bytes=0-9",
      "x-amz-content-sha256": EMPTY,
      "x-amz-date": "20130524T000000Z",
      authorization: authorization("host;range;x-amz-content-sha256;x-amz-date", signature),
    }),
  };
}

const GET_SIGNATURE = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

Deno.test("AWS's GET Object example signature is accepted", () => {
  assertEquals(checkSignature(getObject(GET_SIGNATURE), CREDS, AT).payload, EMPTY);
});

Deno.test("one changed character of the signature is SignatureDoesNotMatch", () => {
  const bad = GET_SIGNATURE.slice(0, -1) + "0";
  const err = assertThrows(() => checkSignature(getObject(bad), CREDS, AT), S3Error);
  assertEquals((err as S3Error).code, "SignatureDoesNotMatch");
  assertEquals((err as S3Error).status, 403);
});

Deno.test("a request dated more than 15 minutes off is RequestTimeTooSkewed", () => {
  const err = assertThrows(
    () => checkSignature(getObject(GET_SIGNATURE), CREDS, AT + 16 * 60_000),
    S3Error,
  );
  assertEquals((err as S3Error).code, "RequestTimeTooSkewed");
});

Deno.test("AWS's PUT Object example (path with $, Date header) is accepted", () => {
  const req = {
    method: "PUT",
    path: "/test%24file.text",
    query: "",
    headers: new Headers({
      host: "examplebucket.s3.amazonaws.com",
      date: "Fri, 24 May 2013 00:00:00 GMT",
      "x-amz-date": "20130524T000000Z",
      "x-amz-storage-class": "REDUCED_REDUNDANCY",
      "x-amz-content-sha256": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
      authorization: authorization(
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
      ),
    }),
  };
  checkSignature(req, CREDS, AT);
});

Deno.test("AWS's ListObjects example (sorted query) is accepted", () => {
  const req = {
    method: "GET",
    path: "/",
    query: "max-keys=2&prefix=J",
    headers: new Headers({
      host: "examplebucket.s3.amazonaws.com",
      "x-amz-date": "20130524T000000Z",
      "x-amz-content-sha256": EMPTY,
      authorization: authorization(
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
      ),
    }),
  };
  checkSignature(req, CREDS, AT);
});

function presigned() {
  return {
    method: "GET",
    path: "/test.txt",
    query: "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F" +
      "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&" +
      "X-Amz-SignedHeaders=host&X-Amz-Signature=" +
      "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
    headers: new Headers({ host: "examplebucket.s3.amazonaws.com" }),
  };
}

Deno.test("AWS's presigned URL example is accepted until it expires", () => {
  assertEquals(checkSignature(presigned(), CREDS, AT + 3_600_000).payload, "UNSIGNED-PAYLOAD");
  const err = assertThrows(() => checkSignature(presigned(), CREDS, AT + 86_401_000), S3Error);
  assertEquals((err as S3Error).message, "Request has expired");
});

Deno.test("a presigned X-Amz-Expires other than decimal digits is 400 'X-Amz-Expires should be a number', as S3", () => {
  // Each is 86400 seconds to JavaScript's Number(); S3 refuses "86400.0".
  for (const expires of ["86400.0", "0x15180", "8.64e4", "%2086400", ""]) {
    const req = presigned();
    req.query = req.query.replace("X-Amz-Expires=86400", `X-Amz-Expires=${expires}`);
    const err = assertThrows(() => checkSignature(req, CREDS, AT + 3_600_000), S3Error);
    assertEquals(
      [(err as S3Error).code, (err as S3Error).status, err.message],
      ["AuthorizationQueryParametersError", 400, "X-Amz-Expires should be a number"],
      expires,
    );
  }
});

/** S3's answer to a presigned URL that leaves out one of its X-Amz-* parameters. */
const QUERY_PARAMETERS_MISSING = "Query-string authentication version 4 requires the " +
  "X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, " +
  "and X-Amz-Expires parameters.";

Deno.test("a presigned URL without one of its X-Amz-* parameters is 400 AuthorizationQueryParametersError naming them, as S3", () => {
  const params = ["Algorithm", "Credential", "Date", "Expires", "SignedHeaders"];
  for (const param of params) {
    const req = presigned();
    req.query = req.query.split("&").filter((p) => !p.startsWith(`X-Amz-${param}=`)).join("&");
    const err = assertThrows(() => checkSignature(req, CREDS, AT + 3_600_000), S3Error);
    assertEquals(
      [(err as S3Error).code, (err as S3Error).status, err.message],
      ["AuthorizationQueryParametersError", 400, QUERY_PARAMETERS_MISSING],
      param,
    );
  }
});

/** The X-Amz-* parameters of AWS's presigned URL example, each as "name=value". */
function presignedParams(): string[] {
  return presigned().query.split("&");
}

/** Every way of leaving out some, but not all, of `items`: each kept subset, in order. */
function partialSubsets<T>(items: T[]): T[][] {
  const out: T[][] = [];
  for (let mask = 1; mask < (1 << items.length) - 1; mask++) {
    out.push(items.filter((_, i) => mask & (1 << i)));
  }
  return out;
}

Deno.test("a presigned URL with any of its X-Amz-* parameters but not all is 400 AuthorizationQueryParametersError, as S3, keys set or not", () => {
  const subsets = partialSubsets(presignedParams());
  assertEquals(subsets.length, 62);
  const answers = subsets.flatMap((kept) =>
    [CREDS, null].map((creds) => {
      const req = { ...presigned(), query: kept.join("&") };
      const err = assertThrows(() => checkSignature(req, creds, AT + 3_600_000), S3Error);
      return [(err as S3Error).code, (err as S3Error).status, err.message];
    })
  );
  assertEquals(
    answers,
    answers.map(() => ["AuthorizationQueryParametersError", 400, QUERY_PARAMETERS_MISSING]),
  );
});

Deno.test("a query with any presigned X-Amz-* parameter is S3's signed request, never mkv's API", () => {
  const names = presignedParams().map((p) => p.slice(0, p.indexOf("=")));
  assertEquals(
    names.map((name) => isSigned(new Headers(), `${name}=x`)),
    names.map(() => true),
  );
  assertEquals(isSigned(new Headers(), "X-Amz-Meta=x&list"), false);
});

/** S3's answer to a request signed in its Authorization header and presigned in its query. */
const TWO_MECHANISMS = "Only one auth mechanism allowed; only the X-Amz-Algorithm query " +
  "parameter, Signature query string parameter or the Authorization header should be specified";

Deno.test("an Authorization header with a presigned URL's query is 400 InvalidArgument naming it, as S3, keys set or not", () => {
  const v4 = getObject(GET_SIGNATURE).headers.get("authorization")!;
  const v2Query = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620&Signature=x";
  const cases: [string, string][] = [
    [v4, presigned().query], // each would hold alone
    [v4, "X-Amz-Credential=x"],
    [v4, v2Query],
    ["AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU=", presigned().query],
    ["Bearer token", presigned().query],
  ];
  const answers = cases.flatMap(([auth, query]) =>
    [CREDS, null].map((creds) => {
      const req = presigned();
      req.query = query;
      req.headers.set("authorization", auth);
      const err = assertThrows(() => checkSignature(req, creds, AT + 3_600_000), S3Error);
      const { code, status, names } = err as S3Error;
      return [code, status, err.message, names.ArgumentName, names.ArgumentValue];
    })
  );
  assertEquals(
    answers,
    cases.flatMap(([auth]) =>
      [0, 1].map(() => ["InvalidArgument", 400, TWO_MECHANISMS, "Authorization", auth])
    ),
  );
});

/** S3's answer to a Signature Version 2 presigned URL without AWSAccessKeyId or Expires. */
const V2_PARAMETERS_MISSING =
  "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters";

Deno.test("a Version 2 presigned URL with any of AWSAccessKeyId, Expires and Signature but not all is 403 AccessDenied, as S3, keys set or not, never anonymous", () => {
  const params = [
    "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE",
    "Expires=1175139620",
    "Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D",
  ];
  const subsets = partialSubsets(params);
  assertEquals(subsets.length, 6);
  const answers = subsets.flatMap((kept) =>
    [CREDS, null].map((creds) => {
      const req = {
        method: "GET",
        path: "/johnsmith/photos/puppy.jpg",
        query: kept.join("&"),
        headers: new Headers({ host: "127.0.0.1:3000" }),
      };
      const signed = isSigned(req.headers, req.query);
      const err = assertThrows(() => checkSignature(req, creds, 1175139620_000 - 60_000), S3Error);
      return [signed, (err as S3Error).code, (err as S3Error).status, err.message];
    })
  );
  assertEquals(answers, answers.map(() => [true, "AccessDenied", 403, V2_PARAMETERS_MISSING]));
});

Deno.test("without keys set any signature passes, as mkv", () => {
  assertEquals(checkSignature(getObject("0".repeat(64)), null, AT).payload, EMPTY);
});

/** AWS's chunked upload example: 64 KiB and 1 KiB of "a", each chunk signed. */
function chunkedExample(tamper = false) {
  const a = (n: number) => "a".repeat(n);
  const sig1 = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
  const sig2 = tamper
    ? "1055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    : "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497";
  const sig3 = "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9";
  const body = `10000;chunk-signature=${sig1}\r\n${a(65536)}\r\n` +
    `400;chunk-signature=${sig2}\r\n${a(1024)}\r\n0;chunk-signature=${sig3}\r\n\r\n`;
  const headers = new Headers({
    host: "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "content-encoding": "aws-chunked",
    "content-length": "66824",
    "x-amz-decoded-content-length": "66560",
    authorization: authorization(
      "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;" +
        "x-amz-decoded-content-length;x-amz-storage-class",
      "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    ),
  });
  const req = { method: "PUT", path: "/examplebucket/chunkObject.txt", query: "", headers };
  // Split the body at awkward places: inside a header line and inside data.
  const bytes = new TextEncoder().encode(body);
  const stream = new ReadableStream<Uint8Array>({
    start(ctl) {
      for (const [from, to] of [[0, 7], [7, 40_000], [40_000, 65_620], [65_620, bytes.length]]) {
        ctl.enqueue(bytes.slice(from, to));
      }
      ctl.close();
    },
  });
  return { req, stream };
}

Deno.test("AWS's signed aws-chunked example decodes to the value, each chunk checked", async () => {
  const { req, stream } = chunkedExample();
  const sig = checkSignature(req, CREDS, AT);
  const body = s3Body(stream, req.headers, sig);
  assertEquals(body.contentLength, 66560);
  const value = new Uint8Array(await new Response(body.body).arrayBuffer());
  assertEquals(value.length, 66560);
  assertEquals(value.every((b) => b === 0x61), true);
  assertEquals(body.check(""), null);
});

Deno.test("a chunk whose signature does not match fails the body", async () => {
  const { req, stream } = chunkedExample(true);
  const body = s3Body(stream, req.headers, checkSignature(req, CREDS, AT));
  let failed = false;
  try {
    await new Response(body.body).arrayBuffer();
  } catch {
    failed = true;
  }
  assertEquals(failed, true);
  assertEquals(body.failure()?.code, "SignatureDoesNotMatch");
});

function unsignedTrailer(crc: string) {
  const text = `5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:${crc}\r\n\r\n`;
  const headers = new Headers({
    "content-encoding": "aws-chunked",
    "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "x-amz-decoded-content-length": "11",
    "x-amz-trailer": "x-amz-checksum-crc32",
  });
  const body = s3Body(
    new Response(text).body,
    headers,
    { payload: "STREAMING-UNSIGNED-PAYLOAD-TRAILER" },
  );
  return body;
}

Deno.test("an unsigned aws-chunked body's CRC32 trailer is checked", async () => {
  // CRC-32 of "hello world" is 0x0d4a1185.
  const good = unsignedTrailer("DUoRhQ==");
  assertEquals(await new Response(good.body).text(), "hello world");
  assertEquals(good.check(""), null);
  const bad = unsignedTrailer("AAAAAA==");
  assertEquals(await new Response(bad.body).text(), "hello world");
  assertEquals(bad.check("")?.code, "BadDigest");
});

// Signature Version 2, AWS's examples (bucket johnsmith, path-style here).
const V2_AT = Date.UTC(2007, 2, 27, 19, 40);

Deno.test("AWS's Signature Version 2 GET example is accepted", () => {
  const req = {
    method: "GET",
    path: "/johnsmith/photos/puppy.jpg",
    query: "",
    headers: new Headers({
      date: "Tue, 27 Mar 2007 19:36:42 +0000",
      authorization: "AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
    }),
  };
  assertEquals(checkSignature(req, CREDS, V2_AT).payload, "UNSIGNED-PAYLOAD");
  const bad = { ...req, path: "/johnsmith/photos/kitten.jpg" };
  const err = assertThrows(() => checkSignature(bad, CREDS, V2_AT), S3Error);
  assertEquals((err as S3Error).code, "SignatureDoesNotMatch");
});

Deno.test("AWS's Signature Version 2 PUT example (Content-Type signed) is accepted", () => {
  const req = {
    method: "PUT",
    path: "/johnsmith/photos/puppy.jpg",
    query: "",
    headers: new Headers({
      "content-type": "image/jpeg",
      "content-length": "94328",
      date: "Tue, 27 Mar 2007 21:15:45 +0000",
      authorization: "AWS AKIAIOSFODNN7EXAMPLE:MyyxeRY7whkBe+bq8fHCL/2kKUg=",
    }),
  };
  checkSignature(req, CREDS, Date.UTC(2007, 2, 27, 21, 20));
});

Deno.test('a Signature Version 2 over a bucket\'s "/bucket/" holds for the path "/bucket"', () => {
  // AWS's list example, path-style: the resource signed is "/johnsmith/"
  // (botocore signs that too) while the request's path is "/johnsmith".
  const req = {
    method: "GET",
    path: "/johnsmith",
    query: "prefix=photos&max-keys=50&marker=puppy",
    headers: new Headers({
      "user-agent": "Mozilla/5.0",
      date: "Tue, 27 Mar 2007 19:42:41 +0000",
      authorization: "AWS AKIAIOSFODNN7EXAMPLE:htDYFYduRNen8P9ZfE/s9SuKy0U=",
    }),
  };
  const at = Date.UTC(2007, 2, 27, 19, 45);
  assertEquals(checkSignature(req, CREDS, at).payload, "UNSIGNED-PAYLOAD");
  assertEquals(
    checkSignature({ ...req, path: "/johnsmith/" }, CREDS, at).payload,
    "UNSIGNED-PAYLOAD",
  );
  // Only a bare bucket gains the slash: a key's path is signed as sent.
  const key = { ...req, path: "/johnsmith/photos" };
  const err = assertThrows(() => checkSignature(key, CREDS, at), S3Error);
  assertEquals((err as S3Error).code, "SignatureDoesNotMatch");
});

Deno.test("AWS's Signature Version 2 presigned example is accepted until Expires", () => {
  const req = {
    method: "GET",
    path: "/johnsmith/photos/puppy.jpg",
    query: "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D" +
      "&Expires=1175139620",
    headers: new Headers({ host: "127.0.0.1:3000" }),
  };
  checkSignature(req, CREDS, 1175139620_000 - 60_000);
  const err = assertThrows(() => checkSignature(req, CREDS, 1175139620_000 + 1000), S3Error);
  assertEquals((err as S3Error).message, "Request has expired");
});

/** Text's UTF-8 bytes as Deno hands a header's bytes to the master: a character each. */
function asSent(text: string): string {
  return String.fromCharCode(...new TextEncoder().encode(text));
}

/** Signature Version 2 of `toSign` with AWS's example keys (HMAC-SHA1 of its UTF-8). */
function signV2(toSign: string): string {
  return createHmac("sha1", CREDS.secretKey).update(toSign).digest("base64");
}

Deno.test("a Signature Version 2 over a header's UTF-8 bytes as sent holds (boto3 signs them so)", () => {
  const date = "Tue, 27 Mar 2007 19:36:42 +0000";
  const signature = signV2(`PUT\n\n\n${date}\nx-amz-meta-name:café ☕\n/johnsmith/k`);
  const req = {
    method: "PUT",
    path: "/johnsmith/k",
    query: "",
    headers: new Headers({
      date,
      "x-amz-meta-name": asSent("café ☕"),
      authorization: `AWS ${CREDS.accessKey}:${signature}`,
    }),
  };
  assertEquals(checkSignature(req, CREDS, V2_AT).payload, "UNSIGNED-PAYLOAD");
});

Deno.test("a Version 2 presigned URL over a query x-amz-meta-* in UTF-8 holds (boto3's generate_presigned_url)", () => {
  const expires = "1175139620";
  const signature = signV2(`PUT\n\n\n${expires}\nx-amz-meta-name:café ☕\n/johnsmith/k`);
  const req = {
    method: "PUT",
    path: "/johnsmith/k",
    query: `AWSAccessKeyId=${CREDS.accessKey}&Expires=${expires}` +
      `&x-amz-meta-name=${encodeURIComponent("café ☕")}` +
      `&Signature=${encodeURIComponent(signature)}`,
    headers: new Headers({ host: "127.0.0.1:3000" }),
  };
  assertEquals(checkSignature(req, CREDS, V2_AT).presigned, true);
});

Deno.test('a header byte that is no UTF-8 is signed as its Latin-1 character (fetch sends "é" as one byte)', () => {
  // The AWS SDK for JavaScript signs the UTF-8 of "café"; fetch sends é as E9.
  const date = "Tue, 27 Mar 2007 19:36:42 +0000";
  const signature = signV2(`PUT\n\n\n${date}\nx-amz-meta-name:café\n/johnsmith/k`);
  const req = {
    method: "PUT",
    path: "/johnsmith/k",
    query: "",
    headers: new Headers({
      date,
      "x-amz-meta-name": "caf\xe9",
      authorization: `AWS ${CREDS.accessKey}:${signature}`,
    }),
  };
  assertEquals(checkSignature(req, CREDS, V2_AT).payload, "UNSIGNED-PAYLOAD");
});

Deno.test("a Version 2 presigned URL's x-amz-* parameter given twice is signed as its values joined with \",\", as S3 joins a header's lines", () => {
  const expires = "1175139620";
  const signature = signV2(`PUT\n\n\n${expires}\nx-amz-meta-a:1,2\n/johnsmith/k`);
  const req = {
    method: "PUT",
    path: "/johnsmith/k",
    query: `AWSAccessKeyId=${CREDS.accessKey}&Expires=${expires}&x-amz-meta-a=1&x-amz-meta-a=2` +
      `&Signature=${encodeURIComponent(signature)}`,
    headers: new Headers({ host: "127.0.0.1:3000" }),
  };
  assertEquals(checkSignature(req, CREDS, V2_AT).presigned, true);
});

Deno.test("an aws-chunked body longer than x-amz-decoded-content-length fails with a 400", async () => {
  const headers = new Headers({
    "content-encoding": "aws-chunked",
    "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "x-amz-decoded-content-length": "5",
  });
  const body = s3Body(
    new Response("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n").body,
    headers,
    { payload: "STREAMING-UNSIGNED-PAYLOAD-TRAILER" },
  );
  let failed = false;
  try {
    await new Response(body.body).arrayBuffer();
  } catch {
    failed = true;
  }
  assertEquals(failed, true);
  assertEquals(body.failure()?.code, "InvalidRequest");
  assertEquals(body.failure()?.status, 400);
});

Deno.test("percent-escapes after a raw UTF-8 character decode right (canonical path, query)", () => {
  assertEquals(canonicalPath("/b/é%41"), "/b/%C3%A9A");
  assertEquals(parseQueryPairs("prefix=é%41"), [["prefix", "éA"]]);
});

/** Keys "k"/"s" at 2026-11-24T12:00:00Z: the requests below are signed with them, then checked. */
const SIGNED_AT = Date.UTC(2026, 10, 24, 12);
const SIGNED_CREDS = { accessKey: "k", secretKey: "s" };
const SIGNER = new SigV4(SIGNED_CREDS, "20261124T120000Z");

Deno.test("a Signature Version 4 over a header's UTF-8 bytes as sent holds (boto3 signs them so)", () => {
  const text: { [name: string]: string } = {
    host: "127.0.0.1:3000",
    "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
    "x-amz-date": SIGNER.date,
    "x-amz-meta-name": "café ☕",
  };
  const names = Object.keys(text).sort();
  const canonical = [
    "PUT",
    "/b/k",
    "",
    ...names.map((name) => `${name}:${text[name]}`),
    "",
    names.join(";"),
    "UNSIGNED-PAYLOAD",
  ].join("\n");
  const key = signingKey("s", SIGNER.date.slice(0, 8), "us-east-1", "s3");
  const signature = createHmac("sha256", key)
    .update(stringToSign(SIGNER.date, SIGNER.scope, canonical)).digest("hex");
  const headers = new Headers({ ...text, "x-amz-meta-name": asSent("café ☕") });
  headers.set(
    "authorization",
    `AWS4-HMAC-SHA256 Credential=k/${SIGNER.scope},SignedHeaders=${names.join(";")},` +
      `Signature=${signature}`,
  );
  const req = { method: "PUT", path: "/b/k", query: "", headers };
  assertEquals(checkSignature(req, SIGNED_CREDS, SIGNED_AT).payload, "UNSIGNED-PAYLOAD");
});

Deno.test("a Content-Length sent twice with the same number signs as that number", () => {
  const base = {
    host: "127.0.0.1:3000",
    "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
    "x-amz-date": SIGNER.date,
  };
  // Signed by the client over one Content-Length: 6
  // (content-length;host;x-amz-content-sha256;x-amz-date).
  const once = {
    method: "PUT",
    path: "/b/k",
    query: "",
    headers: new Headers({ ...base, "content-length": "6" }),
  };
  // Sent with the header twice.
  const twice = new Headers({ ...base, "content-length": "6" });
  twice.append("content-length", "6");
  twice.set("authorization", SIGNER.sign(once).authorization);
  checkSignature(
    { method: "PUT", path: "/b/k", query: "", headers: twice },
    SIGNED_CREDS,
    SIGNED_AT,
  );
  assertEquals(s3Body(null, twice, { payload: "UNSIGNED-PAYLOAD" }).contentLength, 6);
});

/**
 * A signed aws-chunked upload of "hello world" with a CRC32 trailer
 * (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER), signed here step by step as
 * AWS documents it; `crc` replaces the trailer's checksum after signing, and
 * `signature: false` leaves out the trailer's signature.
 */
function signedTrailer(opts: { crc?: string; signature?: boolean } = {}) {
  const { req, body } = chunkedUpload(SIGNER, {
    host: "127.0.0.1:3000",
    path: "/b/k",
    payload: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    value: "hello world",
  });
  const { headers } = req;
  // CRC-32 of "hello world" is 0x0d4a1185.
  let text = body.replace(
    "x-amz-checksum-crc32:DUoRhQ==\r\n",
    `x-amz-checksum-crc32:${opts.crc ?? "DUoRhQ=="}\r\n`,
  );
  if (opts.signature === false) text = text.replace(/x-amz-trailer-signature:[0-9a-f]{64}\r\n/, "");
  const sig = checkSignature(req, SIGNED_CREDS, SIGNED_AT);
  return s3Body(new Response(text).body, headers, sig);
}

/** A body's failure once read to its end (null when it read whole). */
async function readFailure(body: ReturnType<typeof s3Body>): Promise<S3Error | null> {
  try {
    await new Response(body.body).arrayBuffer();
  } catch {
    // body.failure() says why.
  }
  return body.failure();
}

Deno.test("a signed trailer whose signature holds is accepted, its checksum checked", async () => {
  const body = signedTrailer();
  assertEquals(await new Response(body.body).text(), "hello world");
  assertEquals(body.check(""), null);
  assertEquals(body.checksum(), { alg: "crc32", value: "DUoRhQ==" });
});

Deno.test("a signed trailer's checksum changed after signing is SignatureDoesNotMatch", async () => {
  // The checksum of other bytes, as a tamperer who also changed the body would send.
  const failure = await readFailure(signedTrailer({ crc: "AAAAAA==" }));
  assertEquals([failure?.code, failure?.status], ["SignatureDoesNotMatch", 403]);
});

Deno.test("a signed trailer without x-amz-trailer-signature is SignatureDoesNotMatch", async () => {
  const failure = await readFailure(signedTrailer({ signature: false }));
  assertEquals([failure?.code, failure?.status], ["SignatureDoesNotMatch", 403]);
});

Deno.test("a Signature Version 4A request is the gateway's, answered 501 NotImplemented", () => {
  const headers = new Headers({
    "x-amz-date": "20130524T000000Z",
    "x-amz-region-set": "*",
    authorization: "AWS4-ECDSA-P256-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/s3/" +
      "aws4_request, SignedHeaders=host;x-amz-date;x-amz-region-set, Signature=3045",
  });
  assertEquals(isSigned(headers, ""), true);
  const req = { method: "PUT", path: "/b/k", query: "", headers };
  for (const creds of [CREDS, null]) {
    const err = assertThrows(() => checkSignature(req, creds, AT), S3Error) as S3Error;
    assertEquals([err.code, err.status, err.message], [
      "NotImplemented",
      501,
      "Signature Version 4A (AWS4-ECDSA-P256-SHA256) is not implemented by this gateway",
    ]);
  }
});

Deno.test(
  "a Signature Version 2 holds over every sub-resource botocore signs (?cors, ?select&select-type=2, ...)",
  () => {
    const date = "Tue, 27 Mar 2007 19:36:42 +0000";
    const sign = (resource: string) =>
      createHmac("sha1", CREDS.secretKey).update(`GET\n\n\n${date}\n${resource}`).digest("base64");
    const refused = [];
    for (
      const query of [
        "accelerate",
        "cors",
        "defaultObjectAcl",
        "restore",
        "storageClass",
        "replication",
        "analytics",
        "metrics",
        "inventory",
        "select&select-type=2",
        "object-lock",
      ]
    ) {
      const req = {
        method: "GET",
        path: "/johnsmith/photos/puppy.jpg",
        query: `${query}&id=ignored`,
        headers: new Headers({
          date,
          authorization: `AWS ${CREDS.accessKey}:${sign(`/johnsmith/photos/puppy.jpg?${query}`)}`,
        }),
      };
      try {
        checkSignature(req, CREDS, V2_AT);
      } catch (err) {
        refused.push([query, (err as S3Error).code]);
      }
    }
    assertEquals(refused, []);
  },
);

/**
 * A PUT of `path` signed with Signature Version 4 by keys "k"/"s" at
 * 2026-11-24T12:00:00Z over `signedPath` (the path as the client escaped
 * it for signing) and `headers`.
 */
function signedPut(path: string, signedPath: string, headers: { [name: string]: string }) {
  const h = new Headers({ host: "127.0.0.1:3000", "x-amz-date": SIGNER.date, ...headers });
  const req = { method: "PUT", path, query: "", headers: h };
  h.set("authorization", SIGNER.sign(req, { signedPath }).authorization);
  return req;
}

Deno.test("a path is taken signed as S3 escapes it or exactly as sent", () => {
  // "!" and "(" are bytes S3 escapes (%21, %28); some clients sign them raw.
  const sent = "/b/k!(1)";
  const sha = { "x-amz-content-sha256": EMPTY };
  assertEquals(canonicalPath(sent), "/b/k%21%281%29");
  for (const signedPath of ["/b/k%21%281%29", sent]) {
    const req = signedPut(sent, signedPath, sha);
    assertEquals(checkSignature(req, SIGNED_CREDS, SIGNED_AT).payload, EMPTY);
  }
});

Deno.test("an x-amz-* header the signature does not cover is 403 AccessDenied naming it, as S3", () => {
  const req = signedPut("/b/k", "/b/k", { "x-amz-content-sha256": EMPTY });
  // Added after signing: what a holder of the request (or of a presigned
  // URL) could add to change what it does.
  req.headers.set("x-amz-meta-added", "1");
  req.headers.set("x-amz-copy-source", "/b/other");
  const err = assertThrows(() => checkSignature(req, SIGNED_CREDS, SIGNED_AT), S3Error) as S3Error;
  assertEquals([err.code, err.status, err.message, err.names.HeadersNotSigned], [
    "AccessDenied",
    403,
    "There were headers present in the request which were not signed",
    "x-amz-copy-source, x-amz-meta-added",
  ]);
});

Deno.test("a signed header sent twice does not match its signature (README: a known limit)", () => {
  // The client signs its two lines "a" and "b" joined with ",", as SigV4 does;
  // Deno.serve gives the master "a, b", which one line could hold as well.
  const req = signedPut("/b/k", "/b/k", { "x-amz-content-sha256": EMPTY, "x-amz-meta-a": "a,b" });
  req.headers.set("x-amz-meta-a", "a, b");
  const err = assertThrows(() => checkSignature(req, SIGNED_CREDS, SIGNED_AT), S3Error) as S3Error;
  assertEquals([err.code, err.status], ["SignatureDoesNotMatch", 403]);
});

Deno.test("a header-signed request without x-amz-content-sha256 is 400 InvalidRequest, as S3", () => {
  const req = signedPut("/b/k", "/b/k", {});
  const err = assertThrows(() => checkSignature(req, SIGNED_CREDS, SIGNED_AT), S3Error) as S3Error;
  assertEquals([err.code, err.status, err.message], [
    "InvalidRequest",
    400,
    "Missing required header for this request: x-amz-content-sha256",
  ]);
});

Deno.test("the x-amz-content-sha256 of a request signed with Version 2, or not signed, is its payload's", () => {
  // Checked against the body (s3Body), as a Version 4 request's is.
  const sha = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
  const date = "Tue, 27 Mar 2007 21:15:45 +0000";
  const v2 = createHmac("sha1", CREDS.secretKey)
    .update(`PUT\n\n\n${date}\nx-amz-content-sha256:${sha}\n/johnsmith/photos/puppy.jpg`)
    .digest("base64");
  const signed = {
    method: "PUT",
    path: "/johnsmith/photos/puppy.jpg",
    query: "",
    headers: new Headers({
      date,
      "x-amz-content-sha256": sha,
      authorization: `AWS ${CREDS.accessKey}:${v2}`,
    }),
  };
  assertEquals(checkSignature(signed, CREDS, Date.UTC(2007, 2, 27, 21, 20)).payload, sha);
  const anonymous = {
    method: "PUT",
    path: "/b/k",
    query: "",
    headers: new Headers({ "x-amz-content-sha256": sha }),
  };
  assertEquals(checkSignature(anonymous, null, AT).payload, sha);
});

Deno.test("an x-amz-content-sha256 that is no SHA-256 nor a payload S3 names is 400 InvalidArgument, as S3", () => {
  // Lowercase "unsigned-payload" too: S3 names its payloads in capitals.
  for (const sent of ["invalid", "unsigned-payload", EMPTY.slice(1)]) {
    const req = signedPut("/b/k", "/b/k", { "x-amz-content-sha256": sent });
    const err = assertThrows(
      () => checkSignature(req, SIGNED_CREDS, SIGNED_AT),
      S3Error,
    ) as S3Error;
    assertEquals([err.code, err.status, err.message, err.names], [
      "InvalidArgument",
      400,
      "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, " +
      "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, " +
      "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD, STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER " +
      "or a valid sha256 value.",
      { ArgumentName: "x-amz-content-sha256", ArgumentValue: sent },
    ]);
  }
});

/** A body of `text` sent with x-amz-content-sha256 `sha`: its digests' verdict once read. */
async function payloadVerdict(text: string, sha: string): Promise<string | null> {
  const headers = new Headers({ "x-amz-content-sha256": sha });
  const body = s3Body(new Response(text).body, headers, { payload: sha });
  await new Response(body.body).arrayBuffer();
  return body.check(createHash("md5").update(text).digest("hex"))?.code ?? null;
}

Deno.test("an x-amz-content-sha256 in capitals is checked against the body, as S3 checks it", async () => {
  const sha = createHash("sha256").update("hello").digest("hex").toUpperCase();
  assertEquals(await payloadVerdict("hello", sha), null);
  assertEquals(await payloadVerdict("tampered", sha), "XAmzContentSHA256Mismatch");
});

Deno.test("an x-amz-content-sha256 that is no SHA-256, sent with Version 2 or unsigned, never matches the body", async () => {
  // S3 answers such a PutObject XAmzContentSHA256Mismatch.
  for (const sha of ["invalid", "unsigned-payload"]) {
    assertEquals(await payloadVerdict("hello", sha), "XAmzContentSHA256Mismatch");
  }
});

const E2E_ACCESS = "chunk-access";
const E2E_SECRET = "chunk-secret";

/**
 * A PutObject of `value` (ASCII) as one chunk and the final one, framed and
 * signed as AWS documents it for `payload` (chunkedUpload); `edit` changes
 * the body's text after signing: what a broken or hostile client sends.
 */
function chunkedPut(
  url: string,
  path: string,
  opts: {
    payload: Streaming;
    value: string;
    undeclared?: boolean;
    edit?: (body: string) => string;
  },
): RequestInit & { url: string } {
  const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, "");
  const signer = new SigV4({ accessKey: E2E_ACCESS, secretKey: E2E_SECRET }, now);
  const { payload, value, undeclared } = opts;
  const host = new URL(url).host;
  const { req, body } = chunkedUpload(signer, { host, path, payload, value, undeclared });
  const { headers } = req;
  headers.delete("host");
  return { url: url + path, method: "PUT", headers, body: opts.edit?.(body) ?? body };
}

Deno.test("aws-chunked bodies at the edges of their framing, end to end", async (t) => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", E2E_ACCESS, "-s3-secret-key", E2E_SECRET],
  });
  const s3 = s3Client(c.url, { accessKeyId: E2E_ACCESS, secretAccessKey: E2E_SECRET });
  const Bucket = `chunked-${crypto.randomUUID().slice(0, 8)}`;
  const put = (Key: string, opts: Parameters<typeof chunkedPut>[2]) => {
    const { url, ...init } = chunkedPut(c.url, `/${Bucket}/${Key}`, opts);
    return { url, init };
  };
  /** The key's value, or the S3 error a read of it fails with. */
  const stored = async (Key: string) => {
    const read = s3.send(new GetObjectCommand({ Bucket, Key }));
    const got = await read.catch(() => null);
    return got ? await got.Body!.transformToString() : await s3Fails(read);
  };
  const missing = { name: "NoSuchKey", status: 404 };
  /** Asserts that the PUT of "hello world" at `Key` is answered `refusal` and stores nothing. */
  const assertRefused = async (
    Key: string,
    opts: { payload: Streaming; undeclared?: boolean; edit?: (body: string) => string },
    refusal: { status: number; code: string; message: string },
  ) => {
    const p = put(Key, { ...opts, value: "hello world" });
    assertEquals(await errorAnswer(p.url, p.init), {
      status: refusal.status,
      type: "application/xml",
      body: errorXml(refusal.code, refusal.message, "", `/${Bucket}/${Key}`),
    });
    assertEquals(await stored(Key), missing);
  };
  try {
    await s3.send(new CreateBucketCommand({ Bucket }));
    await t.step(
      "a chunk-header line of 8192 bytes is read, one of 8193 is IncompleteBody",
      async () => {
        // "b;x=" and padding: the header line as long as asked, its end aside.
        const padded = (n: number, end = "\r\n") => (body: string) =>
          body.replace("b\r\n", `b;x=${"x".repeat(n - 4)}${end}`);
        const payload = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
        const value = "hello world";
        const ok = put("8192", { payload, value, edit: padded(8192) });
        const res = await fetch(ok.url, ok.init);
        assertEquals([res.status, await res.text()], [200, ""]);
        assertEquals(await stored("8192"), value);
        const tooLong: [string, (body: string) => string][] = [
          ["8193", padded(8193)],
          ["8193-lf", padded(8193, "\n")],
          // One that never ends: refused once past the limit, not held whole.
          ["endless", () => `b;x=${"x".repeat(100_000)}`],
        ];
        for (const [key, edit] of tooLong) {
          await assertRefused(key, { payload, edit }, {
            status: 400,
            code: "IncompleteBody",
            message: "An aws-chunked line is longer than 8192 bytes",
          });
        }
      },
    );

    await t.step("chunk data longer than its chunk header says is IncompleteBody", async () => {
      // The header says 5 bytes; "hello world" follows.
      await assertRefused("longer", {
        payload: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        edit: (body) => body.replace("b\r\n", "5\r\n"),
      }, {
        status: 400,
        code: "IncompleteBody",
        message: "aws-chunked data longer than its chunk header said",
      });
    });

    await t.step(
      "a signed trailer without its final empty line is taken, its signature checked",
      async () => {
        const p = put("unended", {
          payload: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
          value: "hello world",
          edit: (body) => body.slice(0, -2),
        });
        const res = await fetch(p.url, p.init);
        assertEquals([res.status, await res.text()], [200, ""]);
        assertEquals(res.headers.get("x-amz-checksum-crc32"), crc32("hello world"));
        assertEquals(await stored("unended"), "hello world");
        // The same, its trailer's checksum changed after signing: the trailer's
        // signature is still checked (not only the checksum, a BadDigest).
        await assertRefused("unended-tampered", {
          payload: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
          edit: (body) => body.slice(0, -2).replace(crc32("hello world"), crc32("other bytes")),
        }, {
          status: 403,
          code: "SignatureDoesNotMatch",
          message: "The x-amz-trailer-signature does not match the trailer",
        });
      },
    );

    await t.step(
      "a signed trailer without x-amz-trailer-signature is SignatureDoesNotMatch",
      async () => {
        await assertRefused("unsigned-trailer", {
          payload: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
          edit: (body) => body.replace(/x-amz-trailer-signature:[0-9a-f]{64}\r\n/, ""),
        }, {
          status: 403,
          code: "SignatureDoesNotMatch",
          message: "The trailer has no x-amz-trailer-signature",
        });
      },
    );

    await t.step(
      "a signed body's chunk without chunk-signature is IncompleteBody, as S3",
      async () => {
        await assertRefused("unsigned-chunk", {
          payload: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
          edit: (body) => body.replace(/^b;chunk-signature=[0-9a-f]{64}/, "b"),
        }, {
          status: 400,
          code: "IncompleteBody",
          message: "A chunk of a signed aws-chunked body has no chunk-signature",
        });
      },
    );

    await t.step(
      "a trailer x-amz-trailer does not declare is 400 MalformedTrailerError, nothing stored, as S3",
      async () => {
        // Its checksum would otherwise go unchecked: a wrong one (unsigned) stored as if it held.
        await assertRefused("undeclared-unsigned", {
          payload: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
          undeclared: true,
          edit: (body) => body.replace(crc32("hello world"), crc32("other bytes")),
        }, MALFORMED_TRAILER);
        // Signed as sent: refused all the same.
        await assertRefused("undeclared-signed", {
          payload: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
          undeclared: true,
        }, MALFORMED_TRAILER);
      },
    );

    await t.step(
      "a trailer other than the one declared, one sent twice, or a line of it with no colon, is MalformedTrailerError",
      async () => {
        const payload = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
        const line = `x-amz-checksum-crc32:${crc32("hello world")}\r\n`;
        const edits: [string, (body: string) => string][] = [
          ["other", (body) => body.replace("x-amz-checksum-crc32:", "x-amz-checksum-sha1:")],
          ["no-colon", (body) => body.replace("x-amz-checksum-crc32:", "x-amz-checksum-crc32")],
          // Each line was kept until the body's end: a trailer without end, held whole.
          ["twice", (body) => body.replace(line, line + line)],
        ];
        for (const [key, edit] of edits) {
          await assertRefused(key, { payload, edit }, MALFORMED_TRAILER);
        }
      },
    );
  } finally {
    s3.destroy();
    await c.stop();
  }
});

/** S3's answer to a trailer that is not the one x-amz-trailer declares. */
const MALFORMED_TRAILER = {
  status: 400,
  code: "MalformedTrailerError",
  message: "The request contained trailing data that was not well-formed or did not conform " +
    "to our published schema.",
};

Deno.test("a presigned PutObject's hex x-amz-content-sha256 is checked against its body, as S3", async (t) => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", E2E_ACCESS, "-s3-secret-key", E2E_SECRET],
  });
  const s3 = s3Client(c.url, { accessKeyId: E2E_ACCESS, secretAccessKey: E2E_SECRET });
  const Bucket = `presigned-${crypto.randomUUID().slice(0, 8)}`;
  /** A PutObject of `body` presigned with `sha` as its x-amz-content-sha256, over `payload`. */
  const presignedPut = (Key: string, body: string, opts: { sha: string; payload: string }) => {
    const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, "");
    const signer = new SigV4({ accessKey: E2E_ACCESS, secretKey: E2E_SECRET }, now);
    const path = `/${Bucket}/${Key}`;
    const headers = new Headers({ host: new URL(c.url).host, "x-amz-content-sha256": opts.sha });
    const query = signer.presign({ method: "PUT", path, query: "", headers }, opts);
    headers.delete("host");
    return { url: `${c.url}${path}?${query}`, init: { method: "PUT", headers, body } };
  };
  const stored = async (Key: string) => {
    const read = s3.send(new GetObjectCommand({ Bucket, Key }));
    const got = await read.catch(() => null);
    return got ? await got.Body!.transformToString() : await s3Fails(read);
  };
  try {
    await s3.send(new CreateBucketCommand({ Bucket }));
    const sha = createHash("sha256").update("presigned body").digest("hex");
    // Signed as SDKs presign, or over the SHA-256 itself (the Go SDK's, for a known body).
    for (const payload of ["UNSIGNED-PAYLOAD", sha]) {
      await t.step(
        `signed over ${payload}: other bytes are 400 XAmzContentSHA256Mismatch, nothing stored`,
        async () => {
          const Key = crypto.randomUUID();
          const p = presignedPut(Key, "other bytes", { sha, payload });
          assertEquals(await errorAnswer(p.url, p.init), {
            status: 400,
            type: "application/xml",
            body: errorXml(
              "XAmzContentSHA256Mismatch",
              "The provided &#39;x-amz-content-sha256&#39; header does not match what was computed.",
              "",
              `/${Bucket}/${Key}`,
            ),
          });
          assertEquals(await stored(Key), { name: "NoSuchKey", status: 404 });
        },
      );

      await t.step(`signed over ${payload}: the bytes it names are stored`, async () => {
        const Key = crypto.randomUUID();
        const p = presignedPut(Key, "presigned body", { sha, payload });
        const res = await fetch(p.url, p.init);
        assertEquals([res.status, await res.text()], [200, ""]);
        assertEquals(await stored(Key), "presigned body");
      });
    }
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("a presigned PutObject whose x-amz-content-sha256 names a STREAMING payload is 400 InvalidRequest, nothing stored", async (t) => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", E2E_ACCESS, "-s3-secret-key", E2E_SECRET],
  });
  const s3 = s3Client(c.url, { accessKeyId: E2E_ACCESS, secretAccessKey: E2E_SECRET });
  const Bucket = `presigned-${crypto.randomUUID().slice(0, 8)}`;
  const payload = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
  /** A PutObject at `Key` of `body` with `framing`'s headers, presigned over UNSIGNED-PAYLOAD. */
  const presignedPut = (
    Key: string,
    framing: { headers: Record<string, string>; body: string },
  ) => {
    const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, "");
    const signer = new SigV4({ accessKey: E2E_ACCESS, secretKey: E2E_SECRET }, now);
    const path = `/${Bucket}/${Key}`;
    const headers = new Headers({
      host: new URL(c.url).host,
      "x-amz-content-sha256": payload,
      "x-amz-decoded-content-length": "11",
      ...framing.headers,
    });
    const query = signer.presign({ method: "PUT", path, query: "", headers });
    headers.delete("host");
    return {
      url: `${c.url}${path}?${query}`,
      init: { method: "PUT", headers, body: framing.body },
    };
  };
  const framings = {
    // As an SDK frames it: the chunks were undone, unsigned, under a URL that signs no payload.
    "aws-chunked with a trailer": {
      headers: { "content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32" },
      body: `b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:${crc32("hello world")}\r\n\r\n`,
    },
    // Without Content-Encoding the framing itself was stored as the value.
    "aws-chunked without Content-Encoding": { headers: {}, body: "b\r\nhello world\r\n0\r\n\r\n" },
  };
  try {
    await s3.send(new CreateBucketCommand({ Bucket }));
    for (const [name, framing] of Object.entries(framings)) {
      await t.step(name, async () => {
        const Key = crypto.randomUUID();
        const p = presignedPut(Key, framing);
        assertEquals(await errorAnswer(p.url, p.init), {
          status: 400,
          type: "application/xml",
          body: errorXml(
            "InvalidRequest",
            `x-amz-content-sha256 ${payload} is for requests signed in the Authorization ` +
              "header: a presigned URL&#39;s payload is UNSIGNED-PAYLOAD or a SHA-256",
            "",
            `/${Bucket}/${Key}`,
          ),
        });
        const read = s3.send(new GetObjectCommand({ Bucket, Key }));
        assertEquals(await s3Fails(read), { name: "NoSuchKey", status: 404 });
      });
    }
  } finally {
    s3.destroy();
    await c.stop();
  }
});

Deno.test("a presigned URL cut short after X-Amz-Credential is 400 AuthorizationQueryParametersError, with keys set and with -s3", async (t) => {
  const keys = { accessKey: E2E_ACCESS, secretKey: E2E_SECRET };
  for (const flags of [["-s3-access-key", E2E_ACCESS, "-s3-secret-key", E2E_SECRET], ["-s3"]]) {
    await t.step(flags.join(" "), async () => {
      const c = await Cluster.start({ flags });
      try {
        const path = `/cut-${crypto.randomUUID().slice(0, 8)}/k`;
        const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, "");
        const signer = new SigV4(keys, now);
        const put = new Headers({ host: new URL(c.url).host });
        const stored = await fetch(
          `${c.url}${path}?${signer.presign({ method: "PUT", path, query: "", headers: put })}`,
          {
            method: "PUT",
            body: "value",
          },
        );
        await stored.body?.cancel();
        assertEquals(stored.status, 200);
        // As a shell cuts an unquoted URL at its first "&" but one.
        const url = signer.presign({ method: "GET", path, query: "", headers: put });
        const cut = url.split("&").slice(0, 2).join("&");
        assertEquals(await errorAnswer(`${c.url}${path}?${cut}`), {
          status: 400,
          type: "application/xml",
          body: errorXml("AuthorizationQueryParametersError", QUERY_PARAMETERS_MISSING, "", path),
        });
      } finally {
        await c.stop();
      }
    });
  }
});

Deno.test("a Version 2 presigned URL cut short before its Signature is 403 AccessDenied, with keys set and with -s3", async (t) => {
  for (const flags of [["-s3-access-key", E2E_ACCESS, "-s3-secret-key", E2E_SECRET], ["-s3"]]) {
    await t.step(flags.join(" "), async () => {
      const c = await Cluster.start({ flags });
      const s3 = s3Client(c.url, { accessKeyId: E2E_ACCESS, secretAccessKey: E2E_SECRET });
      try {
        const Bucket = `cut-${crypto.randomUUID().slice(0, 8)}`;
        await s3.send(new PutObjectCommand({ Bucket, Key: "k", Body: "value" }));
        const path = `/${Bucket}/k`;
        const expires = Math.floor(Date.now() / 1000) + 3600;
        // As a shell cuts an unquoted URL at an "&": its first parameters only.
        for (
          const query of [`AWSAccessKeyId=${E2E_ACCESS}&Expires=${expires}`, `Expires=${expires}`]
        ) {
          assertEquals(await errorAnswer(`${c.url}${path}?${query}`), {
            status: 403,
            type: "application/xml",
            body: errorXml("AccessDenied", V2_PARAMETERS_MISSING, "", path),
          }, query);
        }
      } finally {
        s3.destroy();
        await c.stop();
      }
    });
  }
});

Deno.test("a presigned URL sent with an Authorization header (a bearer token following a redirect) is S3's 400 InvalidArgument", async () => {
  const c = await Cluster.start({
    flags: ["-s3-access-key", E2E_ACCESS, "-s3-secret-key", E2E_SECRET],
  });
  try {
    const path = `/two-${crypto.randomUUID().slice(0, 8)}/k`;
    const now = new Date().toISOString().replace(/[-:]|\.\d{3}/g, "");
    const signer = new SigV4({ accessKey: E2E_ACCESS, secretKey: E2E_SECRET }, now);
    const headers = new Headers({ host: new URL(c.url).host });
    const query = signer.presign({ method: "GET", path, query: "", headers });
    assertEquals(
      await errorAnswer(`${c.url}${path}?${query}`, { headers: { authorization: "Bearer token" } }),
      {
        status: 400,
        type: "application/xml",
        body: errorXml(
          "InvalidArgument",
          TWO_MECHANISMS,
          "<ArgumentName>Authorization</ArgumentName><ArgumentValue>Bearer token</ArgumentValue>",
          path,
        ),
      },
    );
  } finally {
    await c.stop();
  }
});

/**
 * A presigned PUT of /b/k whose query's own parameters are `query` (escaped
 * as a client escapes them: "%2B" a plus, "%20" a space), signed so; then
 * `sent` in its place, as a holder of the URL may send it.
 */
function presignedPut(query: string, sent: string) {
  const headers = new Headers({ host: "127.0.0.1:3000" });
  const signed = SIGNER.presign({ method: "PUT", path: "/b/k", query, headers });
  return { method: "PUT", path: "/b/k", query: signed.replace(query, sent), headers };
}

Deno.test("a presigned URL's signed '+' (%2B) sent as a raw '+', which S3 and the gateway read as a space, is SignatureDoesNotMatch", () => {
  // Else a holder of the URL turns the metadata (or copy source, or tags)
  // it was given into another, the signature still holding.
  const req = presignedPut("x-amz-meta-note=a%2Bb", "x-amz-meta-note=a+b");
  const err = assertThrows(() => checkSignature(req, SIGNED_CREDS, SIGNED_AT), S3Error) as S3Error;
  assertEquals([err.code, err.status], ["SignatureDoesNotMatch", 403]);
});

Deno.test("a presigned URL that sends a signed space (%20) as '+' holds, as S3 takes it (URLSearchParams' encoding)", () => {
  const req = presignedPut("x-amz-meta-note=a%20b", "x-amz-meta-note=a+b");
  assertEquals(checkSignature(req, SIGNED_CREDS, SIGNED_AT).presigned, true);
  const pairs = parseQueryPairs(req.query, true);
  assertEquals(presignedHeaders(new Headers(), pairs).get("x-amz-meta-note"), "a b");
});

Deno.test("a Version 2 presigned URL's x-amz-* value signed with '+' (%2B) and sent with a raw '+' is SignatureDoesNotMatch", () => {
  const expires = "1175139620";
  const signature = signV2(`PUT\n\n\n${expires}\nx-amz-meta-note:a+b\n/johnsmith/k`);
  const req = {
    method: "PUT",
    path: "/johnsmith/k",
    query: `AWSAccessKeyId=${CREDS.accessKey}&Expires=${expires}&x-amz-meta-note=a+b` +
      `&Signature=${encodeURIComponent(signature)}`,
    headers: new Headers({ host: "127.0.0.1:3000" }),
  };
  const err = assertThrows(() => checkSignature(req, CREDS, V2_AT), S3Error) as S3Error;
  assertEquals([err.code, err.status], ["SignatureDoesNotMatch", 403]);
});

Deno.test("a Version 2 signed subresource value signed with '+' (%2B) and sent with a raw '+' is SignatureDoesNotMatch", () => {
  const expires = "1175139620";
  const signature = signV2(`GET\n\n\n${expires}\n/johnsmith/k?response-content-type=a+b`);
  const req = {
    method: "GET",
    path: "/johnsmith/k",
    query: `AWSAccessKeyId=${CREDS.accessKey}&Expires=${expires}&response-content-type=a+b` +
      `&Signature=${encodeURIComponent(signature)}`,
    headers: new Headers({ host: "127.0.0.1:3000" }),
  };
  const err = assertThrows(() => checkSignature(req, CREDS, V2_AT), S3Error) as S3Error;
  assertEquals([err.code, err.status], ["SignatureDoesNotMatch", 403]);
});
