/**
 * Benchmark (not a test): short-connection requests/s through the XDP data plane vs direct connections
 * (the client rotating over the three backends itself) vs the user-space proxy, in the namespace
 * topology of netns.test.ts. A "request" = connect, read the backend's greeting line, close. The three
 * run interleaved for `rounds` rounds (XDP on :80, the proxy on :81 of the same LB address — XDP passes
 * :81 to the kernel), so load from other work on the machine hits all three alike. Needs root.
 *   bun test/xdp/bench.ts [seconds=5] [concurrency=16] [rounds=3]
 * The client is one Bun process; on a small machine it, not the LB, is usually the bottleneck, so read
 * the figures as relative, not as the LB's capacity.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Proc } from "../support/proc.ts";
import { BACKEND_IPS, LB_IP, NS, inNs, setup, teardown } from "./netns/topology.ts";

const seconds = Number(process.argv[2] ?? 5);
const concurrency = Number(process.argv[3] ?? 16);
const rounds = Number(process.argv[4] ?? 3);
const ROOT = new URL("../../", import.meta.url).pathname;
const HERE = join(ROOT, "test/xdp/netns");
const BUN = process.execPath;
const featherlb = (config: string) => (existsSync(join(ROOT, "dist/featherlb")) ? [join(ROOT, "dist/featherlb"), config] : [BUN, join(ROOT, "src/main.ts"), config]);

function yaml(mode: "xdp" | "proxy", port: number): string {
  return `mode: ${mode}
log:
  level: info
admin:
  listen: off
xdp:
  attach: ${process.env.FLBX_ATTACH ?? "auto"}
services:
  - name: bench
    listen: "${LB_IP}:${port}"
    algorithm: round_robin
    health_check: { interval: 1s, timeout: 500ms, rise: 1, fall: 3 }
    backends:
${BACKEND_IPS.map((ip) => `      - { address: "${ip}:8080" }`).join("\n")}
`;
}

function bench(host: string, port: number): number {
  // No source binding: bind() port search crawls once thousands of ports sit in TIME_WAIT, and the
  // bench would measure that instead of the data path.
  const r = Bun.spawnSync(inNs(NS.client, BUN, join(HERE, "client.ts"), "bench", host, String(port), String(seconds), String(concurrency), ""), {
    env: { ...process.env, FLBX_DEADLINE_S: String(seconds + 30) },
    stdout: "pipe",
  });
  const out = JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!);
  if (out.failures) console.log(`  (${out.failures} failures)`);
  return out.requests / out.seconds;
}

const dir = mkdtempSync(join(tmpdir(), "flbx-bench-"));
const procs: Proc[] = [];
const rates: Record<string, number[]> = {};
try {
  setup();
  // The client closes first, so its TIME_WAIT sockets pile up: let connect() reuse them and use the
  // whole port range (both per-namespace settings of the test's own client namespace).
  Bun.spawnSync(inNs(NS.client, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse; echo '1024 65535' > /proc/sys/net/ipv4/ip_local_port_range"));
  // The proxy's connections to the backends pile up TIME_WAIT in the LB namespace the same way.
  Bun.spawnSync(inNs(NS.lb, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse"));
  for (let i = 0; i < 3; i++) {
    const p = new Proc(inNs(NS.backends[i]!, BUN, join(HERE, "backend.ts"), `b${i + 1}`, "8080"));
    procs.push(p);
    await p.waitFor((j) => j.event === "ready", 15000);
  }
  writeFileSync(join(dir, "xdp.yaml"), yaml("xdp", 80));
  writeFileSync(join(dir, "proxy.yaml"), yaml("proxy", 81));
  const xdp = new Proc(inNs(NS.lb, ...featherlb(join(dir, "xdp.yaml"))));
  procs.push(xdp);
  const attached = await xdp.waitFor((j) => j.msg === "xdp program attached", 20000);
  await xdp.waitFor((j) => j.msg === "xdp services applied", 10000);
  const proxy = new Proc(inNs(NS.lb, ...featherlb(join(dir, "proxy.yaml"))));
  procs.push(proxy);
  await proxy.waitFor((j) => j.msg === "featherlb started", 20000);

  const runs: [string, string, number][] = [
    ["direct (rotating 3 backends)", BACKEND_IPS.join(","), 8080],
    [`xdp (${attached.json.mode})`, LB_IP, 80],
    ["proxy (user space)", LB_IP, 81],
  ];
  for (let r = 0; r < rounds; r++) {
    for (const [name, host, port] of r % 2 ? [...runs].reverse() : runs) {
      const rate = bench(host, port);
      (rates[name] ??= []).push(rate);
      console.log(`round ${r + 1} ${name.padEnd(30)} ${Math.round(rate)} req/s`);
    }
  }
} finally {
  for (const p of procs) await p.stop();
  teardown();
  rmSync(dir, { recursive: true, force: true });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const summary = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, { median: Math.round(median(v)), runs: v.map(Math.round) }]));
console.log(JSON.stringify({ seconds, concurrency, rounds, summary }));
