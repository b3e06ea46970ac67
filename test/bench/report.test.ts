/**
 * test/bench/report.ts turns run.sh's raw results into docs/benchmarks.md and the chart. Fed a small
 * hand-made results file, it must report medians with min–max, ratios of medians, the target verdicts
 * and the XDP-floor table, and replace only the generated section of an existing document.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const REPORT = new URL("./report.ts", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "flb-report-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One wrk result: `rps` requests per second over 5 s. */
const wrk = (rps: number, p99ms = 10) => ({ requests: rps * 5, bytes: rps * 5 * 300, duration_us: 5_000_000, p50_us: 1000, p99_us: p99ms * 1000 });
/** One bulk result moving `gbps` for 5 s. */
const bulk = (gbps: number) => ({ requests: 100, bytes: (gbps * 1e9 * 5) / 8, duration_us: 5_000_000, p50_us: 1000, p99_us: 2000 });

// Three repetitions; the middle value of each triple is the median the report must use.
const SHORT: Record<string, number[]> = {
  direct: [20000, 18000, 22000],
  haproxy: [9000, 8000, 10000],
  "featherlb-proxy": [9800, 9500, 12000], // median 9800 = 1.09× HAProxy: PASS (≥ 1.0)
  "featherlb-xdp": [15000, 14000, 16000], // 0.75× direct: MISS (≥ 0.9); 1.67× HAProxy: MISS (≥ 2.0)
  "xdp-floor": [16000, 15500, 17000], // 0.80× direct
  "featherlb-proxy-pp2": [9000, 9310, 11000], // 0.95× featherlb proxy: the send_proxy v2 cost
  "haproxy-2": [16000, 15000, 17000], // 1.78× HAProxy on one thread
  "featherlb-proxy-2": [17600, 16000, 18000], // 1.10× HAProxy nbthread 2: PASS; 1.80× featherlb on one worker
  "splice-relay": [19000, 18500, 21000], // 0.95× direct, 1.94× featherlb proxy
  "featherlb-proxy-js": [9700, 9400, 11800], // kernel relay off: featherlb proxy is 1.01× it
};

function results(): string {
  const lines: object[] = [{ meta: { date: "2026-01-01T00:00:00Z", commit: "abc1234", kernel: "6.x", cpus: 2, reps: 3, duration_s: 5, stream_s: 10, idle_conns: 100, fd_limit: 1000, backend_workers: 2, wrk_threads: 2, offload: "on", haproxy: "2.6", nginx: "1.22", wrk: "4.1", featherlb: "now" } }];
  for (let rep = 1; rep <= 3; rep++) {
    for (const sys of Object.keys(SHORT)) {
      const cpu = sys === "featherlb-xdp" ? 0.2 : sys === "direct" || sys === "xdp-floor" ? null : 80;
      const row = (workload: string, result: object) => lines.push({ rep, system: sys, workload, lb_cpu_pct: cpu, machine_busy_pct: 99, wall_ms: 5000, result });
      row("short", wrk(SHORT[sys]![rep - 1]!));
      row("keepalive", wrk(sys === "direct" ? 80000 : sys === "haproxy" ? 40000 : 70000));
      if (sys === "featherlb-proxy-pp2") continue; // short and keep-alive only, as run.sh measures it
      // Kernel relay off moves half the bulk bytes: featherlb proxy (the kernel relay) is 2.00× it.
      row("bulk", bulk(sys === "haproxy" ? 8 : sys === "featherlb-proxy-js" ? 10 : 20));
      row("stream", { bytes: 1, seconds: 10, gbps: sys === "haproxy" ? 10 : 13 });
      if (sys === "haproxy" || sys === "featherlb-proxy") {
        const held = sys === "haproxy" ? 3 * 1024 * 100 : 2 * 1024 * 100; // KiB: 3 vs 2 KiB per connection
        row("idle", { conns: 100, connect_s: 0.2, listen_overflows: 0, syn_retrans: 0, backend_established: 100, rss_before_kib: 1000, rss_held_kib: 1000 + held / 1024 });
      }
    }
  }
  lines.push({ rep: 1, system: "nginx", workload: "unavailable", result: { reason: "nginx not installed" } });
  lines.push({ end: { loadavg_end: "1 1 1", elapsed_s: 600 } });
  return lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
}

function render(): { md: string; svg: string; exitCode: number; stderr: string } {
  writeFileSync(join(dir, "results.jsonl"), results());
  writeFileSync(join(dir, "benchmarks.md"), "# Bench\n\nProse before.\n\n<!-- BEGIN RESULTS -->old<!-- END RESULTS -->\n\nProse after.\n");
  const p = Bun.spawnSync([process.execPath, "run", REPORT, join(dir, "results.jsonl"), "--docs", dir], { stdout: "pipe", stderr: "pipe" });
  return {
    md: readFileSync(join(dir, "benchmarks.md"), "utf8"),
    svg: readFileSync(join(dir, "benchmarks.svg"), "utf8"),
    exitCode: p.exitCode,
    stderr: p.stderr.toString(),
  };
}

const out = render();
const rowOf = (md: string, heading: string, label: string) => {
  const section = md.slice(md.indexOf(heading));
  return section.split("\n").find((l) => l.startsWith(`| **${label}**`) || l.startsWith(`| ${label} |`)) ?? "";
};

test("renders without error and keeps the prose around the generated section", () => {
  expect(out.stderr).toBe("");
  expect(out.exitCode).toBe(0);
  expect(out.md).toStartWith("# Bench\n\nProse before.\n\n<!-- BEGIN RESULTS");
  expect(out.md).toEndWith("<!-- END RESULTS -->\n\nProse after.\n");
  expect(out.md).not.toContain("-->old<!--");
});

test("each cell is the median of the repetitions with min–max; ratios are ratios of medians", () => {
  const haproxy = rowOf(out.md, "### Short connections", "HAProxy 2.6");
  expect(haproxy).toContain("| 9,000 (8,000–10,000) | 1.00× | 0.45× |");
  const proxy = rowOf(out.md, "### Short connections", "featherlb proxy");
  expect(proxy).toContain("| 9,800 (9,500–12,000) | 1.09× | 0.49× |");
});

test("target verdicts follow the goals, with the floor's ratio beside the xdp ones", () => {
  const targets = out.md.slice(out.md.indexOf("### Targets"));
  expect(targets).toContain("| featherlb proxy | short-conn req/s | >= 1.0× HAProxy 2.6 | 1.09× | **PASS** |");
  expect(targets).toContain("| featherlb xdp | short-conn req/s | >= 0.9× direct (no LB) | 0.75× | **MISS** | 0.80× |");
  expect(targets).toContain("| featherlb xdp | short-conn req/s | >= 2.0× HAProxy 2.6 | 1.67× | **MISS** | 1.78× |");
  expect(targets).toContain("| featherlb proxy | memory per idle connection | <= 1.0× HAProxy 2.6 | 0.67× | **PASS** |");
  expect(targets).toContain("| featherlb xdp | featherlb process CPU, every workload | near 0 % (≤ 5 %) | 0.2 % worst | **PASS** |");
  expect(targets).toContain("| featherlb proxy | bulk Gbit/s (1 MiB × 8), kernel relay | >= 0.8× direct (no LB) | 1.00× | **PASS** |");
  expect(targets).toContain("| featherlb proxy | bulk Gbit/s (one stream), kernel relay | >= 0.8× direct (no LB) | 1.00× | **PASS** |");
  expect(targets).toContain("| featherlb proxy | featherlb process CPU, one stream, kernel relay | < 10 % of a core | 80.0 % | **MISS** |");
  expect(out.md).toMatch(/### Targets \(\d+ of 19 met\)/);
});

test("the XDP floor table compares featherlb xdp with the floor and the floor with direct", () => {
  const row = rowOf(out.md, "### The XDP rows against the XDP floor", "short connections, req/s");
  expect(row).toBe("| short connections, req/s | 20,000 (18,000–22,000) | 16,000 (15,500–17,000) | 15,000 (14,000–16,000) | 0.80× | 0.94× |");
});

test("a system that could not run is listed with its reason, and the chart names every measured system", () => {
  expect(out.md).toContain("- NGINX stream: nginx not installed");
  expect(out.svg).toStartWith("<svg");
  for (const label of ["direct (no LB)", "HAProxy 2.6", "featherlb proxy", "featherlb xdp", "XDP floor (reference)"]) expect(out.svg).toContain(label);
  expect(out.svg).not.toContain(">NGINX stream<");
});

test("kernel relay: featherlb against direct and against itself with the relay off, beside the C splice reference", () => {
  const bulkRow = rowOf(out.md, "### Kernel relay", "bulk 1 MiB × 8, Gbit/s");
  expect(bulkRow).toBe("| bulk 1 MiB × 8, Gbit/s | 20 (20–20) | 20 (20–20) | 10 (10–10) | 20 (20–20) | 1.00× | 2.00× | 1.00× |");
  const shortRow = rowOf(out.md, "### Kernel relay", "short connections, req/s");
  expect(shortRow).toBe("| short connections, req/s | 20,000 (18,000–22,000) | 9,800 (9,500–12,000) | 9,700 (9,400–11,800) | 19,000 (18,500–21,000) | 0.49× | 1.01× | 0.95× |");
  expect(rowOf(out.md, "### Short connections", "splice(2) relay (C reference)")).toContain("| 19,000 (18,500–21,000) |");
  expect(out.svg).toContain("splice(2) relay (C reference)");
  expect(out.svg).toContain("featherlb proxy, kernel relay off");
});

test("two workers: featherlb workers: 2 against HAProxy nbthread 2, and each against itself on one", () => {
  const row = rowOf(out.md, "### Two workers", "short connections, req/s");
  expect(row).toBe("| short connections, req/s | 16,000 (15,000–17,000) | — | 17,600 (16,000–18,000) | 1.10× | 1.80× | 1.78× |");
  const targets = out.md.slice(out.md.indexOf("### Targets"));
  expect(targets).toContain("| featherlb proxy, workers: 2 | short-conn req/s | >= 1.0× HAProxy 2.6, nbthread 2 | 1.10× | **PASS** |");
  expect(targets).toContain("| featherlb proxy, workers: 2 | bulk Gbit/s (1 MiB × 8) | >= 1.5× HAProxy 2.6, nbthread 2 | 1.00× | **MISS** |");
});

test("the send_proxy v2 row: its cost against the proxy without it, and no bulk or idle cells", () => {
  const row = rowOf(out.md, "### The cost of `send_proxy: v2`", "short connections, req/s");
  expect(row).toBe("| short connections, req/s | 9,800 (9,500–12,000) | 9,310 (9,000–11,000) | 0.95× |");
  expect(rowOf(out.md, "### Bulk", "featherlb proxy + send_proxy v2")).toBe("");
  expect(rowOf(out.md, "### Concurrency", "featherlb proxy + send_proxy v2")).toBe("");
  expect(out.svg).toContain("short and keep-alive only");
});

test("--scale renders the cost curves of scale.ts: a row per mode and size, growth per backend, verdicts at 10,000, the chart", () => {
  const latencies = (worst: number, p50 = 1) => ({ count: 10, failures: 0, p50, p99: worst, worst });
  const row = (mode: string, backends: number, services: number, f: number) => ({
    mode,
    backends,
    services,
    check_ms: 100 * f,
    startup_ms: 300 * f,
    rss_kib: 50_000 + backends * 10, // 10 KiB per backend
    map_bytes: mode === "xdp" ? 16 * 2 ** 20 + backends * 4096 : null, // 4 KiB per backend
    reload_ms: 200 * f,
    reload_worst_ms: 10 * f,
    idle_worst_ms: 2,
    storm: { downMs: 1000, upMs: 1000, cpuS: f, admin: latencies(20 * f), connsBefore: latencies(2, 0.5), conns: latencies(30 * f) },
    loadavg: 1.5,
  });
  const lines = [
    { meta: { date: "2026-01-01T00:00:00Z", commit: "abc1234", kernel: "6.x", cpus: 2, loadavg_start: "1 1 1" } },
    ...[10, 100, 1000, 10000].flatMap((n, i) => [row("proxy", n, [1, 4, 4, 40][i]!, 1 + i), row("xdp", n, [1, 4, 4, 40][i]!, 1 + i)]),
    { end: { loadavg_end: "2 2 2" } },
  ];
  writeFileSync(join(dir, "scale.jsonl"), lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  writeFileSync(join(dir, "benchmarks.md"), "# Bench\n\n<!-- BEGIN SCALE -->old<!-- END SCALE -->\n\nProse after.\n");
  const p = Bun.spawnSync([process.execPath, "run", REPORT, "--scale", join(dir, "scale.jsonl"), "--docs", dir], { stdout: "pipe", stderr: "pipe" });
  expect(p.stderr.toString()).toBe("");
  const md = readFileSync(join(dir, "benchmarks.md"), "utf8");
  expect(md).toEndWith("<!-- END SCALE -->\n\nProse after.\n");
  expect(md).toContain("| featherlb proxy | 10,000 (40 × 250) | 1,200 | 400 | 800 | 40.0 | 146 | — | 1,000 | 1,000 | 4.00 | 80.0 | 120 (0.5) | 1.50 |");
  expect(md).toContain("| featherlb xdp | 10 (1 × 10) | 300 | 100 | 200 | 10.0 | 49 | 16.0 |");
  expect(md).toContain("- featherlb proxy: RSS grows by 10.0 KiB per backend");
  expect(md).toContain("BPF map memory by 4.0 KiB per backend");
  expect(md).toContain("| featherlb xdp | worst /healthz during the storm | ≤ 50 ms | 80.0 ms | **MISS** |");
  expect(md).toContain("| featherlb proxy | startup to serving | ≤ 2,000 ms | 1,200 ms | **PASS** |");
  const svg = readFileSync(join(dir, "benchmarks-scale.svg"), "utf8");
  expect(svg).toStartWith("<svg");
  for (const label of ["10,000 backends", "featherlb proxy", "featherlb xdp", "BPF map memory (xdp)"]) expect(svg).toContain(label);
});
