// A real headless Chromium for the status page test, driven by Playwright's
// core (no browser download: it drives the system's Chromium). A missing or
// broken Chromium is an error: the test fails, it is never skipped.
import { type Browser, chromium } from "playwright-core";
import { findChromium } from "../tools/ensure_chromium.ts";

export type { Browser, Page } from "playwright-core";

export async function launchChromium(): Promise<Browser> {
  const executablePath = await findChromium();
  if (!executablePath) {
    throw new Error(
      "Chromium is not installed: run `apt-get install -y chromium` (or set CHROMIUM_BIN)",
    );
  }
  // As root, Chromium refuses to start with its sandbox on.
  const args = Deno.uid() === 0 ? ["--no-sandbox"] : [];
  return await chromium.launch({ executablePath, args, headless: true });
}
