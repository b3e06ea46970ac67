/**
 * The whole e2e suite, shortened, against featherlb's real runtime (proxy mode) on loopback: three
 * e2e backends on 127.0.0.2-4, sixteen client source IPs 127.0.0.10-25, the fault scenario stopping
 * and restarting one backend in process. No Docker and no mocks: it proves the suite's checks pass
 * on a working LB before `make e2e` spends minutes on images.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Runtime } from "../../src/runtime.ts";
import { startBackend, type RunningBackend } from "./backend/server.ts";
import { readLbConfig } from "./client/lbconfig.ts";
import { parseSources } from "./client/sources.ts";
import { runSuite } from "./client/suite.ts";

/** A port that is free on 127.0.0.1 right now. */
function freePort(hostname = "127.0.0.1"): number {
  const l = Bun.listen({ hostname, port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

const ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const backendPort = freePort(ips[0]);
const backends: RunningBackend[] = ips.map((ip) => startBackend({ id: ip, hostname: ip, port: backendPort }));
const algorithms = ["round_robin", "weighted_round_robin", "least_connections", "random", "power_of_two", "source_hash", "maglev"];
const ports = algorithms.map(() => freePort());
const adminPort = freePort();

const yaml = `mode: proxy
log: { level: error }
admin: { listen: "127.0.0.1:${adminPort}" }
drain_timeout: 100ms
defaults:
  connect_timeout: 500ms
  connect_retries: 2
  health_check: { interval: 300ms, timeout: 300ms, rise: 2, fall: 2 }
services:
${algorithms
  .map(
    (alg, i) => `  - name: s${i}
    listen: "127.0.0.1:${ports[i]}"
    algorithm: ${alg}
    backends:
${ips.map((ip, k) => `      - { address: "${ip}:${backendPort}", weight: ${k === 2 ? 2 : 1} }`).join("\n")}`,
  )
  .join("\n")}
`;
const dir = mkdtempSync(join(tmpdir(), "featherlb-e2e-"));
const path = join(dir, "lb.yaml");
writeFileSync(path, yaml);
const runtime = await Runtime.start(path);

afterAll(async () => {
  await runtime.shutdown("test");
  for (const b of backends) b.stop();
});

test("every check of the e2e suite passes through featherlb's proxy", async () => {
  const lines: string[] = [];
  const pass = await runSuite(
    readLbConfig(yaml, path),
    {
      mode: "proxy",
      lbHost: "127.0.0.1",
      metricsUrl: `http://127.0.0.1:${adminPort}/metrics`,
      seconds: 0.5,
      concurrency: 8,
      payloadBytes: 64,
      bulkMiB: 1,
      bulkCount: 2,
      holdSeconds: 1.2,
      holdConcurrency: 8,
      slowHoldMs: 500,
      fastHoldMs: 1,
      sources: parseSources("127.0.0.10-25"),
      faultBackend: ips[1]!,
      only: [],
      timeoutMs: 5000,
      readyTimeoutMs: 10_000,
      faultKillAfterMs: 600,
      faultOutageMs: 1000,
    },
    {
      out: (line) => void lines.push(line),
      progress: () => {},
      action: (verb, id) => {
        const i = ips.indexOf(id);
        if (verb === "kill") backends[i]!.stop();
        else backends[i] = startBackend({ id, hostname: id, port: backendPort });
      },
    },
  );
  if (process.env.E2E_SUITE_PRINT) console.log(lines.join("\n"));
  const failed = lines.filter((l) => l.includes("FAIL"));
  expect(failed).toEqual([]);
  expect(pass).toBe(true);
  expect(lines.filter((l) => l.startsWith("  PASS")).length).toBeGreaterThan(40);
  expect(lines.at(-1)).toBe("RESULT proxy PASS");
}, 45_000);
