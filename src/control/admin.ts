/**
 * The admin HTTP listener (Bun.serve): GET /metrics (Prometheus), GET /status (JSON), GET /healthz.
 * Bound to 127.0.0.1 unless the config says otherwise; it exposes topology, not control.
 */
import type { Server } from "bun";
import type { HostPort } from "../config/types.ts";
import { UserError } from "../errors.ts";

export interface AdminSource {
  /** The exposition; may be rendered in slices (10,000 backends) so other requests are answered meanwhile. */
  metrics(): string | Promise<string>;
  status(): unknown;
}

/** A listener change in two steps, so a reload can move the admin listener only once the rest applied. */
export interface AdminMove {
  /** Switch to the new listener (closing the old one). */
  commit(): void;
  /** Keep the old listener (closing the new one). */
  abort(): void;
}

export class AdminServer {
  private server: Server<undefined> | null = null;
  private bound = "";

  constructor(private readonly source: AdminSource) {}

  /**
   * Get ready to start, move or stop the listener to match `listen` (undefined = off). A new address is
   * bound now (a UserError if it cannot be, with nothing changed); `commit` makes it the listener and
   * closes the old one, `abort` closes it and keeps the old one.
   */
  prepare(listen: HostPort | undefined): AdminMove {
    const want = listen ? `${listen.host}:${listen.port}` : "";
    if (want === this.bound) return { commit: () => {}, abort: () => {} };
    const next = listen ? this.bind(listen, want) : null;
    return {
      commit: () => {
        this.server?.stop(true);
        this.server = next;
        this.bound = want;
      },
      abort: () => next?.stop(true),
    };
  }

  get port(): number | undefined {
    return this.server?.port;
  }

  stop(): void {
    this.server?.stop(true);
    this.server = null;
    this.bound = "";
  }

  private bind(listen: HostPort, want: string): Server<undefined> {
    try {
      return Bun.serve({
        hostname: listen.host,
        port: listen.port,
        // Never Bun's developer error page (it shows source lines): a failure is a plain 500.
        development: false,
        fetch: (req, server) => this.handle(req, server),
        error: () => new Response("internal error\n", { status: 500 }),
      });
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new UserError(
        code === "EADDRINUSE" ? "port_in_use" : "config",
        code === "EADDRINUSE"
          ? `the admin listener cannot bind ${want}: the address is already in use; change admin.listen or stop the other process.`
          : `the admin listener cannot bind ${want}: ${code ?? String(err)}; change admin.listen.`,
      );
    }
  }

  private async handle(req: Request, server: Server<undefined>): Promise<Response> {
    // A listener bound by `prepare` serves only once committed: until then featherlb is still starting
    // (or the reload that moves it may fail), and /healthz must not say ready.
    if (server !== this.server) return new Response("starting\n", { status: 503, headers: { "retry-after": "1" } });
    const path = pathOf(req.url);
    if (req.method !== "GET") return new Response("method not allowed\n", { status: 405 });
    switch (path) {
      case "/metrics":
        return new Response(await this.source.metrics(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
      case "/status":
        return Response.json(await this.source.status());
      case "/healthz":
        return new Response("ok\n");
      default:
        return new Response("not found: try /metrics, /status or /healthz\n", { status: 404 });
    }
  }
}

/**
 * The path of a request URL. An HTTP/1.0 request without a Host header (a plain `printf | nc` probe, an
 * old load balancer's check) reaches us as a bare "/healthz", which `new URL` rejects.
 */
function pathOf(url: string): string {
  if (url.startsWith("/")) return url.split(/[?#]/, 1)[0]!;
  try {
    return new URL(url).pathname;
  } catch {
    return "";
  }
}
