// GET /?status: the page a person opens in a browser (a real headless
// Chromium against a real cluster), and the same data as JSON.
import { Cluster, masterOnSkippedIndex, randomKey, status } from "./cluster.ts";
import { assert, assertEquals } from "./assert.ts";
import { launchChromium, type Page } from "./browser.ts";

/** Polls `check` until it returns a value (not undefined), or fails naming `what`. */
async function until<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const v = await check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Gave up waiting: ${what}`);
}

// deno-lint-ignore no-explicit-any
type Json = any;

async function statusJson(c: Cluster): Promise<Json> {
  const res = await fetch(`${c.url}/?status`, { headers: { Accept: "application/json" } });
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "application/json");
  return await res.json();
}

/** The state cell of a volume's row, as shown. */
async function shownState(page: Page, volume: string): Promise<string> {
  return (await page.locator(`tr.volume[data-volume="${volume}"] td.state`).textContent()) ?? "";
}

/**
 * Waits for the page to reload itself (it does every 5 s) until `check`
 * holds; never reloads it by hand.
 */
async function untilShown(page: Page, what: string, check: () => Promise<boolean>) {
  for (let reloads = 0; reloads < 8; reloads++) {
    if (await check()) return;
    await page.waitForEvent("load", { timeout: 15_000 });
  }
  throw new Error(`The page never showed: ${what}`);
}

Deno.test({
  name: "/?status in Chromium: volumes up, one stopped shows down after a reload, charts drawn",
  // Playwright's driver keeps its own timers and pipes to the browser.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const c = await Cluster.start();
    const browser = await launchChromium();
    try {
      const keys = Array.from({ length: 6 }, () => randomKey());
      for (const k of keys) assertEquals(await status(c.url + k, { method: "PUT", body: k }), 201);
      for (const k of keys) assertEquals(await status(c.url + k), 302);
      assertEquals(await status(c.url + randomKey()), 404);
      const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      const res = await page.goto(`${c.url}/?status`);
      assertEquals(res?.status(), 200);
      assertEquals(res?.headers()["content-type"], "text/html; charset=utf-8");
      assertEquals(await page.title(), "mkv status");
      await untilShown(page, "every volume up", async () => {
        for (const v of c.volumes) if (await shownState(page, v) !== "up") return false;
        return true;
      });
      assertEquals(await page.locator("#problems").textContent(), "All 3 volumes up");
      // Three replicas: every volume holds all six keys.
      for (const v of c.volumes) {
        const keys = await page.locator(`tr.volume[data-volume="${v}"] td.keys`).textContent();
        assertEquals(keys, "6");
      }

      await c.stopVolume(1);
      await untilShown(
        page,
        `${c.volumes[1]} down`,
        async () => await shownState(page, c.volumes[1]) === "down",
      );
      assertEquals(await shownState(page, c.volumes[0]), "up");
      assertEquals(await shownState(page, c.volumes[2]), "up");
      assertEquals(await page.locator("tr.volume.down").count(), 1);
      // Said at the top too: which, since when, for how long.
      const problem = await page.locator("#problems li.problem").textContent() ?? "";
      assert(
        new RegExp(`^Volume ${c.volumes[1]} down since \\S+ \\S+ UTC \\(for [^)]+\\): `).test(
          problem,
        ),
        problem,
      );

      // Two charts (by method, by status class), with the PUTs drawn.
      assertEquals(await page.locator("figure svg").count(), 2);
      assertEquals(await page.locator('polyline.series[data-series="PUT"]').count(), 1);
      assertEquals(await page.locator('polyline.series[data-series="2xx"]').count(), 1);
      const errors = await page.locator("#errors").textContent() ?? "";
      assert(errors.includes(`volume ${c.volumes[1]} down`), errors);

      // Into the test's folder; MKV_SCREENSHOT=docs/status.png retakes the README's.
      const shot = Deno.env.get("MKV_SCREENSHOT") ?? `${c.dir}/status.png`;
      await page.screenshot({ path: shot, fullPage: true });
      const png = await Deno.readFile(shot);
      assertEquals([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
      assert(png.length > 10_000, `a screenshot of ${png.length} bytes`);
    } finally {
      await browser.close();
      await c.stop();
    }
  },
});

Deno.test("/?status as JSON: exact fields, keys per volume as placed, a stopped volume down", async () => {
  const c = await Cluster.start({ volumes: 4, flags: ["-replicas", "2"] });
  try {
    const keys = [randomKey(), randomKey(), randomKey(), randomKey(), randomKey()];
    for (const k of keys) {
      assertEquals(await status(c.url + k, { method: "PUT", body: "12345" }), 201);
    }
    // Where the master says each key is (Key-Volumes: host:port/svNN).
    const expected: { [v: string]: number } = Object.fromEntries(c.volumes.map((v) => [v, 0]));
    for (const k of keys) {
      const res = await fetch(c.url + k, { method: "HEAD", redirect: "manual" });
      assertEquals(res.status, 302);
      for (const rv of res.headers.get("key-volumes")!.split(",")) expected[rv.split("/")[0]]++;
    }
    // An unlinked key keeps its files: it still counts on its volumes.
    assertEquals(await status(c.url + keys[4], { method: "UNLINK" }), 204);

    const s = await statusJson(c);
    assertEquals(Object.keys(s).sort(), [
      "errors",
      "index",
      "keys",
      "started",
      "time",
      "traffic",
      "volumes",
    ]);
    assertEquals(s.index, {
      incomplete: null,
      rebuilding: false,
      failing: null,
      placement: { volumes: c.volumes, replicas: 2, subvolumes: 10, colocate: false },
      placements: [],
      unindexed: null,
      unanswered: null,
    });
    assertEquals(s.keys.live, 4);
    assertEquals(s.keys.unlinked, 1);
    assertEquals(s.keys.writing, 0);
    assertEquals(s.keys.total, 5);
    assertEquals(Object.keys(s.keys).sort(), ["counted", "live", "total", "unlinked", "writing"]);
    assertEquals(s.volumes.map((v: Json) => v.volume), c.volumes);
    for (const v of s.volumes) {
      assertEquals(
        Object.keys(v).sort(),
        ["checked", "free", "keys", "ms", "reason", "since", "size", "up", "volume"],
      );
      assertEquals(v.keys, expected[v.volume], `keys on ${v.volume}`);
    }
    assertEquals(s.volumes.reduce((n: number, v: Json) => n + v.keys, 0), 10);
    // The requests so far, by method and class (this one counts once answered).
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    assertEquals(s.traffic.interval_s, 10);
    assertEquals(Object.keys(s.traffic.methods), [
      "GET",
      "HEAD",
      "PUT",
      "REPLACE",
      "DELETE",
      "UNLINK",
      "RELINK",
      "REBALANCE",
      "POST",
      "other",
    ]);
    assertEquals(Object.keys(s.traffic.classes), ["2xx", "3xx", "4xx", "5xx"]);
    for (
      const series of [...Object.values(s.traffic.methods), ...Object.values(s.traffic.classes)]
    ) {
      assertEquals((series as number[]).length, 60);
    }
    assertEquals(sum(s.traffic.methods.PUT), 5);
    assertEquals(sum(s.traffic.methods.UNLINK), 1);
    assertEquals(sum(s.traffic.methods.HEAD), 5);
    // The cluster's readiness check was a GET ?list (200).
    assertEquals(sum(s.traffic.methods.GET), 1);
    assertEquals(sum(s.traffic.classes["2xx"]), 7);
    assertEquals(sum(s.traffic.classes["3xx"]), 5);
    assertEquals(sum(s.traffic.classes["5xx"]), 0);
    assertEquals(s.errors, []);

    await until("every volume up", async () => {
      const now = await statusJson(c);
      return now.volumes.every((v: Json) => v.up === true) ? now : undefined;
    });

    await c.stopVolume(2);
    const down = await until(`${c.volumes[2]} down`, async () => {
      const now = await statusJson(c);
      return now.volumes[2].up === false ? now : undefined;
    });
    assertEquals(down.volumes.map((v: Json) => v.up), [true, true, false, true]);
    assert(down.volumes[2].reason.includes("Connection refused"), down.volumes[2].reason);
    assertEquals(down.volumes[2].keys, expected[c.volumes[2]], "the index still places keys there");
    const e = down.errors.find((e: Json) => e.what === `volume ${c.volumes[2]} down`);
    assert(e, JSON.stringify(down.errors));
    assertEquals(Object.keys(e).sort(), ["reason", "time", "what"]);
  } finally {
    await c.stop();
  }
});

Deno.test("a 5xx answer is listed among the recent errors with its reason", async () => {
  const c = await Cluster.start();
  try {
    await c.stopVolume(0);
    const key = randomKey();
    const res = await fetch(c.url + key, { method: "PUT", body: "x" });
    assertEquals(res.status, 500);
    const reason = (await res.text()).trim();
    const s = await statusJson(c);
    const e = s.errors.find((e: Json) => e.what === `PUT ${key} 500`);
    assert(e, JSON.stringify(s.errors));
    assertEquals(e.reason, reason);
    assert(reason.includes(c.volumes[0]), reason);
    const failure = s.errors.find((e: Json) => e.what === `volume ${c.volumes[0]} put error`);
    assert(failure, JSON.stringify(s.errors));
  } finally {
    await c.stop();
  }
});

Deno.test({
  name:
    "/?status in Chromium asks the master for nothing else: no /favicon.ico key looked up, no console error",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      page.on("pageerror", (e) => errors.push(String(e)));
      assertEquals((await page.goto(`${c.url}/?status`))?.status(), 200);
      // Its own reload, 5 s on: what the first load asked for has been asked by then.
      await page.waitForEvent("load", { timeout: 15_000 });
      assertEquals(errors, []);
      const metrics = await (await fetch(`${c.url}/?metrics`)).text();
      const answered = metrics.split("\n").filter((l) => l.startsWith("mkv_requests_total{"));
      // The start's readiness checks (?list) and the page's loads: every one a GET 200.
      assertEquals(answered.map((l) => l.replace(/ \d+$/, "")), [
        'mkv_requests_total{method="GET",status="200"}',
      ]);
    } finally {
      await browser.close();
      await c.stop();
    }
  },
});

Deno.test("?status answers HEAD like GET, and 405 to other methods", async () => {
  const c = await Cluster.start({ volumes: 1, flags: ["-replicas", "1"] });
  try {
    const head = await fetch(`${c.url}/?status`, { method: "HEAD" });
    assertEquals(head.status, 200);
    assertEquals(head.headers.get("content-type"), "text/html; charset=utf-8");
    assertEquals(await head.text(), "");
    const post = await fetch(`${c.url}/?status`, { method: "POST", body: "x" });
    assertEquals(post.status, 405);
    assertEquals(post.headers.get("allow"), "GET, HEAD");
    assertEquals(await post.text(), "?status takes GET\n");
    // curl's default Accept (*/*) gets the page.
    const page = await fetch(`${c.url}/?status`, { headers: { Accept: "*/*" } });
    assertEquals(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert((await page.text()).startsWith("<!doctype html>"));
  } finally {
    await c.stop();
  }
});

Deno.test("/?status says when the index is incomplete, why and since when, as JSON and on the page", async () => {
  const c = await Cluster.start();
  try {
    await masterOnSkippedIndex(c);
    const s = await statusJson(c);
    assertEquals(Object.keys(s.index.incomplete), ["why", "since"]);
    const why = `a rebuild skipped 1 volume it could not read (${c.volumes[1]})`;
    assertEquals(s.index.incomplete.why, why);
    assertEquals(new Date(s.index.incomplete.since).toISOString(), s.index.incomplete.since);
    assertEquals(s.index.rebuilding, false);
    const html = await (await fetch(`${c.url}/?status`)).text();
    const since = s.index.incomplete.since.slice(0, 19).replace("T", " ");
    assert(
      html.includes(
        `<li class="problem">Index incomplete since ${since} UTC: ${why};`,
      ),
      html,
    );
  } finally {
    await c.stop();
  }
});
