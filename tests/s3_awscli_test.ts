// The S3 gateway driven by the AWS CLI (`aws`, tools/ensure_awscli.ts installs
// it) as a user would: `aws --endpoint-url <master> s3 ...` and `s3api ...`
// against a real master and nginx volumes, with S3 keys and with -s3 alone.
// Each step checks the CLI's exit code and the bytes that come back.
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { Cluster, randomBytes } from "./cluster.ts";
import { crc32 } from "./s3_client.ts";
import { assert, assertEquals } from "./assert.ts";

const ACCESS = "cli-access";
const SECRET = "cli-secret";
const MiB = 1024 * 1024;
/** Past the CLI's multipart threshold: three parts of its default 8 MiB, sent on its 10 threads. */
const BIG = 20 * MiB;
/** A time before any upload of the test: a local file this old is older than its S3 copy. */
const LONG_AGO = new Date("2020-01-01T00:00:00Z");

interface CliRun {
  code: number;
  out: string;
  err: string;
  bytes: Uint8Array;
}

interface CliOptions {
  stdin?: Uint8Array;
  /** The CLI's config file (AWS_CONFIG_FILE) when not the default one. */
  config?: string;
  /** Sign with these keys; null: `--no-sign-request`. */
  keys?: { id: string; secret: string } | null;
}

/**
 * The AWS CLI pointed at `endpoint`, working in `dir` (relative paths are
 * its), with its own config and credentials files there: nothing of the
 * user's (~/.aws, AWS_* variables) is read or written.
 */
class AwsCli {
  constructor(
    readonly endpoint: string,
    readonly dir: string,
    readonly keys: { id: string; secret: string },
  ) {}

  static async make(endpoint: string, keys = { id: ACCESS, secret: SECRET }): Promise<AwsCli> {
    const dir = await Deno.makeTempDir({ prefix: "mkv-awscli-" });
    await Deno.writeTextFile(join(dir, "config"), "[default]\nregion = us-east-1\n");
    await Deno.writeTextFile(join(dir, "credentials"), "");
    await Deno.writeTextFile(
      join(dir, "config-s3v4"),
      "[default]\nregion = us-east-1\ns3 =\n  signature_version = s3v4\n",
    );
    return new AwsCli(endpoint, dir, keys);
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  env(opts: CliOptions): Record<string, string> {
    const env = Object.fromEntries(
      Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("AWS_")),
    );
    const keys = opts.keys === undefined ? this.keys : opts.keys;
    return {
      ...env,
      AWS_CONFIG_FILE: this.path(opts.config ?? "config"),
      AWS_SHARED_CREDENTIALS_FILE: this.path("credentials"),
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_PAGER: "",
      ...(keys ? { AWS_ACCESS_KEY_ID: keys.id, AWS_SECRET_ACCESS_KEY: keys.secret } : {}),
    };
  }

  async run(args: string[], opts: CliOptions = {}): Promise<CliRun> {
    const unsigned = opts.keys === null ? ["--no-sign-request"] : [];
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("aws", {
        args: ["--endpoint-url", this.endpoint, ...unsigned, ...args],
        cwd: this.dir,
        env: this.env(opts),
        clearEnv: true,
        stdin: opts.stdin ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      throw new Error(
        "The AWS CLI (aws) is not installed: run `deno run -A tools/ensure_awscli.ts` " +
          "(python3 -m pip install awscli)",
      );
    }
    const writing = opts.stdin ? writeAll(child.stdin, opts.stdin) : Promise.resolve();
    const out = await child.output();
    await writing;
    const text = new TextDecoder();
    return {
      code: out.code,
      out: text.decode(out.stdout),
      err: text.decode(out.stderr),
      bytes: out.stdout,
    };
  }

  /** Runs `aws args`, asserting it exits 0; its standard output. */
  async ok(args: string[], opts: CliOptions = {}): Promise<string> {
    const run = await this.run(args, opts);
    assertEquals(run.code, 0, `aws ${args.join(" ")}\n${run.err}`);
    return run.out;
  }

  /** Runs `aws args`, asserting it exits `code` with `error` in its message. */
  async fails(args: string[], code: number, error: string, opts: CliOptions = {}) {
    const run = await this.run(args, opts);
    assertEquals(run.code, code, `aws ${args.join(" ")}\n${run.out}${run.err}`);
    assert(run.err.includes(error), `aws ${args.join(" ")}: ${run.err}`);
  }

  /** The object's bytes, as `aws s3 cp s3://... -` writes them. */
  async bytes(url: string, opts: CliOptions = {}): Promise<Uint8Array> {
    const run = await this.run(["s3", "cp", url, "-"], opts);
    assertEquals(run.code, 0, `aws s3 cp ${url} -\n${run.err}`);
    return run.bytes;
  }

  /** `aws s3api <op> --<flag> <value> ...`'s JSON answer (asserting it exits 0). */
  async api(op: string, flags: ApiFlags, opts: CliOptions = {}): Promise<Answer> {
    const out = await this.ok(apiArgs(op, flags), opts);
    return out.trim() === "" ? {} : JSON.parse(out);
  }

  async remove() {
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** s3api's flags: `{ bucket: "b", key: "k" }` is `--bucket b --key k`; `outfile` goes last, bare. */
type ApiFlags = Record<string, string | number>;
// deno-lint-ignore no-explicit-any
type Answer = Record<string, any>;

function apiArgs(op: string, flags: ApiFlags): string[] {
  const { outfile, ...named } = flags;
  const args = Object.entries(named).flatMap(([k, v]) => [`--${k}`, String(v)]);
  return [
    "s3api",
    op,
    ...args,
    ...(outfile === undefined ? [] : [String(outfile)]),
    "--output",
    "json",
  ];
}

async function writeAll(stream: WritableStream<Uint8Array>, data: Uint8Array) {
  const writer = stream.getWriter();
  await writer.write(data);
  await writer.close();
}

function md5(b: Uint8Array): string {
  return createHash("md5").update(b).digest("hex");
}

function sha256(b: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(b).digest());
}

function base64(b: Uint8Array): string {
  return btoa(String.fromCharCode(...b));
}

function bucketName(): string {
  return `cli-${crypto.randomUUID().slice(0, 8)}`;
}

const text = (s: string) => new TextEncoder().encode(s);

/** Writes `files` (relative path: bytes) under `root`, each dated `mtime`. */
async function writeTree(root: string, files: Record<string, Uint8Array>, mtime = LONG_AGO) {
  for (const [name, bytes] of Object.entries(files)) {
    const path = join(root, name);
    await Deno.mkdir(dirname(path), { recursive: true });
    await Deno.writeFile(path, bytes);
    await Deno.utime(path, mtime, mtime);
  }
}

/** The files under `root`: relative path to MD5. */
async function treeMd5s(root: string, under = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of Deno.readDir(join(root, under))) {
    const name = under === "" ? e.name : `${under}/${e.name}`;
    if (e.isDirectory) Object.assign(out, await treeMd5s(root, name));
    else out[name] = md5(await Deno.readFile(join(root, name)));
  }
  return out;
}

function md5s(files: Record<string, Uint8Array>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).map(([k, v]) => [k, md5(v)]));
}

/** `aws s3 ls`'s entries: "PRE <prefix>" or "<name> <size>", in its order. */
function lsEntries(out: string): string[] {
  return out.split("\n").filter((l) => l.trim() !== "").map((line) => {
    const object = line.match(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +(\d+) (.*)$/);
    return object ? `${object[2]} ${object[1]}` : line.trim();
  });
}

/** The transfers a `--no-progress` run of cp/sync/mv/rm printed ("upload: a to s3://b/a"), sorted. */
function transfers(out: string): string[] {
  return out.split("\n").filter((l) => l !== "").sort();
}

/** Files of the shapes a tree of a user's has: odd names, an empty one, subfolders. */
function oddTree(): Record<string, Uint8Array> {
  return {
    "a.txt": randomBytes(100),
    "with space.txt": randomBytes(200),
    "ünï cødé/ファイル.txt": randomBytes(300),
    "a+b=c.txt": randomBytes(400),
    "ünï cødé/100% sure%2F.txt": randomBytes(500),
    "emoji 😀.bin": randomBytes(600),
    "empty": new Uint8Array(0),
    "sub/deep/g.bin": randomBytes(70_000),
  };
}

/** The three parts the CLI cuts a BIG file into: its default 8 MiB, and the rest. */
function partsOf(bytes: Uint8Array): Uint8Array[] {
  return [bytes.subarray(0, 8 * MiB), bytes.subarray(8 * MiB, 16 * MiB), bytes.subarray(16 * MiB)];
}

/** The keys of a list-objects(-v2) answer. */
function keysOf(answer: Answer): string[] {
  return (answer.Contents ?? []).map((o: { Key: string }) => o.Key);
}

Deno.test("AWS CLI against a master with S3 keys: s3 and s3api as a user runs them", async (t) => {
  const c = await Cluster.start({ flags: ["-s3-access-key", ACCESS, "-s3-secret-key", SECRET] });
  const aws = await AwsCli.make(c.url);
  const bucket = bucketName();
  const s3 = `s3://${bucket}`;
  const big = randomBytes(BIG);
  try {
    await t.step(
      "mb makes a bucket ls lists; rb keeps one with keys (exit 1), removes an empty one",
      async () => {
        const other = bucketName();
        assertEquals(await aws.ok(["s3", "mb", s3]), `make_bucket: ${bucket}\n`);
        assertEquals(await aws.ok(["s3", "mb", `s3://${other}`]), `make_bucket: ${other}\n`);
        const buckets = await aws.ok(["s3", "ls"]);
        assert(buckets.includes(` ${bucket}\n`) && buckets.includes(` ${other}\n`), buckets);
        await aws.ok(["s3", "cp", "-", `s3://${other}/k`], { stdin: text("x") });
        await aws.fails(["s3", "rb", `s3://${other}`], 1, "BucketNotEmpty");
        assertEquals(await aws.ok(["s3", "rm", `s3://${other}/k`]), `delete: s3://${other}/k\n`);
        assertEquals(await aws.ok(["s3", "rb", `s3://${other}`]), `remove_bucket: ${other}\n`);
        const after = await aws.ok(["s3", "ls"]);
        assert(after.includes(` ${bucket}\n`) && !after.includes(other), after);
      },
    );

    await t.step(
      "a 1,024-byte key goes up from stdin and down to stdout; a 1,025-byte one is KeyTooLongError (exit 1)",
      async () => {
        const key = "long/" + "é".repeat(400) + "k".repeat(1024 - 5 - 800);
        assertEquals(text(key).length, 1024);
        const bytes = randomBytes(5000);
        await aws.ok(["s3", "cp", "-", `${s3}/${key}`], { stdin: bytes });
        assertEquals(md5(await aws.bytes(`${s3}/${key}`)), md5(bytes));
        assertEquals(lsEntries(await aws.ok(["s3", "ls", `${s3}/long/`])), [
          `${key.slice(5)} 5000`,
        ]);
        await aws.fails(["s3", "cp", "-", `${s3}/${key}k`], 1, "KeyTooLongError", { stdin: bytes });
      },
    );

    await t.step(
      "ls shows a prefix's folders (PRE) and files; --recursive every key under it",
      async () => {
        await writeTree(aws.path("ls"), {
          "a.txt": text("a"),
          "sub/b.txt": text("bb"),
          "sub/deep/c": text("ccc"),
        });
        await aws.ok(["s3", "cp", "--recursive", "ls", `${s3}/ls/`, "--no-progress"]);
        const [top, sub, all, partial, none] = await Promise.all([
          aws.ok(["s3", "ls", `${s3}/ls/`]),
          aws.ok(["s3", "ls", `${s3}/ls/sub/`]),
          aws.ok(["s3", "ls", "--recursive", `${s3}/ls/`]),
          // A prefix that is no folder: the folders and keys that start with it.
          aws.ok(["s3", "ls", `${s3}/ls/su`]),
          // Nothing under a prefix: exit 1, as against S3.
          aws.run(["s3", "ls", `${s3}/nothing-here/`]),
        ]);
        assertEquals(lsEntries(top), ["PRE sub/", "a.txt 1"]);
        assertEquals(lsEntries(sub), ["PRE deep/", "b.txt 2"]);
        assertEquals(lsEntries(all), ["ls/a.txt 1", "ls/sub/b.txt 2", "ls/sub/deep/c 3"]);
        assertEquals(lsEntries(partial), ["PRE sub/"]);
        assertEquals([none.code, none.out], [1, ""]);
      },
    );

    await t.step("cp --recursive up and down: the same tree, byte for byte", async () => {
      const files = oddTree();
      await writeTree(aws.path("rec"), files);
      const up = await aws.ok(["s3", "cp", "--recursive", "rec", `${s3}/rec/`, "--no-progress"]);
      assertEquals(
        transfers(up),
        Object.keys(files).map((f) => `upload: rec/${f} to ${s3}/rec/${f}`).sort(),
      );
      await aws.ok(["s3", "cp", "--recursive", `${s3}/rec/`, "rec-down", "--no-progress"]);
      assertEquals(await treeMd5s(aws.path("rec-down")), md5s(files));
    });

    await t.step(
      "sync up twice copies nothing the second time; then only the file changed",
      async () => {
        const files = oddTree();
        await writeTree(aws.path("sync"), files);
        const sync = () => aws.ok(["s3", "sync", "sync", `${s3}/sync/`, "--no-progress"]);
        assertEquals(transfers(await sync()).length, Object.keys(files).length);
        assertEquals(await sync(), "");
        // Another size: sync sees it whatever the clocks (S3 dates to the second).
        files["a.txt"] = randomBytes(101);
        await writeTree(aws.path("sync"), { "a.txt": files["a.txt"] });
        assertEquals(await sync(), `upload: sync/a.txt to ${s3}/sync/a.txt\n`);
        assertEquals(await sync(), "");
        assertEquals(md5(await aws.bytes(`${s3}/sync/a.txt`)), md5(files["a.txt"]));
      },
    );

    await t.step(
      "sync down twice copies nothing the second time; then only the object changed; --delete removes",
      async () => {
        const files = oddTree();
        await writeTree(aws.path("sync-src"), files);
        await aws.ok(["s3", "sync", "sync-src", `${s3}/sync-down/`, "--no-progress"]);
        const sync = (...args: string[]) =>
          aws.ok(["s3", "sync", `${s3}/sync-down/`, "sync-dst", "--no-progress", ...args]);
        assertEquals(transfers(await sync()).length, Object.keys(files).length);
        assertEquals(await treeMd5s(aws.path("sync-dst")), md5s(files));
        assertEquals(await sync(), "");
        const changed = randomBytes(77);
        await aws.ok(["s3", "cp", "-", `${s3}/sync-down/sub/deep/g.bin`], { stdin: changed });
        await aws.ok(["s3", "rm", `${s3}/sync-down/with space.txt`]);
        assertEquals(transfers(await sync("--delete")), [
          "delete: sync-dst/with space.txt",
          `download: ${s3}/sync-down/sub/deep/g.bin to sync-dst/sub/deep/g.bin`,
        ]);
        files["sub/deep/g.bin"] = changed;
        delete files["with space.txt"];
        assertEquals(await treeMd5s(aws.path("sync-dst")), md5s(files));
        assertEquals(await sync(), "");
      },
    );

    await t.step(
      "a 20 MiB file goes up in the CLI's 8 MiB parts and comes back whole, to a file and to stdout",
      async () => {
        await writeTree(aws.path("big"), { "big.bin": big });
        await aws.ok(["s3", "cp", "big/big.bin", `${s3}/big/big.bin`, "--no-progress"]);
        const head = await aws.api("head-object", { bucket, key: "big/big.bin" });
        assertEquals([head.ContentLength, head.ETag], [BIG, `"${multipartEtag(partsOf(big))}"`]);
        await aws.ok(["s3", "cp", `${s3}/big/big.bin`, "big/down.bin", "--no-progress"]);
        assertEquals(md5(await Deno.readFile(aws.path("big/down.bin"))), md5(big));
        assertEquals(md5(await aws.bytes(`${s3}/big/big.bin`)), md5(big));
      },
    );

    await t.step(
      "a 20 MiB upload from stdin (cp - s3://...), with and without --expected-size",
      async () => {
        await Promise.all([
          aws.ok(["s3", "cp", "-", `${s3}/big/stdin.bin`], { stdin: big }),
          aws.ok(["s3", "cp", "-", `${s3}/big/sized.bin`, "--expected-size", String(BIG)], {
            stdin: big,
          }),
        ]);
        const [listed, ...got] = await Promise.all([
          aws.api("list-objects-v2", { bucket, prefix: "big/s" }),
          aws.bytes(`${s3}/big/sized.bin`),
          aws.bytes(`${s3}/big/stdin.bin`),
        ]);
        const etag = `"${multipartEtag(partsOf(big))}"`;
        assertEquals(listed.Contents.map((o: Answer) => [o.Key, o.Size, o.ETag]), [
          ["big/sized.bin", BIG, etag],
          ["big/stdin.bin", BIG, etag],
        ]);
        assertEquals(got.map(md5), [md5(big), md5(big)]);
      },
    );

    await t.step(
      "mv moves local to S3, S3 to S3 (a 20 MiB one part by part) and S3 to local",
      async () => {
        await writeTree(aws.path("mv"), { "m.txt": text("move me") });
        await aws.ok(["s3", "mv", "mv/m.txt", `${s3}/mv/m.txt`, "--no-progress"]);
        await assertGone(aws.path("mv/m.txt"));
        await Promise.all([
          aws.ok(["s3", "mv", `${s3}/mv/m.txt`, `${s3}/mv/ünï + 100%.txt`, "--no-progress"]),
          aws.ok(["s3", "mv", `${s3}/big/stdin.bin`, `${s3}/mv/big copy+.bin`, "--no-progress"]),
        ]);
        assertEquals(lsEntries(await aws.ok(["s3", "ls", `${s3}/mv/`])), [
          `big copy+.bin ${BIG}`,
          "ünï + 100%.txt 7",
        ]);
        assertEquals(md5(await aws.bytes(`${s3}/mv/big copy+.bin`)), md5(big));
        await aws.fails(apiArgs("head-object", { bucket, key: "big/stdin.bin" }), 255, "Not Found");
        await aws.ok(["s3", "mv", `${s3}/mv/ünï + 100%.txt`, "mv/back.txt", "--no-progress"]);
        assertEquals(await Deno.readTextFile(aws.path("mv/back.txt")), "move me");
        assertEquals(lsEntries(await aws.ok(["s3", "ls", `${s3}/mv/`])), [`big copy+.bin ${BIG}`]);
      },
    );

    await t.step("rm --recursive removes every key under a prefix and no other", async () => {
      const removed = transfers(await aws.ok(["s3", "rm", "--recursive", `${s3}/rec/`]));
      assertEquals(removed, Object.keys(oddTree()).map((f) => `delete: ${s3}/rec/${f}`).sort());
      assertEquals((await aws.run(["s3", "ls", "--recursive", `${s3}/rec/`])).code, 1);
      assertEquals(lsEntries(await aws.ok(["s3", "ls", `${s3}/ls/`])), ["PRE sub/", "a.txt 1"]);
    });

    await t.step(
      "presign: its URL reads the object with a plain GET (Version 2, and Version 4 with s3v4); a wrong signature is 403",
      async () => {
        for (const name of ["a+b=c.txt", "ünï cødé/100% sure%2F.txt"]) {
          const want = md5(await Deno.readFile(aws.path(`sync/${name}`)));
          for (const config of ["config", "config-s3v4"]) {
            const url = (await aws.ok(["s3", "presign", `${s3}/sync/${name}`], { config })).trim();
            assert(url.includes(config === "config" ? "&Signature=" : "&X-Amz-Signature="), url);
            const res = await fetch(url);
            assertEquals(res.status, 200, `${name} (${config}): ${url}`);
            assertEquals(md5(await res.bytes()), want, `${name} (${config})`);
            const wrong = await fetch(url.replace(/Signature=[^&]+/, "Signature=AAAA"));
            assertEquals(wrong.status, 403, url);
            await wrong.body?.cancel();
          }
        }
      },
    );

    const small = randomBytes(1000);
    await t.step(
      "put-object keeps --content-type, --metadata, --cache-control; head-object and get-object --range answer them",
      async () => {
        await writeTree(aws.path("api"), { "r.bin": small });
        await aws.api("put-object", {
          bucket,
          key: "api/r.bin",
          body: "api/r.bin",
          "content-type": "image/png",
          metadata: "a=1,b=two",
          "cache-control": "max-age=60",
        });
        const head = await aws.api("head-object", { bucket, key: "api/r.bin" });
        assertEquals(
          [head.ContentType, head.Metadata, head.CacheControl, head.ContentLength, head.ETag],
          ["image/png", { a: "1", b: "two" }, "max-age=60", 1000, `"${md5(small)}"`],
        );
        const [part] = await Promise.all([
          aws.api("get-object", {
            bucket,
            key: "api/r.bin",
            range: "bytes=10-19",
            outfile: "api/part",
          }),
          aws.api("get-object", {
            bucket,
            key: "api/r.bin",
            range: "bytes=-10",
            outfile: "api/tail",
          }),
          aws.fails(
            apiArgs("get-object", {
              bucket,
              key: "api/r.bin",
              range: "bytes=2000-",
              outfile: "api/none",
            }),
            255,
            "InvalidRange",
          ),
        ]);
        assertEquals([part.ContentRange, part.ContentLength, part.ContentType], [
          "bytes 10-19/1000",
          10,
          "image/png",
        ]);
        assertEquals(md5(await Deno.readFile(aws.path("api/part"))), md5(small.subarray(10, 20)));
        assertEquals(md5(await Deno.readFile(aws.path("api/tail"))), md5(small.subarray(990)));
        await assertGone(aws.path("api/none"));
      },
    );

    await t.step(
      "copy-object copies the metadata, or replaces it with --metadata-directive REPLACE",
      async () => {
        const source = `${bucket}/api/r.bin`;
        await Promise.all([
          aws.api("copy-object", { bucket, key: "api/same.bin", "copy-source": source }),
          aws.api("copy-object", {
            bucket,
            key: "api/new.bin",
            "copy-source": source,
            "metadata-directive": "REPLACE",
            "content-type": "text/x-new",
            metadata: "c=3",
          }),
        ]);
        const [same, replaced, bytes] = await Promise.all([
          aws.api("head-object", { bucket, key: "api/same.bin" }),
          aws.api("head-object", { bucket, key: "api/new.bin" }),
          aws.bytes(`${s3}/api/new.bin`),
        ]);
        assertEquals([same.ContentType, same.Metadata, same.CacheControl], ["image/png", {
          a: "1",
          b: "two",
        }, "max-age=60"]);
        assertEquals([replaced.ContentType, replaced.Metadata, replaced.CacheControl], [
          "text/x-new",
          { c: "3" },
          undefined,
        ]);
        assertEquals(md5(bytes), md5(small));
      },
    );

    await t.step(
      "list-objects-v2 pages: --page-size fetches every key; --max-items stops and --starting-token resumes",
      async () => {
        const keys = Array.from({ length: 7 }, (_, i) => `page/k ${i}+%`);
        await writeTree(aws.path("page"), Object.fromEntries(keys.map((k) => [k, text(k)])));
        await aws.ok(["s3", "cp", "--recursive", "page/page", `${s3}/page/`, "--no-progress"]);
        const listing = { bucket, prefix: "page/", "page-size": 2 };
        const [all, v1, folders] = await Promise.all([
          aws.api("list-objects-v2", listing),
          aws.api("list-objects", { ...listing, "page-size": 3 }),
          aws.api("list-objects-v2", { bucket, prefix: "sync/", delimiter: "/" }),
        ]);
        assertEquals(keysOf(all), keys);
        assertEquals(keysOf(v1), keys);
        assertEquals(folders.CommonPrefixes, [{ Prefix: "sync/sub/" }, {
          Prefix: "sync/ünï cødé/",
        }]);
        const seen: string[] = [];
        let token: string | undefined;
        for (let page = 0; page < 3; page++) {
          const from: ApiFlags = token ? { "starting-token": token } : {};
          const got = await aws.api("list-objects-v2", { ...listing, "max-items": 3, ...from });
          seen.push(...keysOf(got));
          token = got.NextToken;
          assertEquals(token === undefined, page === 2, `page ${page}`);
        }
        assertEquals(seen, keys);
      },
    );

    await t.step(
      "delete-objects deletes the keys it names (a missing one too, as S3) and no other",
      async () => {
        const named = [{ Key: "page/k 0+%" }, { Key: "page/k 1+%" }, { Key: "page/none" }];
        const answer = await aws.api("delete-objects", {
          bucket,
          delete: JSON.stringify({ Objects: named }),
        });
        assertEquals(answer.Deleted, named);
        const left = await aws.api("list-objects-v2", { bucket, prefix: "page/" });
        assertEquals(keysOf(left), [
          "page/k 2+%",
          "page/k 3+%",
          "page/k 4+%",
          "page/k 5+%",
          "page/k 6+%",
        ]);
      },
    );

    await t.step(
      "s3api multipart: create, list-multipart-uploads, upload-part, list-parts, complete",
      async () => {
        const key = "mp/ü x+y.bin";
        const parts = partsOf(big);
        const created = await aws.api("create-multipart-upload", {
          bucket,
          key,
          "content-type": "application/x-test",
          metadata: "k=v",
        });
        const upload: string = created.UploadId;
        const listed = await aws.api("list-multipart-uploads", { bucket, prefix: "mp/" });
        assertEquals(listed.Uploads.map((u: Answer) => [u.Key, u.UploadId]), [[key, upload]]);
        await Promise.all(parts.map(async (part, i) => {
          await Deno.writeFile(aws.path(`part${i}`), part);
          const flags = {
            bucket,
            key,
            "upload-id": upload,
            "part-number": i + 1,
            body: `part${i}`,
          };
          assertEquals((await aws.api("upload-part", flags)).ETag, `"${md5(part)}"`);
        }));
        const sent = (await aws.api("list-parts", { bucket, key, "upload-id": upload })).Parts;
        assertEquals(
          sent.map((p: Answer) => [p.PartNumber, p.ETag, p.Size]),
          parts.map((p, i) => [i + 1, `"${md5(p)}"`, p.length]),
        );
        const complete = {
          Parts: sent.map(({ PartNumber, ETag }: Answer) => ({ PartNumber, ETag })),
        };
        const done = await aws.api("complete-multipart-upload", {
          bucket,
          key,
          "upload-id": upload,
          "multipart-upload": JSON.stringify(complete),
        });
        assertEquals(done.ETag, `"${multipartEtag(parts)}"`);
        const head = await aws.api("head-object", { bucket, key });
        assertEquals([head.ContentType, head.Metadata, head.ContentLength], ["application/x-test", {
          k: "v",
        }, BIG]);
        assertEquals(md5(await aws.bytes(`${s3}/${key}`)), md5(big));
      },
    );

    await t.step(
      "s3api abort-multipart-upload ends an upload: no longer listed, its parts gone, no object",
      async () => {
        const key = "mp/abort";
        const upload: string = (await aws.api("create-multipart-upload", { bucket, key })).UploadId;
        await aws.api("upload-part", {
          bucket,
          key,
          "upload-id": upload,
          "part-number": 1,
          body: "part2",
        });
        await aws.api("abort-multipart-upload", { bucket, key, "upload-id": upload });
        const [listed] = await Promise.all([
          aws.api("list-multipart-uploads", { bucket, prefix: "mp/" }),
          aws.fails(
            apiArgs("list-parts", { bucket, key, "upload-id": upload }),
            255,
            "NoSuchUpload",
          ),
          aws.fails(apiArgs("head-object", { bucket, key }), 255, "Not Found"),
        ]);
        assertEquals(listed.Uploads, undefined);
      },
    );

    await t.step(
      "s3api get-object-attributes of a file cp uploaded in parts: its parts, paged by --max-parts",
      async () => {
        const key = "attributes/big.bin";
        await Deno.writeFile(aws.path("attributes.bin"), big);
        await aws.ok(["s3", "cp", "attributes.bin", `${s3}/${key}`, "--no-progress"]);
        const head = await aws.api("head-object", { bucket, key });
        const parts = partsOf(big);
        const sizes = parts.map((p, i) => ({ PartNumber: i + 1, Size: p.length }));
        const attributes = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"];
        // One argument per attribute: the CLI sends one joined with commas as a quoted list item.
        const got = JSON.parse(
          await aws.ok([
            ...apiArgs("get-object-attributes", { bucket, key }),
            "--object-attributes",
            ...attributes,
          ]),
        );
        assertEquals(got, {
          LastModified: head.LastModified,
          ETag: multipartEtag(parts),
          Checksum: { ChecksumCRC32: compositeCrc32(parts), ChecksumType: "COMPOSITE" },
          ObjectParts: {
            TotalPartsCount: 3,
            PartNumberMarker: 0,
            NextPartNumberMarker: 3,
            MaxParts: 1000,
            IsTruncated: false,
            Parts: sizes,
          },
          StorageClass: "STANDARD",
          ObjectSize: BIG,
        });
        const paged = await aws.api("get-object-attributes", {
          bucket,
          key,
          "object-attributes": "ObjectParts",
          "max-parts": 1,
          "part-number-marker": 1,
        });
        assertEquals(paged.ObjectParts, {
          TotalPartsCount: 3,
          PartNumberMarker: 1,
          NextPartNumberMarker: 2,
          MaxParts: 1,
          IsTruncated: true,
          Parts: sizes.slice(1, 2),
        });
        await aws.fails(
          apiArgs("get-object-attributes", { bucket, key: "gone", "object-attributes": "ETag" }),
          255,
          "An error occurred (NoSuchKey) when calling the GetObjectAttributes operation: " +
            "The specified key does not exist.",
        );
        await aws.fails(
          apiArgs("get-object-attributes", { bucket, key, "object-attributes": "Size" }),
          255,
          "An error occurred (InvalidArgument) when calling the GetObjectAttributes operation: " +
            "Invalid attribute name specified.",
        );
      },
    );

    await t.step(
      "--checksum-algorithm CRC32 and SHA256: checked, kept, answered to --checksum-mode ENABLED",
      async () => {
        const want = { CRC32: crc32(small), SHA256: base64(sha256(small)) };
        await Promise.all(
          Object.entries(want).map(async ([alg, sum]) => {
            const key = `ck/${alg}`;
            const put = await aws.api("put-object", {
              bucket,
              key,
              body: "api/r.bin",
              "checksum-algorithm": alg,
            });
            assertEquals(put[`Checksum${alg}`], sum, alg);
            const head = await aws.api("head-object", { bucket, key, "checksum-mode": "ENABLED" });
            assertEquals([head[`Checksum${alg}`], head.ChecksumType], [sum, "FULL_OBJECT"], alg);
            await aws.api("get-object", {
              bucket,
              key,
              "checksum-mode": "ENABLED",
              outfile: `ck-${alg}`,
            });
            assertEquals(md5(await Deno.readFile(aws.path(`ck-${alg}`))), md5(small), alg);
          }),
        );
      },
    );

    await t.step(
      "cp --checksum-algorithm SHA256 of a 20 MiB file: S3's COMPOSITE checksum of its parts'",
      async () => {
        await aws.ok([
          "s3",
          "cp",
          "big/big.bin",
          `${s3}/ck/big`,
          "--checksum-algorithm",
          "SHA256",
          "--no-progress",
        ]);
        const composite =
          base64(sha256(new Uint8Array(partsOf(big).flatMap((p) => [...sha256(p)])))) + "-3";
        const head = await aws.api("head-object", {
          bucket,
          key: "ck/big",
          "checksum-mode": "ENABLED",
        });
        assertEquals([head.ChecksumSHA256, head.ChecksumType], [composite, "COMPOSITE"]);
        assertEquals(md5(await aws.bytes(`${s3}/ck/big`)), md5(big));
      },
    );

    await t.step(
      "s3api's tagging: put-object --tagging, put/get/delete-object-tagging, copy-object's directive",
      async () => {
        await Deno.writeFile(aws.path("tagged.txt"), text("tagged"));
        await aws.api("put-object", {
          bucket,
          key: "tags/a",
          body: "tagged.txt",
          tagging: "team=data&env=dev",
        });
        const tagSet = (...pairs: [string, string][]) =>
          pairs.map(([Key, Value]) => ({ Key, Value }));
        assertEquals(
          (await aws.api("get-object-tagging", { bucket, key: "tags/a" })).TagSet,
          tagSet(["env", "dev"], ["team", "data"]),
        );
        assertEquals((await aws.api("head-object", { bucket, key: "tags/a" })).TagCount, 2);
        await aws.api("put-object-tagging", {
          bucket,
          key: "tags/a",
          tagging: "TagSet=[{Key=tier,Value=hot}]",
        });
        await aws.api("copy-object", {
          bucket,
          key: "tags/b",
          "copy-source": `${bucket}/tags/a`,
        });
        await aws.api("copy-object", {
          bucket,
          key: "tags/c",
          "copy-source": `${bucket}/tags/a`,
          "tagging-directive": "REPLACE",
          tagging: "copy=new",
        });
        const got = await Promise.all(
          ["a", "b", "c"].map((k) => aws.api("get-object-tagging", { bucket, key: `tags/${k}` })),
        );
        assertEquals(got.map((a) => a.TagSet), [
          tagSet(["tier", "hot"]),
          tagSet(["tier", "hot"]),
          tagSet(["copy", "new"]),
        ]);
        await aws.api("delete-object-tagging", { bucket, key: "tags/a" });
        assertEquals((await aws.api("get-object-tagging", { bucket, key: "tags/a" })).TagSet, []);
        await aws.fails(
          apiArgs("put-object-tagging", {
            bucket,
            key: "tags/a",
            tagging: "TagSet=[{Key=aws:x,Value=1}]",
          }),
          255,
          "InvalidTag",
        );
        assertEquals(new TextDecoder().decode(await aws.bytes(`${s3}/tags/c`)), "tagged");
      },
    );

    await t.step(
      "a missing key, a missing bucket, a wrong secret: the CLI's exit codes, S3's error names",
      async () => {
        await Promise.all([
          aws.fails(["s3", "cp", `${s3}/no/such/key`, "nokey"], 1, "404"),
          aws.fails(["s3", "ls", `s3://${bucketName()}`], 255, "NoSuchBucket"),
          aws.fails(
            apiArgs("get-object", { bucket, key: "no/such", outfile: "nokey" }),
            255,
            "NoSuchKey",
          ),
          aws.fails(["s3", "ls", s3], 255, "SignatureDoesNotMatch", {
            keys: { id: ACCESS, secret: "wrong" },
          }),
        ]);
        await assertGone(aws.path("nokey"));
      },
    );

    await t.step(
      "--no-sign-request is refused as S3 refuses it (AccessDenied, exit 1), nothing stored",
      async () => {
        await writeTree(aws.path("anon"), { "a.txt": text("anonymous") });
        await Promise.all([
          aws.fails(["s3", "cp", "anon/a.txt", `${s3}/anon/a.txt`], 1, "AccessDenied", {
            keys: null,
          }),
          aws.fails(["s3", "cp", `${s3}/sync/a+b=c.txt`, "anon/b.txt"], 1, "(403)", { keys: null }),
          aws.fails(["s3", "ls"], 255, "AccessDenied", { keys: null }),
        ]);
        assertEquals((await aws.run(["s3", "ls", `${s3}/anon/`])).code, 1);
        await assertGone(aws.path("anon/b.txt"));
      },
    );
  } finally {
    await aws.remove();
    await c.stop();
  }
});

Deno.test("AWS CLI against a master with -s3 and no keys: any keys, or --no-sign-request, get S3's answers", async (t) => {
  const c = await Cluster.start({ flags: ["-s3"] });
  const aws = await AwsCli.make(c.url, { id: "anyone", secret: "anything" });
  const bucket = bucketName();
  const s3 = `s3://${bucket}`;
  const anon = { keys: null };
  try {
    await t.step("signed with any keys: mb, cp up and down, ls", async () => {
      const bytes = randomBytes(3000);
      await aws.ok(["s3", "mb", s3]);
      await aws.ok(["s3", "cp", "-", `${s3}/signed x+y.bin`], { stdin: bytes });
      assertEquals(md5(await aws.bytes(`${s3}/signed x+y.bin`)), md5(bytes));
      assertEquals(lsEntries(await aws.ok(["s3", "ls", s3])), ["signed x+y.bin 3000"]);
    });

    await t.step(
      "--no-sign-request: put-object keeps its content type and metadata, head-object and cp read it back",
      async () => {
        const bytes = randomBytes(1000);
        await writeTree(aws.path("u"), { "r.bin": bytes, "empty": new Uint8Array(0) });
        const put = await aws.api("put-object", {
          bucket,
          key: "u/r.bin",
          body: "u/r.bin",
          "content-type": "image/png",
          metadata: "a=1",
        }, anon);
        assertEquals(put.ETag, `"${md5(bytes)}"`);
        const head = await aws.api("head-object", { bucket, key: "u/r.bin" }, anon);
        assertEquals([head.ContentType, head.Metadata, head.ContentLength], ["image/png", {
          a: "1",
        }, 1000]);
        assertEquals(md5(await aws.bytes(`${s3}/u/r.bin`, anon)), md5(bytes));
        await aws.fails(
          apiArgs("get-object", { bucket, key: "u/none", outfile: "none" }),
          255,
          "NoSuchKey",
          anon,
        );
      },
    );

    await t.step(
      "--no-sign-request: an empty file, an overwrite, ls of the buckets, mb, rb, rm",
      async () => {
        const other = bucketName();
        await aws.ok(["s3", "cp", "u/empty", `${s3}/u/empty`], anon);
        assertEquals((await aws.bytes(`${s3}/u/empty`, anon)).length, 0);
        await aws.ok(["s3", "cp", "-", `${s3}/u/r.bin`], { stdin: text("over"), ...anon });
        assertEquals(new TextDecoder().decode(await aws.bytes(`${s3}/u/r.bin`, anon)), "over");
        assertEquals(await aws.ok(["s3", "mb", `s3://${other}`], anon), `make_bucket: ${other}\n`);
        const buckets = await aws.ok(["s3", "ls"], anon);
        assert(buckets.includes(` ${bucket}\n`) && buckets.includes(` ${other}\n`), buckets);
        assertEquals(
          await aws.ok(["s3", "rb", `s3://${other}`], anon),
          `remove_bucket: ${other}\n`,
        );
        await aws.ok(["s3", "rm", "--recursive", `${s3}/u/`], anon);
        assertEquals(lsEntries(await aws.ok(["s3", "ls", s3], anon)), ["signed x+y.bin 3000"]);
      },
    );
  } finally {
    await aws.remove();
    await c.stop();
  }
});

async function assertGone(path: string) {
  try {
    await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  throw new Error(`${path} exists`);
}

/** S3's COMPOSITE CRC32 of `parts`: the CRC32 of their CRC32s, as GetObjectAttributes gives it. */
function compositeCrc32(parts: Uint8Array[]): string {
  const crcs = parts.flatMap((p) => [...atob(crc32(p))].map((c) => c.charCodeAt(0)));
  return crc32(new Uint8Array(crcs));
}

/** S3's ETag of a multipart upload of `parts`: the MD5 of their MD5s, "-<parts>". */
function multipartEtag(parts: Uint8Array[]): string {
  const md5s = parts.flatMap((p) => [...createHash("md5").update(p).digest()]);
  return `${md5(new Uint8Array(md5s))}-${parts.length}`;
}
