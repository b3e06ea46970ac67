/**
 * Health checks with HAProxy semantics: every `interval` a TCP connect to each backend (start to
 * start), which fails if it is refused or takes longer than `timeout`. `fall` consecutive failures take an up backend down,
 * `rise` consecutive successes bring a down backend up. Connect failures seen by the data plane count
 * as failed checks too (passive checks), so a dead backend leaves the pick set after `fall` failed
 * client connects even before the next active check.
 *
 * The checker keeps only the streaks of results; when one crosses rise or fall it tells the backend's
 * Service (`markHealth`), which owns the health state, logs the flip once and rebuilds its plan. The
 * probing itself (probe.ts) runs on a worker thread when the runtime gives one (10,000 backends are
 * 10,000 connects per interval), and its results arrive here in batches.
 */
import type { Backend } from "./backend.ts";
import { LOCAL_ERRNOS, type Incidents } from "./incidents.ts";
import { probeRunner, type ProbeResult, type ProbeRunner, type ProbeTarget } from "./probe.ts";
import { slicer } from "../slice.ts";
import type { Service } from "./service.ts";

interface Streak {
  ok: number;
  failed: number;
  /** The Prober's name for this backend. */
  key: number;
}

export class HealthChecker {
  private readonly streaks = new Map<Backend, Streak>();
  private readonly byKey = new Map<number, Backend>();
  private readonly owner = new Map<Backend, Service>();
  private readonly runner: ProbeRunner;
  private nextKey = 0;
  private stopped = false;
  /** The sync in progress (sync serialises them). */
  private syncing: Promise<void> = Promise.resolve();
  /** Probe results not taken yet (drain), in arrival order. */
  private inbox: ProbeResult[] = [];
  private draining = false;

  /**
   * `probeWorker`: probe-worker.ts, to probe on a worker thread; without it, probes run on this thread.
   * `incidents` hears of checks that could not run for a local reason (no descriptor, no local port).
   */
  constructor(probeWorker?: URL, private readonly incidents?: Incidents) {
    this.runner = probeRunner((results) => this.results(results), probeWorker);
  }

  /**
   * (Re)start checks for this set of services; backends already checked keep their streaks. Also call
   * it when backend addresses change (DNS): the probes go to each backend's current address. In slices
   * (10,000 backends are tens of ms of bookkeeping): concurrent calls are serialised, the last wins.
   */
  async sync(services: readonly Service[]): Promise<void> {
    this.syncing = this.syncing.then(() => this.syncOnce(services));
    return this.syncing;
  }

  private async syncOnce(services: readonly Service[]): Promise<void> {
    if (this.stopped) return;
    const pause = slicer();
    const live = new Set<Backend>();
    const current = new Set<Backend>();
    const targets: ProbeTarget[] = [];
    for (const service of services) {
      const { enabled, interval_ms, timeout_ms } = service.config.health_check;
      for (const backend of service.backends.values()) {
        current.add(backend);
        this.owner.set(backend, service);
        if (!enabled || !backend.enabled) continue;
        live.add(backend);
        let streak = this.streaks.get(backend);
        if (!streak) {
          streak = { ok: 0, failed: 0, key: this.nextKey++ };
          this.streaks.set(backend, streak);
          this.byKey.set(streak.key, backend);
        }
        // Until DNS has answered there is nothing to connect to: no probe, no result.
        if (backend.ip !== undefined) targets.push({ key: streak.key, ip: backend.ip, port: backend.config.port, intervalMs: interval_ms, timeoutMs: timeout_ms });
      }
      await pause();
      if (this.stopped) return;
    }
    for (const [backend, streak] of this.streaks) {
      if (live.has(backend)) continue;
      this.streaks.delete(backend);
      this.byKey.delete(streak.key);
      // Checks turned off for a backend still in use: nothing would ever bring it back, so it is up by
      // definition. (A backend removed by a reload keeps its state while it drains.)
      if (backend.enabled && backend.health === "down") this.owner.get(backend)?.markHealth(backend, "up", "health checks disabled");
    }
    for (const backend of this.owner.keys()) if (!current.has(backend)) this.owner.delete(backend);
    await this.runner.sync(targets);
  }

  /** Passive check: the data plane failed to connect. */
  reportFailure(backend: Backend, reason: string): void {
    this.result(backend, false, reason);
  }

  /** Passive check: a connect succeeded; it ends a failure streak (it cannot raise a down backend). */
  reportSuccess(backend: Backend): void {
    const streak = this.streaks.get(backend);
    if (streak && backend.health === "up") streak.failed = 0;
  }

  stop(): void {
    this.stopped = true;
    this.runner.stop();
    this.streaks.clear();
    this.byKey.clear();
  }

  /**
   * A batch of active probe results (from the worker thread, or one at a time on this thread). In a
   * storm one batch can hold thousands, each a flip that is logged: they are taken in order, in slices
   * (rebuild.ts slicer), so the event loop is never held by one batch.
   */
  private results(results: readonly ProbeResult[]): void {
    if (this.stopped) return;
    for (const r of results) this.inbox.push(r);
    if (!this.draining) void this.drain();
  }

  private async drain(): Promise<void> {
    this.draining = true;
    const pause = slicer();
    try {
      for (let i = 0; i < this.inbox.length; i++) {
        if (this.stopped) return;
        const [key, error] = this.inbox[i]!;
        const backend = this.byKey.get(key);
        // A check that failed for want of a descriptor or a local port (probe() names it where it
        // failed) says nothing about the backend: neither a success nor a failure, the streak stays.
        if (backend && error !== null && LOCAL_ERRNOS.includes(error)) {
          this.incidents?.localError(error, { service: this.owner.get(backend)?.name, backend: backend.key, during: "health check" });
        } else if (backend) this.result(backend, error === null, error ?? "ok");
        if ((i & 63) === 63) await pause();
      }
    } finally {
      this.inbox = [];
      this.draining = false;
    }
  }

  private result(backend: Backend, ok: boolean, reason: string): void {
    const streak = this.streaks.get(backend);
    const service = this.owner.get(backend);
    if (!streak || !service) return;
    const { rise, fall } = service.config.health_check;
    if (ok) {
      streak.ok++;
      streak.failed = 0;
      if (backend.health === "down" && streak.ok >= rise) service.markHealth(backend, "up", reason);
    } else {
      streak.failed++;
      streak.ok = 0;
      if (backend.health === "up" && streak.failed >= fall) service.markHealth(backend, "down", reason);
    }
  }
}
