/**
 * Resolution of backend hostnames. IP literals need none. Names are resolved at start and every
 * `dns_refresh`; an unresolved name is retried every second until it answers (Compose starts backends
 * after the LB). A changed address rebuilds the service's plan; a failed lookup keeps the last address.
 */
import { lookup } from "node:dns/promises";
import { isIpLiteral } from "../config/address.ts";
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

  /** One lookup per distinct name per round, however many services and backends share it. */
  private async refresh(): Promise<void> {
    const names = new Set<string>();
    for (const service of this.services) {
      for (const b of service.backends.values()) if (b.enabled && !isIpLiteral(b.config.host)) names.add(b.config.host);
    }
    const answers = new Map<string, string | { error: string }>();
    await Promise.all(
      [...names].map(async (name) => {
        try {
          answers.set(name, (await lookup(name, { family: 4 })).address);
        } catch (err) {
          answers.set(name, { error: (err as { code?: string }).code ?? String(err) });
        }
      }),
    );
    const failed = new Set<string>();
    for (const service of this.services) {
      let changed = false;
      for (const backend of service.backends.values()) {
        const answer = answers.get(backend.config.host);
        if (answer === undefined || !backend.enabled) continue;
        if (typeof answer !== "string") {
          if (!failed.has(backend.config.host)) {
            failed.add(backend.config.host);
            this.log.warn("backend name did not resolve", { backend: backend.key, name: backend.config.host, error: answer.error, keeping: backend.ip ?? null });
          }
          continue;
        }
        if (answer !== backend.ip) {
          this.log.info("backend address resolved", { service: service.name, backend: backend.key, ip: answer, previous: backend.ip ?? null });
          backend.ip = answer;
          changed = true;
        }
      }
      if (changed) service.rebuild();
    }
  }
}
