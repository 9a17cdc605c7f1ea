// GET /?metrics: Prometheus text that counts a known sequence exactly.
import { Cluster, masterOnSkippedIndex, randomKey, status } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";

/**
 * Parses the text exposition strictly: each family's HELP and TYPE once,
 * then its samples together, no series twice, counters named _total, each
 * histogram's buckets cumulative up to le="+Inf" (its _count). Returns
 * sample name{labels} -> value.
 */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const helped = new Set<string>();
  const typed = new Map<string, string>();
  let family = "";
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/
      .exec(line);
    if (type) {
      assert(!typed.has(type[1]), `TYPE twice: ${line}`);
      if (type[2] === "counter") assert(type[1].endsWith("_total"), `a counter: ${line}`);
      typed.set(type[1], type[2]);
      family = type[1];
      continue;
    }
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/.exec(line);
    if (help) {
      assert(!helped.has(help[1]), `HELP twice: ${line}`);
      helped.add(help[1]);
      continue;
    }
    const m =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/
        .exec(line);
    assert(m, `not Prometheus text: ${line}`);
    const histogram = typed.get(family) === "histogram";
    const name = histogram ? m[1].replace(/_(bucket|sum|count)$/, "") : m[1];
    assert(name === family, `a sample apart from its family's TYPE (${family}): ${line}`);
    const series = m[1] + (m[2] ?? "");
    assert(!samples.has(series), `a series twice: ${line}`);
    samples.set(series, Number(m[3]));
  }
  for (const [name, type] of typed) {
    assert(helped.has(name), `no HELP for ${name}`);
    if (type === "histogram") assertCumulative(name, samples);
  }
  return samples;
}

/** Each label set's buckets of histogram `name`: never falling, the last +Inf, equal to _count. */
function assertCumulative(name: string, samples: Map<string, number>) {
  const sets = new Map<string, [string, number][]>();
  for (const [series, v] of samples) {
    const m = new RegExp(`^${name}_bucket\\{(.*?),?le="([^"]+)"\\}$`).exec(series);
    if (!m) continue;
    if (!sets.has(m[1])) sets.set(m[1], []);
    sets.get(m[1])!.push([m[2], v]);
  }
  for (const [labels, buckets] of sets) {
    for (let i = 1; i < buckets.length; i++) {
      assert(buckets[i][1] >= buckets[i - 1][1], `${name}{${labels}} buckets fall`);
    }
    const [le, n] = buckets[buckets.length - 1];
    assertEquals(le, "+Inf", `${name}{${labels}}`);
    assertEquals(samples.get(`${name}_count${labels ? `{${labels}}` : ""}`), n);
  }
}

async function scrape(c: Cluster): Promise<Map<string, number>> {
  const res = await fetch(`${c.url}/?metrics`);
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return parse(await res.text());
}

Deno.test("/?metrics parses as Prometheus text and counts a known sequence exactly", async () => {
  const c = await Cluster.start();
  try {
    const before = await scrape(c);
    const keys = [randomKey(), randomKey(), randomKey()];
    for (const k of keys) {
      assertEquals(await status(c.url + k, { method: "PUT", body: "12345" }), 201);
    }
    assertEquals(await status(c.url + keys[0]), 302);
    assertEquals(await status(c.url + keys[1]), 302);
    assertEquals(await status(c.url + randomKey()), 404);
    assertEquals(await status(c.url + keys[2], { method: "DELETE" }), 204);
    assertEquals(await status(c.url + "/x", { method: "PATCH" }), 405);
    const after = await scrape(c);
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    assertEquals(delta(`mkv_requests_total{method="PUT",status="201"}`), 3);
    assertEquals(delta(`mkv_requests_total{method="GET",status="302"}`), 2);
    assertEquals(delta(`mkv_requests_total{method="GET",status="404"}`), 1);
    // The first scrape is a GET answered 200, counted once it is answered.
    assertEquals(delta(`mkv_requests_total{method="GET",status="200"}`), 1);
    assertEquals(delta(`mkv_requests_total{method="DELETE",status="204"}`), 1);
    assertEquals(delta(`mkv_requests_total{method="other",status="405"}`), 1);
    assertEquals(delta(`mkv_request_duration_seconds_count{method="PUT"}`), 3);
    assertEquals(delta("mkv_request_bytes_total"), 15);
    // 3 replicas per PUT, one replica DELETE each for the deleted key.
    let puts = 0, deletes = 0;
    for (const v of c.volumes) {
      puts += (after.get(`mkv_volume_calls_total{volume="${v}",call="put",outcome="ok"}`) ?? 0) -
        (before.get(`mkv_volume_calls_total{volume="${v}",call="put",outcome="ok"}`) ?? 0);
      deletes +=
        (after.get(`mkv_volume_calls_total{volume="${v}",call="delete",outcome="ok"}`) ?? 0) -
        (before.get(`mkv_volume_calls_total{volume="${v}",call="delete",outcome="ok"}`) ?? 0);
    }
    assertEquals([puts, deletes], [9, 3]);
    // Each PUT and DELETE commits twice (claim, then result).
    assertEquals(delta("mkv_index_writes_total"), 8);
    assert(delta("mkv_index_commits_total") >= 1 && delta("mkv_index_commits_total") <= 8);
    assertEquals(delta(`mkv_index_batch_size_count`), delta("mkv_index_commits_total"));
    // Every commit taken: none failed.
    assertEquals(after.get("mkv_index_commit_errors_total"), 0);
    assertEquals(
      after.get(`mkv_request_duration_seconds_bucket{method="PUT",le="+Inf"}`)! -
        (before.get(`mkv_request_duration_seconds_bucket{method="PUT",le="+Inf"}`) ?? 0),
      3,
    );
  } finally {
    await c.stop();
  }
});

Deno.test("?status's 405 is a text/plain error like the other views', its body counted", async () => {
  const c = await Cluster.start();
  try {
    const before = await scrape(c);
    const post = await fetch(`${c.url}/?status`, { method: "POST" });
    assertEquals(post.status, 405);
    assertEquals(post.headers.get("content-type"), "text/plain; charset=utf-8");
    assertEquals(post.headers.get("allow"), "GET, HEAD");
    assertEquals(await post.text(), "?status takes GET\n");
    const after = await scrape(c);
    assertEquals(
      after.get("mkv_response_bytes_total")! - before.get("mkv_response_bytes_total")!,
      18,
    );
  } finally {
    await c.stop();
  }
});

Deno.test("/?metrics counts the bytes of error bodies: a 405's and a view's 405", async () => {
  const c = await Cluster.start();
  try {
    const before = await scrape(c);
    const patch = await fetch(c.url + "/x", { method: "PATCH" });
    assertEquals(await patch.text(), "Method PATCH not allowed\n");
    const post = await fetch(`${c.url}/?list`, { method: "POST" });
    assertEquals(await post.text(), "?list takes GET\n");
    assertEquals(post.headers.get("allow"), "GET, HEAD");
    const after = await scrape(c);
    // The scrapes' own bodies are not counted (README).
    assertEquals(
      after.get("mkv_response_bytes_total")! - before.get("mkv_response_bytes_total")!,
      25 + 16,
    );
  } finally {
    await c.stop();
  }
});

Deno.test("/?metrics counts keys by state", async () => {
  const c = await Cluster.start();
  try {
    const keys = [randomKey(), randomKey()];
    for (const k of keys) assertEquals(await status(c.url + k, { method: "PUT", body: "v" }), 201);
    assertEquals(await status(c.url + keys[1], { method: "UNLINK" }), 204);
    const m = await scrape(c);
    assertEquals(m.get(`mkv_keys{state="live"}`), 1);
    assertEquals(m.get(`mkv_keys{state="unlinked"}`), 1);
    assertEquals(m.get(`mkv_keys{state="writing"}`), 0);
  } finally {
    await c.stop();
  }
});

Deno.test("/?metrics says whether the master is the index's sole writer", async () => {
  const c = await Cluster.start();
  try {
    assertEquals((await scrape(c)).get("mkv_index_sole"), 1, "alone");
    const other = await c.spawnMaster();
    try {
      // Within a heartbeat (1 s) of the other's registration.
      let sole = 1;
      for (let i = 0; i < 40 && sole === 1; i++) {
        await new Promise((r) => setTimeout(r, 100));
        sole = (await scrape(c)).get("mkv_index_sole")!;
      }
      assertEquals(sole, 0, "with another master");
    } finally {
      await other.stop();
    }
  } finally {
    await c.stop();
  }
});

Deno.test("/?metrics: mkv_volume_up per volume, 0 from an unanswered call, 1 once answered again", async () => {
  const c = await Cluster.start();
  try {
    const up = (m: Map<string, number>) =>
      c.volumes.map((v) => m.get(`mkv_volume_up{volume="${v}"}`));
    // Every volume answered the master's start (its check of the volume names).
    assertEquals(up(await scrape(c)), [1, 1, 1]);
    await c.stopVolume(1);
    // Three replicas: the PUT calls the stopped volume, which does not answer.
    assertEquals(await status(c.url + randomKey(), { method: "PUT", body: "v" }), 500);
    assertEquals(up(await scrape(c)), [1, 0, 1]);
    await c.startVolume(1);
    assertEquals(await status(c.url + randomKey(), { method: "PUT", body: "v" }), 201);
    assertEquals(up(await scrape(c)), [1, 1, 1]);
  } finally {
    await c.stop();
  }
});

Deno.test("/?metrics: mkv_index_commit_duration_seconds times every index commit", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  try {
    const before = await scrape(c);
    for (let i = 0; i < 3; i++) {
      assertEquals(await status(c.url + randomKey(), { method: "PUT", body: "v" }), 201);
    }
    const after = await scrape(c);
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    const commits = delta("mkv_index_commits_total");
    assert(commits >= 3, `${commits} commits for 3 PUTs`);
    assertEquals(delta("mkv_index_commit_duration_seconds_count"), commits);
    assertEquals(delta(`mkv_index_commit_duration_seconds_bucket{le="+Inf"}`), commits);
    assert(delta("mkv_index_commit_duration_seconds_sum") > 0, "commits take time");
  } finally {
    await c.stop();
  }
});

Deno.test("/?metrics: mkv_index_incomplete is 1 on an index a rebuild could not finish", async () => {
  const c = await Cluster.start();
  try {
    assertEquals((await scrape(c)).get("mkv_index_incomplete"), 0);
    await masterOnSkippedIndex(c);
    assertEquals((await scrape(c)).get("mkv_index_incomplete"), 1);
  } finally {
    await c.stop();
  }
});

Deno.test("/?metrics: a sole master's lookups by what answered them, and its record cache's size", async () => {
  const c = await Cluster.start();
  try {
    const key = randomKey();
    assertEquals(await status(c.url + key, { method: "PUT", body: "12345" }), 201);
    const before = await scrape(c);
    assertEquals(before.get("mkv_index_sole"), 1);
    // Written by this master: its record is cached, a GET reads no index.
    assertEquals(await status(c.url + key), 302);
    // A key never written: the key filter answers (-v is off: from memory).
    assertEquals(await status(c.url + randomKey()), 404);
    const after = await scrape(c);
    const delta = (name: string) => after.get(name)! - before.get(name)!;
    assertEquals(
      [
        delta(`mkv_index_lookups_total{answered="cache"}`),
        delta(`mkv_index_lookups_total{answered="filter"}`),
        delta(`mkv_index_lookups_total{answered="index"}`),
      ],
      [1, 1, 0],
    );
    assert(after.get("mkv_index_cache_records")! >= 1, "the key written is cached");
    // Each record is counted as its key's bytes and 300 more (lib/record_cache.ts).
    assert(
      after.get("mkv_index_cache_bytes")! >=
        after.get("mkv_index_cache_records")! * 300,
      "bytes estimated",
    );
  } finally {
    await c.stop();
  }
});
