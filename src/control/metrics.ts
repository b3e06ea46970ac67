/**
 * /metrics (Prometheus text exposition format 0.0.4) and /status (JSON), rendered from the Service and
 * Backend counters. Both data planes fill the same counters, so these are identical in proxy and xdp.
 */
import type { Plane } from "../config/types.ts";
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
}

/** What /metrics shows besides the services: the XDP program's packet outcomes, featherlb's own faults. */
export interface MetricsExtras {
  packetReasons?: Readonly<Record<string, number>>;
  incidents?: Incidents;
}

type Labels = Record<string, string>;

class Exposition {
  private readonly families = new Map<string, { help: string; type: string; samples: string[] }>();

  add(name: string, type: "gauge" | "counter", help: string, labels: Labels, value: number): void {
    let family = this.families.get(name);
    if (!family) this.families.set(name, (family = { help, type, samples: [] }));
    const l = Object.entries(labels)
      .map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`)
      .join(",");
    family.samples.push(`${name}${l ? `{${l}}` : ""} ${value}`);
  }

  render(): string {
    let out = "";
    for (const [name, f] of this.families) out += `# HELP ${name} ${f.help}\n# TYPE ${name} ${f.type}\n${f.samples.join("\n")}\n`;
    return out;
  }
}

/** The counters every service and backend exposes, under featherlb_service_* and featherlb_backend_*. */
function addTraffic(e: Exposition, scope: "service" | "backend", labels: Labels, c: Counters): void {
  const p = `featherlb_${scope}`;
  e.add(`${p}_connections_active`, "gauge", "Connections (proxy) or flows (xdp) open now.", labels, c.active);
  e.add(`${p}_connections_total`, "counter", "Connections (proxy) or flows (xdp) opened.", labels, c.total);
  e.add(`${p}_bytes_total`, "counter", "Payload bytes relayed (proxy) or IP bytes forwarded (xdp), by direction: in = client to backend.", { ...labels, direction: "in" }, c.bytesIn);
  e.add(`${p}_bytes_total`, "counter", "", { ...labels, direction: "out" }, c.bytesOut);
  e.add(`${p}_packets_total`, "counter", "Packets forwarded by direction (xdp; 0 in proxy mode).", { ...labels, direction: "in" }, c.packetsIn);
  e.add(`${p}_packets_total`, "counter", "", { ...labels, direction: "out" }, c.packetsOut);
  e.add(`${p}_connect_failures_total`, "counter", "Failed connects to backends (timeouts, refusals).", labels, c.connectFailures);
}

/** The reasons a client is closed at once, as featherlb_service_rejected_total labels them. */
const REJECTIONS = [
  ["max_connections", "rejectedMaxConn"],
  ["no_backend", "rejectedNoBackend"],
  ["max_connections_per_source", "rejectedPerSource"],
  ["local_resources", "rejectedLocal"],
  ["proxy_header", "rejectedProxyHeader"],
] as const;

export function renderMetrics(info: RuntimeInfo, services: readonly Service[], extras: MetricsExtras = {}): string {
  const { packetReasons, incidents } = extras;
  const e = new Exposition();
  e.add("featherlb_info", "gauge", "Build and data plane of this process.", { version: info.version, mode: info.mode }, 1);
  e.add("featherlb_uptime_seconds", "gauge", "Seconds since start.", {}, Math.round((Date.now() - info.startedAt) / 1000));
  e.add("featherlb_config_reloads_total", "counter", "Config reloads (SIGHUP or a config file change) by result.", { result: "ok" }, info.reloads.ok);
  e.add("featherlb_config_reloads_total", "counter", "", { result: "failed" }, info.reloads.failed);
  e.add("process_resident_memory_bytes", "gauge", "Resident set size.", {}, process.memoryUsage.rss());
  const help = "XDP program: packets by outcome (tx_* = rewritten and sent, icmp_c2b/icmp_b2c = ICMP errors translated and sent to the other side of their flow, the rest = passed to the kernel; neigh_* = how a next hop was resolved). See bpf/README.md.";
  for (const [reason, n] of Object.entries(packetReasons ?? {})) e.add("featherlb_xdp_packets_total", "counter", help, { reason }, n);
  const localHelp = "Local resource errors (the LB out of descriptors, local ports or buffers) by errno; never counted against a backend.";
  for (const [errno, n] of incidents?.local ?? []) e.add("featherlb_local_errors_total", "counter", localHelp, { errno }, n);
  const internalHelp = "Exceptions inside featherlb's socket handlers (bugs) by kind; the connection concerned was closed.";
  for (const [kind, n] of incidents?.internal ?? []) e.add("featherlb_internal_errors_total", "counter", internalHelp, { kind }, n);
  for (const w of info.workers?.() ?? []) {
    const labels = { worker: String(w.index) };
    e.add("featherlb_worker_up", "gauge", "1 while the proxy worker thread runs, 0 while it is being restarted.", labels, w.alive ? 1 : 0);
    e.add("featherlb_worker_connections_active", "gauge", "Proxied connections held by the worker thread.", labels, w.connections);
    e.add("featherlb_worker_connections_total", "counter", "Connections the worker thread accepted (the kernel spreads them over the workers).", labels, w.accepted);
    e.add("featherlb_worker_restarts_total", "counter", "Times the worker thread died and was started again.", labels, w.restarts);
  }
  for (const s of services) {
    const labels = { service: s.name };
    e.add("featherlb_service_info", "gauge", "1 per service, labelled with the data plane it runs in and its algorithm.", { ...labels, plane: info.planes?.get(s.name) ?? info.mode, algorithm: s.config.algorithm }, 1);
    addTraffic(e, "service", labels, s.stats);
    for (const [reason, field] of REJECTIONS) e.add("featherlb_service_rejected_total", "counter", "Clients closed at once, by reason.", { ...labels, reason }, s.stats[field]);
    e.add("featherlb_service_backends_eligible", "gauge", "Backends in the pick set (enabled and healthy).", labels, s.picker.size);
    e.add("featherlb_service_plan_info", "gauge", "The fingerprint of the service's current plan (always 1): instances with the same config and the same backend health show the same one.", { ...labels, fingerprint: s.fingerprint }, 1);
    for (const b of s.backends.values()) {
      const bl = { service: s.name, backend: b.key };
      addTraffic(e, "backend", bl, b.stats);
      e.add("featherlb_backend_up", "gauge", "1 if the backend passes health checks, else 0.", bl, b.health === "up" ? 1 : 0);
      e.add("featherlb_backend_weight", "gauge", "Configured weight.", bl, b.config.weight);
    }
  }
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

export function renderStatus(info: RuntimeInfo, services: readonly Service[]) {
  return {
    version: info.version,
    mode: info.mode,
    ...(info.attach ? { attach: info.attach } : {}),
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
