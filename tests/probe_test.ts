// The master's probes of its volumes (lib/volumes.ts remoteProbe): a volume
// is judged by whether it answered, not by whether this process, held
// meanwhile, read the answer in time.
import { remoteProbe } from "../lib/volumes.ts";
import { Cluster, heldServer, holdThread } from "./cluster.ts";
import { assertEquals } from "./assert.ts";

Deno.test("a probe answered while this process's thread was held past its timeout counts the volume up", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  try {
    const probing = remoteProbe(c.volumes[0], 300);
    holdThread(600);
    const { up, reason } = await probing;
    assertEquals({ up, reason }, { up: true, reason: "" });
  } finally {
    await c.stop();
  }
});

Deno.test("a volume that never answers a probe is judged down, timed out", async () => {
  const hung = heldServer((_req, hold) => hold().then(() => new Response(null)));
  try {
    const { up, reason } = await remoteProbe(hung.name, 300);
    assertEquals({ up, reason }, { up: false, reason: "HEAD / failed: timed out after 300ms" });
  } finally {
    await hung.close();
  }
});

Deno.test("a probe held past its timeout with the volume silent still judges it down", async () => {
  const hung = heldServer((_req, hold) => hold().then(() => new Response(null)));
  try {
    const probing = remoteProbe(hung.name, 300);
    holdThread(600);
    const { up, reason } = await probing;
    assertEquals({ up, reason }, { up: false, reason: "HEAD / failed: timed out after 300ms" });
  } finally {
    await hung.close();
  }
});
