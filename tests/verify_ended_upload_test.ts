import { assert, assertEquals } from "./assert.ts";
import { Cluster, runMain, uploadWithPart } from "./cluster.ts";

// A master killed inside endUpload (Complete or Abort), between the commit
// that drops the upload and the one that drops its parts' records, leaves
// part records of no upload: their files are orphans all the same, and
// -repair drops the records too.
Deno.test("verify: parts still recorded for an upload that has ended are orphans; -repair drops them", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  try {
    const id = await uploadWithPart(c);
    await c.stopMaster();
    // endUpload's first commit only, as a SIGKILL right after it leaves it.
    const kv = await Deno.openKv(`${c.db}/index.sqlite3`);
    await kv.delete(["mu", id]);
    kv.close();
    const args = ["verify", "-volumes", c.volumes.join(","), "-db", c.db];
    const found = await runMain(args);
    assertEquals(found.code, 1, found.stdout + found.stderr);
    assert(found.stdout.includes(`mpu.${id}.1.`), found.stdout);
    assert(
      found.stdout.includes("multipart part that no upload in progress records"),
      found.stdout,
    );
    assert(
      found.stdout.includes(`index: part 1 of ended upload ${id} still recorded\n`),
      found.stdout,
    );
    const repaired = await runMain([...args, "-repair", "-grace", "0s"]);
    assertEquals(repaired.code, 0, repaired.stdout + repaired.stderr);
    assert(
      repaired.stdout.includes(
        `index: part 1 of ended upload ${id} still recorded: repaired, record dropped\n`,
      ),
      repaired.stdout,
    );
    const kv2 = await Deno.openKv(`${c.db}/index.sqlite3`);
    const left = await Array.fromAsync(kv2.list({ prefix: ["mp", id] }));
    kv2.close();
    assertEquals(left.length, 0, "part records left");
    const clean = await runMain(args);
    assertEquals([clean.code, clean.stdout.split("\n").at(-2)], [0, "verify: 0 keys, 0 problems"]);
  } finally {
    await c.stop();
  }
});
