/**
 * `forwarding: dsr` (bpf/dsr.h) in network namespaces: client packets get the backend's MAC only, the
 * backends answer the client directly from the service address.
 *
 *   flbdsr-c  (c0: 10.84.0.10-17)             ─┐
 *   flbdsr-lb (lb0: 10.84.0.1, VIP 10.84.0.100) ─┼─ flbdsr-br (bridge br0)
 *   flbdsr-b1…b3 (b0: 10.84.0.21-23, VIP on lo) ─┘
 *
 * The backends are prepared by `featherlb dsr-backend <VIP> --apply` run inside their namespaces (so
 * the subcommand is what is tested). The VIP is an address of its own on the LB: backends hold it, so
 * packets from it (the LB's health checks, if it were the LB's only address) would be martians to them.
 *
 * For each algorithm (generic attach, an LB process each): round robin exact, weights within ±5 %,
 * sticky algorithms checked per client IP against featherlb's own algorithm code. Then, generic and
 * native attach, one 16 MiB download (SHA-256 as the backend sent it) whose replies must bypass the
 * LB: lb0's received bytes grow by less than 5 % of the bytes downloaded, and the service's
 * backend → client packet counter stays 0. And a backend off lb0's subnets is refused at start.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AlgorithmName } from "../../src/config/types.ts";
import { featherlbCommand } from "../support/lb.ts";
import { Proc } from "../support/proc.ts";
import { ADMIN } from "./netns/config.ts";
import { nsMetrics, xdpReasons } from "./netns/metrics.ts";
import { runClient } from "./netns/runclient.ts";
import { NAMES, shares, sticky, totals, type ByIp } from "./netns/spread.ts";
import { LB_IF, inNs, run, sh, topology } from "./netns/topology.ts";
import { bpfSuiteEnabled } from "./require.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const BUN = process.execPath;
const HERE = join(ROOT, "test/xdp/netns");
const PASS_OBJ = join(ROOT, "build/bpf/xdp_pass.bpf.o");
const T = topology({ prefix: "flbdsr", net: "10.84.0", clients: 8, backends: 3, txOff: true });
const VIP = "10.84.0.100";
const BULK = 16 << 20;

/** Two dsr services on the VIP: `spread` (port 80, echo backends, the algorithm under test) and `bulk` (port 81, 16 MiB sources). */
function writeConfig(dir: string, algorithm: AlgorithmName, weights: number[], attach: string): string {
  const path = join(dir, `${algorithm}-${attach}.yaml`);
  const backends = (port: number, w: boolean) => T.backendIps.map((ip, i) => `      - { address: "${ip}:${port}"${w ? `, weight: ${weights[i]}` : ""} }`).join("\n");
  writeFileSync(
    path,
    `mode: xdp
log: { level: info }
admin: { listen: "${ADMIN}" }
drain_timeout: 1s
xdp: { interface: ${LB_IF}, attach: ${attach} }
defaults:
  forwarding: dsr
  health_check: { interval: 500ms, timeout: 300ms, rise: 1, fall: 2 }
services:
  - name: spread
    listen: "${VIP}:80"
    algorithm: ${algorithm}
    backends:
${backends(80, true)}
  - name: bulk
    listen: "${VIP}:81"
    health_check: { enabled: false }  # a source backend would send each check its 16 MiB, through the LB
    backends:
${backends(81, false)}
`,
  );
  return path;
}

/** Run the client script in the client namespace; its JSON line. */
const client = (args: string[], deadlineS = 30) => runClient(T.ns.client!, args, deadlineS);

interface Case {
  algorithm: AlgorithmName;
  weights: number[];
  count: number;
  hold: boolean;
  check: (byIp: ByIp, config: string) => void;
}

const CASES: Case[] = [
  { algorithm: "round_robin", weights: [1, 1, 1], count: 150, hold: false, check: (b) => expect(totals(b)).toEqual({ b1: 50, b2: 50, b3: 50 }) },
  { algorithm: "weighted_round_robin", weights: [1, 2, 3], count: 300, hold: false, check: (b) => expect(totals(b)).toEqual({ b1: 50, b2: 100, b3: 150 }) },
  { algorithm: "least_connections", weights: [1, 2, 3], count: 300, hold: true, check: shares([1, 2, 3], 300) },
  { algorithm: "random", weights: [1, 2, 3], count: 1200, hold: false, check: shares([1, 2, 3], 1200) },
  { algorithm: "power_of_two", weights: [1, 1, 1], count: 300, hold: true, check: shares([1, 1, 1], 300) },
  { algorithm: "source_hash", weights: [1, 1, 1], count: 160, hold: false, check: sticky(T.clientIps, T.backendIps) },
  { algorithm: "maglev", weights: [1, 1, 1], count: 160, hold: false, check: sticky(T.clientIps, T.backendIps) },
];

/** lb0's received bytes (its kernel counter, which counts every frame XDP saw). */
const lbRxBytes = () => Number(run(T.ns.lb, "cat", `/sys/class/net/${LB_IF}/statistics/rx_bytes`).trim());

const report: Record<string, unknown>[] = [];

if (bpfSuiteEnabled("xdp forwarding: dsr")) {
  let dir = "";
  const procs: Proc[] = [];
  const sourceShas = new Map<string, string>();
  let lb: Proc | undefined;

  async function startLb(config: string): Promise<void> {
    lb = new Proc(inNs(T.ns.lb, ...featherlbCommand(), config));
    const up = await lb.waitFor((j) => j.msg === "xdp services applied" || j.event === "error" || j.level === "error", 20_000);
    expect(up.json.msg).toBe("xdp services applied");
    // Every backend healthy before a case counts its spread.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const m = nsMetrics(T.ns.lb);
      if (m.get("featherlb_service_backends_eligible", { service: "spread" }) === 3 && m.get("featherlb_service_backends_eligible", { service: "bulk" }) === 3) return;
      await Bun.sleep(100);
    }
    throw new Error("backends not all healthy within 10 s");
  }

  async function stopLb(): Promise<void> {
    lb?.kill("SIGKILL");
    await lb?.proc.exited;
    lb = undefined;
  }

  beforeAll(async () => {
    T.setup();
    run(T.ns.lb, "ip", "addr", "add", `${VIP}/32`, "dev", LB_IF);
    dir = mkdtempSync(join(tmpdir(), "flbdsr-"));
    for (const [i, ns] of T.ns.backends.entries()) {
      // The documented preparation, by the subcommand itself.
      const prep = Bun.spawnSync(inNs(ns, ...featherlbCommand(), "dsr-backend", VIP, "--apply"), { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
      if (prep.exitCode !== 0) throw new Error(`dsr-backend --apply in ${ns}: exit ${prep.exitCode}: ${prep.stdout} ${prep.stderr}`);
      const echo = new Proc(inNs(ns, BUN, join(HERE, "backend.ts"), NAMES[i]!, "80"));
      const source = new Proc(inNs(ns, BUN, join(HERE, "backend.ts"), NAMES[i]!, "81", "source", String(BULK)));
      procs.push(echo, source);
      await echo.waitFor((j) => j.event === "ready", 15_000);
      sourceShas.set(NAMES[i]!, String((await source.waitFor((j) => j.event === "ready", 15_000)).json.sourceSha));
    }
  }, 90_000);

  afterAll(async () => {
    await stopLb();
    await Promise.all(procs.map((p) => p.stop()));
    T.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (report.length) console.log("forwarding: dsr, figures:\n" + report.map((r) => JSON.stringify(r)).join("\n"));
  }, 30_000);

  test("dsr-backend --apply left the VIP on lo and ARP quiet for it", () => {
    const ns = T.ns.backends[0]!;
    expect(run(ns, "ip", "-4", "-o", "addr", "show", "dev", "lo")).toContain(`${VIP}/32`);
    for (const dev of ["all", "b0"]) {
      expect(run(ns, "sysctl", "-n", `net.ipv4.conf.${dev}.arp_ignore`).trim()).toBe("1");
      expect(run(ns, "sysctl", "-n", `net.ipv4.conf.${dev}.arp_announce`).trim()).toBe("2");
    }
    // Only the LB answers ARP for the VIP: the client's neighbour entry for it is the LB's MAC.
    const lbMac = JSON.parse(run(T.ns.lb, "ip", "-j", "link", "show", LB_IF))[0].address;
    sh(inNs(T.ns.client!, "ping", "-c", "1", "-W", "2", VIP), true);
    expect(run(T.ns.client!, "ip", "neigh", "show", VIP)).toContain(lbMac);
  });

  test("a dsr backend off the LB interface's link is refused at start, before attaching, with one sentence (exit 2)", async () => {
    const good = writeConfig(dir, "round_robin", [1, 1, 1], "generic");
    const config = good.replace(".yaml", "-offlink.yaml");
    writeFileSync(config, readFileSync(good, "utf8").replace(`${T.backendIps[2]}:80"`, `10.99.0.5:80"`));
    const r = Bun.spawnSync(inNs(T.ns.lb, ...featherlbCommand(), config), { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).not.toContain("xdp program attached"); // refused before attaching
    // Its log lines (JSON) go to stderr too; the refusal is the one plain line.
    expect(r.stderr.toString().split("\n").filter((l) => l.startsWith("featherlb: "))).toEqual([
      `featherlb: ${config}: services[0].backends[2].address: 10.99.0.5 is not on the link of lb0 (10.84.0.1/24, ${VIP}/32), and forwarding: dsr reaches a backend by its own MAC address on that link; move the backend onto one of those subnets or use forwarding: nat.`,
    ]);
  }, 30_000);

  describe("every algorithm picks as in nat (generic attach)", () => {
    for (const c of CASES) {
      test(c.algorithm, async () => {
        const config = writeConfig(dir, c.algorithm, c.weights, "generic");
        await startLb(config);
        try {
          const r = client(["spread", VIP, "80", String(c.count), "8", c.hold ? "1" : "0", T.clientIps.join(",")]);
          report.push({ case: c.algorithm, totals: totals(r.byIp ?? {}), failures: r.failures });
          expect({ failures: r.failures, error: r.error }).toEqual({ failures: 0, error: undefined });
          c.check(r.byIp, config);
        } finally {
          await stopLb();
        }
      }, 60_000);
    }
  });

  describe("16 MiB download: intact, and the replies bypass the LB", () => {
    for (const attach of ["generic", "native"] as const) {
      test(attach, async () => {
        if (attach === "native") run(T.ns.br, "ip", "link", "set", "dev", "p-lb", "xdpdrv", "obj", PASS_OBJ, "sec", "xdp");
        try {
          await startLb(writeConfig(dir, "round_robin", [1, 1, 1], attach));
          const rx0 = lbRxBytes();
          const get = client(["get", VIP, "81"], 20);
          const rx = lbRxBytes() - rx0;
          const m = nsMetrics(T.ns.lb);
          const packets = (direction: string) => m.get("featherlb_service_packets_total", { service: "bulk", direction });
          report.push({ case: `16 MiB download, ${attach}`, bytes: get.bytes, ms: get.ms, lbRxBytes: rx, lbRxShare: +(rx / BULK).toFixed(4), packetsIn: packets("in"), packetsOut: packets("out") });
          expect({ bytes: get.bytes, error: get.error, intact: [...sourceShas.values()].includes(get.sha256) }).toEqual({ bytes: BULK, error: undefined, intact: true });
          expect(rx).toBeLessThan(0.05 * BULK);
          expect(packets("in")).toBeGreaterThan(0);
          expect(packets("out")).toBe(0);
          expect(xdpReasons(m).tx_b2c ?? 0).toBe(0);
        } finally {
          await stopLb();
          if (attach === "native") run(T.ns.br, "ip", "link", "set", "dev", "p-lb", "xdpdrv", "off");
        }
      }, 60_000);
    }
  });
}
