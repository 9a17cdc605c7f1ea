// `deno task test` runs this first: installs Chromium once if it is missing,
// for the status page's browser test (tests/status_test.ts). As root with
// apt-get it runs `apt-get install -y chromium`; otherwise it says what to
// run (the browser test then fails, naming what is missing).
import { stat } from "node:fs/promises";
import { join } from "node:path";

/** Binaries tried, in order, in each folder of PATH. */
const NAMES = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"];

/** The Chromium binary: $CHROMIUM_BIN, else the first of NAMES on PATH; null when none. */
export async function findChromium(): Promise<string | null> {
  const given = Deno.env.get("CHROMIUM_BIN");
  if (given) return given;
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "");
  for (const name of NAMES) {
    for (const dir of dirs) {
      const p = join(dir, name);
      if ((await stat(p).catch(() => null))?.isFile) return p;
    }
  }
  return null;
}

const HOW = "apt-get update && apt-get install -y chromium";

async function installChromium(): Promise<string | null> {
  if (Deno.uid() !== 0 || !await stat("/usr/bin/apt-get").catch(() => null)) {
    console.error(`Chromium is not installed (the status page test needs it): sudo sh -c '${HOW}'`);
    return null;
  }
  console.error(`Chromium is not installed; running: ${HOW}`);
  const out = await new Deno.Command("sh", {
    args: ["-c", HOW],
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return out.success ? await findChromium() : null;
}

if (import.meta.main) {
  const bin = await findChromium() ?? await installChromium();
  console.log(`chromium: ${bin ?? "missing"}`);
}
