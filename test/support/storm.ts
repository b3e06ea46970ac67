/**
 * A health storm, measured from outside featherlb: every backend of a farm (farm.ts) goes down at once,
 * as in a rack outage, then comes back. Meanwhile two probes run, each in this process, sequentially:
 *
 * - admin: GET /healthz every SAMPLE_GAP_MS. featherlb answers it on its one event loop, so its latency
 *   is how long the loop was held (a stall of 1 s shows as a ~1 s answer).
 * - conns: a new TCP connection to a healthy service, timed from connect to its backend's first byte,
 *   one after another: what a client of a service untouched by the storm sees.
 *
 * Used by test/proxy/storm.test.ts (CI size) and test/bench/scale.ts (10 to 10,000 backends).
 */
import { readFileSync } from "node:fs";
import type { Proc } from "./proc.ts";

const SAMPLE_GAP_MS = 20;

export interface Latencies {
  count: number;
  failures: number;
  p50: number;
  p99: number;
  worst: number;
}

export interface StormResult {
  /** ms from "down" until featherlb had marked every backend down; then the same for "up". */
  downMs: number;
  upMs: number;
  /** CPU seconds featherlb used from "down" until every backend was up again (user + system). */
  cpuS: number;
  /** /healthz while the storm ran (down and up phases). */
  admin: Latencies;
  /** Connections to the healthy service before the storm (baseline) and during it. */
  connsBefore: Latencies;
  conns: Latencies;
}

export interface StormTarget {
  /** featherlb's admin listener, "http://host:port". */
  admin: string;
  /** A healthy service (its backend is not in the farm); undefined: no connection probe. */
  healthy?: { host: string; port: number };
  /** How many backends featherlb has marked down and up so far (from its log lines). */
  downs(): number;
  ups(): number;
  /** The farm's backend count: every one of them flips. */
  backends: number;
  /** featherlb's pid, for its CPU time. */
  pid: number;
  /** Longest either phase may take. */
  phaseTimeoutMs: number;
}

export function summarise(samples: readonly number[], failures = 0): Latencies {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN);
  return { count: s.length, failures, p50: at(50), p99: at(99), worst: s.length ? s[s.length - 1]! : NaN };
}

/** A probe that runs `once` back to back (with `gap` ms between) until stopped; its latencies. */
function probe(once: () => Promise<void>, gap: number) {
  const samples: number[] = [];
  let failures = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      const t = performance.now();
      try {
        await once();
        samples.push(performance.now() - t);
      } catch {
        failures++;
      }
      if (gap) await Bun.sleep(gap);
    }
  })();
  return {
    take(): Latencies {
      const out = summarise(samples, failures);
      samples.length = 0;
      failures = 0;
      return out;
    },
    async stop(): Promise<void> {
      running = false;
      await done;
    },
  };
}

/** Connect, wait for the first byte, close. */
function firstByte(host: string, port: number, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no first byte")), timeoutMs);
    Bun.connect({
      hostname: host,
      port,
      socket: {
        data(s) {
          clearTimeout(timer);
          resolve(); // first: end() may call close() at once
          s.end();
        },
        close() {
          clearTimeout(timer);
          reject(new Error("closed before the first byte"));
        },
        error() {},
      },
    }).catch((err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<number> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > timeoutMs) throw new Error(`storm: ${what} did not happen within ${timeoutMs} ms`);
    await Bun.sleep(10);
  }
  return performance.now() - start;
}

/** CPU seconds (user + system) process `pid` has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
/** Clock ticks per second of /proc's times (USER_HZ: 100 on every Linux architecture featherlb runs on). */
const CLK_TCK = 100;

/** The farm (a farm.ts process) obeys `cmd` ("down" or "up"); resolves once it has. */
export async function farmCommand(farm: Proc, cmd: "down" | "up"): Promise<void> {
  const from = farm.lines.length;
  farm.proc.stdin.write(`${cmd}\n`);
  farm.proc.stdin.flush();
  const end = Date.now() + 30_000;
  while (!farm.lines.slice(from).some((l) => l.text.startsWith(`${cmd} `))) {
    if (Date.now() > end || farm.exitCode !== null) throw new Error(`farm did not obey "${cmd}": ${farm.tail()}`);
    await Bun.sleep(5);
  }
}

/** Run the storm: baseline, every backend down, every backend up; the probes' latencies. */
export async function runStorm(target: StormTarget, farm: Proc): Promise<StormResult> {
  const admin = probe(async () => {
    const res = await fetch(`${target.admin}/healthz`, { signal: AbortSignal.timeout(target.phaseTimeoutMs) });
    await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
  }, SAMPLE_GAP_MS);
  const { healthy } = target;
  // One connection every 5 ms: a steady client, not a load test (its CPU would drown the storm's).
  const conns = healthy ? probe(() => firstByte(healthy.host, healthy.port), 5) : undefined;
  try {
    await Bun.sleep(500);
    const connsBefore = conns?.take() ?? summarise([]);
    admin.take();
    const downs = target.downs();
    const cpu = cpuSeconds(target.pid);
    await farmCommand(farm, "down");
    const downMs = await until("every backend down", () => target.downs() - downs >= target.backends, target.phaseTimeoutMs);
    const ups = target.ups();
    await farmCommand(farm, "up");
    const upMs = await until("every backend up", () => target.ups() - ups >= target.backends, target.phaseTimeoutMs);
    const cpuS = cpuSeconds(target.pid) - cpu;
    // The last rebuilds run after the last flip: give them time to show in the probes.
    await Bun.sleep(500);
    return { downMs, upMs, cpuS, admin: admin.take(), connsBefore, conns: conns?.take() ?? summarise([]) };
  } finally {
    await admin.stop();
    await conns?.stop();
  }
}
