/**
 * The one load client: a closed loop of `concurrency` workers, each opening one connection after the
 * other (conn.ts: greetConn or runConn) until the deadline, `maxConns` or `stop()`, optionally paced.
 * Every result is folded into LoadStats; the in-flight count per backend is sampled every SAMPLE_MS so
 * checks can reason about concurrency at a given moment. Used by the e2e suite (in its container and on
 * loopback), the netns client and the demo.
 */
import type { ConnResult, ErrorKind } from "./conn.ts";

export const SAMPLE_MS = 50;

export interface LoadSpec {
  /** Shown in progress lines, e.g. "proxy round_robin short". */
  label: string;
  concurrency: number;
  durationMs: number;
  /** Stop after this many connections have been started. */
  maxConns?: number;
  /** Connection number i; it calls `onHello` once a backend has greeted (in-flight accounting). */
  conn: (i: number, onHello: (backend: string) => void) => Promise<ConnResult>;
  /** Pause between two connections of one worker. */
  paceMs?: number;
  /** Keep one event per connection (fault analysis). */
  keepEvents?: boolean;
}

export interface ConnEvent {
  /** ms since the load started, at completion. */
  t: number;
  /** ms since the load started, when connect() was called, and when the greeting arrived. */
  start: number;
  helloAt?: number;
  ok: boolean;
  error?: ErrorKind;
  backend?: string;
  instance?: string;
  source?: string;
}

export interface InflightSample {
  t: number;
  /** Connections with a greeting and no end yet, per backend. */
  perBackend: Record<string, number>;
  /** Connections open that no backend has greeted yet. */
  awaitingHello: number;
}

export class LoadStats {
  started = 0;
  elapsedMs = 0;
  conns = 0;
  ok = 0;
  errors = new Map<ErrorKind, number>();
  /** A few error details, for the log. */
  errorSamples: string[] = [];
  /** Connections each backend greeted (ok or not). */
  perBackend = new Map<string, number>();
  /** source IP → backend → connections. */
  perSource = new Map<string, Map<string, number>>();
  /** Of the connections that succeeded, sorted once the load is done. */
  latencies: number[] = [];
  bytesSent = 0;
  bytesReceived = 0;
  events: ConnEvent[] = [];
  samples: InflightSample[] = [];
  inflight = new Map<string, number>();
  awaitingHello = 0;
  /**
   * Connections whose backend reported the client address of a PROXY header (send_proxy), and those
   * where it was not this connection's own address (a few samples kept).
   */
  peerSeen = 0;
  peerWrong = 0;
  peerSamples: string[] = [];
  /** The first client address a backend reported, for the log. */
  peerExample: string | undefined;

  get errorCount(): number {
    let n = 0;
    for (const v of this.errors.values()) n += v;
    return n;
  }

  get rate(): number {
    return this.elapsedMs > 0 ? (this.conns * 1000) / this.elapsedMs : 0;
  }

  /** Mean sampled in-flight per backend. */
  meanInflight(): Map<string, number> {
    const sum = new Map<string, number>();
    for (const s of this.samples) for (const [b, n] of Object.entries(s.perBackend)) sum.set(b, (sum.get(b) ?? 0) + n);
    for (const [b, n] of sum) sum.set(b, this.samples.length ? n / this.samples.length : 0);
    return sum;
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface RunningLoad {
  stats: LoadStats;
  /** Ask the workers to finish their current connection and stop. */
  stop(): void;
  done: Promise<LoadStats>;
}

/** `progress` receives one line per second (the console shows it; the log does not). */
export function startLoad(spec: LoadSpec, progress?: (line: string) => void): RunningLoad {
  const stats = new LoadStats();
  stats.started = performance.now();
  const deadline = stats.started + spec.durationMs;
  let stopped = false;
  let next = 0;

  const bump = (m: Map<string, number>, k: string, d = 1) => m.set(k, (m.get(k) ?? 0) + d);

  function record(r: ConnResult, start: number): void {
    stats.conns++;
    stats.bytesSent += r.bytesSent;
    stats.bytesReceived += r.bytesReceived;
    if (r.backend) {
      bump(stats.perBackend, r.backend);
      bump(stats.inflight, r.backend, -1);
      if (r.source !== undefined) {
        let m = stats.perSource.get(r.source);
        if (!m) stats.perSource.set(r.source, (m = new Map()));
        bump(m, r.backend);
      }
    } else {
      stats.awaitingHello--;
    }
    if (r.peerSeen !== undefined) {
      stats.peerSeen++;
      stats.peerExample ??= r.peerSeen;
      if (r.peerSeen !== r.local) {
        stats.peerWrong++;
        if (stats.peerSamples.length < 3) stats.peerSamples.push(`backend saw ${r.peerSeen}, the client was ${r.local}`);
      }
    }
    if (r.ok) {
      stats.ok++;
      stats.latencies.push(r.latencyMs);
    } else {
      stats.errors.set(r.error!, (stats.errors.get(r.error!) ?? 0) + 1);
      if (stats.errorSamples.length < 5) stats.errorSamples.push(`${r.error}: ${r.detail}${r.backend ? ` (on ${r.backend})` : ""}`);
    }
    if (spec.keepEvents)
      stats.events.push({
        t: performance.now() - stats.started,
        start,
        helloAt: r.helloMs === undefined ? undefined : start + r.helloMs,
        ok: r.ok,
        error: r.error,
        backend: r.backend,
        instance: r.instance,
        source: r.source,
      });
  }

  async function worker(): Promise<void> {
    while (!stopped && performance.now() < deadline && (spec.maxConns === undefined || next < spec.maxConns)) {
      const i = next++;
      const start = performance.now() - stats.started;
      stats.awaitingHello++;
      const r = await spec.conn(i, (backend) => {
        stats.awaitingHello--;
        bump(stats.inflight, backend);
      });
      record(r, start);
      if (spec.paceMs) await Bun.sleep(spec.paceMs);
    }
  }

  const sampler = setInterval(() => {
    stats.samples.push({
      t: performance.now() - stats.started,
      perBackend: Object.fromEntries(stats.inflight),
      awaitingHello: stats.awaitingHello,
    });
  }, SAMPLE_MS);

  let lastConns = 0;
  let lastAt = stats.started;
  const ticker = progress
    ? setInterval(() => {
        const now = performance.now();
        const rate = ((stats.conns - lastConns) * 1000) / (now - lastAt);
        lastConns = stats.conns;
        lastAt = now;
        const spread = [...stats.perBackend].map(([b, n]) => `${b} ${n}`).join(", ");
        progress(
          `${spec.label}  ${((now - stats.started) / 1000).toFixed(1)}s  ${stats.conns} conns  ${stats.errorCount} errors  ${Math.round(rate)}/s  [${spread}]`,
        );
      }, 1000)
    : undefined;

  const done = Promise.all(Array.from({ length: spec.concurrency }, worker)).then(() => {
    clearInterval(sampler);
    if (ticker) clearInterval(ticker);
    stats.elapsedMs = performance.now() - stats.started;
    stats.latencies.sort((a, b) => a - b);
    return stats;
  });
  return { stats, stop: () => void (stopped = true), done };
}

export function runLoad(spec: LoadSpec, progress?: (line: string) => void): Promise<LoadStats> {
  return startLoad(spec, progress).done;
}
