/**
 * /metrics (Prometheus text exposition format 0.0.4) and /status (JSON), rendered from the Service and
 * Backend counters. Both data planes fill the same counters, so these are identical in proxy and xdp.
 */
import type { Plane } from "../config/types.ts";
import { slicer } from "../slice.ts";
import type { Backend } from "./backend.ts";
import type { Incidents } from "./incidents.ts";
import type { Counters } from "./stats.ts";
import type { Service } from "./service.ts";

export interface RuntimeInfo {
  version: string;
  /** The data planes serving: one of them, or "mixed" when services run in both. */
  mode: Plane | "mixed";
  startedAt: number;
  reloads: { ok: number; failed: number };
  /** xdp: how the program is attached ("native" or "generic"), from the data plane. */
  attach?: string;
  /** The data plane each service runs in, by service name (the runtime sets it on every apply). */
  planes?: ReadonlyMap<string, Plane>;
  /** The proxy's worker threads, read at each scrape. */
  workers?: () => readonly WorkerInfo[];
}

/** One proxy worker thread as /status and /metrics show it. */
export interface WorkerInfo {
  index: number;
  alive: boolean;
  /** Proxied connections it holds. */
  connections: number;
  /** Proxied connections it has accepted. */
  accepted: number;
  /** Times it died and was started again. */
  restarts: number;
  /** Of `connections`, those its kernel relay thread moves now (kernel_relay). */
  kernel_relayed: number;
}

/** What /status and /metrics show of the XDP plane's maps (dataplane/types.ts PlaneMaps has this shape). */
export interface MapsInfo {
  capacity: Readonly<Record<string, number>>;
  maps: { name: string; max_entries: number; bytes: number }[];
  bytes: number;
}

/** What /metrics shows besides the services: the XDP program's packet outcomes and maps, featherlb's own faults. */
export interface MetricsExtras {
  xdp?: XdpStats;
  incidents?: Incidents;
  maps?: MapsInfo;
}

type Labels = Record<string, string>;

/** A label value escaped as the text format wants it (backslash, quote, newline). */
const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
/** `k="v",…` for a label set, rendered once and reused by every sample that carries it. */
const renderLabels = (labels: Labels) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(",");

/**
 * What the XDP data plane reports besides the service and backend counters: the program's packet
 * counts by reason in total, and per service for the reasons counted once a packet's service is known.
 * `kinds` says what each reason is: an outcome ("pass" to the kernel, "drop", "tx" transmitted; every
 * packet is counted under exactly one) or an "event" (counted in addition to the packet's outcome).
 * `entries`: the flow tables' entries per stage as the last sweep left them.
 */
export interface XdpStats {
  total: Readonly<Record<string, number>>;
  services: ReadonlyMap<string, Readonly<Record<string, number>>>;
  kinds: Readonly<Record<string, string>>;
  entries: Readonly<Record<"established" | "handshake", number>>;
}

class Exposition {
  private readonly families = new Map<string, { help: string; type: string; samples: string[] }>();

  /** One sample; `labels` already rendered (renderLabels), "" for none. */
  add(name: string, type: "gauge" | "counter", help: string, labels: string, value: number): void {
    let family = this.families.get(name);
    if (!family) this.families.set(name, (family = { help, type, samples: [] }));
    family.samples.push(labels ? `${name}{${labels}} ${value}` : `${name} ${value}`);
  }

  render(): string {
    let out = "";
    for (const [name, f] of this.families) out += `# HELP ${name} ${f.help}\n# TYPE ${name} ${f.type}\n${f.samples.join("\n")}\n`;
    return out;
  }
}

/** The counters every service and backend exposes, under featherlb_service_* and featherlb_backend_*. */
function addTraffic(e: Exposition, scope: "service" | "backend", labels: string, c: Counters): void {
  const p = `featherlb_${scope}`;
  const dir = (d: "in" | "out") => `${labels},direction="${d}"`;
  e.add(`${p}_connections_active`, "gauge", "Connections (proxy) or flows (xdp) open now.", labels, c.active);
  e.add(`${p}_connections_total`, "counter", "Connections (proxy) or flows (xdp) opened.", labels, c.total);
  e.add(`${p}_bytes_total`, "counter", "Payload bytes relayed (proxy) or IP bytes forwarded (xdp), by direction: in = client to backend.", dir("in"), c.bytesIn);
  e.add(`${p}_bytes_total`, "counter", "", dir("out"), c.bytesOut);
  e.add(`${p}_packets_total`, "counter", "Packets forwarded by direction (xdp; 0 in proxy mode).", dir("in"), c.packetsIn);
  e.add(`${p}_packets_total`, "counter", "", dir("out"), c.packetsOut);
  e.add(`${p}_connect_failures_total`, "counter", "Failed connects to backends (timeouts, refusals).", labels, c.connectFailures);
}

/** The XDP families: outcomes by action and reason, events by name; in total and per service. */
function addXdp(e: Exposition, x: XdpStats): void {
  const packets =
    "XDP program: packets by outcome (action: pass = to the kernel, drop, tx = transmitted; every packet counts once; icmp_c2b/icmp_b2c = ICMP errors translated and sent to the other side of their flow). See bpf/README.md.";
  const events = "XDP program: events counted besides a packet's outcome (next-hop sources, handshakes completed, RSTs forwarded without ending a flow, …). See bpf/README.md.";
  const add = (counts: Readonly<Record<string, number>>, labels: Labels, prefix: string) => {
    for (const [reason, n] of Object.entries(counts)) {
      const kind = x.kinds[reason] ?? "event";
      if (kind === "event") e.add(`${prefix}_events_total`, "counter", events, renderLabels({ ...labels, event: reason }), n);
      else e.add(`${prefix}_packets_total`, "counter", packets, renderLabels({ ...labels, action: kind, reason }), n);
    }
  };
  add(x.total, {}, "featherlb_xdp");
  for (const [service, counts] of x.services) add(counts, { service }, "featherlb_service_xdp");
  const flows = "XDP flow tables: entries per stage (established; handshake = SYN seen, not yet acknowledged) after the last sweep (every 2 s; established every 10 s).";
  for (const [stage, n] of Object.entries(x.entries)) e.add("featherlb_xdp_flows", "gauge", flows, renderLabels({ stage }), n);
}

/** The reasons a client is closed at once, as featherlb_service_rejected_total labels them. */
const REJECTIONS = [
  ["max_connections", "rejectedMaxConn"],
  ["no_backend", "rejectedNoBackend"],
  ["max_connections_per_source", "rejectedPerSource"],
  ["local_resources", "rejectedLocal"],
  ["proxy_header", "rejectedProxyHeader"],
] as const;

/**
 * The exposition, one service per step: renderMetrics runs it at once, renderMetricsSliced yields to the
 * event loop between steps once a slice is used up (10,000 backends are ~120,000 samples).
 */
function* metricsSteps(e: Exposition, info: RuntimeInfo, services: readonly Service[], extras: MetricsExtras): Generator<void> {
  const { xdp, incidents, maps } = extras;
  e.add("featherlb_info", "gauge", "Build and data plane of this process.", renderLabels({ version: info.version, mode: info.mode }), 1);
  e.add("featherlb_uptime_seconds", "gauge", "Seconds since start.", "", Math.round((Date.now() - info.startedAt) / 1000));
  e.add("featherlb_config_reloads_total", "counter", "Config reloads (SIGHUP or a config file change) by result.", 'result="ok"', info.reloads.ok);
  e.add("featherlb_config_reloads_total", "counter", "", 'result="failed"', info.reloads.failed);
  e.add("process_resident_memory_bytes", "gauge", "Resident set size.", "", process.memoryUsage.rss());
  if (xdp) addXdp(e, xdp);
  for (const m of maps?.maps ?? []) e.add("featherlb_xdp_map_bytes", "gauge", "XDP program: kernel memory of each BPF map (sized from the config at start).", renderLabels({ map: m.name }), m.bytes);
  const localHelp = "Local resource errors (the LB out of descriptors, local ports or buffers) by errno; never counted against a backend.";
  for (const [errno, n] of incidents?.local ?? []) e.add("featherlb_local_errors_total", "counter", localHelp, renderLabels({ errno }), n);
  const internalHelp = "Exceptions inside featherlb's socket handlers (bugs) by kind; the connection concerned was closed.";
  for (const [kind, n] of incidents?.internal ?? []) e.add("featherlb_internal_errors_total", "counter", internalHelp, renderLabels({ kind }), n);
  for (const w of info.workers?.() ?? []) {
    const labels = renderLabels({ worker: String(w.index) });
    e.add("featherlb_worker_up", "gauge", "1 while the proxy worker thread runs, 0 while it is being restarted.", labels, w.alive ? 1 : 0);
    e.add("featherlb_worker_connections_active", "gauge", "Proxied connections held by the worker thread.", labels, w.connections);
    e.add("featherlb_worker_connections_total", "counter", "Connections the worker thread accepted (the kernel spreads them over the workers).", labels, w.accepted);
    e.add("featherlb_worker_restarts_total", "counter", "Times the worker thread died and was started again.", labels, w.restarts);
    e.add("featherlb_worker_connections_kernel_relayed", "gauge", "Of the worker's connections, those its kernel relay thread moves now (splice(2), kernel_relay).", labels, w.kernel_relayed);
  }
  for (const s of services) {
    const labels = renderLabels({ service: s.name });
    e.add("featherlb_service_info", "gauge", "1 per service, labelled with the data plane it runs in and its algorithm.", `${labels},${renderLabels({ plane: info.planes?.get(s.name) ?? info.mode, algorithm: s.config.algorithm })}`, 1);
    addTraffic(e, "service", labels, s.stats);
    for (const [reason, field] of REJECTIONS) e.add("featherlb_service_rejected_total", "counter", "Clients closed at once, by reason.", `${labels},reason="${reason}"`, s.stats[field]);
    e.add("featherlb_service_kernel_relayed_total", "counter", "Connections handed to the kernel relay (proxy mode, kernel_relay): their bytes then move by splice(2), outside JavaScript.", labels, s.stats.kernelRelayed);
    e.add("featherlb_service_backends_eligible", "gauge", "Backends in the pick set (enabled and healthy).", labels, s.picker.size);
    e.add("featherlb_service_plan_info", "gauge", "The fingerprint of the service's current plan (always 1): instances with the same config and the same backend health show the same one.", `${labels},fingerprint="${escapeLabel(s.fingerprint)}"`, 1);
    for (const b of s.backends.values()) {
      const bl = `${labels},backend="${escapeLabel(b.key)}"`;
      addTraffic(e, "backend", bl, b.stats);
      e.add("featherlb_backend_up", "gauge", "1 if the backend passes health checks, else 0.", bl, b.health === "up" ? 1 : 0);
      e.add("featherlb_backend_weight", "gauge", "Configured weight.", bl, b.config.weight);
    }
    yield;
  }
}

export function renderMetrics(info: RuntimeInfo, services: readonly Service[], extras: MetricsExtras = {}): string {
  const e = new Exposition();
  for (const _ of metricsSteps(e, info, services, extras));
  return e.render();
}

/** renderMetrics, yielding to the event loop between services once a slice (src/slice.ts) is used up. */
export async function renderMetricsSliced(info: RuntimeInfo, services: readonly Service[], extras: MetricsExtras = {}): Promise<string> {
  const e = new Exposition();
  const pause = slicer();
  for (const _ of metricsSteps(e, info, services, extras)) await pause();
  return e.render();
}

function backendStatus(b: Backend) {
  return {
    address: b.key,
    ip: b.ip ?? null,
    weight: b.config.weight,
    health: b.health,
    enabled: b.enabled,
    eligible: b.eligible,
    ...b.stats,
  };
}

export function renderStatus(info: RuntimeInfo, services: readonly Service[], maps?: MapsInfo) {
  return {
    version: info.version,
    mode: info.mode,
    ...(info.attach ? { attach: info.attach } : {}),
    ...(maps ? { xdp_maps: maps } : {}),
    uptime_seconds: Math.round((Date.now() - info.startedAt) / 1000),
    reloads: info.reloads,
    ...(info.workers ? { workers: info.workers() } : {}),
    services: services.map((s) => ({
      name: s.name,
      plane: info.planes?.get(s.name) ?? info.mode,
      listen: s.config.listen,
      algorithm: s.config.algorithm,
      plan: { fingerprint: s.fingerprint, kind: s.picker.plan.kind, backends: s.picker.size, slots: s.picker.plan.slots.length },
      ...s.stats,
      backends: [...s.backends.values()].map(backendStatus),
    })),
  };
}
