// The DeleteObjects body as S3 reads it (lib/s3_xml.ts parseDelete).
import { parseDelete, S3Error } from "../lib/s3_xml.ts";
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
