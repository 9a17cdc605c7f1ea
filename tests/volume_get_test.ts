// A streamed GET from a volume (lib/volumes.ts remoteGet, what S3's
// GetObject and CopyObject read through) against a raw TCP server: what it
// leaves on the caller's signal, which lives as long as the request (or,
// through AbortSignal.any, as long as the master).
import { remoteGet, remoteHead, remoteList, remoteSize, VolumeError } from "../lib/volumes.ts";
import { openNamed } from "../lib/s3_objects.ts";
import { Store } from "../lib/store.ts";
import { FLAGS, storeOptions } from "../lib/config.ts";
import { parseFlags } from "../lib/flags.ts";
import type { Record } from "../lib/record.ts";
import { withIndex } from "./temp_index.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

const enc = new TextEncoder();

/**
 * A volume that answers every GET with the head of a 100-byte value and its
 * first 10 bytes, then nothing more (a hung disk, a stalled host).
 */
function stallingVolume() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      await conn.read(new Uint8Array(65536));
      await conn.write(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"));
    }
  })().catch(() => {});
  return {
    host: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close() {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

/** A signal whose abort listeners are counted: those added and not removed (nor fired). */
function countedSignal(): { signal: AbortSignal; listening: () => number } {
  const signal = new AbortController().signal;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  const held = new Set<unknown>();
  signal.addEventListener = (type: string, fn: unknown, opts?: unknown) => {
    if (type === "abort") held.add(fn);
    add(type, fn as EventListener, opts as AddEventListenerOptions);
  };
  signal.removeEventListener = (type: string, fn: unknown, opts?: unknown) => {
    if (type === "abort") held.delete(fn);
    remove(type, fn as EventListener, opts as EventListenerOptions);
  };
  return { signal, listening: () => held.size };
}

Deno.test("a GET whose volume stalls mid-body leaves no listener on the caller's signal", async () => {
  const volume = stallingVolume();
  try {
    const { signal, listening } = countedSignal();
    const res = await remoteGet(`http://${volume.host}/ab/cd/a2V5`, { signal, stall: 50 });
    assertEquals(res.status, 200);
    const reader = res.body!.getReader();
    assertEquals((await reader.read()).value?.length, 10);
    const err = await assertRejects(() => reader.read());
    assert(err instanceof VolumeError && err.message.startsWith("Stalled"), String(err));
    assertEquals(listening(), 0);
  } finally {
    volume.close();
  }
});

Deno.test("a read whose record check fails (the index unreadable) cancels the body it opened", async () => {
  const volume = stallingVolume();
  try {
    await withIndex(async (index) => {
      const args = ["-volumes", volume.host, "-replicas", "1"];
      const store = new Store(index, storeOptions(parseFlags(args, FLAGS).flags));
      const rec: Record = { state: "live", rvolumes: [volume.host], hash: "", size: 100 };
      const { signal, listening } = countedSignal();
      // The check after the volume answered reads the index, which fails
      // (as one locked past retrying does).
      index.get = () => Promise.reject(new Error("database is locked"));
      await assertRejects(() => openNamed(store, enc.encode("/soak/key"), rec, { signal }));
      assertEquals(listening(), 0);
    });
  } finally {
    volume.close();
  }
});

/**
 * A volume where a folder stands at a key's path: as nginx, the path
 * answers 301 to "path/", whose listing would pass for a file's bytes.
 */
function folderVolume() {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/ab/cd/a2V5") {
      return new Response(null, { status: 301, headers: { Location: `${path}/` } });
    }
    return Response.json([{ name: "inside", type: "file", mtime: "", size: 6 }]);
  });
  return { host: `127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

Deno.test("volume calls follow no redirect: a folder at a key's path answers 301, not its listing", async () => {
  const volume = folderVolume();
  try {
    const url = `http://${volume.host}/ab/cd/a2V5`;
    const signal = new AbortController().signal;
    const get = await assertRejects(() => remoteGet(url, { signal, stall: 5_000 }), VolumeError);
    assertEquals((get as VolumeError).status, 301);
    const size = await assertRejects(() => remoteSize(url, 5_000), VolumeError);
    assertEquals((size as VolumeError).status, 301);
    assertEquals((await remoteHead(url, 5_000)).status, 301);
    const list = await assertRejects(() => remoteList(url, 5_000), VolumeError);
    assertEquals((list as VolumeError).status, 301);
  } finally {
    await volume.close();
  }
});
