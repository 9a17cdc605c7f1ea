// `deno task test` runs this first: installs nginx once if it is missing,
// before the test files start volumes in parallel.
import { ensureNginx } from "./volume.ts";

try {
  console.log(`nginx: ${await ensureNginx()}`);
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  Deno.exit(1);
}
