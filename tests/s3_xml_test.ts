// The DeleteObjects and CompleteMultipartUpload bodies as S3 reads them
// (lib/s3_xml.ts parseDelete, parseComplete).
import { parseComplete, parseDelete, S3Error } from "../lib/s3_xml.ts";
import { assertEquals, assertThrows } from "./assert.ts";

const body = (inner: string) =>
  `<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${inner}</Delete>`;

Deno.test("DeleteObjects: keys, versions and ETags in order; Quiet in any case", () => {
  const got = parseDelete(
    body(
      "<Object><Key>a</Key></Object>" +
        '<Object><Key>b c</Key><VersionId>null</VersionId><ETag>"00"</ETag></Object>' +
        "<Quiet>True</Quiet>",
    ),
  );
  assertEquals(got, {
    keys: ["a", "b c"],
    versions: [undefined, "null"],
    etags: [undefined, '"00"'],
    quiet: true,
  });
  for (const [quiet, want] of [["true", true], [" TRUE ", true], ["false", false]] as const) {
    assertEquals(
      parseDelete(body(`<Object><Key>k</Key></Object><Quiet>${quiet}</Quiet>`)).quiet,
      want,
    );
  }
  assertEquals(parseDelete(body("<Object><Key>k</Key></Object>")).quiet, false);
});

Deno.test("DeleteObjects: an <Object> without a <Key> is MalformedXML", () => {
  const err = assertThrows(() => parseDelete(body("<Object><VersionId>x</VersionId></Object>")));
  assertEquals([(err as S3Error).code, err.message], [
    "MalformedXML",
    "Every <Object> needs a <Key>",
  ]);
});

Deno.test("DeleteObjects: a <Delete> naming no <Object> is MalformedXML, empty or with a <Quiet> alone", () => {
  for (const xml of [body(""), body("<Quiet>true</Quiet>"), "<Delete/>"]) {
    const err = assertThrows(() => parseDelete(xml));
    assertEquals([(err as S3Error).code, err.message], [
      "MalformedXML",
      "Expected <Delete> with 1 to 1000 <Object> elements",
    ], xml);
  }
});

/** A DOCTYPE declaring entity "a" as 1,000 bytes, and `root` naming it 1,000 times. */
function entityBomb(root: (refs: string) => string): string {
  return `<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "${"x".repeat(1000)}">]>` +
    root("&a;".repeat(1000));
}

Deno.test("DeleteObjects: a DOCTYPE (entities a 4 KB body expands to a 1 MB key) is MalformedXML", () => {
  const xml = entityBomb((refs) => `<Delete><Object><Key>${refs}</Key></Object></Delete>`);
  const err = assertThrows(() => parseDelete(xml));
  assertEquals([(err as S3Error).code, (err as S3Error).status, err.message], [
    "MalformedXML",
    400,
    "The XML you provided has a DOCTYPE, which S3's bodies never have",
  ]);
});

Deno.test("CompleteMultipartUpload: a DOCTYPE is MalformedXML", () => {
  const xml = entityBomb((refs) =>
    `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${refs}</ETag></Part>` +
    "</CompleteMultipartUpload>"
  );
  const err = assertThrows(() => parseComplete(xml));
  assertEquals([(err as S3Error).code, err.message], [
    "MalformedXML",
    "The XML you provided has a DOCTYPE, which S3's bodies never have",
  ]);
});

/** The one key of a DeleteObjects body whose <Key> holds `xml`. */
const keyOf = (xml: string) => parseDelete(body(`<Object><Key>${xml}</Key></Object>`)).keys[0];

Deno.test("DeleteObjects: a character reference past U+FFFF is the character it names", () => {
  // Was U+F600 (its low 16 bits): "Deleted" answered for a key left in place.
  assertEquals(keyOf("a&#x1F600;b&#128512;"), "a\u{1F600}b\u{1F600}");
});

Deno.test("DeleteObjects: each reference is read once (&#38;#x3C; is the text &#x3C;)", () => {
  assertEquals(
    keyOf("&#38;#x3C;|&#x26;lt;|&amp;#60;|&#60;&#x3e;&quot;&apos;&#13;"),
    "&#x3C;|&lt;|&#60;|<>\"'\r",
  );
});

Deno.test("DeleteObjects: a CDATA section is its text as written, references and all", () => {
  assertEquals(keyOf("a<![CDATA[<b>&amp;&#65;]]>c&amp;"), "a<b>&amp;&#65;c&");
});

Deno.test("DeleteObjects: an entity XML does not define, a bare & or a reference to no character is MalformedXML", () => {
  // HTML's &nbsp; was read as U+00A0, &copy; as ©: S3's parser, strict XML, refuses them.
  for (const key of ["a&nbsp;b", "&copy;", "a&b", "a&#xD800;", "&#x110000;", "&#;"]) {
    const err = assertThrows(() => keyOf(key));
    assertEquals([(err as S3Error).code, err.message], [
      "MalformedXML",
      "The XML you provided was not well-formed",
    ], key);
  }
});

Deno.test("CompleteMultipartUpload: a PartNumber other than decimal digits is MalformedXML", () => {
  // Each reads as part 2 to JavaScript's Number().
  for (const number of ["0x2", "2e0", "2.0", "+2", ""]) {
    const xml = "<CompleteMultipartUpload><Part>" +
      `<PartNumber>${number}</PartNumber><ETag>"00"</ETag></Part></CompleteMultipartUpload>`;
    const err = assertThrows(() => parseComplete(xml), S3Error);
    assertEquals([(err as S3Error).code, (err as S3Error).status], ["MalformedXML", 400], number);
  }
  assertEquals(
    parseComplete(
      "<CompleteMultipartUpload><Part><PartNumber> 2 </PartNumber><ETag>00</ETag></Part>" +
        "</CompleteMultipartUpload>",
    ).map((p) => p.number),
    [2],
  );
});
