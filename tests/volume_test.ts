// `mkv volume`: stock nginx on a folder, started clean.
import {
  Cluster,
  freePort,
  heldByConnection,
  outgoingPorts,
  randomKey,
  status,
} from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";

/**
 * Ends a volume a test spawned, if it has not exited (often the test's
 * point), cancels its output and removes its folder `dir`.
 */
async function endVolume(
  proc: Deno.ChildProcess,
  stdout: ReadableStreamDefaultReader<string>,
  dir: string,
  opts: { unmount?: string } = {},
) {
  try {
    // SIGTERM: the volume stops its nginx (a SIGKILL would leave it serving, orphaned).
    proc.kill("SIGTERM");
  } catch {
    // It had exited.
  }
  await proc.status;
  await stdout.cancel();
  await proc.stderr.cancel();
  if (opts.unmount) await mountCmd("umount", ["-l", opts.unmount]);
  await Deno.remove(dir, { recursive: true });
}

/** The files of uploads in flight (or left) in a volume's `.mkv-nginx/body`. */
async function uploadsLeft(folder: string): Promise<string[]> {
  const out = await new Deno.Command("find", {
    args: [`${folder}/.mkv-nginx/body`, "-type", "f"],
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean);
}

Deno.test("a volume starts without the partial uploads a killed nginx left", async () => {
  const c = await Cluster.start();
  try {
    await c.stopVolume(0);
    // Where nginx keeps an upload until it is whole (volume.conf: client_body_temp_path).
    const parts = `${c.volumeDir(0)}/.mkv-nginx/body/5/09`;
    await Deno.mkdir(parts, { recursive: true });
    await Deno.writeTextFile(`${parts}/0000000095`, "half of an upload");
    await c.startVolume(0);
    const left = await Deno.stat(`${parts}/0000000095`).then(() => true, () => false);
    assertEquals(left, false, "the partial upload is removed");
    // nginx made its temp folder again: uploads to the volume work.
    const key = randomKey();
    assertEquals(await status(c.url + key, { method: "PUT", body: "after" }), 201);
    assertEquals(await (await fetch(c.url + key)).text(), "after");
  } finally {
    await c.stop();
  }
});

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** `main.ts volume <dir>` on `port`, its stdout and stderr piped; extra args after the folder. */
function spawnVolume(dir: string, port: number, extra: string[] = []): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "volume", dir, ...extra],
    env: { PORT: String(port) },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Reads a stream's text until `done(text)` holds (or it ends); returns the text so far. */
async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  done: (text: string) => boolean,
): Promise<string> {
  let text = "";
  while (!done(text)) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    text += value;
  }
  return text;
}

/** A port held by a listener of the test (on every address, as nginx binds it). */
function holdPort(): { port: number; listener: Deno.Listener } {
  const listener = Deno.listen({ hostname: "0.0.0.0", port: 0 });
  return { port: (listener.addr as Deno.NetAddr).port, listener };
}

Deno.test("a volume whose MKV_NGINX names no file exits 1 saying so, installing nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "volume", `${dir}/v`],
      env: { PORT: "25501", MKV_NGINX: `${dir}/nginx` },
      stdin: "null",
    }).output();
    const d = new TextDecoder();
    assertEquals(out.code, 1);
    assertEquals(d.decode(out.stdout), "");
    assertEquals(
      d.decode(out.stderr),
      `MKV_NGINX names "${dir}/nginx", which is not a file: point it at the nginx binary, ` +
        `or unset it to use nginx from PATH\n`,
    );
    assertEquals(await Array.fromAsync(Deno.readDir(dir)), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a volume whose folder cannot be made or used exits 1 in one line naming it and why", async (t) => {
  // It printed the bare error of mkdir: "ENOENT: no such file or directory,
  // mkdir '/proc/nope/.mkv-nginx'", naming nginx's folder inside it.
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  const file = `${dir}/a-file`;
  await Deno.writeTextFile(file, "");
  const nope = `/proc/mkv-test-${crypto.randomUUID().slice(0, 8)}`;
  const cases = [
    [nope, `Cannot use ${nope} as a volume's folder: no folder can be made there (ENOENT)`],
    [file, `Cannot use ${file} as a volume's folder: it, or one above it, is a file (ENOTDIR)`],
    [
      `${file}/v`,
      `Cannot use ${file}/v as a volume's folder: it, or one above it, is a file (ENOTDIR)`,
    ],
  ];
  try {
    for (const [folder, said] of cases) {
      await t.step(folder.replace(dir, "<tmp>"), async () => {
        const out = await spawnVolume(folder, freePort()).output();
        const d = new TextDecoder();
        assertEquals(
          [out.code, d.decode(out.stdout), d.decode(out.stderr)],
          [1, "", `${said}\n`],
        );
      });
    }
    assertEquals(await Deno.readTextFile(file), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a volume on a port in use exits 1 naming the port, and never announces it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  const { port, listener } = holdPort();
  try {
    const out = await spawnVolume(dir, port).output();
    const d = new TextDecoder();
    assertEquals(out.code, 1);
    assertEquals(d.decode(out.stdout), "", "no 'mkv volume ... on :port' line");
    const lines = d.decode(out.stderr).trimEnd().split("\n");
    // A port 0 listener's port: within the range for outgoing connections.
    const range = outgoingPorts();
    assertEquals(
      lines.at(-1),
      `Cannot listen on port ${port} (PORT): it is in use (a listener, or a connection's local ` +
        `end: ${port} is within the system's range for outgoing connections, ${range}; choose a ` +
        `port below ${range.split("-")[0]})`,
    );
    // nginx's own lines come first, as it wrote them.
    assert(lines.some((l) => l.includes(`:${port} failed (98: Address already in use)`)), lines[0]);
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a volume on a port an outgoing connection's local end holds says so, not 'another process' listening", async () => {
  // It said "it is in use by another process" while nothing listened there:
  // a client of any program may hold a port of the range for outgoing
  // connections (PORT=42000 in the README's example was one).
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  const held = await heldByConnection();
  try {
    const out = await spawnVolume(dir, held.port).output();
    const d = new TextDecoder();
    const range = outgoingPorts();
    assertEquals(
      [out.code, d.decode(out.stdout), d.decode(out.stderr).trimEnd().split("\n").at(-1)],
      [
        1,
        "",
        `Cannot listen on port ${held.port} (PORT): it is in use (a listener, or a connection's ` +
        `local end: ${held.port} is within the system's range for outgoing connections, ` +
        `${range}; choose a port below ${range.split("-")[0]})`,
      ],
    );
  } finally {
    held.release();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a volume announces its port only once nginx listens there, after retries of its bind", async () => {
  // The port is held until nginx has failed to bind it once (as when an
  // nginx being stopped still holds it): nginx retries, and the volume says
  // it is on the port only once it is, then answers at once.
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  const { port, listener } = holdPort();
  const proc = spawnVolume(dir, port, ["-log", "json"]);
  const stdout = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = proc.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let released = false;
  // Whether the port was still held when the announcement came.
  const announced = readUntil(stdout, (t) => t.includes("\n")).then((line) => ({ line, released }));
  try {
    const failed = await readUntil(stderr, (t) => t.includes("Address already in use"));
    assert(failed.includes("Address already in use"), failed);
    released = true;
    listener.close();
    const { line, released: after } = await announced;
    assertEquals(after, true, `announced while nginx could not bind: ${line}`);
    const banner = JSON.parse(line);
    assertEquals(
      [banner.level, banner.msg, banner.port, banner.folder],
      ["info", `mkv volume ${dir} on :${port}`, port, dir],
    );
    const res = await fetch(`http://127.0.0.1:${port}/`);
    assertEquals(res.status, 200);
    assertEquals(await res.json(), []);
    // Each nginx line was a JSON line too.
    for (const l of failed.trimEnd().split("\n")) {
      assertEquals(JSON.parse(l).source, "nginx", l);
    }
  } finally {
    if (!released) listener.close();
    proc.kill("SIGTERM");
    assertEquals((await proc.status).code, 0);
    await stdout.cancel();
    await stderr.cancel();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Whether something accepts connections on `port`. */
async function accepts(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("a volume whose nginx master is killed exits non-zero and leaves no worker serving its port", async () => {
  // The OOM killer, or an operator's kill -9: nginx's workers outlive their
  // master, holding the port and nginx's stderr. The volume waited on that
  // stderr for good, so nothing above it (systemd, `deno task up`) saw the
  // volume die, and a new nginx could not bind the port.
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  const { port, listener } = holdPort();
  listener.close();
  const proc = spawnVolume(dir, port);
  const stdout = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const line = await readUntil(stdout, (t) => t.includes("\n"));
    assert(line.includes(`on :${port}`), line);
    const pid = Number((await Deno.readTextFile(`${dir}/.mkv-nginx/nginx.pid`)).trim());
    Deno.kill(pid, "SIGKILL");
    const status = await Promise.race([
      proc.status,
      new Promise<null>((r) => setTimeout(() => r(null), 10_000)),
    ]);
    assertEquals(status?.code, 137, "the volume exits as its nginx did (SIGKILL)");
    assertEquals(await accepts(port), false, "no worker left on the port");
  } finally {
    await endVolume(proc, stdout, dir);
  }
});

Deno.test("a second volume on a folder an nginx serves exits 1 naming it, the first untouched", async () => {
  // Two `deno task up` of one checkout (the second on PORT=...) served
  // data/volume1 twice: one folder under two names, which rebalance and
  // verify -repair take for two volumes (a copy deleted as its own
  // duplicate), and the second rewrote the first's nginx.conf and took its
  // pid file with it when it stopped.
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  const first = freePort();
  const proc = spawnVolume(dir, first);
  const stdout = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    assert((await readUntil(stdout, (t) => t.includes("\n"))).includes(`on :${first}`));
    const pidFile = `${dir}/.mkv-nginx/nginx.pid`;
    const pid = (await Deno.readTextFile(pidFile)).trim();
    const conf = await Deno.readTextFile(`${dir}/.mkv-nginx/nginx.conf`);
    const second = spawnVolume(dir, freePort());
    const [code, said, err] = await Promise.all([
      second.status.then((s) => s.code),
      readUntil(second.stdout.pipeThrough(new TextDecoderStream()).getReader(), (t) => t !== "")
        .then((text) => {
          if (text !== "") second.kill("SIGTERM"); // it started: stop it (the test fails)
          return text;
        }),
      new Response(second.stderr).text(),
    ]);
    assertEquals(said, "");
    assertEquals(code, 1);
    assertEquals(
      err,
      `${dir} is served already, by nginx ${pid} (a volume of this folder): ` +
        `stop that volume first (or kill ${pid}, left by one killed), or serve another folder\n`,
    );
    assertEquals((await Deno.readTextFile(pidFile)).trim(), pid);
    assertEquals(await Deno.readTextFile(`${dir}/.mkv-nginx/nginx.conf`), conf);
    assertEquals(await fetch(`http://127.0.0.1:${first}/`).then((r) => r.json()), []);
  } finally {
    proc.kill("SIGTERM");
    assertEquals((await proc.status).code, 0);
    await stdout.cancel();
    await proc.stderr.cancel();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a volume whose folder is deleted while it runs (a disk replaced) makes it again: PUTs work without a restart", async () => {
  // nginx makes its upload temp folder (.mkv-nginx/body) only at its start:
  // without it every PUT answered 500 until the volume was restarted.
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  await Deno.chmod(dir, 0o755); // nginx's workers reach it (as nobody, when root)
  const folder = `${dir}/v`;
  const proc = spawnVolume(folder, freePort());
  const stdout = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = proc.stderr.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const line = await readUntil(stdout, (t) => t.includes("\n"));
    const port = Number(/ on :(\d+)\n/.exec(line)![1]);
    const url = (path: string) => `http://127.0.0.1:${port}${path}`;
    assertEquals(await status(url("/before"), { method: "PUT", body: "before" }), 201);
    const pid = await Deno.readTextFile(`${folder}/.mkv-nginx/nginx.pid`);
    const conf = await Deno.readTextFile(`${folder}/.mkv-nginx/nginx.conf`);
    await Deno.remove(folder, { recursive: true });
    const said = `${folder} was gone: made again (its folder and nginx's in .mkv-nginx)\n`;
    const warned = await Promise.race([
      readUntil(stderr, (t) => t.includes(said)),
      new Promise<null>((r) => setTimeout(() => r(null), 10_000)),
    ]);
    assertEquals(warned, said);
    assertEquals(await status(url("/after"), { method: "PUT", body: "after" }), 201);
    assertEquals(await (await fetch(url("/after"))).text(), "after");
    assertEquals(await Deno.readTextFile(`${folder}/.mkv-nginx/nginx.pid`), pid);
    assertEquals(await Deno.readTextFile(`${folder}/.mkv-nginx/nginx.conf`), conf);
  } finally {
    proc.kill("SIGTERM");
    assertEquals((await proc.status).code, 0);
    await stdout.cancel();
    await stderr.cancel();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Whether process `pid` is still there (a zombie, exited but not reaped, counts as gone). */
async function alive(pid: number): Promise<boolean> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
  return stat !== "" && !/^\d+ \(.*\) Z /.test(stat);
}

Deno.test("a volume stopped by SIGHUP (its terminal closed) or SIGQUIT (Ctrl-\\) stops its nginx", async (t) => {
  // Deno dies of either by default; nginx, in a process group of its own,
  // did not: it went on serving the folder, its errors written to no one,
  // and the next volume of the folder was refused as "served already".
  for (const signal of ["SIGHUP", "SIGQUIT"] as const) {
    await t.step(signal, async () => {
      const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
      const port = freePort();
      const proc = spawnVolume(dir, port);
      const stdout = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let nginx = 0;
      try {
        assert((await readUntil(stdout, (t) => t.includes("\n"))).includes(`on :${port}`));
        nginx = Number((await Deno.readTextFile(`${dir}/.mkv-nginx/nginx.pid`)).trim());
        proc.kill(signal);
        assertEquals((await proc.status).code, 0);
        assertEquals(await alive(nginx), false, "its nginx stopped");
        assertEquals(await accepts(port), false, "nothing serves its port");
      } finally {
        if (await alive(nginx)) Deno.kill(nginx, "SIGTERM"); // left by the volume (the test fails)
        await endVolume(proc, stdout, dir);
      }
    });
  }
});

/** Runs mount(8) or umount(8) with `args`; throws when it fails. */
async function mountCmd(cmd: "mount" | "umount", args: string[]) {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/**
 * A tmpfs of `size` mounted at `disk`, in a temporary folder `dir` (the
 * caller unmounts it and removes `dir`).
 */
async function tmpfsDisk(size: string): Promise<{ dir: string; disk: string }> {
  const dir = await Deno.makeTempDir({ prefix: "mkv-test-" });
  await Deno.chmod(dir, 0o755); // nginx's workers reach it (as nobody, when root)
  const disk = `${dir}/disk`;
  await Deno.mkdir(disk);
  await mountCmd("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", disk]);
  return { dir, disk };
}

/**
 * Runs `story` against a volume on a 1 MiB tmpfs that a 600,000-byte file
 * (`/half`) already fills past half, then stops it and unmounts the disk.
 */
async function onHalfFullDisk(
  story: (v: { folder: string; url: (path: string) => string }) => Promise<void>,
) {
  const { dir, disk } = await tmpfsDisk("1m");
  const folder = `${disk}/v`;
  const proc = spawnVolume(folder, freePort());
  const stdout = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const line = await readUntil(stdout, (t) => t.includes("\n"));
    const port = Number(/ on :(\d+)\n/.exec(line)![1]);
    const url = (path: string) => `http://127.0.0.1:${port}${path}`;
    assertEquals(
      await status(url("/half"), { method: "PUT", body: new Uint8Array(600_000) }),
      201,
    );
    await story({ folder, url });
  } finally {
    await endVolume(proc, stdout, dir, { unmount: disk });
  }
}

Deno.test({
  name:
    "a volume whose disk is unmounted while it runs writes nothing to the file system under it, until a disk is mounted again",
  // Mounting a file system takes root.
  ignore: Deno.uid() !== 0,
  async fn() {
    // The keeper made the folder again on the file system the disk had
    // been mounted on (the root disk, as a rule): every PUT went there,
    // filling it, hidden once the disk is mounted again.
    const { dir, disk } = await tmpfsDisk("4m");
    let mounted = true;
    const folder = `${disk}/v`;
    const proc = spawnVolume(folder, freePort());
    const stdout = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const stderr = proc.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const said = (line: string) =>
      Promise.race([
        readUntil(stderr, (t) => t.includes(line)),
        new Promise<string>((r) => setTimeout(() => r("(nothing said within 10 s)"), 10_000)),
      ]);
    try {
      const line = await readUntil(stdout, (t) => t.includes("\n"));
      const port = Number(/ on :(\d+)\n/.exec(line)![1]);
      const url = (path: string) => `http://127.0.0.1:${port}${path}`;
      assertEquals(await status(url("/before"), { method: "PUT", body: "before" }), 201);
      await mountCmd("umount", ["-l", disk]);
      mounted = false;
      const unmounted = `${folder}: its disk is not mounted (the folder's path leads to the file ` +
        `system it was mounted on): nothing is made there; mount the disk again, or restart the ` +
        `volume to serve the folder where it is now\n`;
      const told = await said(unmounted);
      assert(told.includes(unmounted), told);
      assertEquals(await status(url("/after"), { method: "PUT", body: "after" }), 500);
      assertEquals(await Array.fromAsync(Deno.readDir(disk)), [], "nothing written under the disk");
      // Another disk mounted there (the disk replaced): made again on it.
      await mountCmd("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", disk]);
      mounted = true;
      const again = `${folder} was gone: made again (its folder and nginx's in .mkv-nginx)\n`;
      const retold = await said(again);
      assert(retold.includes(again), retold);
      assert(!retold.includes(unmounted), `said once: ${retold}`);
      assertEquals(await status(url("/replaced"), { method: "PUT", body: "replaced" }), 201);
      assertEquals(await Deno.readTextFile(`${folder}/replaced`), "replaced");
    } finally {
      proc.kill("SIGTERM");
      const { code } = await proc.status;
      await stdout.cancel();
      await stderr.cancel();
      // No mount left behind, whatever failed.
      if (mounted) await mountCmd("umount", ["-l", disk]);
      await Deno.remove(dir, { recursive: true });
      assertEquals(code, 0);
    }
  },
});

Deno.test({
  name: "a volume whose folder is on a read-only file system exits 1 in one line naming it and why",
  // Mounting a file system takes root.
  ignore: Deno.uid() !== 0,
  async fn() {
    // A disk the kernel remounted read-only after errors, its volume
    // restarted: it printed the bare error of chown, or of nginx.conf's
    // write: "Read-only file system (os error 30): chown '<folder>'".
    const { dir, disk } = await tmpfsDisk("1m");
    try {
      const folder = `${disk}/v`;
      await Deno.mkdir(`${folder}/.mkv-nginx`, { recursive: true }); // served before
      await mountCmd("mount", ["-o", "remount,ro", disk]);
      const out = await spawnVolume(folder, freePort()).output();
      const d = new TextDecoder();
      assertEquals(
        [out.code, d.decode(out.stdout), d.decode(out.stderr)],
        [
          1,
          "",
          `Cannot use ${folder} as a volume's folder: its file system is read-only (EROFS)\n`,
        ],
      );
    } finally {
      await mountCmd("umount", ["-l", disk]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "a PUT of a long key's path to a volume whose disk is full answers 507, though nginx cuts its error line short",
  // Mounting a file system takes root.
  ignore: Deno.uid() !== 0,
  async fn() {
    // nginx cuts an error line at 2048 bytes, the request it names with
    // it: a key of 1,400 bytes and more has a path (its base64url) that
    // long, and that line was taken for another request's (500).
    await onHalfFullDisk(async ({ folder, url }) => {
      const long = "/ab/cd/" + Array(10).fill("k".repeat(250)).join("/");
      const full = await fetch(url(long), { method: "PUT", body: new Uint8Array(600_000) });
      assertEquals(
        [full.status, await full.text()],
        [507, `No space left on device: the disk of ${folder} is full\n`],
      );
    });
  },
});

Deno.test({
  name:
    "a PUT to a volume whose disk is full answers 507, leaves no part behind, and stores once space is freed",
  // Mounting a file system takes root.
  ignore: Deno.uid() !== 0,
  async fn() {
    // nginx answers a write it cannot store for a full disk 500, as any
    // other failure: its error line alone said "No space left on device".
    await onHalfFullDisk(async ({ folder, url }) => {
      const full = await fetch(url("/more"), { method: "PUT", body: new Uint8Array(600_000) });
      assertEquals(
        [full.status, await full.text()],
        [507, `No space left on device: the disk of ${folder} is full\n`],
      );
      assertEquals(await status(url("/more")), 404);
      assertEquals(await uploadsLeft(folder), [], "nginx's part of the upload is removed");
      // Another failure stays nginx's 500: a file where a folder should be.
      assertEquals(await status(url("/half/x"), { method: "PUT", body: "x" }), 500);
      assertEquals(await status(url("/half"), { method: "DELETE" }), 204);
      assertEquals(
        await status(url("/more"), { method: "PUT", body: new Uint8Array(600_000) }),
        201,
      );
    });
  },
});
