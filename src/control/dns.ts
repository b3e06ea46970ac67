/**
 * Resolution of backend hostnames. IP literals need none. Names are resolved at start and every
 * `dns_refresh`; an unresolved name is retried every second until it answers (Compose starts backends
 * after the LB). Answers go to each Service (`setAddresses`), which owns backend addresses, logs a
 * change and rebuilds its plan; a failed lookup keeps the last address.
 */
import { lookup } from "node:dns/promises";
import type { Backend } from "./backend.ts";
import type { Logger } from "./log.ts";
import type { Service } from "./service.ts";

const UNRESOLVED_RETRY_MS = 1000;

export class Resolver {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private services: readonly Service[] = [];

  constructor(
    private readonly log: Logger,
    private refreshMs: number,
    /** Called after a round in which some backend's address changed (the health checker re-targets its probes). */
    private readonly onChange: () => void = () => {},
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
    const pending = this.services.some((s) => named(s).some((b) => b.enabled && b.ip === undefined));
    this.timer = setTimeout(async () => {
      await this.refresh();
      this.arm();
    }, pending ? Math.min(UNRESOLVED_RETRY_MS, this.refreshMs) : this.refreshMs);
    this.timer.unref?.();
  }

  /** One lookup per distinct name per round, however many services and backends share it. */
  private async refresh(): Promise<void> {
    const names = new Set<string>();
    for (const service of this.services) for (const b of named(service)) if (b.enabled) names.add(b.config.host);
    const resolved = new Map<string, string>();
    const failures = new Map<string, string>();
    await Promise.all(
      [...names].map(async (name) => {
        try {
          resolved.set(name, (await lookup(name, { family: 4 })).address);
        } catch (err) {
          failures.set(name, (err as { code?: string }).code ?? String(err));
        }
      }),
    );
    const warned = new Set<string>();
    let changed = false;
    for (const service of this.services) {
      const backends = named(service);
      if (backends.length === 0) continue; // IP literals only: nothing to resolve or warn about
      for (const backend of backends) {
        const name = backend.config.host;
        const error = failures.get(name);
        if (error === undefined || !backend.enabled || warned.has(name)) continue;
        warned.add(name);
        this.log.warn("backend name did not resolve", { backend: backend.key, name, error, keeping: backend.ip ?? null });
      }
      if (service.setAddresses(resolved)) changed = true;
    }
    if (changed) this.onChange();
  }
}

/** The backends of `service` written as hostnames (IP literals need no lookup). */
function named(service: Service): Backend[] {
  const out: Backend[] = [];
  for (const b of service.backends.values()) if (b.named) out.push(b);
  return out;
}
