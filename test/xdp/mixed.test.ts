/**
 * A data plane per service, for real: one featherlb process in a network namespace with `mode: xdp`
 * for one service and `services[].mode: proxy` with `send_proxy: v2` for another on the same address
 * (another port). The XDP program forwards the first in the kernel; the proxy serves the second on the
 * LB's own stack, which the program passes packets to, and the backend (in its own namespace) reads
 * the client's real address from the PROXY header. /status and /metrics say which plane each service
 * runs in; health checks cover both. Needs root (BPF, namespaces); FLB_NS_TAG keeps two checkouts apart.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { featherlbCommand } from "../support/lb.ts";
import { Proc } from "../support/proc.ts";
import { inNs, topology } from "./netns/topology.ts";
import { bpfSuiteEnabled } from "./require.ts";

const TOPO = topology({ prefix: "flbm", net: "10.76.0", clients: 1, backends: 1, txOff: false });
const HERE = join(import.meta.dir, "netns");
const BUN = process.execPath;
const [LB, CLIENT, BACKEND] = [TOPO.lbIp, TOPO.clientIps[0]!, TOPO.backendIps[0]!];

/** The client script in the client namespace (netns/client.ts): the first line a server sends. */
function firstLine(port: number): string {
  const r = Bun.spawnSync(inNs(TOPO.ns.client!, BUN, join(HERE, "client.ts"), "line", LB, String(port)), { stdout: "pipe", stderr: "pipe", env: { ...process.env, FLBX_DEADLINE_S: "15" } });
  const out = JSON.parse(r.stdout.toString().trim().split("\n").at(-1) || "{}");
  return String(out.line ?? out.error);
}

/** GET on the admin listener (127.0.0.1 inside the LB namespace). */
function admin(path: string): string {
  return Bun.spawnSync(inNs(TOPO.ns.lb, "curl", "-s", "--max-time", "5", `http://127.0.0.1:9090${path}`), { stdout: "pipe" }).stdout.toString();
}

if (bpfSuiteEnabled("mixed data planes (xdp + proxy in one process)")) {
  let dir = "";
  let backend: Proc | undefined;
  let lb: Proc | undefined;

  beforeAll(async () => {
    TOPO.setup();
    dir = mkdtempSync(join(tmpdir(), "flbm-"));
    backend = new Proc(inNs(TOPO.ns.backends[0]!, BUN, join(HERE, "backend.ts"), "b1", "8080", "echo", "8081"));
    await backend.waitFor((j) => j.event === "ready", 15_000);
    const config = join(dir, "lb.yaml");
    writeFileSync(
      config,
      `mode: xdp
log: { level: info }
admin: { listen: 127.0.0.1:9090 }
xdp: { snat_ports: "40000-49999" }
defaults:
  health_check: { interval: 300ms, timeout: 300ms, rise: 1, fall: 2 }
services:
  - name: kernel
    listen: ${LB}:80
    backends: [{ address: "${BACKEND}:8080" }]
  - name: user
    mode: proxy
    listen: ${LB}:8080
    send_proxy: v2
    backends: [{ address: "${BACKEND}:8081" }]
`,
    );
    lb = new Proc(inNs(TOPO.ns.lb, ...featherlbCommand(), config));
    await lb.waitFor((j) => j.msg === "featherlb started", 20_000);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([lb?.stop(), backend?.stop()]);
    TOPO.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  test("the xdp service forwards in the kernel, the proxy service on the same VIP tells the backend the client's address", async () => {
    const started = lb!.lines.find((l) => l.json?.msg === "featherlb started")!.json!;
    expect(started.mode).toBe("mixed");
    expect(lb!.lines.some((l) => l.json?.msg === "xdp program attached")).toBe(true);
    expect(lb!.lines.some((l) => l.json?.msg === "listening" && l.json?.address === `${LB}:8080`)).toBe(true);

    // In the kernel: full NAT, the backend's greeting comes back through the XDP program.
    for (let i = 0; i < 3; i++) expect(firstLine(80)).toBe("b1");
    // In the proxy, with send_proxy v2: the backend's HELLO names the client namespace's address.
    const hello = firstLine(8080);
    expect(hello).toMatch(new RegExp(`^HELLO b1 \\S+ ${CLIENT.replaceAll(".", "\\.")}:\\d+$`));
    const header = await backend!.waitFor((j) => j.event === "header", 5000);
    expect(header.json).toMatchObject({ version: 2, command: "PROXY", family: 4, srcAddress: CLIENT, dstAddress: LB, dstPort: 8080 });

    const status = JSON.parse(admin("/status"));
    expect(status.mode).toBe("mixed");
    expect(status.services.map((s: any) => [s.name, s.plane, s.backends[0].health])).toEqual([
      ["kernel", "xdp", "up"],
      ["user", "proxy", "up"],
    ]);
    const metrics = admin("/metrics");
    expect(metrics).toContain('featherlb_service_info{service="kernel",plane="xdp",algorithm="round_robin"} 1');
    expect(metrics).toContain('featherlb_service_info{service="user",plane="proxy",algorithm="round_robin"} 1');
    // Each plane counted its own: flows of the XDP program, connections of the proxy.
    expect(metrics).toMatch(/featherlb_service_connections_total\{service="kernel"\} 3\n/);
    expect(metrics).toMatch(/featherlb_service_connections_total\{service="user"\} 1\n/);
    expect(metrics).toMatch(/featherlb_xdp_packets_total\{action="tx",reason="tx_c2b"\} [1-9]/);
  }, 60_000);
}
