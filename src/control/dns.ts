/**
 * Resolution of backend hostnames. IP literals need none. Names are resolved at start and every
 * `dns_refresh`; an unresolved name is retried every second until it answers (Compose starts backends
 * after the LB). A changed address rebuilds the service's plan; a failed lookup keeps the last address.
 */
import { lookup } from "node:dns/promises";
import { isIpLiteral } from "./backend.ts";
import type { Logger } from "./log.ts";
import type { Service } from "./service.ts";

const UNRESOLVED_RETRY_MS = 1000;

export class Resolver {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private services: readonly Service[] = [];

  constructor(
    private readonly log: Logger,
    private refreshMs: number,
  ) {}

  /** Resolve every name now (bounded by `waitMs`), then keep refreshing. */
  async sync(services: readonly Service[], refreshMs: number, waitMs = 3000): Promise<void> {
    this.services = services;
    this.refreshMs = refreshMs;
    await Promise.race([this.refresh(), Bun.sleep(waitMs)]);
    this.arm();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    this.stop();
    const pending = this.services.some((s) => [...s.backends.values()].some((b) => b.enabled && b.ip === undefined));
    this.timer = setTimeout(async () => {
      await this.refresh();
      this.arm();
    }, pending ? Math.min(UNRESOLVED_RETRY_MS, this.refreshMs) : this.refreshMs);
    this.timer.unref?.();
  }

  private async refresh(): Promise<void> {
    await Promise.all(this.services.map((service) => this.refreshService(service)));
  }

  private async refreshService(service: Service): Promise<void> {
    let changed = false;
    await Promise.all(
      [...service.backends.values()].map(async (backend) => {
        const host = backend.config.host;
        if (isIpLiteral(host) || !backend.enabled) return;
        try {
          const { address } = await lookup(host, { family: 4 });
          if (address !== backend.ip) {
            this.log.info("backend address resolved", { service: service.name, backend: backend.key, ip: address, previous: backend.ip ?? null });
            backend.ip = address;
            changed = true;
          }
        } catch (err) {
          this.log.warn("backend name did not resolve", { service: service.name, backend: backend.key, error: (err as { code?: string }).code ?? String(err), keeping: backend.ip ?? null });
        }
      }),
    );
    if (changed) service.rebuild();
  }
}
