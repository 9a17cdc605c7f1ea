// `deno task test` runs this first: installs nginx once if it is missing,
// before the test files start volumes in parallel.
import { ensureNginx } from "./volume.ts";

console.log(`nginx: ${await ensureNginx()}`);
