// What the rebuild fault tests share: volumes whose folder listings are
// slow (a rebuild that takes seconds), a master on them, and the answer of
// a master while a rebuild runs.
import { Cluster, type SpawnedMaster, status } from "../cluster.ts";
import { VolumeProxy } from "./replace_faults.ts";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A master's answer (503) to a request while a rebuild empties and refills the index. */
export const REBUILD_RUNNING = "A rebuild of the index is running: retry once it is done\n";

/** What a rebuild taken for stopped (its fence removed) says as it stops. */
export const REBUILD_STOPPED =
  "rebuild: stopped: it was paused past its heartbeat, and masters took it for stopped " +
  "and may have written keys since; the index is left marked incomplete: stop the masters " +
  "and run rebuild again";

/** What a rebuild taken for stopped before it marked the index says as it stops. */
export const REBUILD_STOPPED_UNCHANGED =
  "rebuild: stopped: it was paused past its heartbeat, and masters took it for stopped " +
  "and may have written keys since; the index was not changed: stop the masters and run " +
  "rebuild again";

/**
 * The status of GET `url` once the master no longer answers 503 (it has yet
 * to see the rebuild gone: its next heartbeat does, up to a second after),
 * up to 20 s.
 */
export async function servedAgain(url: string): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const s = await status(url);
    if (s !== 503) return s;
    await sleep(100);
  }
  throw new Error(`${url} still answers 503 after 20 s`);
}

/** Answers each folder listing 1 s late: a rebuild that takes seconds. */
export class SlowListing extends VolumeProxy {
  protected override async handle(req: Request): Promise<Response> {
    if (req.method === "GET" && new URL(req.url).pathname.endsWith("/")) await sleep(1000);
    return await this.forward(req);
  }
}

export interface SlowCluster {
  c: Cluster;
  /** The volumes behind their SlowListing proxies, for -volumes. */
  volumes: string;
  /** A master on them (the cluster's own is stopped). */
  m: SpawnedMaster;
  /** The file its commits' keys are logged to, when asked for. */
  commitLog: string | undefined;
  /** The file whose making orders its next S3 bucket read after a heartbeat, when asked for. */
  holdBucketRead: string | undefined;
  /** Resumes the master if paused, and stops it, the proxies and the cluster. */
  stop(): Promise<void>;
}

/**
 * A cluster whose volumes list slowly, and a master on them; `flags`: the
 * master's own (-s3); `commitLog`: the master logs its commits' keys (see
 * Cluster.spawnMaster's `commitLog`); `holdBucketRead`: see its `holdBucketRead`.
 */
export async function slowCluster(
  opts: { flags?: string[]; commitLog?: boolean; holdBucketRead?: boolean } = {},
): Promise<SlowCluster> {
  const c = await Cluster.start({ flags: opts.flags });
  await c.stopMaster();
  const proxies = c.volumes.map((v) => new SlowListing(v));
  const volumes = proxies.map((p) => p.volume).join(",");
  const commitLog = opts.commitLog ? `${c.dir}/commits` : undefined;
  const holdBucketRead = opts.holdBucketRead ? `${c.dir}/hold-bucket-read` : undefined;
  const m = await c.spawnMaster(["-volumes", volumes], {}, { commitLog, holdBucketRead });
  return {
    c,
    volumes,
    m,
    commitLog,
    holdBucketRead,
    async stop() {
      m.proc.kill("SIGCONT");
      await m.stop();
      await Promise.all(proxies.map((p) => p.stop()));
      await c.stop();
    },
  };
}
