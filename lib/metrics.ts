// What the master counts, for GET /?metrics (Prometheus text exposition).
// Counters only grow; label values are bounded (methods outside the API
// count as "other", volumes are the configured ones) so hostile requests
// cannot grow the registry.
import { METHODS } from "./history.ts";

const KNOWN_METHODS = new Set<string>(METHODS.filter((m) => m !== "other"));

/** Request latency buckets, seconds. */
const LATENCY = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

class Histogram {
  /** Per bucket, not cumulative: lines() adds them up. */
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: number[]) {
    this.counts = bounds.map(() => 0);
  }
  /** Counts into the first bucket that holds v (cheap on the hot path). */
  observe(v: number) {
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]) i++;
    if (i < this.bounds.length) this.counts[i]++;
    this.sum += v;
    this.count++;
  }
  lines(name: string, labels: string): string[] {
    const sep = labels ? "," : "";
    const tail = labels ? `{${labels}}` : "";
    let below = 0;
    const out = this.bounds.map((b, i) => {
      below += this.counts[i];
      return `${name}_bucket{${labels}${sep}le="${b}"} ${below}`;
    });
    out.push(`${name}_bucket{${labels}${sep}le="+Inf"} ${this.count}`);
    out.push(`${name}_sum${tail} ${this.sum}`);
    out.push(`${name}_count${tail} ${this.count}`);
    return out;
  }
}

/** Every counter of one process. */
export class Metrics {
  /** By method, then status. */
  readonly requests = new Map<string, Map<number, number>>();
  readonly latency = new Map<string, Histogram>();
  bytesIn = 0;
  bytesOut = 0;
  /** By "volume call outcome" (outcome: ok, error, timeout). */
  readonly volumeCalls = new Map<string, number>();
  /** Replicas a read passed over for their file's size, by volume (host:port). */
  readonly cutShort = new Map<string, number>();

  request(method: string, status: number, seconds: number, bytesIn: number, bytesOut: number) {
    const m = KNOWN_METHODS.has(method) ? method : "other";
    let byStatus = this.requests.get(m);
    if (!byStatus) this.requests.set(m, byStatus = new Map());
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    let h = this.latency.get(m);
    if (!h) this.latency.set(m, h = new Histogram(LATENCY));
    h.observe(seconds);
    this.bytesIn += bytesIn;
    this.bytesOut += bytesOut;
  }

  volumeCall(volume: string, call: string, outcome: "ok" | "error" | "timeout") {
    const k = `${volume} ${call} ${outcome}`;
    this.volumeCalls.set(k, (this.volumeCalls.get(k) ?? 0) + 1);
  }

  replicaCutShort(volume: string) {
    this.cutShort.set(volume, (this.cutShort.get(volume) ?? 0) + 1);
  }
}

/** The process's metrics: volume calls are counted deep in lib/volumes.ts. */
export const metrics = new Metrics();

export interface IndexFigures {
  commits: number;
  /** Commits the index refused as a whole (locked past retrying, a disk error). */
  commitErrors: number;
  writes: number;
  batches: Histogram;
  /** Seconds per commit. */
  durations: Histogram;
  /** Keys by state, as last counted; null (not shown) until a scan has finished. */
  keys: { live: number; unlinked: number; writing: number } | null;
  /** 1 while this master is the index's sole writer (answering from memory where it can). */
  sole: number;
  /** 1 while the index is marked incomplete (a rebuild that skipped a volume or could not read every folder). */
  incomplete: number;
  /** 1 while the index has not answered this page's read of it (its write lock held), else 0. */
  unanswered: number;
  /** Lookups of keys' records by what answered (lib/index_db.ts Index.lookups). */
  lookups: { cache: number; filter: number; index: number };
  /** The sole master's record cache: records, and the estimate of their memory. */
  cache: { records: number; bytes: number };
}

export const BATCH_BOUNDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

export function batchHistogram(): Histogram {
  return new Histogram(BATCH_BOUNDS);
}

/** Time an index commit takes (its fsync, and its retries of a busy SQLite lock), seconds. */
export function commitHistogram(): Histogram {
  return new Histogram(LATENCY);
}

/** A configured volume's state for the metrics: null while not yet probed or called. */
export interface VolumeUp {
  volume: string;
  up: boolean | null;
  /** Its disk's bytes as the last probe read them; null when it does not say. */
  space: { size: number; free: number } | null;
}

export type { Histogram };

/** Renders the Prometheus text exposition (format 0.0.4). */
export function render(m: Metrics, index: IndexFigures, volumes: VolumeUp[]): string {
  const out: string[] = [];
  const family = (name: string, type: string, help: string) =>
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  renderRequests(m, out, family);
  renderVolumes(m, volumes, out, family);
  renderIndex(index, out, family);
  return out.join("\n") + "\n";
}

/** Adds a family's HELP and TYPE lines. */
type Family = (name: string, type: string, help: string) => void;

function renderRequests(m: Metrics, out: string[], family: Family) {
  family("mkv_requests_total", "counter", "Requests answered, by method and status.");
  for (const [method, byStatus] of [...m.requests].sort()) {
    for (const [status, n] of [...byStatus].sort((a, b) => a[0] - b[0])) {
      out.push(`mkv_requests_total{method="${method}",status="${status}"} ${n}`);
    }
  }
  family("mkv_request_duration_seconds", "histogram", "Time to answer a request, by method.");
  for (const [method, h] of [...m.latency].sort()) {
    out.push(...h.lines("mkv_request_duration_seconds", `method="${method}"`));
  }
  family(
    "mkv_request_bytes_total",
    "counter",
    "Value bytes received and stored (PUT, REPLACE, PutObject, UploadPart).",
  );
  out.push(`mkv_request_bytes_total ${m.bytesIn}`);
  family(
    "mkv_response_bytes_total",
    "counter",
    "Body bytes sent by the master (lists, errors, S3 answers and objects).",
  );
  out.push(`mkv_response_bytes_total ${m.bytesOut}`);
}

function renderVolumes(m: Metrics, volumes: VolumeUp[], out: string[], family: Family) {
  family("mkv_volume_calls_total", "counter", "Calls to volumes, by volume, call and outcome.");
  for (const [k, n] of [...m.volumeCalls].sort()) {
    const [volume, call, outcome] = k.split(" ");
    out.push(`mkv_volume_calls_total{volume="${volume}",call="${call}",outcome="${outcome}"} ${n}`);
  }
  family(
    "mkv_volume_up",
    "gauge",
    "1 while the volume answers, 0 from a call or probe it did not answer (absent until probed).",
  );
  for (const v of volumes) {
    if (v.up !== null) out.push(`mkv_volume_up{volume="${v.volume}"} ${v.up ? 1 : 0}`);
  }
  const spaces = volumes.flatMap((v) => v.space ? [{ volume: v.volume, ...v.space }] : []);
  family(
    "mkv_volume_size_bytes",
    "gauge",
    "Size of the volume's disk, as its last probe read it (absent for a volume that does not say).",
  );
  for (const v of spaces) out.push(`mkv_volume_size_bytes{volume="${v.volume}"} ${v.size}`);
  family(
    "mkv_volume_free_bytes",
    "gauge",
    "Bytes the volume's nginx may still write on its disk, as its last probe read them " +
      "(at 0 writes onto it answer 507).",
  );
  for (const v of spaces) out.push(`mkv_volume_free_bytes{volume="${v.volume}"} ${v.free}`);
  family(
    "mkv_replicas_cut_short_total",
    "counter",
    "Replicas a read passed over, their file of another size than the value's (cut short), by volume.",
  );
  for (const [volume, n] of [...m.cutShort].sort()) {
    out.push(`mkv_replicas_cut_short_total{volume="${volume}"} ${n}`);
  }
}

function renderIndex(index: IndexFigures, out: string[], family: Family) {
  family("mkv_index_commits_total", "counter", "Deno KV commits (each fsynced).");
  out.push(`mkv_index_commits_total ${index.commits}`);
  family(
    "mkv_index_commit_errors_total",
    "counter",
    "Index commits that failed (locked by another process past 10 s of retries, a disk error).",
  );
  out.push(`mkv_index_commit_errors_total ${index.commitErrors}`);
  family("mkv_index_writes_total", "counter", "Index writes, grouped into those commits.");
  out.push(`mkv_index_writes_total ${index.writes}`);
  family("mkv_index_batch_size", "histogram", "Writes per index commit.");
  out.push(...index.batches.lines("mkv_index_batch_size", ""));
  family(
    "mkv_index_commit_duration_seconds",
    "histogram",
    "Time an index commit takes (its fsync, and retries of a busy SQLite lock).",
  );
  out.push(...index.durations.lines("mkv_index_commit_duration_seconds", ""));
  family(
    "mkv_index_lookups_total",
    "counter",
    "Lookups of a key's record, by what answered: the sole master's record cache (cache) or " +
      "key filter (filter: absent), or a read of the index (index).",
  );
  for (const answered of ["cache", "filter", "index"] as const) {
    out.push(`mkv_index_lookups_total{answered="${answered}"} ${index.lookups[answered]}`);
  }
  family("mkv_index_cache_records", "gauge", "Records the sole master's record cache holds.");
  out.push(`mkv_index_cache_records ${index.cache.records}`);
  family(
    "mkv_index_cache_bytes",
    "gauge",
    "The estimate of the memory those records take (bounded at 64 MiB).",
  );
  out.push(`mkv_index_cache_bytes ${index.cache.bytes}`);
  family("mkv_keys", "gauge", "Keys in the index by state (counted at most every 10 s).");
  if (index.keys) {
    out.push(`mkv_keys{state="live"} ${index.keys.live}`);
    out.push(`mkv_keys{state="unlinked"} ${index.keys.unlinked}`);
    out.push(`mkv_keys{state="writing"} ${index.keys.writing}`);
  }
  family(
    "mkv_index_sole",
    "gauge",
    "1 while this master is the index's sole writer and answers from memory, else 0.",
  );
  out.push(`mkv_index_sole ${index.sole}`);
  family(
    "mkv_index_incomplete",
    "gauge",
    "1 while the index is marked incomplete (a rebuild skipped a volume or could not read every folder): run rebuild.",
  );
  out.push(`mkv_index_incomplete ${index.incomplete}`);
  family(
    "mkv_index_reads_unanswered",
    "gauge",
    "1 while the index has not answered this page's read of it within 1 s (another process " +
      "holds its write lock): the other index figures are the last read; else 0.",
  );
  out.push(`mkv_index_reads_unanswered ${index.unanswered}`);
}
