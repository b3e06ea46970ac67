/**
 * The whole e2e suite, shortened, against a real featherlb process (proxy mode; test/support/lb.ts) on
 * loopback: three e2e backends on 127.0.0.2-4, sixteen client source IPs 127.0.0.10-25, the fault
 * scenario stopping and restarting one backend in this process, and a send_proxy service whose backends
 * report the client address of the PROXY header. No Docker and no mocks: it proves the
 * suite's checks pass on a working LB before `make e2e` spends minutes on images.
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { startBackend, type TestBackend } from "../support/backend.ts";
import { startLB } from "../support/lb.ts";
import { readLbConfig } from "../support/lbconfig.ts";
import { freePort } from "../support/net.ts";
import { parseSources } from "./client/sources.ts";
import { runSuite } from "./client/suite.ts";

const ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const backendPort = freePort(ips[0]);
const proxyPort = freePort(ips[0]);
const e2eBackend = (ip: string) => startBackend(ip, { host: ip, port: backendPort, behaviour: "e2e" });
const backends: TestBackend[] = ips.map(e2eBackend);
// The PROXY port of each backend (compose.yml's PROXY_PORT), for the send_proxy service.
const proxied: TestBackend[] = ips.map((ip) => startBackend(ip, { host: ip, port: proxyPort, behaviour: "e2e", proxy: true }));
const algorithms = ["round_robin", "weighted_round_robin", "least_connections", "random", "power_of_two", "source_hash", "maglev"];
const ports = algorithms.map(() => freePort());
const ppPort = freePort();

const lb = await startLB(`mode: proxy
log: { level: error }
admin: { listen: ADMIN }
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
  - name: pp
    listen: "127.0.0.1:${ppPort}"
    algorithm: round_robin
    send_proxy: v2
    backends:
${ips.map((ip) => `      - { address: "${ip}:${proxyPort}" }`).join("\n")}
`);

afterAll(async () => {
  await lb.stop();
  for (const b of [...backends, ...proxied]) b.stop();
});

test("every check of the e2e suite passes through featherlb's proxy", async () => {
  const lines: string[] = [];
  const pass = await runSuite(
    readLbConfig(readFileSync(lb.configPath, "utf8"), lb.configPath),
    {
      mode: "proxy",
      lbHost: "127.0.0.1",
      metricsUrl: `http://127.0.0.1:${lb.adminPort}/metrics`,
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
        else backends[i] = e2eBackend(id);
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
