// The command line: mkv's flags, Go style, and clear errors.
import {
  Cluster,
  freePort,
  heldByConnection,
  outgoingPorts,
  randomKey,
  runMain,
  waitUp,
} from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";

/** `mkv <args>` is refused as a flag error (exit 2) saying first `start`; its stderr. */
async function assertFlagError(args: string[], start: string): Promise<string> {
  const r = await runMain(args);
  assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
  assert(r.stderr.startsWith(start), r.stderr);
  return r.stderr;
}

/** The flags a master needs, with a volume and -db that are never used. */
const SERVER = ["server", "-db", "/tmp/unused", "-volumes", "a:1"];

Deno.test("an unknown flag prints usage and exits 2", async () => {
  const stderr = await assertFlagError(["server", "-bogus", "1"], "Unknown flag: -bogus\n");
  assert(stderr.includes("-voltimeout duration"), "usage lists the flags");
});

Deno.test("a word after the command is refused, not ignored: -protect false is no -protect=false", async () => {
  // Ignored, "false" left -protect set: a master that refused DELETEs the
  // operator had meant to allow.
  await assertFlagError(
    ["server", "-protect", "false", "-db", "/tmp/unused", "-volumes", "a:1"],
    'Unexpected argument "false" after "server" (a bool flag takes its value with "=": -protect=false)\n',
  );
  await assertFlagError(
    ["verify", "-md5", "false", "-db", "/tmp/unused", "-volumes", "a:1"],
    'Unexpected argument "false" after "verify" (a bool flag takes its value with "=": -md5=false)\n',
  );
  await assertFlagError(
    ["verify", "rebuild", "-db", "/tmp/unused", "-volumes", "a:1"],
    'Unexpected argument "rebuild" after "verify"\n',
  );
  // volume takes one word, its folder; a second is refused before nginx starts.
  const dir = await Deno.makeTempDir();
  await assertFlagError(["volume", dir, "extra"], 'Unexpected argument "extra" after "volume"\n');
  assertEquals([...Deno.readDirSync(dir)], [], "nothing started in the folder");
  await Deno.remove(dir);
});

Deno.test("fewer volumes than replicas is a clear error, not a crash", async () => {
  await assertFlagError(
    ["server", "-db", "/tmp/unused", "-volumes", "a:1,b:2"],
    "The number of volumes (2) must be at least the number of replicas (3)\n",
  );
});

Deno.test("a missing -db or -volumes is named", async () => {
  await assertFlagError(["server", "-volumes", "a:1", "-replicas", "1"], "-db is required");
  await assertFlagError(["server", "-db", "/tmp/unused"], "-volumes is required");
});

Deno.test("bad flag values are refused with the reason", async () => {
  await assertFlagError(
    ["-port=abc", "server"],
    `Invalid value "abc" for flag -port: not an integer`,
  );
  await assertFlagError(["server", "-voltimeout", "1x"], `Invalid value "1x" for flag -voltimeout`);
  await assertFlagError([], "No command given");
});

Deno.test("-subvolumes past 256 is a flag error: svNN has two hex digits", async () => {
  await assertFlagError(
    [...SERVER, "-replicas", "1", "-subvolumes", "257"],
    "-subvolumes must be from 1 to 256\n",
  );
});

Deno.test("a volume listed twice in -volumes is a flag error", async () => {
  await assertFlagError(
    ["server", "-db", "/tmp/unused", "-volumes", "a:1,a:1", "-replicas", "1"],
    '-volumes names one volume twice: "a:1" and "a:1"\n',
  );
});

Deno.test("a port out of range is a flag error: usage and exit 2, not a crash", async () => {
  for (const port of ["-1", "65536"]) {
    await assertFlagError([...SERVER, "-port", port], "-port must be from 0 to 65535\n");
  }
});

Deno.test("-concurrency 0 is the tool's own; a negative one is refused saying so", async () => {
  const args = ["verify", "-db", "/tmp/unused", "-volumes", "a:1", "-replicas", "1"];
  await assertFlagError(
    [...args, "-concurrency=-1"],
    "-concurrency must be at least 1 (0, the default, is the tool's own: 16, 64 for rebalance)\n",
  );
});

Deno.test("an int flag past 2^53 is refused as out of range, not rounded", async () => {
  await assertFlagError(
    ["verify", "-db", "/tmp/unused", "-volumes", "a:1", "-concurrency", "99999999999999999999"],
    'Invalid value "99999999999999999999" for flag -concurrency: out of range\n',
  );
});

Deno.test("volume: a PORT that is not a decimal port number is a flag error, nothing started", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const port of ["0x10", "1e3", "3001.0", " 3001", "abc", "0", "65536"]) {
      const r = await runMain(["volume", dir], { env: { PORT: port } });
      assertEquals(r.code, 2, `PORT=${port}: ${r.stderr}`);
      // Its reason alone: PORT is no flag, and the flags' usage is no help there.
      assertEquals(r.stderr, `Bad PORT "${port}": expected 1 to 65535\n`);
    }
    assertEquals([...Deno.readDirSync(dir)], [], "nothing started in the folder");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("volume: a flag other than -log is refused, not ignored: -port is no PORT", async () => {
  // Ignored, "volume -port 3002 DIR" served DIR on PORT's 3001 (or failed on
  // a port in use), with no word of -port. Refused before PORT is read: a
  // PORT it would refuse keeps a volume from starting were it not.
  const dir = await Deno.makeTempDir();
  const env = { PORT: "none" };
  try {
    const r = await runMain(["volume", "-port", "3002", dir], { env });
    assertEquals(r.code, 2, r.stderr);
    assertEquals(
      r.stderr,
      "volume takes no -port (a master's or a tool's flag): it takes -log, and its port " +
        "from PORT (PORT=3002 mkv volume DIR)\n",
    );
    const s3 = await runMain(["-s3", "volume", dir], { env });
    assertEquals(s3.code, 2, s3.stderr);
    assert(s3.stderr.startsWith("volume takes no -s3 (a master's or a tool's flag)"), s3.stderr);
    assertEquals([...Deno.readDirSync(dir)], [], "nothing started in the folder");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("version and help exit 0", async () => {
  const v = await runMain(["version"]);
  assertEquals(v.code, 0);
  assert(/^\d+\.\d+\.\d+\n$/.test(v.stdout), v.stdout);
  const h = await runMain(["help"]);
  assertEquals(h.code, 0);
  assert(h.stdout.includes("rebalance") && h.stdout.includes("-subvolumes int"), h.stdout);
});

Deno.test("-h, -help and --help print the usage on stdout and exit 0, as Go's flag package", async () => {
  // `deno task master --help` (the README's way to see the flags) answered
  // "Unknown flag: -help" and exit 2.
  for (const args of [["server", "--help"], ["-h"], ["rebuild", "-help"]]) {
    const r = await runMain(args);
    assertEquals(r.code, 0, args.join(" "));
    assertEquals(r.stderr, "", args.join(" "));
    assert(r.stdout.startsWith("mkv 0.1.0: a distributed key-value store"), r.stdout);
    assert(r.stdout.includes("\n  -voltimeout duration\n"), r.stdout);
  }
});

Deno.test("help says -log formats every line a command writes, as the README does", async () => {
  const r = await runMain(["help"]);
  assert(
    r.stdout.includes(
      "\n  -log string\n    \tFormat of every line a command writes (-v requests, volume failures, " +
        'messages, errors): text or json (default "text")\n',
    ),
    r.stdout,
  );
});

Deno.test("help prints no default for a boolean flag that is off, as mkv's Go flag package", async () => {
  // It printed "(default false)" after each: -protect, -colocate, -v, -s3, the tools'.
  const r = await runMain(["help"]);
  assert(r.stdout.includes("\n  -protect\n    \tForce UNLINK before DELETE\n"), r.stdout);
  assert(!r.stdout.includes("(default false)"), r.stdout);
  assert(
    r.stdout.includes(
      "store MD5 checksum of values (S3 writes always do: it is their ETag) (default true)\n",
    ),
    r.stdout,
  );
});

Deno.test("help says -db and -volumes are required, as the commands and the README do", async () => {
  // It said (default ""), which every command but volume refuses.
  const r = await runMain(["help"]);
  assert(
    r.stdout.includes(
      "\n  -db string\n    \tPath to the index (a Deno KV file or folder, or a KV Connect " +
        "https:// URL) (required)\n  -volumes string\n    \tVolumes to use for storage, " +
        "comma separated host:port (required)\n",
    ),
    r.stdout,
  );
});

Deno.test("help says the S3 keys go together, as the flag check and the README do", async () => {
  // It said "-s3-secret-key ... unset: S3 signatures are not checked", while
  // a secret key left unset beside an access key is a flag error (exit 2).
  const r = await runMain(["help"]);
  assert(
    r.stdout.includes(
      "\n  -s3-secret-key string\n    \tS3 secret key (or $MKV_S3_SECRET_KEY); set both keys or " +
        'neither (neither: S3 signatures are not checked) (default "")\n',
    ),
    r.stdout,
  );
});

Deno.test("one S3 key without the other is refused naming where the one set came from", async () => {
  // An access key from the environment alone was refused as "-s3-access-key and
  // -s3-secret-key go together", naming flags the command line did not hold.
  const env = await runMain([...SERVER, "-replicas", "1"], { env: { MKV_S3_ACCESS_KEY: "k" } });
  assertEquals(env.code, 2);
  assertEquals(
    env.stderr.split("\n")[0],
    "An S3 access key is set ($MKV_S3_ACCESS_KEY) but no secret key (-s3-secret-key or " +
      "$MKV_S3_SECRET_KEY): set both or neither",
  );
  await assertFlagError(
    [...SERVER, "-replicas", "1", "-s3-secret-key", "s"],
    "An S3 secret key is set (-s3-secret-key) but no access key (-s3-access-key or " +
      "$MKV_S3_ACCESS_KEY): set both or neither\n",
  );
});

Deno.test("Go-style -flag=value, --flag value and flags before the command all work", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  await c.stopMaster();
  const port = freePort();
  const master = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../main.ts", import.meta.url).pathname,
      `-db=${c.db}`,
      "--port",
      String(port),
      "-replicas=1",
      "-md5sum=false",
      "server",
      "-volumes",
      c.volumes[0],
      "-subvolumes",
      "1",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  try {
    await waitUp(`http://127.0.0.1:${port}/?list`, { proc: master });
    const key = randomKey();
    const put = await fetch(`http://127.0.0.1:${port}${key}`, { method: "PUT", body: "x" });
    assertEquals(put.status, 201);
    const get = await fetch(`http://127.0.0.1:${port}${key}`, { redirect: "manual" });
    assertEquals(get.status, 302);
    assertEquals(get.headers.get("content-md5"), null, "-md5sum=false stores no MD5");
    assertEquals(get.headers.get("key-volumes"), c.volumes[0], "-subvolumes 1: no svNN");
  } finally {
    master.kill("SIGTERM");
    await master.status;
    await c.stop();
  }
});

Deno.test("a master refuses two names for one volume: its replicas would be one file", async () => {
  const c = await Cluster.start();
  try {
    await c.stopMaster();
    const alias = c.volumes[0].replace("127.0.0.1", "localhost");
    const volumes = [c.volumes[0], alias, c.volumes[1]].join(",");
    // A master that started anyway is stopped, so the test fails, not hangs.
    const signal = AbortSignal.timeout(30_000);
    const r = await runMain(["server", "-port", "0", "-db", c.db, "-volumes", volumes], { signal });
    assertEquals(r.code, 1);
    assertEquals(
      r.stderr,
      `Two names reach the same volume (${alias} and ${c.volumes[0]}): name each volume ` +
        `one way, or two replicas of a key would be one file\n`,
    );
  } finally {
    await c.stop();
  }
});

Deno.test("a master refuses a -volumes entry that answers PUT as no WebDAV server does (501, 405)", async () => {
  const c = await Cluster.start();
  // Another HTTP service on the port the operator meant for a volume.
  const other = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => new Response(null, { status: req.method === "PUT" ? 501 : 200 }),
  );
  const nodav = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => new Response(null, { status: req.method === "PUT" ? 405 : 200 }),
  );
  try {
    await c.stopMaster();
    const wrong = [`127.0.0.1:${other.addr.port}`, `127.0.0.1:${nodav.addr.port}`];
    const volumes = [c.volumes[0], ...wrong].join(",");
    const signal = AbortSignal.timeout(30_000);
    const r = await runMain(["server", "-port", "0", "-db", c.db, "-volumes", volumes], { signal });
    const lines = r.stderr.trimEnd().split("\n");
    assertEquals(
      [r.code, lines.at(-1)],
      [
        1,
        `No volume answers at ${wrong[0]} (status 501), ${wrong[1]} (status 405): it refused a ` +
        `PUT as a server without WebDAV does (an mkv volume is nginx with volume.conf: ` +
        `deno task volume DIR); check -volumes`,
      ],
    );
    // Before it, each refused PUT as the volume failure it is (see Logs).
    assertEquals(
      lines.slice(0, -1).map((l) => l.replace(/mkv-volume-name\.[0-9a-f-]+\.\d+/, "MARKER")),
      [
        `volume ${wrong[0]} put error: Cannot PUT "http://${wrong[0]}/MARKER": status 501`,
        `volume ${wrong[1]} put error: Cannot PUT "http://${wrong[1]}/MARKER": status 405`,
      ],
    );
  } finally {
    await other.shutdown();
    await nodav.shutdown();
    await c.stop();
  }
});

/**
 * `mkv <args>` run until it exits, or until it prints its first line on
 * stdout (a master listening: it started), then stopped; its exit code
 * (null when it started) and stderr.
 */
async function startOrExit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.getReader();
  const first = await reader.read();
  await reader.cancel();
  if (!first.done) child.kill("SIGTERM");
  const status = await child.status;
  return { code: first.done ? status.code : null, stderr: await stderr };
}

Deno.test("a master refuses another mkv master named in -volumes, and writes no key through it", async () => {
  // It took the name check's marker PUT as a key (201), started, and then
  // wrote every replica of that volume as a key of the other cluster.
  const c = await Cluster.start();
  const db = await Deno.makeTempDir();
  try {
    const master = new URL(c.url).host;
    const volumes = [c.volumes[0], c.volumes[1], master].join(",");
    const r = await startOrExit(["server", "-port", "0", "-db", db, "-volumes", volumes]);
    assertEquals(
      [r.code, r.stderr.trimEnd().split("\n").at(-1)],
      [
        1,
        `An mkv master answers at ${master}, not a volume: -volumes names nginx volumes ` +
        `(deno task volume DIR); check -volumes`,
      ],
    );
    const metrics = await (await fetch(`${c.url}/?metrics`)).text();
    assert(!metrics.includes('mkv_requests_total{method="PUT",status="201"}'), metrics);
  } finally {
    await c.stop();
    await Deno.remove(db, { recursive: true });
  }
});

Deno.test("a master named among its own -volumes is a flag error: it would write to itself without end", async () => {
  const port = freePort();
  for (const self of [`localhost:${port}`, `127.0.0.1:${port}`]) {
    const args = [
      "server",
      "-port",
      String(port),
      "-db",
      "/tmp/unused",
      "-volumes",
      `a:1,b:2,${self}`,
    ];
    const r = await startOrExit(args);
    assertEquals(r.code, 2, r.stderr);
    const why = `-volumes names this master itself (${self}: -port is ${port}): ` +
      `-volumes names nginx volumes (deno task volume DIR)\n`;
    assert(r.stderr.startsWith(why), r.stderr);
  }
});

Deno.test("an index that cannot be opened is named with the reason", async () => {
  // It said only "file is not a database", naming neither the file nor -db.
  const dir = await Deno.makeTempDir();
  const file = `${dir}/notes.txt`;
  await Deno.writeTextFile(file, "not an index\n");
  try {
    const r = await runMain(["verify", "-db", file, "-volumes", "127.0.0.1:1", "-replicas", "1"]);
    assertEquals(r.code, 1);
    assertEquals(r.stderr, `Cannot open the index "${file}": file is not a database\n`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a port in use is named with the flag that sets it", async () => {
  // It said only "Address already in use (os error 98)".
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const taken = listenBelowOutgoing();
  try {
    await c.stopMaster();
    const port = (taken.addr as Deno.NetAddr).port;
    const r = await runMain(
      ["server", "-port", String(port), "-db", c.db, "-volumes", c.volumes[0], "-replicas", "1"],
    );
    assertEquals(r.code, 1);
    assertEquals(
      r.stderr,
      `Cannot listen on port ${port} (-port): it is in use by another process\n`,
    );
  } finally {
    taken.close();
    await c.stop();
  }
});

/** A listener on a port below the range for outgoing connections (20000-32000). */
function listenBelowOutgoing(): Deno.Listener {
  for (let tries = 0;; tries++) {
    try {
      return Deno.listen({ port: 20_000 + Math.floor(Math.random() * 12_000) });
    } catch (err) {
      if (tries === 50) throw err;
    }
  }
}

Deno.test("a -port an outgoing connection's local end holds is named so, with the range it is in", async () => {
  // It said "Address already in use" while nothing listened there: any
  // program's client may hold a port of the range for outgoing connections.
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  const held = await heldByConnection();
  try {
    await c.stopMaster();
    const r = await runMain(
      [
        "server",
        "-port",
        String(held.port),
        "-db",
        c.db,
        "-volumes",
        c.volumes[0],
        "-replicas",
        "1",
      ],
    );
    const range = outgoingPorts();
    assertEquals(
      [r.code, r.stderr],
      [
        1,
        `Cannot listen on port ${held.port} (-port): it is in use (a listener, or a connection's ` +
        `local end: ${held.port} is within the system's range for outgoing connections, ` +
        `${range}; choose a port below ${range.split("-")[0]})\n`,
      ],
    );
  } finally {
    held.release();
    await c.stop();
  }
});

Deno.test("help says -v is the master's: the tools take it, as mkv's one binary takes every flag, and it changes nothing there", async () => {
  // It said "Verbose output: one log line per request" alone, and rebuild,
  // rebalance and verify took it and wrote nothing more.
  const r = await runMain(["help"]);
  assert(
    r.stdout.includes(
      "\n  -v\n    \tserver: verbose output, one log line per request (rebuild, rebalance and " +
        "verify take it, as mkv's one binary takes every flag, and write nothing more for it)\n",
    ),
    r.stdout,
  );
});
