// What a volume tells of its disk, which stock nginx cannot: nginx answers
// a PUT whose body it could not write for a full disk 500, as any other
// failure (nginx/nginx#838: its WebDAV module maps ENOSPC to 507 only for
// a folder it cannot make), and says why only in its error line. nginx
// hands each 500 of volume.conf's `location /` to this server (error_page
// 500 = @failed, proxied on loopback), which finds that line among those
// the volume command reads from nginx's stderr (same connection, same
// request) and answers 507 Insufficient Storage when it says
// `(28: No space left on device)`, else 500 as nginx would have. It also
// answers `GET /.mkv-nginx/space` with the disk's size and free bytes
// (statfs), which the master's probes read for its status page and
// metrics. A volume without it (stock nginx, mkv's) answers 500 and 404.
import { statfs } from "node:fs/promises";
import { type Space, SPACE_PATH } from "../lib/health.ts";

/**
 * What nginx's error line of a write says when the disk is full: the
 * errno, or a short write (the bytes a file system had room for: nginx
 * names no errno then, `pwritev() "..." has written only 438272 of 600000`);
 * a quota used up is as full to the user it binds.
 */
const NO_SPACE = [
  "(28: No space left on device)",
  "(122: Disk quota exceeded)",
  " has written only ",
];

/** How long the server waits for the error line of a failed request, ms. */
const LINE_WAIT = 1_000;

/** Connections whose last error lines are kept, at most (the oldest go first). */
const KEPT = 4_096;

/** Bytes of error lines kept per connection, at most (the last ones). */
const KEPT_BYTES = 4_096;

export interface VolumeSpace {
  /** The loopback port nginx proxies to (volume.conf's {{SPACE_PORT}}). */
  port: number;
  /** Takes one of nginx's error lines (all of them come here). */
  line(l: string): void;
  stop(): Promise<void>;
}

/** Starts the server on a loopback port of the system's choosing. */
export function serveSpace(folder: string): VolumeSpace {
  const lines = new ConnectionLines();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req) => answer(req, { folder, lines }),
  );
  return {
    port: server.addr.port,
    line: (l) => lines.add(l),
    stop: () => server.shutdown(),
  };
}

async function answer(
  req: Request,
  v: { folder: string; lines: ConnectionLines },
): Promise<Response> {
  if (new URL(req.url).pathname === SPACE_PATH) {
    const space = await spaceOf(v.folder).catch(() => null);
    if (space === null) return new Response("Cannot read the disk's size\n", { status: 500 });
    return Response.json(space);
  }
  // A request nginx failed (volume.conf's @failed): its connection and request line.
  const connection = req.headers.get("x-mkv-connection") ?? "";
  const request = req.headers.get("x-mkv-request") ?? "";
  const said = await v.lines.take(connection, request, LINE_WAIT);
  if (said !== null && NO_SPACE.some((s) => said.includes(s))) {
    return new Response(`No space left on device: the disk of ${v.folder} is full\n`, {
      status: 507,
    });
  }
  return new Response("Internal Server Error\n", { status: 500 });
}

/** The size and free bytes of the file system `folder` is on. */
export async function spaceOf(folder: string): Promise<Space> {
  const s = await statfs(folder);
  return { size: s.blocks * s.bsize, free: s.bavail * s.bsize };
}

/**
 * nginx's error lines by connection (`*12` in the line, $connection in
 * volume.conf), kept until the failed request they tell of is asked
 * about: a line is written before its 500 is, but the pipe it comes
 * through may be read after nginx has asked.
 */
class ConnectionLines {
  /**
   * By connection: the request its last lines name (`cut`: its start only,
   * the line cut short), and those lines.
   */
  readonly #lines = new Map<string, Named & { text: string }>();
  readonly #waiting = new Map<string, () => void>();

  add(line: string) {
    const conn = / \*(\d+) /.exec(line)?.[1];
    // nginx cuts a line at 2048 bytes (NGX_MAX_ERROR_STR): a long key's
    // path, whose base64url is longer, leaves its request's start alone.
    const m = /, request: "(.*?)(", |"$|$)/.exec(line);
    if (conn === undefined || m === null) return;
    const named: Named = { request: m[1], cut: m[2] === "" };
    // A line of another request of the connection (keep-alive) replaces
    // those of the one before, which were not asked about (a DELETE's 404).
    const kept = this.#lines.get(conn);
    const same = kept !== undefined && sameRequest(kept, named);
    const text = same ? kept.text : "";
    // The longer of the two is kept, the whole request when a line had it.
    const request = same && kept.request.length > named.request.length ? kept : named;
    this.#lines.delete(conn);
    this.#lines.set(conn, {
      request: request.request,
      cut: request.cut,
      text: (text + line + "\n").slice(-KEPT_BYTES),
    });
    if (this.#lines.size > KEPT) this.#lines.delete(this.#lines.keys().next().value!);
    this.#waiting.get(conn)?.();
  }

  /**
   * The lines of `connection` that name `request`, removed; waits up to
   * `ms` for one; null when none came.
   */
  async take(connection: string, request: string, ms: number): Promise<string | null> {
    const asked = { request, cut: false };
    const named = () => {
      const kept = this.#lines.get(connection);
      return kept !== undefined && sameRequest(kept, asked) ? kept.text : null;
    };
    if (named() === null) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiting.set(connection, () => named() !== null && resolve());
        timer = setTimeout(resolve, ms);
      });
      clearTimeout(timer);
      this.#waiting.delete(connection);
    }
    const text = named();
    if (text !== null) this.#lines.delete(connection);
    return text;
  }
}

/** A request line an error line names: whole, or its start alone (`cut`). */
interface Named {
  request: string;
  cut: boolean;
}

/** Whether two error lines (or one and the request asked about) name one request. */
function sameRequest(a: Named, b: Named): boolean {
  if (a.request === b.request) return true;
  return (a.cut && b.request.startsWith(a.request)) || (b.cut && a.request.startsWith(b.request));
}
