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
import { slicer } from "../slice.ts";
import { localErrno } from "./incidents.ts";

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

  /** Start probing `targets` (new ones staggered; known keys take the new address and timing at their next probe) and stop probing `removed`. */
  update(targets: readonly ProbeTarget[], removed: readonly number[]): void {
    for (const target of targets) {
      const known = this.targets.get(target.key);
      if (known) {
        known.target = target;
        continue;
      }
      const s: Scheduled = { target, timer: null };
      this.targets.set(target.key, s);
      this.schedule(s, Math.random() * target.intervalMs);
    }
    for (const key of removed) {
      const s = this.targets.get(key);
      if (s?.timer) clearTimeout(s.timer);
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
  // A failure for featherlb's own want of a descriptor is named here, where it happened (Bun reports a
  // socket() that found no descriptor as ECONNREFUSED; localErrno tells them apart at once).
  const attempt = Bun.connect({ hostname: ip, port, socket: { data() {}, open: (s) => void s.end() } }).then(
    () => null,
    (err: { code?: string }) => localErrno(err.code) ?? err.code ?? "connect failed",
  );
  const result = await Promise.race([attempt, timeout]);
  clearTimeout(timer);
  return result;
}

/** Where probes run: a Prober on this thread, or on a worker thread (probe-worker.ts). */
export interface ProbeRunner {
  /** Probe exactly `targets` from now on. Only what changed since the last sync is passed on. */
  sync(targets: readonly ProbeTarget[]): Promise<void>;
  stop(): void;
}

/** The messages probe-worker.ts takes. */
export type ProbeCommand = { update: readonly ProbeTarget[]; remove: readonly number[] } | { stop: true };

/** Targets per message to the worker: a structured clone of 10,000 targets holds the event loop ~100 ms. */
const CHUNK = 500;

/**
 * Probes on a worker thread at `workerUrl` (probe-worker.ts), results delivered in batches to `report`.
 * Without a URL, or when the worker cannot start or fails, the Prober runs on this thread instead.
 * A sync sends only the targets that changed (a reload of the same 10,000 backends sends none), CHUNK
 * per turn of the event loop.
 */
export function probeRunner(report: (results: readonly ProbeResult[]) => void, workerUrl?: URL): ProbeRunner {
  /** What the prober has been told: key → target. */
  const told = new Map<number, ProbeTarget>();
  const same = (a: ProbeTarget, b: ProbeTarget) => a.ip === b.ip && a.port === b.port && a.intervalMs === b.intervalMs && a.timeoutMs === b.timeoutMs;
  const queue: ProbeCommand[] = [];
  let sending: ReturnType<typeof setImmediate> | undefined;
  let local: Prober | undefined;
  let worker: Worker | undefined;

  const inThread = () => {
    if (!local) {
      local = new Prober((r) => report([r]));
      local.update([...told.values()], []);
    }
  };
  if (workerUrl) {
    try {
      worker = new Worker(workerUrl.href);
      worker.unref();
      worker.onmessage = (event: MessageEvent<ProbeResult[]>) => report(event.data);
      worker.onerror = () => {
        worker?.terminate();
        worker = undefined;
        queue.length = 0;
        inThread(); // everything told so far, on this thread from now on
      };
    } catch {
      worker = undefined;
    }
  }
  const send = () => {
    sending = undefined;
    const command = queue.shift();
    if (command && worker) worker.postMessage(command);
    if (queue.length && worker) sending = setImmediate(send);
  };

  return {
    async sync(targets) {
      const pause = slicer();
      const update: ProbeTarget[] = [];
      const live = new Set<number>();
      for (let i = 0; i < targets.length; i++) {
        const target = targets[i]!;
        live.add(target.key);
        const known = told.get(target.key);
        if (!known || !same(known, target)) {
          told.set(target.key, target);
          update.push(target);
        }
        if ((i & 255) === 255) await pause();
      }
      const remove = [...told.keys()].filter((key) => !live.has(key));
      for (const key of remove) told.delete(key);
      if (update.length === 0 && remove.length === 0) return;
      if (!worker) {
        inThread();
        local!.update(update, remove);
        return;
      }
      queue.push({ update: update.slice(0, CHUNK), remove });
      for (let i = CHUNK; i < update.length; i += CHUNK) queue.push({ update: update.slice(i, i + CHUNK), remove: [] });
      sending ??= setImmediate(send);
    },
    stop() {
      local?.stop();
      if (sending) clearImmediate(sending);
      if (worker) {
        worker.postMessage({ stop: true } satisfies ProbeCommand);
        worker.terminate();
        worker = undefined;
      }
    },
  };
}
