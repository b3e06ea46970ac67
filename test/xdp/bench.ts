/**
 * Benchmark (not a test): short-connection requests/s through the XDP data plane vs direct
 * connections (the client rotating over the three backends itself) vs the user-space proxy, in the namespace topology of netns.test.ts.
 * A "request" = connect, read the backend's greeting line, close. Needs root.
 *   bun test/xdp/bench.ts [seconds=5] [concurrency=16]
 * The client is one Bun process; on a small machine it, not the LB, is usually the bottleneck, so read
 * the figures as "XDP adds little or nothing over direct", not as the LB's capacity.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Proc } from "./netns/proc.ts";
import { BACKEND_IPS, CLIENT_IPS, LB_IP, NS, inNs, setup, teardown } from "./netns/topology.ts";

const seconds = Number(process.argv[2] ?? 5);
const concurrency = Number(process.argv[3] ?? 16);
const ROOT = new URL("../../", import.meta.url).pathname;
const HERE = join(ROOT, "test/xdp/netns");
const BUN = process.execPath;

function yaml(mode: "xdp" | "proxy"): string {
  return `mode: ${mode}
log:
  level: info
admin:
  listen: off
xdp:
  attach: ${process.env.FLBX_ATTACH ?? "auto"}
services:
  - name: bench
    listen: "${LB_IP}:80"
    algorithm: round_robin
    health_check: { interval: 1s, timeout: 500ms, rise: 1, fall: 3 }
    backends:
${BACKEND_IPS.map((ip) => `      - { address: "${ip}:8080" }`).join("\n")}
`;
}

function bench(host: string, port: number): { requests: number; failures: number; seconds: number } {
  const r = Bun.spawnSync(inNs(NS.client, BUN, join(HERE, "client.ts"), "bench", host, String(port), String(seconds), String(concurrency), CLIENT_IPS.join(",")), {
    env: { ...process.env, FLBX_DEADLINE_S: String(seconds + 30) },
    stdout: "pipe",
  });
  return JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!);
}

const dir = mkdtempSync(join(tmpdir(), "flbx-bench-"));
const procs: Proc[] = [];
const results: Record<string, string> = {};
try {
  setup();
  for (let i = 0; i < 3; i++) {
    const p = new Proc(inNs(NS.backends[i]!, BUN, join(HERE, "backend.ts"), `b${i + 1}`, "8080"));
    procs.push(p);
    await p.waitFor((j) => j.event === "ready", 15000);
  }
  const show = (name: string, r: { requests: number; failures: number; seconds: number }) => {
    results[name] = `${Math.round(r.requests / r.seconds)} req/s (${r.requests} in ${r.seconds.toFixed(1)} s, ${r.failures} failures)`;
    console.log(`${name.padEnd(28)} ${results[name]}`);
  };

  show("direct (rotating 3 backends)", bench(BACKEND_IPS.join(","), 8080));

  writeFileSync(join(dir, "xdp.yaml"), yaml("xdp"));
  const xdp = new Proc(inNs(NS.lb, BUN, join(HERE, "lb-harness.ts"), join(dir, "xdp.yaml")));
  procs.push(xdp);
  const attached = await xdp.waitFor((j) => j.msg === "xdp program attached" || j.event === "error", 20000);
  await xdp.waitFor((j) => j.msg === "xdp services applied", 10000);
  show(`xdp (${attached.json.mode})`, bench(LB_IP, 80));
  await xdp.stop();

  writeFileSync(join(dir, "proxy.yaml"), yaml("proxy"));
  const proxy = new Proc(inNs(NS.lb, BUN, join(ROOT, "src/main.ts"), join(dir, "proxy.yaml")));
  procs.push(proxy);
  await Bun.sleep(1500);
  if (proxy.proc.exitCode === null) show("proxy (user space)", bench(LB_IP, 80));
  else console.log(`proxy did not start: ${proxy.tail()}`);
} finally {
  for (const p of procs) await p.stop();
  teardown();
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify({ seconds, concurrency, results }));
