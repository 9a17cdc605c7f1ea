// A bucket known only through its keys stays while S3's DeleteObjects empties
// it: a listing during the deletes never answers NoSuchBucket.
import { Cluster } from "./cluster.ts";
import { assertEquals } from "./assert.ts";
import { md5Header } from "./s3_answers.ts";

Deno.test("a bucket emptied by DeleteObjects exists throughout the deletes", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    for (let round = 0; round < 3; round++) {
      const bucket = `kept${round}${crypto.randomUUID().slice(0, 8)}`;
      const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
      for (const k of keys) {
        const res = await fetch(`${c.url}/${bucket}/${k}`, { method: "PUT", body: "v" });
        assertEquals(res.status, 201, await res.text());
      }
      const codes: number[] = [];
      let done = false;
      const lister = (async () => {
        while (!done) {
          const res = await fetch(`${c.url}/${bucket}?list-type=2&max-keys=1`);
          await res.body?.cancel();
          codes.push(res.status);
        }
      })();
      const body = `<Delete>${
        keys.map((k) => `<Object><Key>${k}</Key></Object>`).join("")
      }</Delete>`;
      const res = await fetch(`${c.url}/${bucket}?delete`, {
        method: "POST",
        headers: md5Header(body),
        body,
      });
      await res.body?.cancel();
      done = true;
      await lister;
      assertEquals(res.status, 200);
      assertEquals(codes.filter((s) => s !== 200), [], "a listing during the deletes");
      const after = await fetch(`${c.url}/${bucket}?list-type=2`);
      await after.body?.cancel();
      assertEquals(after.status, 200, "the emptied bucket stays");
    }
  } finally {
    await c.stop();
  }
});
