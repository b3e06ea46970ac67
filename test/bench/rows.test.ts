/**
 * run.sh's result rows are written by lib/rows.sh with jq. Here the real writers (bash + jq, no root,
 * no balancer) write a small results file from loads' raw output, and the test checks what report.ts
 * depends on: every line is JSON with the keys and types of the rows run.sh has always written, in
 * order; text with quotes and newlines survives; a load that printed no result is {"failed":true}; and
 * report.ts renders the file.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const HERE = import.meta.dir;
const dir = mkdtempSync(join(tmpdir(), "flb-rows-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What a load printed: wrk's text with the FLBB_WRK line of tools/report.lua, or flbbtool's one line. */
const wrkOutput = (rps: number) =>
  `Running 5s test @ http://10.88.0.2:8080/\n  2 threads and 64 connections\nFLBB_WRK {"requests":${rps * 5},"bytes":${rps * 1500},"duration_us":5000000,"p50_us":1000,"p99_us":9000,"max_us":20000,"err_connect":0,"err_read":0,"err_write":0,"err_status":0,"err_timeout":0}\n`;
const streamOutput = '{"bytes":16250000000,"seconds":10.001,"gbps":13.000}\n';
const REASON = 'nginx: [emerg] unknown directive "stream" in /x/nginx-lb.conf:3\nsecond line';

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
const systems = ["haproxy", "featherlb-proxy"];
const script = [
  "set -euo pipefail",
  `source ${q(join(HERE, "lib/rows.sh"))}`,
  `RESULTS=${q(join(dir, "results.jsonl"))} FLB=/nonexistent ROOT=${q(dir)}`,
  "REPS=3 DUR=5 STREAM_SECS=10 IDLE_CONNS=100 BACKEND_WORKERS=2 WRK_THREADS=2 OFFLOAD=on XDP=auto",
  ": >$RESULTS",
  "json_meta 1000",
  // Three repetitions of the short load; the other loads once (jq takes ~40 ms a line).
  ...[1, 2, 3].flatMap((rep) =>
    systems.flatMap((sys, i) => {
      const row = (wl: string, out: string) => `json_row ${rep} ${sys} ${wl} 81.5 99.0 5012 "$(result_json <<<${q(out)})"`;
      return [
        row("short", wrkOutput(10000 + 1000 * i + rep)),
        ...(rep === 1
          ? [row("keepalive", wrkOutput(40000)), row("bulk", wrkOutput(100)), row("stream", streamOutput), `json_idle 1 ${sys} 100 0.23 0 0 100 1000 ${1300 - 100 * i} 1800`]
          : []),
      ];
    }),
  ),
  `json_row 1 direct short null 99.0 5012 "$(result_json <<<${q(wrkOutput(20000))})"`,
  // A load that printed nothing usable, a measurement without a number, a system that did not start.
  `json_row 1 featherlb-proxy short "" 99.0 5012 "$(result_json <<<${q('FLBB_WRK {"requests":12')})"`,
  `json_unavailable 1 nginx ${q(REASON)}`,
  "json_end 612",
].join("\n");

const written = Bun.spawnSync(["bash", "-c", script], { stdout: "pipe", stderr: "pipe" });
const lines = written.exitCode === 0 ? readFileSync(join(dir, "results.jsonl"), "utf8").trimEnd().split("\n") : [];
const rows = lines.map((l) => JSON.parse(l) as Record<string, any>);

test("the writers run (bash and jq present) and every line is one JSON object", () => {
  expect(written.stderr.toString()).toBe("");
  expect(written.exitCode).toBe(0);
  expect(lines.length).toBe(1 + 2 * (3 + 4) + 1 + 3);
  for (const l of lines) expect(JSON.parse(l)).toBeObject();
});

test("each kind of line keeps its keys, in order, with their types", () => {
  const meta = rows[0]!.meta;
  expect(Object.keys(rows[0]!)).toEqual(["meta"]);
  expect(Object.keys(meta)).toEqual([
    "date", "commit", "kernel", "cpus", "loadavg_start", "reps", "duration_s", "stream_s", "idle_conns", "fd_limit",
    "backend_workers", "wrk_threads", "offload", "xdp", "haproxy", "nginx", "wrk", "featherlb",
  ]);
  expect(meta).toMatchObject({ reps: 3, duration_s: 5, stream_s: 10, idle_conns: 100, fd_limit: 1000, backend_workers: 2, wrk_threads: 2, offload: "on", xdp: "auto", featherlb: "missing" });
  expect(typeof meta.cpus).toBe("number");
  for (const k of ["date", "commit", "kernel", "loadavg_start", "haproxy", "nginx", "wrk"]) expect(typeof meta[k]).toBe("string");

  const short = rows.find((r) => r.workload === "short" && r.system === "haproxy")!;
  expect(Object.keys(short)).toEqual(["rep", "system", "workload", "lb_cpu_pct", "machine_busy_pct", "wall_ms", "result"]);
  expect(short).toMatchObject({ rep: 1, lb_cpu_pct: 81.5, machine_busy_pct: 99, wall_ms: 5012 });
  expect(short.result).toEqual({ requests: 50005, bytes: 15001500, duration_us: 5000000, p50_us: 1000, p99_us: 9000, max_us: 20000, err_connect: 0, err_read: 0, err_write: 0, err_status: 0, err_timeout: 0 });
  expect(rows.find((r) => r.workload === "stream")!.result).toEqual({ bytes: 16250000000, seconds: 10.001, gbps: 13 });
  expect(rows.find((r) => r.system === "direct")!.lb_cpu_pct).toBeNull();

  const idle = rows.find((r) => r.workload === "idle")!;
  expect(Object.keys(idle)).toEqual(["rep", "system", "workload", "result"]);
  expect(Object.keys(idle.result)).toEqual(["conns", "connect_s", "listen_overflows", "syn_retrans", "backend_established", "rss_before_kib", "rss_held_kib", "setup_ms"]);
  expect(idle.result).toMatchObject({ conns: 100, connect_s: 0.23, rss_held_kib: 1300 });

  expect(rows.at(-1)).toEqual({ end: { loadavg_end: expect.any(String), elapsed_s: 612 } });
});

test("no result is {failed:true}, a missing number is null, text is quoted by jq", () => {
  const failed = rows.find((r) => r.result?.failed);
  expect(failed).toMatchObject({ system: "featherlb-proxy", workload: "short", lb_cpu_pct: null, result: { failed: true } });
  expect(rows.find((r) => r.workload === "unavailable")).toEqual({ rep: 1, system: "nginx", workload: "unavailable", result: { reason: REASON } });
});

test("report.ts renders what the writers wrote", () => {
  writeFileSync(join(dir, "benchmarks.md"), "# Bench\n\n<!-- BEGIN RESULTS -->old<!-- END RESULTS -->\n");
  const p = Bun.spawnSync([process.execPath, "run", join(HERE, "report.ts"), join(dir, "results.jsonl"), "--docs", dir], { stdout: "pipe", stderr: "pipe" });
  expect(p.stderr.toString()).toBe("");
  expect(p.exitCode).toBe(0);
  const md = readFileSync(join(dir, "benchmarks.md"), "utf8");
  expect(md).toContain("10,002 (10,001–10,003)"); // HAProxy short req/s: median (min–max) of the three reps
  expect(md).toContain(`- NGINX stream: ${REASON}`);
  expect(readFileSync(join(dir, "benchmarks.svg"), "utf8")).toStartWith("<svg");
});
