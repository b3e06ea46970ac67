/**
 * Out of local ports (EADDRNOTAVAIL) is the LB's problem, not the backend's: in a network namespace
 * of its own with 16 ephemeral ports and no TIME_WAIT reuse (fixtures/localports.ts runs the scenario
 * inside it), featherlb serves until its connects to the backend have used them up, then closes each
 * further client cleanly and counts it as a local error; the backend is never marked down, neither by
 * those connects nor by health checks that cannot get a port either. Needs root (a namespace).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { inNs, sysctl, topology } from "../xdp/netns/topology.ts";
import { bpfSuiteEnabled } from "../xdp/require.ts";

const TOPO = topology({ prefix: "flbp", net: "10.78.0", clients: 0, backends: 0, txOff: false });

if (bpfSuiteEnabled("local port exhaustion (network namespace)")) {
  beforeAll(() => {
    TOPO.setup();
    sysctl(TOPO.ns.lb, "net.ipv4.ip_local_port_range", "40000\t40015");
    sysctl(TOPO.ns.lb, "net.ipv4.tcp_tw_reuse", "0");
  });
  afterAll(() => TOPO.teardown());

  test("EADDRNOTAVAIL toward a backend: clients closed cleanly and counted, the backend stays up", () => {
    const r = Bun.spawnSync(inNs(TOPO.ns.lb, process.execPath, join(import.meta.dir, "fixtures/localports.ts"), "40"), { stdout: "pipe", stderr: "pipe", env: process.env, timeout: 40_000 });
    const out = r.stdout.toString().trim().split("\n").at(-1) ?? "";
    let res: Record<string, any>;
    try {
      res = JSON.parse(out);
    } catch {
      throw new Error(`the scenario printed no JSON (exit ${r.exitCode}): ${out} ${r.stderr.toString()}`);
    }
    console.log(`local ports: ${res.served} of 40 served, ${res.refused.length} refused; ${res.timeWait} TIME_WAIT toward the backend; EADDRNOTAVAIL ${res.localErrors}`);
    // Some served (the 16 ports, less those the health checks took), then refused.
    expect(res.served).toBeGreaterThan(0);
    expect(res.served).toBeLessThanOrEqual(16);
    expect(res.refused.length).toBe(40 - res.served);
    expect(res.refused.every((x: string) => x === "no_hello: closed before any greeting")).toBe(true);
    expect(res.rejectedLocal).toBe(res.refused.length);
    // Client connects and health checks both hit it; neither counts against the backend.
    expect(res.localErrors).toBeGreaterThanOrEqual(res.refused.length);
    expect(res.connectFailures).toBe(0);
    expect(res.up).toBe(1);
    expect(res.down).toBe(false);
    expect(res.localLogs[0]).toMatchObject({ level: "warn", errno: "EADDRNOTAVAIL" });
  }, 60_000);
}
