// `deno task test` runs this first: makes sure `python3` can import boto3,
// for the second real S3 client of the tests (tests/s3_boto3_test.ts). It
// runs `python3 -m pip install boto3` when missing (apt's python3-pip and
// python3 first, as root, when there is no pip); otherwise it says what to
// run (the boto3 test then fails, naming what is missing).

/** Whether `cmd args` runs and exits 0 (its output on stderr only). */
export async function run(cmd: string, args: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      stdout: "null",
      stderr: "inherit",
      env: { DEBIAN_FRONTEND: "noninteractive", PIP_DISABLE_PIP_VERSION_CHECK: "1" },
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Installs the pip package `name` unless `installed()` already holds (pip
 * itself first, from apt, as root, when there is none); whether it holds after.
 */
export async function pipInstall(name: string, installed: () => Promise<boolean>) {
  if (await installed()) return true;
  if (!await run("python3", ["-m", "pip", "--version"]) && Deno.uid() === 0) {
    await run("sh", ["-c", "apt-get update -qq && apt-get install -y -qq python3 python3-pip"]);
  }
  console.error(`${name} is not installed; running: python3 -m pip install ${name}`);
  const ok = await run("python3", ["-m", "pip", "install", "--quiet", name]) ||
    await run("python3", ["-m", "pip", "install", "--quiet", "--break-system-packages", name]);
  return ok && await installed();
}

export function hasBoto3(): Promise<boolean> {
  return run("python3", ["-c", "import boto3"]);
}

if (import.meta.main) {
  const ok = await pipInstall("boto3", hasBoto3);
  console.log(`boto3: ${ok ? "ok" : "missing (python3 -m pip install boto3)"}`);
}
