/**
 * A health storm through real sockets (issue 16): 8 maglev services × 256 backends, every backend
 * refusing connections at once (a rack outage), then all coming back, while a ninth service with a
 * healthy backend keeps taking connections. featherlb must keep its event loop free: /healthz answers
 * and the healthy service's connections flow all along. Before plan rebuilds were coalesced and sliced,
 * each of the 2,048 flips rebuilt a 65,537-slot Maglev table on the spot: /healthz took seconds.
 *
 * The limits asserted here are loose (CI machines are shared); the figures are printed, and the bench
 * (`make bench`, test/bench/scale.ts) measures the same storm at up to 10,000 backends against the
 * targets in docs/benchmarks.md.
 */
import { afterAll, expect, test } from "bun:test";
import { farmAddresses } from "../support/farm.ts";
import { type RunningLB, startLB } from "../support/lb.ts";
import { freePort } from "../support/net.ts";
import { Proc } from "../support/proc.ts";
import { runStorm } from "../support/storm.ts";

const SERVICES = 8;
const BACKENDS = 256;
/**
 * Worst /healthz answer, and worst added connection latency, allowed during the storm. The target is
 * 50 ms (docs/benchmarks.md); a shared CI machine preempts us for longer than that, so the test holds a
 * limit that tells "sliced" from "seconds-long stalls" with room to spare (before: > 9 s).
 */
const LIMIT_MS = 1000;
/** featherlb's CPU seconds for the whole storm (before: ~20 s of Maglev rebuilds). */
const CPU_LIMIT_S = 5;

let farm: Proc | undefined;
let lb: RunningLB | undefined;
let healthy: Proc | undefined;
afterAll(async () => {
  await lb?.stop();
  await farm?.stop();
  await healthy?.stop();
});

test(`health storm: ${SERVICES} × ${BACKENDS} maglev backends down then up; /healthz and a healthy service stay responsive`, async () => {
  const spec = `127.3/${SERVICES * BACKENDS}:9000`;
  const addresses = farmAddresses(spec);
  farm = new Proc([process.execPath, new URL("../support/farm.ts", import.meta.url).pathname, spec]);
  const ready = Date.now() + 30_000;
  while (!farm.lines.some((l) => l.text.startsWith("ready "))) {
    if (Date.now() > ready || farm.exitCode !== null) throw new Error(`the backend farm did not start: ${farm.tail()}`);
    await Bun.sleep(20);
  }
  // The healthy backend in a process of its own: this one reads featherlb's 4,096 storm log lines and
  // must not add its own delays to the connections it measures.
  const healthyBackendPort = freePort();
  healthy = new Proc([process.execPath, new URL("../xdp/netns/backend.ts", import.meta.url).pathname, "h", String(healthyBackendPort)]);
  await healthy.waitFor((j) => j.event === "ready", 30_000);
  const healthyPort = freePort();
  const services = Array.from({ length: SERVICES }, (_, s) =>
    [`  - name: s${s}`, `    listen: 127.0.0.1:${freePort()}`, "    algorithm: maglev", "    backends:", ...addresses.slice(s * BACKENDS, (s + 1) * BACKENDS).map((a) => `      - address: ${a}`)].join("\n"),
  );
  lb = await startLB(
    [
      "admin: { listen: ADMIN }",
      "log: { level: info }",
      "defaults:",
      "  health_check: { interval: 1s, timeout: 500ms, rise: 1, fall: 1 }",
      "services:",
      "  - name: healthy",
      `    listen: 127.0.0.1:${healthyPort}`,
      "    health_check: { enabled: false }",
      `    backends: [{ address: "127.0.0.1:${healthyBackendPort}" }]`,
      ...services,
      "",
    ].join("\n"),
  );
  const running = lb;
  const result = await runStorm(
    {
      admin: `http://127.0.0.1:${running.adminPort}`,
      healthy: { host: "127.0.0.1", port: healthyPort },
      downs: () => running.count("backend down"),
      ups: () => running.count("backend up"),
      backends: SERVICES * BACKENDS,
      pid: running.pid,
      phaseTimeoutMs: 30_000,
    },
    farm,
  );
  const ms = (n: number) => `${n.toFixed(1)} ms`;
  console.log(
    `storm ${SERVICES}×${BACKENDS} maglev: all down in ${ms(result.downMs)}, all up in ${ms(result.upMs)}, featherlb CPU ${result.cpuS.toFixed(2)} s; ` +
      `/healthz p50 ${ms(result.admin.p50)} p99 ${ms(result.admin.p99)} worst ${ms(result.admin.worst)} (${result.admin.count} samples); ` +
      `healthy-service connections p50 ${ms(result.conns.p50)} worst ${ms(result.conns.worst)} (${result.conns.count}, ${result.conns.failures} failed; before the storm p50 ${ms(result.connsBefore.p50)})`,
  );
  expect(result.admin.failures).toBe(0);
  expect(result.conns.failures).toBe(0);
  expect(result.admin.worst).toBeLessThan(LIMIT_MS);
  expect(result.cpuS).toBeLessThan(CPU_LIMIT_S);
  const baseline = Number.isNaN(result.connsBefore.p50) ? 0 : result.connsBefore.p50;
  expect(result.conns.worst - baseline).toBeLessThan(LIMIT_MS);
}, 120_000);
