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
import { WORKER_PATH, loadConfigOffThread } from "./config/offthread.ts";
import type { Config, Plane, ServiceConfig } from "./config/types.ts";
import { splitPlanes } from "./config/xdp.ts";
import { AdminServer } from "./control/admin.ts";
import { Announcer } from "./control/announce.ts";
import { ConfigWatcher } from "./control/configwatch.ts";
import { Resolver } from "./control/dns.ts";
import { HealthChecker } from "./control/health.ts";
import { Incidents } from "./control/incidents.ts";
import { Logger } from "./control/log.ts";
import { type RuntimeInfo, renderMetricsSliced, renderStatus } from "./control/metrics.ts";
import { Service } from "./control/service.ts";
import { usableCpus } from "./dataplane/proxy/cpus.ts";
import { WorkerPool } from "./dataplane/proxy/pool.ts";
import type { DataPlane, ServicePair } from "./dataplane/types.ts";
import { createXdpDataPlane } from "./dataplane/xdp/index.ts";
import { UserError } from "./errors.ts";
import { slicer } from "./slice.ts";
import { VERSION } from "./version.ts";

/**
 * Loads and attaches the XDP data plane for the services in `serving` (they choose the interface). Tests
 * pass a stand-in; featherlb uses createXdpDataPlane.
 */
export type XdpFactory = (config: Config, log: Logger, serving: readonly ServiceConfig[]) => Promise<DataPlane>;

/**
 * The worker threads, resolved relative to this file: in the sources src/config/…, src/control/… and
 * src/dataplane/proxy/…, in the compiled binary the same paths among its entry points (Makefile).
 */
const CONFIG_WORKER = new URL(WORKER_PATH, import.meta.url);
const PROBE_WORKER = new URL("./control/probe-worker.ts", import.meta.url);
const PROXY_WORKER = new URL("./dataplane/proxy/worker.ts", import.meta.url);
const RELAY_THREAD = new URL("./dataplane/proxy/splice/thread.ts", import.meta.url);

/**
 * Why an auto service runs in the proxy although XDP might serve it: the XDP plane is not running in
 * this process (it is attached at start only, when a service needs it).
 */
const XDP_NOT_STARTED = "the xdp data plane was not started (no service needed it at start); a restart starts it";

export class Runtime {
  services: Service[] = [];
  readonly info: RuntimeInfo;
  private readonly resolver: Resolver;
  private readonly admin: AdminServer;
  private readonly housekeeping: ReturnType<typeof setInterval>;
  private readonly announcer: Announcer;
  private watcher?: ConfigWatcher;
  private reloading: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  /** Auto services the XDP plane cannot serve, by name, with the reason last logged (logged on change). */
  private fallbacks = new Map<string, string>();

  private constructor(
    private config: Config,
    private readonly path: string,
    readonly log: Logger,
    /** Every process has the proxy plane (cheap: no worker thread until a service runs in it)… */
    private readonly proxy: WorkerPool,
    /** …and the XDP plane if a service needed it at start and it attached. */
    private readonly xdp: DataPlane | null,
    /** Why there is no XDP plane (the attach failed, or no service needed it): auto services run in the proxy. */
    private readonly xdpUnavailable: string,
    private readonly health: HealthChecker,
    private readonly incidents: Incidents,
  ) {
    this.info = { version: VERSION, mode: "proxy", startedAt: Date.now(), reloads: { ok: 0, failed: 0 } };
    if (xdp?.attachMode !== undefined) this.info.attach = xdp.attachMode;
    this.resolver = new Resolver(log, config.dns_refresh_ms, () => void this.health.sync(this.services));
    this.announcer = new Announcer(log);
    this.info.workers = () => proxy.workers();
    this.admin = new AdminServer({
      metrics: async () => {
        await this.refreshStats();
        return renderMetricsSliced(this.info, this.services, { xdp: this.xdp?.xdpStats?.(), incidents: this.incidents, maps: this.xdp?.maps?.() });
      },
      status: async () => {
        await this.refreshStats();
        return renderStatus(this.info, this.services, this.xdp?.maps?.());
      },
    });
    // Backends removed by a reload disappear once their last connection ends.
    this.housekeeping = setInterval(() => this.services.forEach((s) => s.collectDrained()), 1000);
    this.housekeeping.unref();
  }

  /**
   * Load `path`, start the data planes and everything around it. Throws UserError on user mistakes.
   * `createXdp` is for tests; featherlb loads the real XDP program when a service runs in xdp.
   */
  static async start(path: string, createXdp: XdpFactory = createXdpDataPlane): Promise<Runtime> {
    const config = await loadConfig(path);
    const log = new Logger(config.log.level);
    const incidents = new Incidents(log);
    const health = new HealthChecker(PROBE_WORKER, incidents);
    const proxy = new WorkerPool(
      log,
      {
        onConnectFailure: (b, reason) => health.reportFailure(b, reason),
        onConnectSuccess: (b) => health.reportSuccess(b),
      },
      incidents,
      config.workers,
      config.workers === "auto" ? usableCpus() : config.workers,
      PROXY_WORKER,
      RELAY_THREAD.href,
    );
    let xdp: DataPlane | null = null;
    let unavailable = XDP_NOT_STARTED;
    const wanted = splitPlanes(config).plane;
    const serving = config.services.filter((s) => wanted.get(s) === "xdp");
    if (serving.length > 0) {
      try {
        xdp = await createXdp(config, log, serving);
      } catch (err) {
        // Services that asked for xdp themselves cannot run without it; auto ones fall back together.
        if (!(err instanceof UserError) || serving.some((s) => s.mode === "xdp")) {
          proxy.close();
          throw err;
        }
        unavailable = err.message;
        log.warn("xdp data plane unavailable, running the proxy", { reason: err.message });
      }
    }
    const runtime = new Runtime(config, path, log, proxy, xdp, unavailable, health, incidents);
    try {
      await runtime.applyConfig(config, []);
    } catch (err) {
      runtime.release();
      throw err;
    }
    runtime.watcher = new ConfigWatcher(path, () => runtime.config.config_watch_ms, () => runtime.reload(), log);
    log.info("featherlb started", {
      version: VERSION,
      mode: runtime.info.mode,
      services: config.services.length,
      workers: runtime.proxy.workers().length,
      admin: runtime.admin.port === undefined ? null : `${config.admin.listen?.host}:${runtime.admin.port}`,
    });
    return runtime;
  }

  /** Copy the data planes' counters into the Services' (before /metrics and /status). */
  private async refreshStats(): Promise<void> {
    await this.xdp?.refreshStats();
    await this.proxy.refreshStats();
  }

  /** Test hook (FEATHERLB_TEST_HOOKS=1, SIGUSR1): make the last proxy worker die of an uncaught exception. */
  crashWorker(): void {
    this.proxy.crash();
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
    this.watcher?.sync();
    try {
      // Parsed on a worker thread: a large file would otherwise hold the event loop for its whole parse.
      const started = performance.now();
      const next = await loadConfigOffThread(this.path, CONFIG_WORKER);
      const loaded = performance.now();
      await this.applyConfig(next, this.services);
      this.info.reloads.ok++;
      // How long reading the file took (on the worker) and applying it (in slices), for large configs.
      const ms = (t: number) => Math.round(t);
      this.log.info("config reloaded", { services: next.services.map((s) => s.name), load_ms: ms(loaded - started), apply_ms: ms(performance.now() - loaded) });
    } catch (err) {
      this.info.reloads.failed++;
      if (!(err instanceof UserError)) throw err;
      this.log.error("reload rejected, still serving the previous config", { error: err.message });
    }
  }

  /**
   * Move from `current` services to `config`. What can fail comes first and changes nothing when it
   * does: the proxy binds its new listeners, the admin listener's new address is bound but not yet
   * switched to, then the XDP plane applies (the last step that can fail; the others are undone if it
   * does). Only then do the proxy and admin listeners switch and are services updated in place, which
   * rebuilds their plans.
   */
  private async applyConfig(config: Config, current: readonly Service[]): Promise<void> {
    const byName = new Map(current.map((s) => [s.name, s]));
    // Thousands of backends to look at (and below, to diff): in slices, so established connections
    // keep flowing meanwhile.
    const pause = slicer();
    for (const cfg of config.services) {
      await pause();
      const needed = byName.get(cfg.name)?.backendsAfter(cfg) ?? 0;
      if (needed > MAX_BACKENDS) {
        throw new UserError("config", `${this.path}: service ${cfg.name} would hold ${needed} backends while removed ones drain, more than ${MAX_BACKENDS}; reload again once their connections have ended.`);
      }
    }
    const split = splitPlanes(config, this.xdp ? undefined : this.xdpUnavailable);
    config.services.forEach((cfg, i) => {
      if (cfg.mode === "xdp" && !this.xdp) {
        throw new UserError("config", `${this.path}: services[${i}] ("${cfg.name}") runs in xdp, but this process did not start the xdp data plane (${this.xdpUnavailable}); restart featherlb to start it.`);
      }
    });
    const pairs: ServicePair[] = config.services.map((cfg) => ({ config: cfg, service: byName.get(cfg.name) ?? new Service(cfg, this.log, undefined, this.proxy.count) }));
    // New services pick nothing until their first plan is built (in slices: the event loop keeps
    // serving the services already running); a data plane gets them with that plan.
    await Promise.all(pairs.map(({ service }) => (byName.has(service.name) ? undefined : service.settled())));
    const inPlane = (plane: Plane) => pairs.filter((p) => split.plane.get(p.config) === plane);
    const listeners = await this.proxy.prepare(config, inPlane("proxy"));
    let admin;
    try {
      admin = this.admin.prepare(config.admin.listen);
    } catch (err) {
      listeners.abort();
      throw err;
    }
    try {
      await this.xdp?.apply(config, inPlane("xdp"));
    } catch (err) {
      listeners.abort();
      admin.abort();
      throw err;
    }
    listeners.commit();
    for (const { config: cfg, service } of pairs) {
      if (!byName.has(cfg.name)) continue;
      service.update(cfg);
      await pause();
    }
    const next = pairs.map((p) => p.service);
    // The reload's own changes (backends, weights, algorithm) are in the plans before it is reported.
    await Promise.all(next.map((s) => s.settled()));
    this.config = config;
    this.services = next;
    this.log.level = config.log.level;
    this.notePlanes(config, split);
    // Every proxy worker has the new plans before the reload is reported done.
    await this.proxy.sync();
    await this.resolver.sync(next, config.dns_refresh_ms);
    await this.health.sync(next);
    await this.announcer.sync(config.announce, next);
    // Last: a new admin listener answers /healthz only once it is switched to (admin.ts), so a fresh
    // featherlb reports healthy when everything above is done.
    admin.commit();
  }

  /** Record which plane each service runs in (/status, /metrics) and log each auto fallback once. */
  private notePlanes(config: Config, split: ReturnType<typeof splitPlanes>): void {
    const planes = new Map(config.services.map((s) => [s.name, split.plane.get(s) ?? "proxy"] as const));
    const kinds = new Set(planes.values());
    this.info.mode = kinds.size > 1 ? "mixed" : kinds.has("xdp") ? "xdp" : "proxy";
    this.info.planes = planes;
    const fallbacks = new Map<string, string>();
    for (const { service, reason } of split.fallbacks) {
      fallbacks.set(service.name, reason);
      // When the XDP plane is missing, that was said once, at start.
      if (reason === this.xdpUnavailable || this.fallbacks.get(service.name) === reason) continue;
      this.log.warn("service runs in the proxy: the xdp data plane cannot serve it", { service: service.name, reason: `${this.path}: ${reason}` });
    }
    this.fallbacks = fallbacks;
  }

  /** Stop accepting, let established connections finish up to drain_timeout, then release everything. */
  shutdown(signal: string): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info("draining", { signal, drain_timeout_ms: this.config.drain_timeout_ms });
      // Routers stop sending new flows first; this instance still takes them for withdraw_grace.
      await this.announcer.withdrawAll();
      await Bun.sleep(this.config.announce?.withdraw_grace_ms ?? 0);
      const deadline = Date.now() + this.config.drain_timeout_ms;
      this.health.stop();
      this.resolver.stop();
      await Promise.all([this.proxy.drain(deadline), this.xdp?.drain(deadline)]);
      this.release();
      this.log.info("stopped");
    })();
    return this.stopping;
  }

  /**
   * SIGUSR2 (NGINX's binary upgrade, for the XDP data plane): hand the XDP program, its maps and host
   * changes over to the next `featherlb lb.yaml`, which adopts them (xdp/pins.ts); established flows
   * keep flowing meanwhile, and new ones are balanced with the plans in force. Services in the proxy
   * cannot be handed over: they drain as on SIGTERM. Returns false (and keeps running) when there is
   * nothing to hand over.
   */
  async handover(): Promise<boolean> {
    if (this.stopping) return false;
    if (!this.xdp?.handover) {
      this.log.warn("SIGUSR2 hands the XDP data plane over; this process runs none, so it is ignored (SIGTERM stops it)");
      return false;
    }
    try {
      this.xdp.handover();
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      this.log.error("handover refused, still serving", { error: err.message });
      return false;
    }
    this.stopping = (async () => {
      this.health.stop();
      this.resolver.stop();
      // The announced routes stay: the program that serves them stays.
      await this.proxy.drain(Date.now() + this.config.drain_timeout_ms);
      this.release();
      this.log.info("stopped (handed over)");
    })();
    await this.stopping;
    return true;
  }

  private release(): void {
    clearInterval(this.housekeeping);
    this.watcher?.stop();
    this.announcer.close();
    this.health.stop();
    this.resolver.stop();
    this.admin.stop();
    this.proxy.close();
    this.xdp?.close();
  }
}
