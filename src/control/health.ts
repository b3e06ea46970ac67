/**
 * Health checks with HAProxy semantics: every `interval` a TCP connect to each backend (start to
 * start), which fails if it is refused or takes longer than `timeout`. `fall` consecutive failures take an up backend down,
 * `rise` consecutive successes bring a down backend up. Connect failures seen by the data plane count
 * as failed checks too (passive checks), so a dead backend leaves the pick set after `fall` failed
 * client connects even before the next active check.
 *
 * The checker keeps only the streaks of results; when one crosses rise or fall it tells the backend's
 * Service (`markHealth`), which owns the health state, logs the flip once and rebuilds its plan.
 */
import type { Backend } from "./backend.ts";
import type { Service } from "./service.ts";

interface Streak {
  ok: number;
  failed: number;
  timer: ReturnType<typeof setTimeout> | null;
}

export class HealthChecker {
  private readonly streaks = new Map<Backend, Streak>();
  private readonly owner = new Map<Backend, Service>();
  private stopped = false;

  /** (Re)start checks for this set of services; backends already checked keep their streaks. */
  sync(services: readonly Service[]): void {
    const live = new Set<Backend>();
    for (const service of services) {
      for (const backend of service.backends.values()) {
        this.owner.set(backend, service);
        if (!service.config.health_check.enabled || !backend.enabled) continue;
        live.add(backend);
        if (!this.streaks.has(backend)) {
          const streak: Streak = { ok: 0, failed: 0, timer: null };
          this.streaks.set(backend, streak);
          // Stagger the first check across the interval so N backends are not probed in one burst.
          this.schedule(backend, Math.random() * service.config.health_check.interval_ms);
        }
      }
    }
    for (const [backend, streak] of this.streaks) {
      if (live.has(backend)) continue;
      if (streak.timer) clearTimeout(streak.timer);
      this.streaks.delete(backend);
      // Checks turned off for a backend still in use: nothing would ever bring it back, so it is up by
      // definition. (A backend removed by a reload keeps its state while it drains.)
      if (backend.enabled && backend.health === "down") this.owner.get(backend)?.markHealth(backend, "up", "health checks disabled");
    }
    const current = new Set<Backend>();
    for (const service of services) for (const backend of service.backends.values()) current.add(backend);
    for (const backend of this.owner.keys()) if (!current.has(backend)) this.owner.delete(backend);
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
    for (const streak of this.streaks.values()) if (streak.timer) clearTimeout(streak.timer);
    this.streaks.clear();
  }

  private schedule(backend: Backend, delay: number): void {
    const streak = this.streaks.get(backend);
    if (!streak || this.stopped) return;
    streak.timer = setTimeout(() => void this.check(backend), delay);
    streak.timer.unref?.();
  }

  private async check(backend: Backend): Promise<void> {
    const service = this.owner.get(backend);
    if (!service || !this.streaks.has(backend)) return;
    const { interval_ms, timeout_ms } = service.config.health_check;
    if (backend.ip === undefined) {
      this.schedule(backend, interval_ms);
      return;
    }
    const started = Date.now();
    const error = await probe(backend.ip, backend.config.port, timeout_ms);
    this.result(backend, error === null, error ?? "ok");
    // Checks start every `interval` (HAProxy's `inter`), not `interval` after the previous result: a
    // timing-out backend would otherwise be probed every interval + timeout and take longer to leave.
    this.schedule(backend, Math.max(0, interval_ms - (Date.now() - started)));
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

/** One TCP connect: null on success, else the reason it failed. */
export async function probe(ip: string, port: number, timeoutMs: number): Promise<string | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${timeoutMs}ms`), timeoutMs);
  });
  // The socket is closed as soon as it opens, so a connect that loses the race to the timeout and
  // succeeds later leaves nothing behind.
  const attempt = Bun.connect({ hostname: ip, port, socket: { data() {}, open: (s) => void s.end() } }).then(
    () => null,
    (err: { code?: string }) => err.code ?? "connect failed",
  );
  const result = await Promise.race([attempt, timeout]);
  clearTimeout(timer);
  return result;
}
