// `deno task up`: the README's first command, on the ports PORT names.
import { heldByConnection, outgoingPorts, randomKey, runMain } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { installNginx } from "../tools/volume.ts";

const UP = new URL("../tools/up.ts", import.meta.url).pathname;

/**
 * A base port whose next three are free too (the volumes'). Below Linux's
 * ephemeral range (32768+), where other tests' port-0 listeners and every
 * outgoing connection take theirs, so none can take these meanwhile.
 */
function freeBlock(): number {
  for (let tries = 0; tries < 50; tries++) {
    const base = 20_000 + Math.floor(Math.random() * 12_000);
    const held: Deno.Listener[] = [];
    try {
      for (let p = base; p < base + 4; p++) held.push(Deno.listen({ port: p }));
      return base;
    } catch {
      /* taken: try another */
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error("no four free ports in a row");
}

/** `deno task up` with `args`, run to its end (in `cwd`, with `env` added): its exit code and output. */
async function runUp(
  args: string[],
  opts: { cwd?: string; env: { [name: string]: string } },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", UP, ...args],
    cwd: opts.cwd,
    env: opts.env,
    stdin: "null",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** Runs `fn` in a fresh temporary folder, removed after. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mkv-up-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

interface RunningUp {
  base: number;
  dir: string;
  proc: Deno.ChildProcess;
  /** Its stdout, as text. */
  reader: ReadableStreamDefaultReader<string>;
}

/**
 * `deno task up` with `args` on a free block of ports (PORT) in a fresh
 * temporary folder, while `fn` runs; then stopped with Ctrl-C (SIGINT)
 * unless it has ended. Its exit code, once its ports are all free again.
 */
async function withUp(
  args: string[],
  fn: (up: RunningUp) => Promise<void>,
  stderr: "inherit" | "piped" = "inherit",
): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "mkv-up-" });
  const base = freeBlock();
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", UP, ...args],
    cwd: dir,
    env: { PORT: String(base) },
    stdin: "null",
    stdout: "piped",
    stderr,
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let code: number;
  try {
    await fn({ base, dir, proc, reader });
  } finally {
    try {
      proc.kill("SIGINT");
    } catch { /* ended already */ }
    code = (await proc.status).code;
    reader.releaseLock();
    await proc.stdout.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
  // All freed (nginx's workers may outlive their master by a moment).
  for (let p = base; p < base + 4; p++) await bindable(p);
  return code;
}

async function readUntil(r: ReadableStreamDefaultReader<string>, text: string): Promise<string> {
  let out = "";
  while (!out.includes(text)) {
    const { value, done } = await r.read();
    if (done) throw new Error(`ended before ${JSON.stringify(text)}:\n${out}`);
    out += value;
  }
  return out;
}

Deno.test("PORT=N deno task up: master on N, volumes on N+1..N+3, Ctrl-C stops them", async () => {
  const code = await withUp([], async ({ base, dir, reader }) => {
    const out = await readUntil(reader, "Ctrl-C stops everything.");
    assert(
      out.includes(
        `mkv is up: master http://localhost:${base}, volumes :${base + 1} :${base + 2} :${
          base + 3
        }\n`,
      ),
      out,
    );
    assert(out.includes(`  curl -L localhost:${base}/hello `), out);
    const key = randomKey();
    const put = await fetch(`http://localhost:${base}${key}`, { method: "PUT", body: "x" });
    assertEquals(put.status, 201);
    const get = await fetch(`http://localhost:${base}${key}`, { redirect: "manual" });
    await get.body?.cancel();
    assertEquals(get.status, 302);
    const location = get.headers.get("location") ?? "";
    assert(/^http:\/\/localhost:\d+\//.test(location), location);
    const volume = Number(new URL(location).port);
    assert(volume >= base + 1 && volume <= base + 3, location);
    assertEquals(await (await fetch(location)).text(), "x");
    // The data lands under the working folder's data/.
    assertEquals((await Deno.stat(`${dir}/data/indexdb`)).isDirectory, true);
    assertEquals((await Deno.stat(`${dir}/data/volume1`)).isDirectory, true);
  });
  assertEquals(code, 0);
});

async function bindable(port: number) {
  for (let i = 0;; i++) {
    try {
      Deno.listen({ port }).close();
      return;
    } catch (err) {
      if (i === 100) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

Deno.test("deno task up on a taken port says how to move it, and starts nothing", async () => {
  const base = freeBlock();
  const taken = Deno.listen({ port: base + 2 });
  try {
    await inTempDir(async (dir) => {
      const out = await runUp([], { cwd: dir, env: { PORT: String(base) } });
      assertEquals(out.code, 1);
      assertEquals(
        out.stderr,
        `Port ${base + 2} is in use by another process: stop what runs there first (another ` +
          `'deno task up'?), or move the cluster: PORT=13000 deno task up\n`,
      );
    });
  } finally {
    taken.close();
  }
});

Deno.test("deno task up on a port an outgoing connection's local end holds says so, naming the range", async () => {
  // It said the port "is in use" and to move the cluster to PORT=42000:
  // within the same range, where any program's client may hold a port.
  const held = await heldByConnection();
  try {
    await inTempDir(async (dir) => {
      const out = await runUp([], { cwd: dir, env: { PORT: String(held.port) } });
      const range = outgoingPorts();
      assertEquals(
        [out.code, out.stdout, out.stderr],
        [
          1,
          "",
          `Port ${held.port} is in use (a listener, or a connection's local end: ${held.port} ` +
          `is within the system's range for outgoing connections, ${range}; choose a port below ` +
          `${range.split("-")[0]}): stop what runs there first (another 'deno task up'?), or ` +
          `move the cluster: PORT=13000 deno task up\n`,
        ],
      );
      assertEquals(await Array.fromAsync(Deno.readDir(dir)), []);
    });
  } finally {
    held.release();
  }
});

Deno.test("deno task up without nginx says so in one line, exit 1, no stack trace, nothing started", async () => {
  await inTempDir(async (dir) => {
    const env = { PORT: String(freeBlock()), MKV_NGINX: `${dir}/no-nginx` };
    const out = await runUp([], { cwd: dir, env });
    assertEquals(out.code, 1);
    assertEquals(
      out.stderr,
      `MKV_NGINX names "${dir}/no-nginx", which is not a file: point it at the nginx binary, ` +
        `or unset it to use nginx from PATH\n`,
    );
    assertEquals(out.stdout, "");
    assertEquals(await Array.fromAsync(Deno.readDir(dir)), []);
  });
});

Deno.test("deno task up -log json without nginx: its error is one JSON line", async () => {
  const env = { PORT: String(freeBlock()), MKV_NGINX: "/nonexistent/nginx" };
  const out = await runUp(["-log", "json"], { env });
  assertEquals(out.code, 1);
  const lines = out.stderr.split("\n");
  assertEquals(lines.length, 2);
  assertEquals(lines[1], "");
  const o = JSON.parse(lines[0]);
  assertEquals(o.level, "error");
  assertEquals(
    o.msg,
    'MKV_NGINX names "/nonexistent/nginx", which is not a file: point it at the nginx binary, ' +
      "or unset it to use nginx from PATH",
  );
});

Deno.test("without nginx and not root, the lookup's error says what to run", async () => {
  const err = await installNginx(false).then(() => null, (e: Error) => e.message);
  assertEquals(
    err,
    "nginx is not installed. Install it with: sudo sh -c 'apt-get update && apt-get install -y nginx-light'",
  );
});

Deno.test("deno task up refuses a bad PORT", async () => {
  for (const port of ["70000", "1e3", "0x10"]) {
    const out = await runUp([], { env: { PORT: port } });
    assertEquals(out.code, 2);
    assertEquals(out.stderr, `Bad PORT "${port}": expected 1-65532 (the master's port)\n`);
  }
});

Deno.test("deno task up with a flag the master refuses says what the master says, exit 2, and starts no volume", async () => {
  // The volumes were started (and announced) first, then stopped once the
  // master refused its flag.
  for (const flag of [["-lease", "0s"], ["-replicas", "5"]]) {
    const base = freeBlock();
    await inTempDir(async (dir) => {
      const out = await runUp(flag, { cwd: dir, env: { PORT: String(base) } });
      const volumes = [1, 2, 3].map((i) => `localhost:${base + i}`).join(",");
      const master = await runMain(
        [
          "server",
          "-port",
          String(base),
          "-db",
          `${dir}/data/indexdb`,
          "-volumes",
          volumes,
          ...flag,
        ],
      );
      assertEquals(master.code, 2, master.stderr);
      assertEquals([out.code, out.stderr], [2, master.stderr], flag.join(" "));
      // No volume announced it listened, nor made its folder.
      assertEquals(out.stdout, "");
      assertEquals(await Array.fromAsync(Deno.readDir(dir)), []);
    });
  }
});

Deno.test("deno task up with an unknown flag prints the master's usage error and starts nothing", async () => {
  await inTempDir(async (dir) => {
    const out = await runUp(["-bogus"], { cwd: dir, env: { PORT: String(freeBlock()) } });
    assertEquals(out.code, 2);
    assert(out.stderr.startsWith("Unknown flag: -bogus\n\nmkv 0.1.0"), out.stderr);
    assertEquals(out.stdout, "");
    assertEquals(await Array.fromAsync(Deno.readDir(dir)), []);
  });
});

Deno.test("deno task up -h prints its usage, without the flags it sets itself, and exits 0, starting nothing", async () => {
  await inTempDir(async (dir) => {
    const out = await runUp(["-h"], { cwd: dir, env: { PORT: String(freeBlock()) } });
    assertEquals(out.code, 0);
    assert(out.stdout.startsWith("deno task up: a local cluster to try the store"), out.stdout);
    assert(out.stdout.includes("\nUsage: deno task up [flags]\n"), out.stdout);
    assert(out.stdout.includes("\n  -log string\n"), out.stdout);
    // Set by up itself: given, they are refused.
    assert(!out.stdout.includes("\n  -port int\n"), out.stdout);
    assert(!out.stdout.includes("\n  -volumes string\n"), out.stdout);
    assertEquals(await Array.fromAsync(Deno.readDir(dir)), []);
  });
});

Deno.test("deno task up -h gives -db's default as up sets it, ./data/indexdb", async () => {
  // It said (default ""), the master's, while up gives the master -db ./data/indexdb.
  const out = await runUp(["-h"], { env: { PORT: String(freeBlock()) } });
  assertEquals(out.code, 0);
  assert(
    out.stdout.includes(
      "\n  -db string\n    \tPath to the index (a Deno KV file or folder, or a KV Connect " +
        'https:// URL) (default "./data/indexdb")\n',
    ),
    out.stdout,
  );
});

Deno.test("deno task up -db X keeps the index at X, the volumes still under ./data/", async () => {
  const elsewhere = await Deno.makeTempDir({ prefix: "mkv-up-db-" });
  try {
    const code = await withUp(["-db", `${elsewhere}/index`], async ({ base, dir, reader }) => {
      await readUntil(reader, "Ctrl-C stops everything.");
      const put = await fetch(`http://localhost:${base}${randomKey()}`, {
        method: "PUT",
        body: "x",
      });
      assertEquals(put.status, 201);
      assertEquals((await Deno.stat(`${elsewhere}/index`)).isDirectory, true);
      assertEquals(await Deno.stat(`${dir}/data/indexdb`).catch(() => null), null);
      assertEquals((await Deno.stat(`${dir}/data/volume1`)).isDirectory, true);
    });
    assertEquals(code, 0);
  } finally {
    await Deno.remove(elsewhere, { recursive: true });
  }
});

Deno.test("deno task up -port is refused: PORT moves the cluster", async () => {
  const out = await runUp(["-port=4000"], { env: {} });
  assertEquals(out.code, 2);
  assertEquals(
    out.stderr,
    "deno task up sets -port itself: move the cluster with PORT (PORT=13000 deno task up)\n",
  );
});

Deno.test("deno task up refuses a tool's flag (-md5, -dry-run, ...), which the master would ignore, and starts nothing", async () => {
  // The master took them and did nothing with them: `deno task up -md5`
  // started a cluster as if it had not been given.
  await inTempDir(async (dir) => {
    for (
      const [flag, usage] of [
        ["-md5", "verify: also read every replica and check its MD5"],
        ["-dry-run=false", "rebalance: print how many keys and bytes would move, change nothing"],
      ]
    ) {
      const out = await runUp([flag], { cwd: dir, env: { PORT: String(freeBlock()) } });
      assertEquals(out.code, 2, flag);
      const name = flag.replace(/=.*$/, "");
      assertEquals(
        out.stderr,
        `deno task up runs the master, which takes no ${name}: it is a tool's (${usage}); ` +
          "deno task up -h lists up's flags\n",
      );
      assertEquals(out.stdout, "");
    }
    assertEquals(await Array.fromAsync(Deno.readDir(dir)), []);
  });
});

Deno.test("deno task up -log json: every line it and its volumes and master write is a JSON object", async () => {
  const code = await withUp(["-log", "json"], async ({ base, reader }) => {
    let out = await readUntil(reader, "mkv is up");
    if (!out.endsWith("\n")) out += await readUntil(reader, "\n");
    const lines = out.split("\n").filter((l) => l !== "");
    // Three volumes, the master, then the banner, each one JSON object.
    assertEquals(lines.length, 5, out);
    const objects = lines.map((l) => JSON.parse(l));
    for (const o of objects) assertEquals(o.level, "info", JSON.stringify(o));
    const banner = objects[4];
    assertEquals(
      banner.msg,
      `mkv is up: master http://localhost:${base}, volumes :${base + 1} :${base + 2} :${
        base + 3
      }; Ctrl-C stops everything`,
    );
    assertEquals(banner.master, `http://localhost:${base}`);
    assertEquals(banner.volumes, [1, 2, 3].map((i) => `localhost:${base + i}`));
  });
  assertEquals(code, 0);
});

Deno.test("deno task up: a master that dies takes the volumes down, named, with its exit code", async () => {
  const code = await withUp([], async ({ base, dir, proc, reader }) => {
    const stderr = new Response(proc.stderr).text();
    await readUntil(reader, "Ctrl-C stops everything.");
    Deno.kill(await pidOf(`${dir}/data/indexdb`), "SIGKILL");
    await proc.status;
    assert(
      (await stderr).endsWith(`the master on :${base} stopped (exit 137): stopping the rest\n`),
      await stderr,
    );
  }, "piped");
  // 137: 128 + SIGKILL, the master's exit code.
  assertEquals(code, 137);
});

/** The pid of the process whose command line holds `text`. */
async function pidOf(text: string): Promise<number> {
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
    if (cmd.includes(text)) return Number(e.name);
  }
  throw new Error(`no process has ${text} in its command line`);
}
