/**
 * Renders the raw results of test/bench/run.sh (JSON lines) into the results section of
 * docs/benchmarks.md and the chart docs/benchmarks.svg. No dependencies: the SVG is written by hand.
 *
 *   bun run test/bench/report.ts [build/bench/results.jsonl] [--scale build/bench/scale.jsonl] [--elapsed SECONDS] [--docs DIR]
 *
 * With --scale it also renders the cost curves of test/bench/scale.ts (scale-report.ts) into their own
 * section (SCALE markers) and docs/benchmarks-scale.svg; without a results file, only those.
 *
 * Each cell is the median of the repetitions with min–max; ratios are ratios of medians, taken in the
 * same run. The prose around the results section (method, profile) is kept as it is: only the part
 * between the BEGIN/END markers is replaced.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseResults, type Meta } from "./jsonl.ts";
import { renderScale } from "./scale-report.ts";

const SYSTEMS = ["direct", "haproxy", "nginx", "featherlb-proxy", "featherlb-proxy-js", "featherlb-proxy-pp2", "haproxy-2", "nginx-2", "featherlb-proxy-2", "featherlb-xdp", "featherlb-xdp-dsr", "xdp-floor", "splice-relay"] as const;
type System = (typeof SYSTEMS)[number];
const LABEL: Record<System, string> = {
  direct: "direct (no LB)",
  haproxy: "HAProxy 2.6",
  nginx: "NGINX stream",
  "featherlb-proxy": "featherlb proxy",
  "featherlb-proxy-js": "featherlb proxy, kernel relay off",
  "featherlb-proxy-pp2": "featherlb proxy + send_proxy v2",
  "haproxy-2": "HAProxy 2.6, nbthread 2",
  "nginx-2": "NGINX stream, 2 workers",
  "featherlb-proxy-2": "featherlb proxy, workers: 2",
  "featherlb-xdp": "featherlb xdp",
  "featherlb-xdp-dsr": "featherlb xdp dsr",
  "xdp-floor": "XDP floor (reference)",
  "splice-relay": "splice(2) relay (C reference)",
};
const COLOR: Record<System, string> = {
  direct: "#9e9e9e",
  haproxy: "#1f77b4",
  nginx: "#2ca02c",
  "featherlb-proxy": "#ff7f0e",
  "featherlb-proxy-js": "#fdae6b",
  "featherlb-proxy-pp2": "#ffbb78",
  "haproxy-2": "#6baed6",
  "nginx-2": "#74c476",
  "featherlb-proxy-2": "#e6550d",
  "featherlb-xdp": "#d62728",
  "featherlb-xdp-dsr": "#9467bd",
  "xdp-floor": "#c9a0a0",
  "splice-relay": "#8c564b",
};
/** Rows measured on short and keep-alive connections only (run.sh run_system). */
const SHORT_ONLY: readonly System[] = ["featherlb-proxy-pp2"];
/** Two-worker rows: short, keep-alive and bulk, neither the idle test nor the single stream (run_system). */
const TWO_WORKERS: readonly System[] = ["haproxy-2", "nginx-2", "featherlb-proxy-2"];

type Workload = "short" | "keepalive" | "bulk" | "stream" | "idle";
interface Row {
  rep: number;
  system: System;
  workload: Workload | "unavailable";
  lb_cpu_pct?: number | null;
  machine_busy_pct?: number;
  result: Record<string, number | boolean | string>;
}
// ------------------------------------------------------------------ reading
const parse = (file: string) => parseResults<Row>(readFileSync(file, "utf8"));

/** One metric of one system: the value of each repetition. */
interface Stat {
  values: number[];
  median: number;
  min: number;
  max: number;
}
function stat(values: number[]): Stat | undefined {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { values: v, median, min: v[0]!, max: v[v.length - 1]! };
}

const num = (r: Row, k: string): number => {
  const x = r.result[k];
  return typeof x === "number" ? x : NaN;
};

/** Metric extractors: name → (row of the right workload) → number. */
const METRICS = {
  short_rps: { wl: "short", f: (r: Row) => num(r, "requests") / (num(r, "duration_us") / 1e6) },
  short_p50: { wl: "short", f: (r: Row) => num(r, "p50_us") / 1000 },
  short_p99: { wl: "short", f: (r: Row) => num(r, "p99_us") / 1000 },
  short_cpu: { wl: "short", f: (r: Row) => r.lb_cpu_pct ?? NaN },
  short_err: { wl: "short", f: (r: Row) => errors(r) },
  ka_rps: { wl: "keepalive", f: (r: Row) => num(r, "requests") / (num(r, "duration_us") / 1e6) },
  ka_p50: { wl: "keepalive", f: (r: Row) => num(r, "p50_us") / 1000 },
  ka_p99: { wl: "keepalive", f: (r: Row) => num(r, "p99_us") / 1000 },
  ka_cpu: { wl: "keepalive", f: (r: Row) => r.lb_cpu_pct ?? NaN },
  ka_err: { wl: "keepalive", f: (r: Row) => errors(r) },
  bulk_gbps: { wl: "bulk", f: (r: Row) => (num(r, "bytes") * 8) / num(r, "duration_us") / 1e3 },
  bulk_cpu: { wl: "bulk", f: (r: Row) => r.lb_cpu_pct ?? NaN },
  bulk_err: { wl: "bulk", f: (r: Row) => errors(r) },
  stream_gbps: { wl: "stream", f: (r: Row) => num(r, "gbps") },
  stream_cpu: { wl: "stream", f: (r: Row) => r.lb_cpu_pct ?? NaN },
  idle_conns: { wl: "idle", f: (r: Row) => num(r, "conns") },
  idle_backend: { wl: "idle", f: (r: Row) => num(r, "backend_established") },
  idle_setup_s: { wl: "idle", f: (r: Row) => num(r, "connect_s") },
  idle_syn: { wl: "idle", f: (r: Row) => num(r, "syn_retrans") },
  idle_rss0: { wl: "idle", f: (r: Row) => num(r, "rss_before_kib") / 1024 },
  idle_rss1: { wl: "idle", f: (r: Row) => num(r, "rss_held_kib") / 1024 },
  idle_kib_per_conn: {
    wl: "idle",
    f: (r: Row) => (num(r, "rss_held_kib") - num(r, "rss_before_kib")) / num(r, "conns"),
  },
} as const satisfies Record<string, { wl: Workload; f: (r: Row) => number }>;
type MetricName = keyof typeof METRICS;

function errors(r: Row): number {
  return ["err_connect", "err_read", "err_write", "err_status", "err_timeout"].reduce(
    (s, k) => s + (num(r, k) || 0),
    0,
  );
}

class Results {
  readonly present: System[];
  readonly unavailable = new Map<System, string>();
  constructor(private readonly rows: Row[]) {
    for (const r of rows) {
      if (r.workload === "unavailable") this.unavailable.set(r.system, String(r.result.reason ?? "?"));
    }
    this.present = SYSTEMS.filter((s) => rows.some((r) => r.system === s && r.workload !== "unavailable"));
  }
  get(sys: System, m: MetricName): Stat | undefined {
    const { wl, f } = METRICS[m];
    return stat(this.rows.filter((r) => r.system === sys && r.workload === wl && !r.result.failed).map(f));
  }
  ratio(sys: System, base: System, m: MetricName): number | undefined {
    const a = this.get(sys, m);
    const b = this.get(base, m);
    return a && b && b.median !== 0 ? a.median / b.median : undefined;
  }
}

// ------------------------------------------------------------------ formatting
function fmt(x: number): string {
  if (Number.isInteger(x)) return x.toLocaleString("en-US");
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString("en-US");
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}
const cell = (s: Stat | undefined): string =>
  s ? (s.values.length > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median)) : "—";
const ratio = (x: number | undefined): string => (x === undefined ? "—" : `${x.toFixed(2)}×`);
const cpu = (s: Stat | undefined): string => (s ? `${s.median.toFixed(0)} %` : "—");

/** A markdown table; `left` = how many leading columns are text (left-aligned), the rest are numbers. */
function table(head: string[], rows: string[][], left = 1): string {
  const line = (c: string[]) => `| ${c.join(" | ")} |`;
  return [line(head), line(head.map((_, i) => (i < left ? "---" : "---:"))), ...rows.map(line)].join("\n");
}

function workloadTables(R: Results): string {
  const out: string[] = [];
  const sysCell = (s: System) => `**${LABEL[s]}**`;
  const errNote = (s: System, m: MetricName) => {
    const e = R.get(s, m);
    return e && e.max > 0 ? ` ⚠ up to ${fmt(e.max)} errors` : "";
  };
  for (const [title, rps, p50, p99, cpuM, errM] of [
    ["Short connections — a new TCP connection per request (wrk, `Connection: close`, 64 connections)", "short_rps", "short_p50", "short_p99", "short_cpu", "short_err"],
    ["Keep-alive — 64 persistent connections (wrk)", "ka_rps", "ka_p50", "ka_p99", "ka_cpu", "ka_err"],
  ] as const) {
    out.push(`### ${title}\n`);
    out.push(
      table(
        ["system", "req/s", "× HAProxy", "× direct", "p50 ms", "p99 ms", "p99 × HAProxy", "LB CPU"],
        R.present.map((s) => [
          sysCell(s),
          cell(R.get(s, rps)) + errNote(s, errM),
          ratio(R.ratio(s, "haproxy", rps)),
          ratio(R.ratio(s, "direct", rps)),
          cell(R.get(s, p50)),
          cell(R.get(s, p99)),
          ratio(R.ratio(s, "haproxy", p99)),
          cpu(R.get(s, cpuM)),
        ]),
      ),
      "",
    );
  }
  if (R.present.includes("featherlb-proxy-pp2") && R.present.includes("featherlb-proxy")) out.push(sendProxyTable(R));
  if (R.present.includes("featherlb-proxy-2")) out.push(twoWorkersTable(R));
  out.push("### Bulk — Gbit/s at the client\n");
  out.push(
    table(
      ["system", "1 MiB file, 8 keep-alive conns", "× HAProxy", "× direct", "LB CPU", "one 10 s TCP stream", "× HAProxy", "× direct", "LB CPU"],
      R.present.filter((s) => !SHORT_ONLY.includes(s)).map((s) => [
        sysCell(s),
        cell(R.get(s, "bulk_gbps")) + errNote(s, "bulk_err"),
        ratio(R.ratio(s, "haproxy", "bulk_gbps")),
        ratio(R.ratio(s, "direct", "bulk_gbps")),
        cpu(R.get(s, "bulk_cpu")),
        cell(R.get(s, "stream_gbps")),
        ratio(R.ratio(s, "haproxy", "stream_gbps")),
        ratio(R.ratio(s, "direct", "stream_gbps")),
        cpu(R.get(s, "stream_cpu")),
      ]),
    ),
    "",
  );
  out.push("### Concurrency — idle connections held open through the balancer\n");
  out.push(
    table(
      ["system", "connections held", "reached the backends", "time to open them, s", "client SYN retransmits", "LB RSS before, MiB", "LB RSS held, MiB", "KiB per connection", "× HAProxy"],
      R.present
        .filter((s) => s !== "direct" && s !== "xdp-floor" && !SHORT_ONLY.includes(s) && !TWO_WORKERS.includes(s))
        .map((s) => [
          sysCell(s),
          cell(R.get(s, "idle_conns")),
          cell(R.get(s, "idle_backend")),
          cell(R.get(s, "idle_setup_s")),
          cell(R.get(s, "idle_syn")),
          cell(R.get(s, "idle_rss0")),
          cell(R.get(s, "idle_rss1")),
          cell(R.get(s, "idle_kib_per_conn")),
          ratio(R.ratio(s, "haproxy", "idle_kib_per_conn")),
        ]),
    ),
    "",
  );
  if (R.present.includes("featherlb-xdp")) {
    out.push(
      "In xdp mode connections do not pass through the featherlb process; their state lives in BPF maps " +
        "(kernel memory, preallocated at load), so the process RSS per connection above is not comparable.\n",
    );
  }
  if (R.present.includes("featherlb-xdp") && R.present.includes("xdp-floor")) out.push(floorTable(R));
  if (R.present.includes("featherlb-proxy-js") || R.present.includes("splice-relay")) out.push(kernelRelayTable(R));
  if (R.unavailable.size) {
    out.push("Not measured in this run:\n");
    for (const [s, why] of R.unavailable) out.push(`- ${LABEL[s]}: ${why.trim()}`);
    out.push("");
  }
  return out.join("\n");
}

/** What send_proxy: v2 costs: the proxy row with the header against the same proxy without it. */
function sendProxyTable(R: Results): string {
  const rows = (
    [
      ["short connections, req/s", "short_rps"],
      ["short connections, p50 ms", "short_p50"],
      ["short connections, p99 ms", "short_p99"],
      ["short connections, LB CPU %", "short_cpu"],
      ["keep-alive, req/s", "ka_rps"],
      ["keep-alive, p99 ms", "ka_p99"],
    ] as const
  ).map(([what, m]) => [what, cell(R.get("featherlb-proxy", m)), cell(R.get("featherlb-proxy-pp2", m)), ratio(R.ratio("featherlb-proxy-pp2", "featherlb-proxy", m))]);
  return [
    "### The cost of `send_proxy: v2`\n",
    "The *featherlb proxy + send_proxy v2* row is the same proxy writing a 28-byte PROXY protocol v2 header " +
      "at the start of every backend connection, to backends that read it (nginx `listen … proxy_protocol`, " +
      "port 81, the same files). It pays once per connection: short connections show the cost, keep-alive " +
      "connections (one header for thousands of requests) should not.\n",
    table(["workload", "featherlb proxy", "+ send_proxy v2", "ratio"], rows),
    "",
  ].join("\n");
}

/** Two threads or processes each: featherlb workers: 2 against HAProxy nbthread 2 and NGINX worker_processes 2. */
function twoWorkersTable(R: Results): string {
  const rows = (
    [
      ["short connections, req/s", "short_rps"],
      ["short connections, p99 ms", "short_p99"],
      ["keep-alive, req/s", "ka_rps"],
      ["bulk 1 MiB × 8, Gbit/s", "bulk_gbps"],
    ] as const
  ).map(([what, m]) => [
    what,
    cell(R.get("haproxy-2", m)),
    cell(R.get("nginx-2", m)),
    cell(R.get("featherlb-proxy-2", m)),
    ratio(R.ratio("featherlb-proxy-2", "haproxy-2", m)),
    ratio(R.ratio("featherlb-proxy-2", "featherlb-proxy", m)),
    ratio(R.ratio("haproxy-2", "haproxy", m)),
  ]);
  return [
    "### Two workers\n",
    "Each balancer on two threads or processes: HAProxy `nbthread 2`, NGINX `worker_processes 2`, featherlb " +
      "`workers: 2` (two proxy threads, each accepting on its own `SO_REUSEPORT` socket). On this 2-core box the " +
      "load generator and the backends share the cores, so a second worker is measured against the same " +
      "machine, not a free one. *× 1 worker* is the row against the same balancer on one. Not measured for them: " +
      "the single stream (one connection is relayed by one worker) and the idle connections (memory per connection " +
      "does not depend on the worker).\n",
    table(["workload", "HAProxy nbthread 2", "NGINX 2 workers", "featherlb workers: 2", "featherlb × HAProxy", "featherlb × 1 worker", "HAProxy × 1 thread"], rows),
    "",
  ].join("\n");
}

/** featherlb xdp against the stateless floor program: what the hop costs vs what featherlb's work costs. */
function floorTable(R: Results): string {
  const rows = (
    [
      ["short connections, req/s", "short_rps"],
      ["keep-alive, req/s", "ka_rps"],
      ["bulk 1 MiB × 8, Gbit/s", "bulk_gbps"],
      ["one stream, Gbit/s", "stream_gbps"],
    ] as const
  ).map(([what, m]) => [
    what,
    cell(R.get("direct", m)),
    cell(R.get("xdp-floor", m)),
    cell(R.get("featherlb-xdp", m)),
    ratio(R.ratio("xdp-floor", "direct", m)),
    ratio(R.ratio("featherlb-xdp", "xdp-floor", m)),
  ]);
  return [
    "### The XDP rows against the XDP floor\n",
    "*XDP floor* is a reference, not a balancer: test/bench/tools/xdp_floor.bpf.c rewrites addresses and MACs " +
      "with compile-time constants and sends the packet back out, with no flow table, SNAT, lookups or counters, " +
      "attached like featherlb (generic XDP on the LB's veth). *floor × direct* is what the extra hop itself " +
      "costs on this machine; *featherlb × floor* is what featherlb's own per-packet work costs on top.\n",
    table(["workload", "direct", "XDP floor", "featherlb xdp", "floor × direct", "featherlb × floor"], rows),
    "",
  ].join("\n");
}

/** The splice(2) reference relay (issue 13) against a direct connection and the featherlb proxy. */
function kernelRelayTable(R: Results): string {
  const rows = (
    [
      ["bulk 1 MiB × 8, Gbit/s", "bulk_gbps"],
      ["bulk 1 MiB × 8, LB CPU %", "bulk_cpu"],
      ["one stream, Gbit/s", "stream_gbps"],
      ["one stream, LB CPU %", "stream_cpu"],
      ["short connections, req/s", "short_rps"],
      ["short connections, LB CPU %", "short_cpu"],
      ["keep-alive, req/s", "ka_rps"],
      ["KiB per idle connection (RSS)", "idle_kib_per_conn"],
    ] as const
  ).map(([what, m]) => [
    what,
    cell(R.get("direct", m)),
    cell(R.get("featherlb-proxy", m)),
    cell(R.get("featherlb-proxy-js", m)),
    cell(R.get("splice-relay", m)),
    ratio(R.ratio("featherlb-proxy", "direct", m)),
    ratio(R.ratio("featherlb-proxy", "featherlb-proxy-js", m)),
    ratio(R.ratio("splice-relay", "direct", m)),
  ]);
  return [
    "### Kernel relay\n",
    "*featherlb proxy* runs with its defaults, so with `kernel_relay`: a connection that has moved 64 KiB is " +
      "handed to a relay thread that moves its bytes with splice(2), socket → pipe → socket, never into " +
      "JavaScript (docs/config.md#kernel_relay). *kernel relay off* is the same binary relaying every byte in " +
      "JavaScript. *splice(2) relay* is a reference, not a balancer: test/bench/tools/splice_relay.c, one C " +
      "thread doing the same splice loop for every connection from its first byte — what the mechanism costs " +
      "without featherlb around it. Short connections never reach 64 KiB: their rows show the relay costs " +
      "them nothing. RSS per idle connection leaves out pipes, which live in kernel memory. The eBPF sockmap " +
      "alternative is not a row: it has no backpressure (`make bench-sockmap`; docs/config.md#kernel_relay).\n",
    table(["workload", "direct", "featherlb proxy", "kernel relay off", "splice(2) relay (C)", "featherlb × direct", "× kernel relay off", "C splice × direct"], rows),
    "",
  ].join("\n");
}

// ------------------------------------------------------------------ targets
interface Target {
  system: System;
  what: string;
  base: System;
  metric: MetricName;
  op: ">=" | "<=";
  goal: number;
}
const TARGETS: Target[] = [
  { system: "featherlb-proxy", what: "short-conn req/s", base: "haproxy", metric: "short_rps", op: ">=", goal: 1.0 },
  { system: "featherlb-proxy", what: "keep-alive req/s", base: "haproxy", metric: "ka_rps", op: ">=", goal: 1.0 },
  { system: "featherlb-proxy", what: "bulk Gbit/s (1 MiB × 8)", base: "haproxy", metric: "bulk_gbps", op: ">=", goal: 1.5 },
  { system: "featherlb-proxy", what: "bulk Gbit/s (one stream)", base: "haproxy", metric: "stream_gbps", op: ">=", goal: 1.2 },
  { system: "featherlb-proxy", what: "p99 latency, short conns", base: "haproxy", metric: "short_p99", op: "<=", goal: 1.5 },
  { system: "featherlb-proxy", what: "p99 latency, keep-alive", base: "haproxy", metric: "ka_p99", op: "<=", goal: 1.5 },
  { system: "featherlb-proxy", what: "memory per idle connection", base: "haproxy", metric: "idle_kib_per_conn", op: "<=", goal: 1.0 },
  // Kernel relay (issue 13): bulk bytes outside JavaScript.
  { system: "featherlb-proxy", what: "bulk Gbit/s (1 MiB × 8), kernel relay", base: "direct", metric: "bulk_gbps", op: ">=", goal: 0.8 },
  { system: "featherlb-proxy", what: "bulk Gbit/s (one stream), kernel relay", base: "direct", metric: "stream_gbps", op: ">=", goal: 0.8 },
  { system: "featherlb-proxy-2", what: "short-conn req/s", base: "haproxy-2", metric: "short_rps", op: ">=", goal: 1.0 },
  { system: "featherlb-proxy-2", what: "keep-alive req/s", base: "haproxy-2", metric: "ka_rps", op: ">=", goal: 1.0 },
  { system: "featherlb-proxy-2", what: "bulk Gbit/s (1 MiB × 8)", base: "haproxy-2", metric: "bulk_gbps", op: ">=", goal: 1.5 },
  { system: "featherlb-xdp", what: "short-conn req/s", base: "direct", metric: "short_rps", op: ">=", goal: 0.9 },
  { system: "featherlb-xdp", what: "short-conn req/s", base: "haproxy", metric: "short_rps", op: ">=", goal: 2.0 },
  { system: "featherlb-xdp", what: "keep-alive req/s", base: "direct", metric: "ka_rps", op: ">=", goal: 1.0 },
  { system: "featherlb-xdp", what: "bulk Gbit/s (1 MiB × 8)", base: "direct", metric: "bulk_gbps", op: ">=", goal: 0.9 },
  { system: "featherlb-xdp", what: "bulk Gbit/s (one stream)", base: "direct", metric: "stream_gbps", op: ">=", goal: 0.9 },
  // Direct server return (issue 14): replies skip the balancer.
  { system: "featherlb-xdp-dsr", what: "short-conn req/s", base: "direct", metric: "short_rps", op: ">=", goal: 0.9 },
  { system: "featherlb-xdp-dsr", what: "keep-alive req/s", base: "direct", metric: "ka_rps", op: ">=", goal: 1.0 },
  { system: "featherlb-xdp-dsr", what: "bulk Gbit/s (1 MiB × 8)", base: "direct", metric: "bulk_gbps", op: ">=", goal: 0.95 },
  { system: "featherlb-xdp-dsr", what: "bulk Gbit/s (one stream)", base: "direct", metric: "stream_gbps", op: ">=", goal: 0.9 },
];
/** "Near 0 %": the featherlb process in xdp mode, every workload, median CPU at most this. */
const XDP_CPU_MAX = 5;
/** Kernel relay (issue 13): the featherlb process in the stream test, below this % of a core. */
const RELAY_STREAM_CPU_MAX = 10;

function targets(R: Results): { md: string; pass: number; total: number } {
  const rows: string[][] = [];
  let pass = 0;
  // The dsr row's targets only when it ran (it is new: older result files have no such row).
  const active = TARGETS.filter((t) => t.system !== "featherlb-xdp-dsr" || R.present.includes(t.system));
  for (const t of active) {
    const r = R.ratio(t.system, t.base, t.metric);
    const ok = r !== undefined && (t.op === ">=" ? r >= t.goal : r <= t.goal);
    if (ok) pass++;
    const verdict = r === undefined ? "NOT MEASURED" : ok ? "**PASS**" : "**MISS**";
    const floor = t.system.startsWith("featherlb-xdp") ? ratio(R.ratio("xdp-floor", t.base, t.metric)) : "";
    rows.push([LABEL[t.system], t.what, `${t.op} ${Math.round(t.goal * 100) % 10 ? t.goal.toFixed(2) : t.goal.toFixed(1)}× ${LABEL[t.base]}`, ratio(r), verdict, floor]);
  }
  const cpus = (["short_cpu", "ka_cpu", "bulk_cpu", "stream_cpu"] as const).map((m) => R.get("featherlb-xdp", m));
  const measured = cpus.filter((c): c is Stat => c !== undefined);
  const worst = measured.length ? Math.max(...measured.map((c) => c.median)) : undefined;
  const cpuOk = worst !== undefined && worst <= XDP_CPU_MAX;
  if (cpuOk) pass++;
  rows.push([
    LABEL["featherlb-xdp"],
    "featherlb process CPU, every workload",
    `near 0 % (≤ ${XDP_CPU_MAX} %)`,
    worst === undefined ? "—" : `${worst.toFixed(1)} % worst`,
    worst === undefined ? "NOT MEASURED" : cpuOk ? "**PASS**" : "**MISS**",
    "",
  ]);
  const stream = R.get("featherlb-proxy", "stream_cpu");
  const streamOk = stream !== undefined && stream.median < RELAY_STREAM_CPU_MAX;
  if (streamOk) pass++;
  rows.push([
    LABEL["featherlb-proxy"],
    "featherlb process CPU, one stream, kernel relay",
    `< ${RELAY_STREAM_CPU_MAX} % of a core`,
    stream === undefined ? "—" : `${stream.median.toFixed(1)} %`,
    stream === undefined ? "NOT MEASURED" : streamOk ? "**PASS**" : "**MISS**",
    "",
  ]);
  const total = active.length + 2;
  return { md: table(["mode", "target", "goal", "measured (ratio of medians)", "verdict", "XDP floor, same ratio"], rows, 3), pass, total };
}

// ------------------------------------------------------------------ SVG chart
function svg(R: Results, meta: Meta): string {
  const panels: { title: string; m: MetricName; unit: string; better: string }[] = [
    { title: "Short connections", m: "short_rps", unit: "req/s", better: "higher is better" },
    { title: "Keep-alive", m: "ka_rps", unit: "req/s", better: "higher is better" },
    { title: "p99 latency, short connections", m: "short_p99", unit: "ms", better: "lower is better" },
    { title: "Bulk: 1 MiB × 8 connections", m: "bulk_gbps", unit: "Gbit/s", better: "higher is better" },
    { title: "Bulk: one TCP stream", m: "stream_gbps", unit: "Gbit/s", better: "higher is better" },
    { title: "Memory per idle connection", m: "idle_kib_per_conn", unit: "KiB", better: "lower is better" },
  ];
  const cols = 2, pw = 540, gap = 20, left = 120, barH = 18, barGap = 6, labelRoom = 170;
  const W = 20 + cols * pw + (cols - 1) * gap + 20;
  const sysList = R.present;
  const ph = 48 + sysList.length * (barH + barGap) + 10;
  const top = 70;
  const rowsN = Math.ceil(panels.length / cols);
  const H = top + rowsN * (ph + 20) + 30;
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="20" y="28" font-size="18" font-weight="bold">featherlb vs HAProxy vs NGINX vs direct — make bench</text>`,
    `<text x="20" y="50" fill="#555">${esc(`${meta.date ?? ""} · ${meta.cpus ?? "?"} cores · kernel ${meta.kernel ?? "?"} · median of ${meta.reps ?? "?"} runs, whiskers min–max · commit ${meta.commit ?? "?"}`)}</text>`,
  );
  panels.forEach((p, i) => {
    const x0 = 20 + (i % cols) * (pw + gap);
    const y0 = top + Math.floor(i / cols) * (ph + 20);
    const stats = sysList.map((s) => ({ s, st: R.get(s, p.m) }));
    const maxV = Math.max(1e-9, ...stats.map(({ st }) => (st ? st.max : 0)));
    const scale = (pw - left - labelRoom) / maxV;
    o.push(`<g transform="translate(${x0},${y0})">`);
    o.push(`<rect x="0" y="0" width="${pw}" height="${ph}" fill="#fafafa" stroke="#ddd"/>`);
    o.push(`<text x="10" y="20" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
    o.push(`<text x="10" y="36" fill="#666">${esc(`${p.unit}, ${p.better}`)}</text>`);
    stats.forEach(({ s, st }, j) => {
      const y = 48 + j * (barH + barGap);
      o.push(`<text x="${left - 8}" y="${y + barH - 5}" text-anchor="end">${esc(LABEL[s])}</text>`);
      const shortOnly = SHORT_ONLY.includes(s) && !["short_rps", "ka_rps", "short_p99"].includes(p.m);
      const na =
        shortOnly ? "short and keep-alive only"
        : p.m === "idle_kib_per_conn" && (s === "direct" || s === "xdp-floor") ? "n/a (no balancer process)"
        : p.m === "idle_kib_per_conn" && (s === "featherlb-xdp" || s === "featherlb-xdp-dsr") ? "n/a (flows live in BPF maps)"
        : TWO_WORKERS.includes(s) && (p.m === "idle_kib_per_conn" || p.m === "stream_gbps") ? "not measured (as one worker)"
        : !st ? "not measured" : undefined;
      if (na || !st) {
        o.push(`<text x="${left + 4}" y="${y + barH - 5}" fill="#999">${esc(na ?? "not measured")}</text>`);
        return;
      }
      const w = Math.max(1, st.median * scale);
      o.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${COLOR[s]}"/>`);
      if (st.values.length > 1) {
        const a = left + st.min * scale, b = left + st.max * scale, m = y + barH / 2;
        o.push(`<path d="M${a.toFixed(1)} ${m}H${b.toFixed(1)}M${a.toFixed(1)} ${m - 5}V${m + 5}M${b.toFixed(1)} ${m - 5}V${m + 5}" stroke="#222" stroke-width="1.2"/>`);
      }
      const hr = s !== "haproxy" ? R.ratio(s, "haproxy", p.m) : undefined;
      const label = fmt(st.median) + (hr !== undefined ? `  ·  ${hr.toFixed(2)}× HAProxy` : "");
      o.push(`<text x="${(left + Math.max(w, st.max * scale) + 6).toFixed(1)}" y="${y + barH - 5}" fill="#222">${esc(label)}</text>`);
    });
    o.push(`</g>`);
  });
  o.push(`</svg>`);
  return o.join("\n") + "\n";
}

// ------------------------------------------------------------------ main
/** Replace the section between `<!-- BEGIN name` and `<!-- END name -->` of `md`, or append it. */
function replaceSection(md: string, name: string, section: string): string {
  const re = new RegExp(`<!-- BEGIN ${name}[\\s\\S]*?<!-- END ${name} -->`);
  return re.test(md) ? md.replace(re, () => section) : `${md.trimEnd()}\n\n${section}\n`;
}

function main(): void {
  const args = process.argv.slice(2);
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const valued = new Set(["--elapsed", "--docs", "--scale"]);
  const file = args.find((a, i) => !a.startsWith("--") && !valued.has(args[i - 1] ?? ""));
  const elapsed = opt("--elapsed");
  const docs = opt("--docs") ?? "docs";
  const scale = opt("--scale");
  const mdPath = join(docs, "benchmarks.md");
  if (scale) {
    const { md, svg: chart } = renderScale(readFileSync(scale, "utf8"));
    const doc = existsSync(mdPath) ? readFileSync(mdPath, "utf8") : "# Benchmarks\n\n";
    writeFileSync(mdPath, replaceSection(doc, "SCALE", md));
    writeFileSync(join(docs, "benchmarks-scale.svg"), chart);
    console.log(md);
    console.log(`\nwrote the scale section of ${mdPath} and ${join(docs, "benchmarks-scale.svg")}`);
  }
  if (!file) return;
  const { rows, meta, end } = parse(file);
  const R = new Results(rows);
  const T = targets(R);

  const env = [
    `- Run: ${meta.date} · commit \`${meta.commit}\` · kernel ${meta.kernel} · ${meta.cpus} cores`,
    `- Versions: HAProxy ${meta.haproxy}, NGINX ${meta.nginx}, wrk ${meta.wrk}; featherlb binary built ${meta.featherlb}`,
    `- Each cell: median of ${meta.reps} runs (min–max); wrk runs ${meta.duration_s} s with ${meta.wrk_threads} threads; the stream lasts ${meta.stream_s} s; ${meta.idle_conns} idle connections (fd limit ${meta.fd_limit}); veth offloads ${meta.offload ?? "on"}; ${meta.backend_workers} nginx workers per backend`,
    `- Machine load average at start ${meta.loadavg_start}, at end ${end.loadavg_end ?? "?"}` +
      (elapsed ? ` · \`make bench\` took ${Math.floor(Number(elapsed) / 60)} min ${Number(elapsed) % 60} s` : end.elapsed_s ? ` · measuring took ${end.elapsed_s} s` : ""),
  ].join("\n");

  const section = [
    "<!-- BEGIN RESULTS (generated by test/bench/report.ts from build/bench/results.jsonl; edits here are overwritten) -->",
    "## Results",
    "",
    env,
    "",
    "![featherlb vs HAProxy vs NGINX vs direct](benchmarks.svg)",
    "",
    workloadTables(R),
    `### Targets (${T.pass} of ${T.total} met)\n`,
    T.md,
    "<!-- END RESULTS -->",
  ].join("\n");

  const md = existsSync(mdPath) ? readFileSync(mdPath, "utf8") : "# Benchmarks\n\n";
  writeFileSync(mdPath, replaceSection(md, "RESULTS", section));
  writeFileSync(join(docs, "benchmarks.svg"), svg(R, meta));
  console.log(section);
  console.log(`\nwrote ${mdPath} and ${join(docs, "benchmarks.svg")}`);
}

main();
