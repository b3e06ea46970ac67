/**
 * The XDP DataPlane: mirrors every Service's plan and backends into the BPF maps of a loaded, attached
 * program (index.ts loads and attaches it), reads the counters back into the Services, sweeps the flow
 * table, keeps the backends' next hops resolved (neighbours.ts), drains and detaches.
 */
import type { Config } from "../../config/types.ts";
import { xdpRefusal } from "../../config/xdp.ts";
import type { Logger } from "../../control/log.ts";
import type { Backend } from "../../control/backend.ts";
import type { Service } from "../../control/service.ts";
import { UserError } from "../../errors.ts";
import type { DataPlane, PlaneMaps, ServicePair } from "../types.ts";
import { slicer } from "../../slice.ts";
import { isXdpError } from "./errors.ts";
import { overflow } from "./capacity.ts";
import { CFG_FLAGS, ipv4ToU32 } from "./layout.ts";
import { HostState } from "./hoststate.ts";
import type { AttachedMode, XdpLink } from "./loader.ts";
import { BackendNeighbours } from "./neighbours.ts";
import { reservedPorts } from "./netif.ts";
import type { CounterSums, XdpProgram } from "./program.ts";
import type { Counters } from "../../control/stats.ts";

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** How often the flow sweeper walks the forward table. */
export const SWEEP_INTERVAL_MS = 10_000;
/** Idle limit for flows of services with idle_timeout 0 ("never" in the proxy): above TCP's default
 * keepalive (7200 s + 9 × 75 s), so a kept-alive idle connection is never expired. */
export const DEFAULT_IDLE_S = 3 * 3600;
/** A closed flow (both FINs or a RST seen) whose final ACK never came is removed after this long. */
export const CLOSED_LINGER_S = 60;

/** One service as mirrored in the maps. */
interface Mirrored {
  index: number;
  service: Service;
  /** The listen address written to flb_svc (the map key). */
  listen: { host: string; port: number };
  unsubscribe: () => void;
  /** Which Backend object owns each id slot, to reset counters when an id is reused. */
  slots: Map<number, Backend>;
  /** What flb_backends holds for each id ("ip:port", "" when cleared): unchanged entries are not rewritten. */
  written: Map<number, string>;
}

/** The per-CPU map sums that services and backends share, into the Counters /metrics reads. */
function copyTraffic(to: Counters, from: CounterSums): void {
  to.packetsIn = from.packets_in;
  to.bytesIn = from.bytes_in;
  to.packetsOut = from.packets_out;
  to.bytesOut = from.bytes_out;
  to.total = from.flows_new;
}

export class XdpDataPlane implements DataPlane {
  readonly kind = "xdp" as const;
  readonly attachMode: AttachedMode;
  private readonly mirrored = new Map<string, Mirrored>();
  private closed = false;
  private warnedV6 = new Set<string>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  private sweeping = false;
  /** The backends' next hops: kept resolved by the kernel, mirrored into flb_nbr. */
  private readonly neighbours: BackendNeighbours;

  constructor(
    private readonly program: XdpProgram,
    private readonly log: Logger,
    private config: Config,
    /** The attachment (loader.ts); closing it detaches the program. */
    private readonly link: XdpLink,
    readonly ifname: string,
    private releasePorts: () => void,
    /** What we changed on the host, recorded so a start after a crash can undo it (hoststate.ts). */
    private readonly host: HostState = HostState.unrecorded(log, reservedPorts),
  ) {
    this.attachMode = link.mode;
    // Deliberately not unref'd: while the program is attached this timer is what keeps the process
    // (and so the bpf_link) alive — unlike the proxy, the XDP plane has no listening socket.
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.neighbours = new BackendNeighbours(ifname, program, host, log, () => this.backendIps());
  }

  /** The IPv4 addresses of every mirrored backend. */
  private backendIps(): Set<string> {
    const ips = new Set<string>();
    for (const { service } of this.mirrored.values()) {
      for (const backend of service.backends.values()) if (backend.ip && IPV4.test(backend.ip)) ips.add(backend.ip);
    }
    return ips;
  }

  /**
   * Expire abandoned flows and re-derive the least-connection correction (flb_be_adj) from what is
   * really in the forward table, so flows that vanished without FIN/RST (LRU eviction, idle expiry)
   * stop counting as active. Returns what the walk saw.
   */
  async sweep(now?: number) {
    if (this.sweeping || this.closed) return undefined;
    this.sweeping = true;
    try {
      const idle = new Map<number, number>();
      for (const m of this.mirrored.values()) {
        const ms = m.service.config.idle_timeout_ms;
        idle.set(m.index, ms > 0 ? Math.ceil(ms / 1000) : DEFAULT_IDLE_S);
      }
      const result = await this.program.sweepFlows((svc) => idle.get(svc) ?? DEFAULT_IDLE_S, CLOSED_LINGER_S, now);
      if (this.closed) return result;
      const snapshot = await this.program.backendSnapshot(slicer());
      const adjust = new Map<number, number>();
      for (const { index, slots } of this.mirrored.values()) {
        for (const id of slots.keys()) {
          const key = this.program.keys.backend(index, id);
          adjust.set(key, snapshot.activeRaw(index, id) - (result.open.get(key) ?? 0));
        }
      }
      this.program.setBackendAdjusts(adjust);
      if (result.deleted) this.log.debug("xdp flows expired", { idle: result.expired, closed: result.deleted - result.expired });
      // Keep Backend.stats.active current even when nobody scrapes /metrics: the runtime removes a
      // drained backend once it reads 0 there.
      await this.refreshStats();
      return result;
    } finally {
      this.sweeping = false;
    }
  }

  async apply(config: Config, services: readonly ServicePair[]): Promise<void> {
    // The loader refuses these for mode: xdp. Under mode: auto it does not (auto may run the proxy),
    // so a reload of an auto config that XDP cannot serve is refused here and the old one keeps serving.
    const refusal = xdpRefusal(config, services.map((p) => p.config));
    if (refusal) throw new UserError("config", inFile(config, `${refusal}.`));
    // The maps were sized for the config at start (capacity.ts): a reload must fit them.
    const full = overflow(this.program.capacity, services.map((p) => p.config), (i) => services[i]!.service.backendsAfter(services[i]!.config));
    if (full) throw new UserError("config", inFile(config, `${full}.`));
    this.checkXdpChanges(config);
    this.config = config;

    // The runtime calls apply before it updates existing Service objects to the new config, so the
    // listen address comes from each pair's config, not from service.config.
    const wanted = new Map<string, { service: Service; listen: { host: string; port: number } }>();
    for (const { config: c, service: s } of services) {
      const { host, port } = c.listen;
      wanted.set(`${host}:${port}`, { service: s, listen: { host, port } });
    }

    // Services gone from the config: stop matching their address (established flows keep translating
    // through the flow tables until they close).
    for (const [key, m] of this.mirrored) {
      if (wanted.has(key)) continue;
      m.unsubscribe();
      this.program.deleteService(ipv4ToU32(m.listen.host), m.listen.port);
      this.program.dropPlans(m.index);
      this.mirrored.delete(key);
    }

    const used = new Set([...this.mirrored.values()].map((m) => m.index));
    // 10,000 backends to compare with what the maps hold: one service per step, in slices.
    const pause = slicer();
    for (const [key, { service, listen }] of wanted) {
      await pause();
      if (this.closed) return;
      let m = this.mirrored.get(key);
      if (!m) {
        let index = 0;
        while (used.has(index)) index++;
        used.add(index);
        this.program.resetServiceCounters(index);
        m = { index, service, listen, unsubscribe: () => {}, slots: new Map(), written: new Map() };
        this.mirrored.set(key, m);
      }
      // Re-subscribe on every apply: a reload may hand us a new Service object for the same address.
      m.unsubscribe();
      m.service = service;
      const mirror = m;
      m.unsubscribe = service.onPlan(() => this.writeOnPlan(mirror));
      try {
        this.write(m);
      } catch (err) {
        if (!isXdpError(err, "plan_too_large")) throw err;
        throw new UserError("config", inFile(config, `service ${service.name}'s plan (${service.picker.plan.slots.length} slots) does not fit the XDP plan tables next to the other services'; lower maglev.table_size or weights, or use mode: proxy.`));
      }
      this.program.setService(m.index, ipv4ToU32(listen.host), listen.port);
    }
    this.neighbours.changed();
    // The backends' managed neighbour entries are made (in slices) before the config counts as applied.
    await this.neighbours.settled();
    this.log.info("xdp services applied", { interface: this.ifname, services: wanted.size });
  }

  /**
   * Mirror one service's backends and current plan (called on apply and on every onPlan event). A plan
   * that cannot be written is logged and the service keeps its previous plan; only "plan_too_large",
   * which the user can fix, is thrown on (apply makes it a UserError). Failures to write the backends
   * are thrown (XdpError).
   */
  private write(m: Mirrored): void {
    if (this.closed) return;
    const { service, index } = m;
    let moved = false;
    for (const [id, backend] of service.backends) {
      if (m.slots.get(id) !== backend) {
        this.program.resetBackendCounters(index, id);
        m.slots.set(id, backend);
        m.written.delete(id);
      }
      const v4 = backend.ip !== undefined && IPV4.test(backend.ip);
      const entry = v4 ? `${backend.ip}:${backend.config.port}` : "";
      if (m.written.get(id) === entry) continue;
      moved = true;
      if (v4) {
        this.neighbours.keepResolved(backend.ip!);
        this.program.setBackend(index, id, ipv4ToU32(backend.ip!), backend.config.port);
      } else {
        this.program.clearBackend(index, id);
        if (backend.ip && !this.warnedV6.has(backend.key)) {
          this.warnedV6.add(backend.key);
          this.log.warn("xdp balances IPv4 backends only; this backend gets no new flows", { service: service.name, backend: backend.key });
        }
      }
      m.written.set(id, entry);
    }
    for (const id of m.slots.keys()) {
      if (service.backends.has(id)) continue;
      this.program.clearBackend(index, id);
      m.slots.delete(id);
      m.written.delete(id);
    }
    if (moved && this.neighbours.started) {
      // A new backend or address (DNS): resolve its next hop soon, not at the next refresh.
      this.neighbours.changed();
    }
    try {
      const plan = service.picker.plan;
      const written = this.program.writePlan(index, plan);
      // Once per plan change (health flips, reloads): says when the kernel tables changed.
      this.log.info("xdp plan written", { service: service.name, kind: plan.kind, members: [...plan.members], slots: plan.slots.length, slots_written: written });
    } catch (err) {
      this.log.error("xdp plan not written; the service keeps its previous plan", { service: service.name, reason: (err as Error).message });
      if (isXdpError(err, "plan_too_large")) throw err;
    }
  }

  /** write() for a plan event (a health flip): a plan too large for the maps was logged, the previous one stays. */
  private writeOnPlan(m: Mirrored): void {
    try {
      this.write(m);
    } catch (err) {
      if (!isXdpError(err, "plan_too_large")) throw err;
    }
  }

  private checkXdpChanges(next: Config): void {
    const a = this.config.xdp;
    const b = next.xdp;
    if (a.interface !== b.interface || a.attach !== b.attach || a.flow_table_size !== b.flow_table_size) {
      this.log.warn("xdp.interface, xdp.attach and xdp.flow_table_size take effect at the next restart");
    }
    if (a.snat_ports.first !== b.snat_ports.first || a.snat_ports.last !== b.snat_ports.last) {
      this.releasePorts();
      this.releasePorts = tryReserve(b.snat_ports.first, b.snat_ports.last, this.log, this.host);
      const cfg = this.program.readConfig();
      this.program.writeConfig({ ...cfg, snatFirst: b.snat_ports.first, snatLast: b.snat_ports.last });
    }
  }

  async refreshStats(): Promise<void> {
    if (this.closed) return;
    // Every backend's counters in batch lookups, and their copying, in slices (10,000 backends).
    const pause = slicer();
    const snapshot = await this.program.backendSnapshot(pause);
    if (this.closed) return;
    for (const { service, index } of this.mirrored.values()) {
      const s = this.program.serviceCounters(index);
      const st = service.stats;
      copyTraffic(st, s);
      st.rejectedNoBackend = s.no_backend;
      // Active = the gauge least-connection picks read (opened − closed − swept), so /metrics and the
      // picks agree; the service's is the sum over its backends.
      let active = 0;
      for (const [id, backend] of service.backends) {
        const bs = backend.stats;
        copyTraffic(bs, snapshot.counters(index, id));
        bs.active = snapshot.active(index, id);
        active += bs.active;
      }
      st.active = active;
      await pause();
    }
  }

  packetReasons(): Readonly<Record<string, number>> {
    return this.program.reasons();
  }

  maps(): PlaneMaps {
    const maps = this.program.mapMemory().map((m) => ({ name: m.name, max_entries: m.maxEntries, bytes: m.bytes }));
    return { capacity: { ...this.program.capacity }, maps, bytes: maps.reduce((n, m) => n + m.bytes, 0) };
  }

  /** Stop new flows (their SYNs go to the kernel, which resets them); wait for open flows to close. */
  async drain(deadline: number): Promise<void> {
    if (this.closed) return;
    const cfg = this.program.readConfig();
    this.program.writeConfig({ ...cfg, flags: cfg.flags | CFG_FLAGS.DRAINING });
    while (Date.now() < deadline) {
      await this.refreshStats();
      const open = [...this.mirrored.values()].reduce((n, m) => n + m.service.stats.active, 0);
      if (open === 0) return;
      await Bun.sleep(Math.min(250, Math.max(0, deadline - Date.now())));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.neighbours.stop();
    for (const m of this.mirrored.values()) m.unsubscribe();
    this.link.close(); // detaches the program
    this.program.close();
    this.releasePorts();
    this.neighbours.release();
    this.host.close();
    this.log.info("xdp program detached", { interface: this.ifname });
  }
}

/** Reserve the SNAT ports (hoststate.ts); a failure is a warning, and the restore then does nothing. */
export function tryReserve(first: number, last: number, log: Logger, host: HostState): () => void {
  try {
    return host.reservePorts(first, last);
  } catch (err) {
    if (!isXdpError(err, "host")) throw err;
    log.warn("could not reserve the SNAT ports in net.ipv4.ip_local_reserved_ports; the LB's own connections may collide with them", {
      reason: err.message,
    });
    return () => {};
  }
}

/** "lb.yaml: message" once loadConfig has named the file (a Config built in a test has no source). */
export function inFile(config: Config, message: string): string {
  return config.source === undefined ? message : `${config.source}: ${message}`;
}
