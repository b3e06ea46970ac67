/**
 * Active health probes: when to connect to which backend, and whether the connect worked. Nothing here
 * decides health — the HealthChecker (health.ts) counts the results against rise and fall, and the
 * backend's Service flips it.
 *
 * A probe is a TCP connect, closed as soon as it opens; it fails when refused or slower than the
 * timeout. Each target is probed every `intervalMs`, start to start (HAProxy's `inter`: a backend that
 * times out is not probed every interval + timeout), the first probe of a new target at a random point
 * of its interval so N targets are not probed in one burst.
 *
 * A connect costs ~50 µs of CPU in Bun, so 10,000 backends checked every second are half a core of
 * work: the runtime runs the Prober on a worker thread (probe-worker.ts), where that work never delays
 * the event loop that relays connections and answers /healthz. Results cross back in batches.
 */

export interface ProbeTarget {
  /** The checker's name for the backend (small integer). */
  key: number;
  ip: string;
  port: number;
  intervalMs: number;
  timeoutMs: number;
}

/** One probe's outcome: the target's key, and null (the connect worked) or why it failed. */
export type ProbeResult = [key: number, error: string | null];

interface Scheduled {
  target: ProbeTarget;
  timer: ReturnType<typeof setTimeout> | null;
}

export class Prober {
  private readonly targets = new Map<number, Scheduled>();
  private stopped = false;

  constructor(private readonly report: (result: ProbeResult) => void) {}

  /** Probe exactly `targets` from now on: new ones start (staggered), changed ones take effect at their next probe, absent ones stop. */
  sync(targets: readonly ProbeTarget[]): void {
    const live = new Set<number>();
    for (const target of targets) {
      live.add(target.key);
      const known = this.targets.get(target.key);
      if (known) {
        known.target = target;
        continue;
      }
      const s: Scheduled = { target, timer: null };
      this.targets.set(target.key, s);
      this.schedule(s, Math.random() * target.intervalMs);
    }
    for (const [key, s] of this.targets) {
      if (live.has(key)) continue;
      if (s.timer) clearTimeout(s.timer);
      this.targets.delete(key);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.targets.values()) if (s.timer) clearTimeout(s.timer);
    this.targets.clear();
  }

  private schedule(s: Scheduled, delay: number): void {
    if (this.stopped) return;
    s.timer = setTimeout(() => void this.check(s), delay);
    s.timer.unref?.();
  }

  private async check(s: Scheduled): Promise<void> {
    const { key, ip, port, timeoutMs } = s.target;
    const started = Date.now();
    const error = await probe(ip, port, timeoutMs);
    if (this.targets.get(key) !== s) return; // removed (or replaced) while the probe ran
    this.report([key, error]);
    this.schedule(s, Math.max(0, s.target.intervalMs - (Date.now() - started)));
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

/** Where probes run: a Prober on this thread, or on a worker thread (probe-worker.ts). */
export interface ProbeRunner {
  sync(targets: readonly ProbeTarget[]): void;
  stop(): void;
}

/** The messages probe-worker.ts takes. */
export type ProbeCommand = { sync: readonly ProbeTarget[] } | { stop: true };

/**
 * Probes on a worker thread at `workerUrl` (probe-worker.ts), results delivered in batches to `report`.
 * Without a URL, or when the worker cannot start or fails, the Prober runs on this thread instead.
 */
export function probeRunner(report: (results: readonly ProbeResult[]) => void, workerUrl?: URL): ProbeRunner {
  let last: readonly ProbeTarget[] = [];
  let local: Prober | undefined;
  const inThread = () => {
    local ??= new Prober((r) => report([r]));
    local.sync(last);
  };
  let worker: Worker | undefined;
  if (workerUrl) {
    try {
      worker = new Worker(workerUrl.href);
      worker.unref();
      worker.onmessage = (event: MessageEvent<ProbeResult[]>) => report(event.data);
      worker.onerror = () => {
        worker?.terminate();
        worker = undefined;
        inThread();
      };
    } catch {
      worker = undefined;
    }
  }
  return {
    sync(targets) {
      last = targets;
      if (worker) worker.postMessage({ sync: targets } satisfies ProbeCommand);
      else inThread();
    },
    stop() {
      local?.stop();
      if (worker) {
        worker.postMessage({ stop: true } satisfies ProbeCommand);
        worker.terminate();
        worker = undefined;
      }
    },
  };
}
