// A volume behind a proxy whose HEAD answers carry no Content-Length (a
// proxy in front of nginx that sends them chunked): such an answer does
// not say the file's size.
import { HungVolume } from "../hung_volume.ts";

/**
 * Forwards to nginx; a HEAD is answered without its Content-Length. As a
 * HungVolume, it hangs on the requests a test picks (a GET mid-body).
 */
export class UnsizedHead extends HungVolume {
  /** Run after a HEAD is forwarded, before it is answered (a file removed meanwhile). */
  afterHead: ((path: string) => Promise<void>) | null = null;

  protected override async forward(req: Request): Promise<Response> {
    const res = await super.forward(req);
    if (req.method !== "HEAD") return res;
    await this.afterHead?.(new URL(req.url).pathname);
    const headers = new Headers(res.headers);
    headers.delete("content-length");
    // A body stream (never sent for a HEAD) keeps Deno from adding one.
    return new Response(new ReadableStream({ start: (c) => c.close() }), {
      status: res.status,
      headers,
    });
  }
}
