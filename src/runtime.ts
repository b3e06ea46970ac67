/**
 * The composition root: the one module that knows both data planes. It owns the config, the Service
 * objects, health checks, DNS, the admin listener and the data plane, and runs the lifecycle — start,
 * SIGHUP reload, SIGTERM/SIGINT drain.
 *
 * Folders depend one way: config ← control ← dataplane ← runtime/main (src/layers.test.ts). Everything
 * runs on Bun's single event loop: each Service owns its backends' state, and health checks, DNS and
 * the data planes' connect results only report to it (gobetween's model), so there are no locks.
 */
import { MAX_BACKENDS } from "./config/limits.ts";
import { loadConfig } from "./config/load.ts";
import type { Config } from "./config/types.ts";
import { AdminServer } from "./control/admin.ts";
import { Resolver } from "./control/dns.ts";
import { HealthChecker } from "./control/health.ts";
import { Logger } from "./control/log.ts";
import { type RuntimeInfo, renderMetrics, renderStatus } from "./control/metrics.ts";
import { Service } from "./control/service.ts";
import { ProxyDataPlane } from "./dataplane/proxy/index.ts";
import type { ConnectHooks, DataPlane, ServicePair } from "./dataplane/types.ts";
import { createXdpDataPlane } from "./dataplane/xdp/index.ts";
import { UserError } from "./errors.ts";
import { VERSION } from "./version.ts";

/** Builds the data plane a config asks for; connect results go to `hooks` (passive health checks). */
export type PlaneFactory = (config: Config, log: Logger, hooks: ConnectHooks) => Promise<DataPlane>;

export class Runtime {
  services: Service[] = [];
  readonly info: RuntimeInfo;
  private readonly resolver: Resolver;
  private readonly admin: AdminServer;
  private readonly housekeeping: ReturnType<typeof setInterval>;
  private reloading: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;

  private constructor(
    private config: Config,
    private readonly path: string,
    readonly log: Logger,
    private plane: DataPlane,
    private readonly health: HealthChecker,
  ) {
    this.info = { version: VERSION, mode: plane.kind, startedAt: Date.now(), reloads: { ok: 0, failed: 0 } };
    if (plane.attachMode !== undefined) this.info.attach = plane.attachMode;
    this.resolver = new Resolver(log, config.dns_refresh_ms);
    this.admin = new AdminServer({
      metrics: () => {
        this.plane.refreshStats();
        return renderMetrics(this.info, this.services, this.plane.xdpStats?.());
      },
      status: () => {
        this.plane.refreshStats();
        return renderStatus(this.info, this.services);
      },
    });
    // Backends removed by a reload disappear once their last connection ends.
    this.housekeeping = setInterval(() => this.services.forEach((s) => s.collectDrained()), 1000);
    this.housekeeping.unref();
  }

  /**
   * Load `path`, start the data plane and everything around it. Throws UserError on user mistakes.
   * `createPlane` is for tests; featherlb runs the proxy or XDP plane the config asks for.
   */
  static async start(path: string, createPlane: PlaneFactory = createDataPlane): Promise<Runtime> {
    const config = await loadConfig(path);
    const log = new Logger(config.log.level);
    const health = new HealthChecker();
    const plane = await createPlane(config, log, {
      onConnectFailure: (b, reason) => health.reportFailure(b, reason),
      onConnectSuccess: (b) => health.reportSuccess(b),
    });
    const runtime = new Runtime(config, path, log, plane, health);
    try {
      await runtime.applyConfig(config, []);
    } catch (err) {
      runtime.release();
      throw err;
    }
    log.info("featherlb started", {
      version: VERSION,
      mode: plane.kind,
      services: config.services.length,
      admin: runtime.admin.port === undefined ? null : `${config.admin.listen?.host}:${runtime.admin.port}`,
    });
    return runtime;
  }

  /** The admin listener's port, if it is on. */
  get adminPort(): number | undefined {
    return this.admin.port;
  }

  /**
   * Re-read the file. A valid config takes effect for new connections while established ones keep
   * flowing; an invalid one is logged with the same message `check` prints and the old one keeps serving.
   * Either way the outcome is logged and counted (featherlb_config_reloads_total). Overlapping SIGHUPs
   * are serialised.
   */
  async reload(): Promise<void> {
    while (this.reloading) await this.reloading;
    this.reloading = this.reloadOnce();
    try {
      await this.reloading;
    } finally {
      this.reloading = null;
    }
  }

  private async reloadOnce(): Promise<void> {
    if (this.stopping) return;
    try {
      const next = await loadConfig(this.path);
      if (next.mode !== this.config.mode) {
        throw new UserError("config", `${this.path}: mode changed from ${this.config.mode} to ${next.mode}; changing the data plane needs a restart.`);
      }
      await this.applyConfig(next, this.services);
      this.info.reloads.ok++;
      this.log.info("config reloaded", { services: next.services.map((s) => s.name) });
    } catch (err) {
      this.info.reloads.failed++;
      if (!(err instanceof UserError)) throw err;
      this.log.error("reload rejected, still serving the previous config", { error: err.message });
    }
  }

  /**
   * Move from `current` services to `config`. What can fail comes first and changes nothing when it
   * does: the admin listener's new address is bound but not yet switched to, then the data plane
   * binds/attaches. Only then does the admin listener move and are services updated in place, which
   * rebuilds their plans.
   */
  private async applyConfig(config: Config, current: readonly Service[]): Promise<void> {
    const byName = new Map(current.map((s) => [s.name, s]));
    for (const cfg of config.services) {
      const needed = byName.get(cfg.name)?.backendsAfter(cfg) ?? 0;
      if (needed > MAX_BACKENDS) {
        throw new UserError("config", `${this.path}: service ${cfg.name} would hold ${needed} backends while removed ones drain, more than ${MAX_BACKENDS}; reload again once their connections have ended.`);
      }
    }
    const pairs: ServicePair[] = config.services.map((cfg) => ({ config: cfg, service: byName.get(cfg.name) ?? new Service(cfg, this.log) }));
    const admin = this.admin.prepare(config.admin.listen);
    try {
      await this.plane.apply(config, pairs);
    } catch (err) {
      admin.abort();
      throw err;
    }
    admin.commit();
    for (const { config: cfg, service } of pairs) if (byName.has(cfg.name)) service.update(cfg);
    const next = pairs.map((p) => p.service);
    this.config = config;
    this.services = next;
    this.log.level = config.log.level;
    await this.resolver.sync(next, config.dns_refresh_ms);
    this.health.sync(next);
  }

  /** Stop accepting, let established connections finish up to drain_timeout, then release everything. */
  shutdown(signal: string): Promise<void> {
    this.stopping ??= (async () => {
      const deadline = Date.now() + this.config.drain_timeout_ms;
      this.log.info("draining", { signal, drain_timeout_ms: this.config.drain_timeout_ms });
      this.health.stop();
      this.resolver.stop();
      await this.plane.drain(deadline);
      this.release();
      this.log.info("stopped");
    })();
    return this.stopping;
  }

  private release(): void {
    clearInterval(this.housekeeping);
    this.health.stop();
    this.resolver.stop();
    this.admin.stop();
    this.plane.close();
  }
}

/** The data plane the config asks for. `auto` prefers XDP and falls back to the proxy, saying why. */
async function createDataPlane(config: Config, log: Logger, hooks: ConnectHooks): Promise<DataPlane> {
  if (config.mode === "proxy") return new ProxyDataPlane(log, hooks);
  try {
    return await createXdpDataPlane(config, log);
  } catch (err) {
    if (config.mode === "auto" && err instanceof UserError) {
      log.warn("xdp data plane unavailable, running the proxy", { reason: err.message });
      return new ProxyDataPlane(log, hooks);
    }
    throw err;
  }
}
