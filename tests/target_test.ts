// Unit tests of lib/target.ts: the key is the percent-decoded path exactly as
// sent, and the query's first parameter names the operation.
import {
  BadRequest,
  parseQuery,
  parseTarget,
  percentDecode,
  rawTarget,
  shownQuery,
} from "../lib/target.ts";
import { assertEquals, assertThrows } from "./assert.ts";

const enc = new TextEncoder();
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("parseTarget keeps the path as sent: no dot folding, escapes decoded", () => {
  const t = parseTarget("http://h:1/a/../b%2e?list&x=1");
  assertEquals(t.key, enc.encode("/a/../b."));
  assertEquals(t.rawPath, "/a/../b%2e");
  assertEquals(t.query, "list&x=1");
});

Deno.test("parseTarget without a query gives an empty query", () => {
  const t = parseTarget("http://localhost:3000/hello");
  assertEquals(t.key, enc.encode("/hello"));
  assertEquals(t.rawPath, "/hello");
  assertEquals(t.query, "");
});

Deno.test("parseTarget keeps double slashes, a trailing '?' and '?' inside the query", () => {
  const t = parseTarget("http://h//a//b/?");
  assertEquals(dec(t.key), "//a//b/");
  assertEquals(t.query, "");
  assertEquals(parseTarget("http://h/a?list&start=x?y").query, "list&start=x?y");
});

Deno.test("parseTarget decodes %2F and %3F into the key, not as separators", () => {
  const t = parseTarget("http://h/a%2Fb%3Fc?list");
  assertEquals(dec(t.key), "/a/b?c");
  assertEquals(t.rawPath, "/a%2Fb%3Fc");
  assertEquals(t.query, "list");
});

Deno.test("parseTarget leaves '+' in a path as '+'", () => {
  assertEquals(dec(parseTarget("http://h/a+b").key), "/a+b");
});

Deno.test("parseTarget of a URL with no path gives '/'", () => {
  assertEquals(parseTarget("http://h:1").rawPath, "/");
  assertEquals(dec(parseTarget("http://h:1").key), "/");
});

Deno.test("parseTarget of a URL with no path takes a query holding '/' for the query", () => {
  // An absolute-form target ("PUT http://h?x/a/b"): "/a/b" is no path.
  const t = parseTarget("http://h:1?x/a/b");
  assertEquals([t.rawPath, dec(t.key), t.query], ["/", "/", "x/a/b"]);
});

Deno.test("parseTarget throws BadRequest on a '#' before the path", () => {
  assertThrows(() => parseTarget("http://h#/a/b"), BadRequest);
});

Deno.test("percentDecode gives raw bytes, including invalid UTF-8 and NUL", () => {
  assertEquals(percentDecode("%ff%00", false), new Uint8Array([0xff, 0]));
  assertEquals(percentDecode("%C3%A9", false), enc.encode("é"));
  assertEquals(percentDecode("é%41", false), new Uint8Array([0xc3, 0xa9, 0x41]));
  assertEquals(percentDecode("%2b+", false), enc.encode("++"));
  assertEquals(percentDecode("%2b+", true), enc.encode("+ "));
  assertEquals(percentDecode("plain", false), enc.encode("plain"));
});

Deno.test("percentDecode throws BadRequest on broken escapes", () => {
  for (const s of ["%zz", "%4", "%", "a%", "%%41", "%g0", "%0g"]) {
    assertThrows(() => percentDecode(s, false), BadRequest, "percent-escape");
    assertThrows(() => percentDecode(s, true), BadRequest);
  }
  assertThrows(() => parseTarget("http://h/a%zz"), BadRequest);
});

Deno.test("parseQuery: the first parameter is the op, values are decoded, + is space", () => {
  const q = parseQuery("list&limit=10&start=%2Fa+b");
  assertEquals(q.op, "list");
  assertEquals(q.params.get("limit"), enc.encode("10"));
  assertEquals(q.params.get("start"), enc.encode("/a b"));
  assertEquals(q.params.get("list"), new Uint8Array());
});

Deno.test("parseQuery keeps the first of repeated parameters, as Go's Get", () => {
  const q = parseQuery("unlinked&limit=1&limit=2");
  assertEquals(q.op, "unlinked");
  assertEquals(q.params.get("limit"), enc.encode("1"));
});

Deno.test("parseQuery of an empty query has an empty op", () => {
  const q = parseQuery("");
  assertEquals(q.op, "");
  assertEquals(q.params.size, 0);
});

Deno.test("parseQuery's op is the first parameter as sent, a value included (mkv's)", () => {
  assertEquals(parseQuery("list=1&start=a").op, "list=1");
  assertEquals(parseQuery("list&start=a").op, "list");
  assertEquals(parseQuery("&list").op, "");
});

Deno.test("parseQuery keeps binary start values", () => {
  const q = parseQuery("list&start=%ff%00%01");
  assertEquals(q.params.get("start"), new Uint8Array([0xff, 0, 1]));
});

Deno.test("parseQuery throws BadRequest on a broken escape", () => {
  assertThrows(() => parseQuery("list&start=%zz"), BadRequest);
});

Deno.test("shownQuery hides the value of a presigned URL's signature, and only that", () => {
  assertEquals(
    shownQuery("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc123&x-id=GetObject"),
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=(hidden)&x-id=GetObject",
  );
  // Signature Version 2's query authentication; a name percent-encoded is the same name.
  assertEquals(
    shownQuery("AWSAccessKeyId=AK&Expires=1&Signature=a%2Bb%3D"),
    "AWSAccessKeyId=AK&Expires=1&Signature=(hidden)",
  );
  assertEquals(shownQuery("X%2DAmz%2DSignature=abc"), "X%2DAmz%2DSignature=(hidden)");
  // Anything else as sent: mkv's verbs, a key named "Signature", a value saying so.
  for (const q of ["list&limit=10", "list&start=%2Fa%zz", "Signature", "x=Signature%3Dv", ""]) {
    assertEquals(shownQuery(q), q);
  }
});

Deno.test("rawTarget hides a signature too, and names a path without a query as sent", () => {
  assertEquals(rawTarget("http://h:1/b/k%zz?Signature=s&a=1"), "/b/k%zz?Signature=(hidden)&a=1");
  assertEquals(rawTarget("http://h:1/b/k%zz"), "/b/k%zz");
  assertEquals(rawTarget("http://h:1"), "/");
});
