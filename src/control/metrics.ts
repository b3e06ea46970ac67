/**
 * /metrics (Prometheus text exposition format 0.0.4) and /status (JSON), rendered from the Service and
 * Backend counters. Both data planes fill the same counters, so these are identical in proxy and xdp.
 */
import type { Backend } from "./backend.ts";
import type { Counters } from "./stats.ts";
import type { Service } from "./service.ts";

export interface RuntimeInfo {
  version: string;
  mode: "proxy" | "xdp";
  startedAt: number;
  reloads: { ok: number; failed: number };
  /** xdp: how the program is attached ("native" or "generic"), from the data plane. */
  attach?: string;
}

type Labels = Record<string, string>;

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

/** The XDP families: outcomes by action and reason, events by name; in total and per service. */
function addXdp(e: Exposition, x: XdpStats): void {
  const packets = "XDP program: packets by outcome (action: pass = to the kernel, drop, tx = transmitted; every packet counts once). See bpf/README.md.";
  const events = "XDP program: events counted besides a packet's outcome (next-hop sources, handshakes completed, RSTs forwarded without ending a flow, …). See bpf/README.md.";
  const add = (counts: Readonly<Record<string, number>>, labels: Labels, prefix: string) => {
    for (const [reason, n] of Object.entries(counts)) {
      const kind = x.kinds[reason] ?? "event";
      if (kind === "event") e.add(`${prefix}_events_total`, "counter", events, { ...labels, event: reason }, n);
      else e.add(`${prefix}_packets_total`, "counter", packets, { ...labels, action: kind, reason }, n);
    }
  };
  add(x.total, {}, "featherlb_xdp");
  for (const [service, counts] of x.services) add(counts, { service }, "featherlb_service_xdp");
  const flows = "XDP flow tables: entries per stage (established; handshake = SYN seen, not yet acknowledged) after the last sweep (every 2 s; established every 10 s).";
  for (const [stage, n] of Object.entries(x.entries)) e.add("featherlb_xdp_flows", "gauge", flows, { stage }, n);
}

export function renderMetrics(info: RuntimeInfo, services: readonly Service[], xdp?: XdpStats): string {
  const e = new Exposition();
  e.add("featherlb_info", "gauge", "Build and data plane of this process.", { version: info.version, mode: info.mode }, 1);
  e.add("featherlb_uptime_seconds", "gauge", "Seconds since start.", {}, Math.round((Date.now() - info.startedAt) / 1000));
  e.add("featherlb_config_reloads_total", "counter", "SIGHUP reloads by result.", { result: "ok" }, info.reloads.ok);
  e.add("featherlb_config_reloads_total", "counter", "", { result: "failed" }, info.reloads.failed);
  e.add("process_resident_memory_bytes", "gauge", "Resident set size.", {}, process.memoryUsage.rss());
  if (xdp) addXdp(e, xdp);
  for (const s of services) {
    const labels = { service: s.name };
    addTraffic(e, "service", labels, s.stats);
    e.add("featherlb_service_rejected_total", "counter", "Clients closed at once, by reason.", { ...labels, reason: "max_connections" }, s.stats.rejectedMaxConn);
    e.add("featherlb_service_rejected_total", "counter", "", { ...labels, reason: "no_backend" }, s.stats.rejectedNoBackend);
    e.add("featherlb_service_backends_eligible", "gauge", "Backends in the pick set (enabled and healthy).", labels, s.picker.size);
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
    services: services.map((s) => ({
      name: s.name,
      listen: s.config.listen,
      algorithm: s.config.algorithm,
      ...s.stats,
      backends: [...s.backends.values()].map(backendStatus),
    })),
  };
}
