// A volume known down is HEAD-checked last by a GET: a hung one made a GET
// in three wait -voltimeout before it tried the next replica. `deno task test:faults`.
import { Cluster, randomKey, status } from "../cluster.ts";
import { assert, assertEquals } from "../assert.ts";
import { s3Client } from "../s3_client.ts";
import { GetObjectCommand } from "@aws-sdk/client-s3";

/** The master's HEAD calls to `volume` so far, whatever their outcome. */
function heads(c: Cluster, volume: string): Promise<number> {
  return calls(c, volume, "head");
}

/** The master's `call` calls to `volume` so far, whatever their outcome. */
async function calls(c: Cluster, volume: string, call: string): Promise<number> {
  const text = await (await fetch(`${c.url}/?metrics`)).text();
  let n = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`mkv_volume_calls_total{volume="${volume}",call="${call}",`)) {
      n += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return n;
}

Deno.test("GETs skip the replica on a volume known down while another replica has the file", async () => {
  const c = await Cluster.start();
  try {
    const key = randomKey();
    assertEquals(await status(c.url + key, { method: "PUT", body: "three copies" }), 201);
    const down = c.volumes[1];
    await c.stopVolume(1);
    // A PUT finds it refusing connections: it is down from then on.
    assertEquals(await status(c.url + randomKey(), { method: "PUT", body: "x" }), 500);
    const before = await heads(c, down);
    // Twenty GETs starting at a random replica: a third of them began with
    // the down one before (all twenty missing it: 1 chance in 3,000).
    for (let i = 0; i < 20; i++) {
      const res = await fetch(c.url + key, { redirect: "manual" });
      await res.body?.cancel();
      assertEquals(res.status, 302);
      const location = res.headers.get("location")!;
      assert(!location.startsWith(`http://${down}/`), location);
    }
    assertEquals(await heads(c, down), before);
  } finally {
    await c.stop();
  }
});

Deno.test("a GET still tries a volume known down when no other replica has the file", async () => {
  // Known down is a hint, not a verdict: the last replica left is checked.
  const c = await Cluster.start({ flags: ["-replicas", "1"] });
  try {
    let key = "";
    let v = -1;
    // A key whose one replica is volume 0.
    while (v !== 0) {
      key = randomKey();
      assertEquals(await status(c.url + key, { method: "PUT", body: "one copy" }), 201);
      const res = await fetch(c.url + key, { redirect: "manual" });
      await res.body?.cancel();
      v = c.volumes.indexOf(res.headers.get("key-volumes")!.split("/")[0]);
    }
    await c.pauseVolume(0);
    const hung = await fetch(c.url + key, { redirect: "manual" });
    await hung.body?.cancel();
    assertEquals(hung.status, 503, "it did not answer: down from then on");
    await c.resumeVolume(0);
    const res = await fetch(c.url + key, { redirect: "manual" });
    await res.body?.cancel();
    assertEquals(res.status, 302);
    assert(res.headers.get("location")!.startsWith(`http://${c.volumes[0]}/`));
  } finally {
    await c.stop();
  }
});

Deno.test("S3 GetObject reads from a replica on a volume known down only last", async () => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const s3 = s3Client(c.url);
  try {
    const bucket = `down-${crypto.randomUUID().slice(0, 8)}`;
    assertEquals(await status(`${c.url}/${bucket}/k`, { method: "PUT", body: "three" }), 201);
    const down = c.volumes[2];
    await c.stopVolume(2);
    assertEquals(await status(c.url + randomKey(), { method: "PUT", body: "x" }), 500);
    const before = await calls(c, down, "get");
    for (let i = 0; i < 20; i++) {
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "k" }));
      assertEquals(await got.Body!.transformToString(), "three");
    }
    assertEquals(await calls(c, down, "get"), before);
  } finally {
    s3.destroy();
    await c.stop();
  }
});
