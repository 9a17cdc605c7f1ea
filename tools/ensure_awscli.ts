// `deno task test` runs this first: makes sure the AWS CLI (`aws`) runs, for
// the S3 tests that drive it as a user would (tests/s3_awscli_test.ts). It
// runs `python3 -m pip install awscli` when missing (as ensure_boto3.ts
// installs boto3); otherwise it says what to run (the AWS CLI test then
// fails, naming what is missing).
import { pipInstall, run } from "./ensure_boto3.ts";

export function hasAwsCli(): Promise<boolean> {
  return run("aws", ["--version"]);
}

if (import.meta.main) {
  const ok = await pipInstall("awscli", hasAwsCli);
  console.log(
    `aws: ${ok ? "ok" : "missing (python3 -m pip install awscli; then put pip's bin on PATH)"}`,
  );
}
