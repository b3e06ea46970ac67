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
import { XdpError } from "./errors.ts";
import { HostState } from "./hoststate.ts";
import type { AttachedMode, XdpLink } from "./loader.ts";
import type { Pins, Previous } from "./pins.ts";
import { BackendNeighbours } from "./neighbours.ts";
import { reservedPorts } from "./netif.ts";
import { reasonKind, type CounterSums, type PortRange, type XdpProgram } from "./program.ts";
import type { Counters } from "../../control/stats.ts";
import type { XdpStats } from "../../control/metrics.ts";
import { REASONS, type Reason } from "./layout.ts";

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** How often the flow sweeper walks the tables: handshakes are abandoned after SYN_TIMEOUT_S (5 s),
 * so a table of them swept every 2 s is back to what is in use about 7 s after a SYN flood ends. The
 * walks cost a syscall per entry present, not per entry of capacity. */
export const SWEEP_INTERVAL_MS = 2_000;
/** Established flows idle for minutes need no finer sweep: every fifth sweep walks them too (10 s). */
export const SWEEPS_PER_FLOW_WALK = 5;
/** Idle limit for flows of services with idle_timeout 0 ("never" in the proxy): above TCP's default
 * keepalive (7200 s + 9 × 75 s), so a kept-alive idle connection is never expired. */
export const DEFAULT_IDLE_S = 3 * 3600;
/** A closed flow (both FINs or a RST seen) whose final ACK never came is removed after this long. */
export const CLOSED_LINGER_S = 60;

/** Reasons counted before a packet's service is known: they are in the totals only, never in a service's row. */
const GLOBAL_ONLY = new Set<Reason>(["not_ipv4", "truncated", "ip_options", "fragment", "not_tcp", "not_ours", "no_flow_backend"]);

/** One service as mirrored in the maps. */
interface Mirrored {
  index: number;
  service: Service;
  /** The listen address written to flb_svc (the map key). */
  listen: { host: string; port: number };
  unsubscribe: () => void;
  /** Which backend (by address) owns each id slot, to reset counters when another one takes it. */
  slots: Map<number, Backend>;
  /** What flb_backends holds for each id ("ip:port", "" when cleared): unchanged entries are not rewritten. */
  written: Map<number, string>;
  /** On the index an earlier process gave this listen address (pins.ts): its backend slots are adopted. */
  adopted: boolean;
}

/** What a start adopted from an earlier process (index.ts, pins.ts). */
export interface Adoption {
  /** Where this process's maps are pinned; undefined with xdp.pin_path: off. */
  pins?: Pins;
  /** The earlier process's services (listen address → index), if its maps were adopted. */
  previous?: Previous;
  /** A SNAT range the adopted flows may still use besides the config's. */
  prevRange?: PortRange;
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
  /** A handed-over link now runs our program (takeOver). */
  private tookOver = false;
  private warnedV6 = new Set<string>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  private sweeping = false;
  private sweeps = 0;
  /** Services a reload removed, by index, while their flows may still be open: their listen address
   * still translates those flows (SVC_RETIRED) and the index is not handed out again until a sweep sees
   * no flow of it (the generations in bpf/counters.h would keep the gauges right even if it were). */
  private readonly retiring = new Map<number, { host: string; port: number }>();
  /** The SNAT range a reload replaced, while flows still use it (flb_config prev_first/prev_last). */
  private prevRange?: PortRange;
  /** Entries of each stage's table as the last sweep left them (/metrics featherlb_xdp_flows). */
  private readonly entries = { established: 0, handshake: 0 };
  /** The backends' next hops: kept resolved by the kernel, mirrored into flb_nbr. */
  private readonly neighbours: BackendNeighbours;
  /** Listen addresses ("host:port") of an earlier process's services → their index, until a service takes it. */
  private readonly adopted = new Map<string, number>();
  private readonly pins?: Pins;

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
    adoption: Adoption = {},
  ) {
    this.attachMode = link.mode;
    this.pins = adoption.pins;
    this.prevRange = adoption.prevRange;
    // The earlier process's services are retired (index.ts wrote them so): the first apply takes back
    // the addresses it still serves, the sweeper removes the others once their flows are gone.
    for (const s of adoption.previous?.services ?? []) {
      this.adopted.set(`${s.host}:${s.port}`, s.index);
      this.retiring.set(s.index, { host: s.host, port: s.port });
    }
    // Deliberately not unref'd: while the program is attached this timer is what keeps the process
    // (and so the bpf_link) alive — unlike the proxy, the XDP plane has no listening socket.
    this.sweeper = setInterval(() => void this.sweep(undefined, this.sweeps % SWEEPS_PER_FLOW_WALK === 0), SWEEP_INTERVAL_MS);
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
   * Expire abandoned handshakes, and with `full` (every SWEEPS_PER_FLOW_WALK-th tick, and every call
   * from a test) idle flows too, re-deriving the least-connection correction (flb_be_adj) from what is
   * really in the flow table, so flows that vanished without FIN/RST (LRU eviction, idle expiry) stop
   * counting as active. Retires service indexes and a replaced SNAT range once no flow uses them.
   * Returns what the walks saw.
   */
  async sweep(now?: number, full = true) {
    if (this.sweeping || this.closed) return undefined;
    this.sweeping = true;
    this.sweeps++;
    try {
      const handshakes = await this.program.sweepHandshakes(now, this.prevRange);
      this.entries.handshake = handshakes.walked - handshakes.deleted;
      if (!full || this.closed) return { handshakes };
      const idle = new Map<number, number>();
      for (const m of this.mirrored.values()) {
        const ms = m.service.config.idle_timeout_ms;
        idle.set(m.index, ms > 0 ? Math.ceil(ms / 1000) : DEFAULT_IDLE_S);
      }
      const flows = await this.program.sweepFlows((svc) => idle.get(svc) ?? DEFAULT_IDLE_S, CLOSED_LINGER_S, now, this.prevRange);
      if (this.closed) return { handshakes, flows };
      this.entries.established = flows.walked - flows.deleted;
      const snapshot = await this.program.backendSnapshot(slicer());
      if (this.closed) return { handshakes, flows };
      const adjust = new Map<number, number>();
      for (const { index, slots } of this.mirrored.values()) {
        for (const id of slots.keys()) {
          const key = this.program.keys.backend(index, id);
          adjust.set(key, snapshot.activeRaw(index, id) - (flows.open.get(key) ?? 0));
        }
      }
      this.program.setBackendAdjusts(adjust);
      for (const [index, listen] of this.retiring) {
        if (flows.services.has(index) || handshakes.services.has(index)) continue;
        this.program.deleteService(index, ipv4ToU32(listen.host), listen.port);
        this.retiring.delete(index);
      }
      if (this.prevRange && flows.inWatched + handshakes.inWatched === 0) this.retirePrevRange();
      if (flows.deleted || handshakes.deleted) {
        this.log.debug("xdp flows expired", { idle: flows.expired, closed: flows.deleted - flows.expired, handshakes: handshakes.deleted });
      }
      // Keep Backend.stats.active current even when nobody scrapes /metrics: the runtime removes a
      // drained backend once it reads 0 there.
      await this.refreshStats();
      return { handshakes, flows };
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

    // Services gone from the config: retired, so their open flows keep translating until they close
    // (a sweep then removes the address); their SYNs are no longer theirs.
    for (const [key, m] of this.mirrored) {
      if (wanted.has(key)) continue;
      m.unsubscribe();
      this.program.retireService(m.index, ipv4ToU32(m.listen.host), m.listen.port);
      this.program.dropPlans(m.index);
      this.mirrored.delete(key);
      this.retiring.set(m.index, m.listen);
    }

    const used = new Set([...this.mirrored.values()].map((m) => m.index));
    // 10,000 backends to compare with what the maps hold: one service per step, in slices.
    const pause = slicer();
    for (const [key, { service, listen }] of wanted) {
      await pause();
      if (this.closed) return;
      let m = this.mirrored.get(key);
      if (!m) {
        const adopted = this.adopted.get(key);
        this.adopted.delete(key);
        if (adopted !== undefined) this.retiring.delete(adopted);
        const index = adopted ?? this.freeIndex(used);
        used.add(index);
        const retired = this.retiring.get(index);
        if (retired) {
          // Every index was taken: the retiring service's address stops translating its last flows.
          this.program.deleteService(index, ipv4ToU32(retired.host), retired.port);
          this.retiring.delete(index);
        }
        if (adopted === undefined) this.program.resetServiceCounters(index);
        m = { index, service, listen, unsubscribe: () => {}, slots: new Map(), written: new Map(), adopted: adopted !== undefined };
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
    this.takeOver();
  }

  /**
   * After the first apply of a start that found a handed-over link: our plans are in the maps, so our
   * program replaces the earlier one on the link (atomically: every packet runs one or the other), and
   * the link is unpinned (it is ours now: it goes with this process, as any attachment).
   */
  private takeOver(): void {
    if (!this.link.takeOver || this.tookOver) return;
    this.link.takeOver();
    this.tookOver = true;
    this.pins?.pinMaps(new Map(this.program.mapFds()));
    this.pins?.unpinLink();
    this.log.info("xdp data plane taken over: this process's program replaced the handed-over one on its link", { interface: this.ifname });
  }

  /** The lowest service index not in `used` and not retiring; a retiring one only if nothing else is left. */
  private freeIndex(used: ReadonlySet<number>): number {
    const max = this.program.capacity.services;
    for (let i = 0; i < max; i++) if (!used.has(i) && !this.retiring.has(i)) return i;
    for (let i = 0; i < max; i++) if (!used.has(i)) return i;
    throw new XdpError("invalid_argument", `more than ${max} services`);
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
    const plan = service.picker.plan;
    const eligible = new Set(plan.members);
    for (const [id, backend] of service.backends) {
      if (m.slots.get(id) !== backend) {
        // Another backend in the slot restarts its gauge (a new generation). The same address under a
        // new Backend object (a reload that renamed the service) keeps it: its flows are still open.
        if (m.slots.get(id)?.key !== backend.key && !(m.adopted && !m.slots.has(id) && this.holds(index, id, backend))) {
          this.program.resetBackendCounters(index, id);
          m.written.delete(id);
        }
        m.slots.set(id, backend);
      }
      const v4 = backend.ip !== undefined && IPV4.test(backend.ip);
      const at = v4 ? `${backend.ip}:${backend.config.port}` : "";
      // Written again when the address or its place in the pick set (BACKEND_ELIGIBLE) changes.
      const entry = v4 && !eligible.has(id) ? `${at} out` : at;
      const before = m.written.get(id);
      if (before === entry) continue;
      moved ||= before?.replace(/ out$/, "") !== at;
      if (v4) {
        this.neighbours.keepResolved(backend.ip!);
        this.program.setBackend(index, id, ipv4ToU32(backend.ip!), backend.config.port, eligible.has(id));
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
      const written = this.program.writePlan(index, plan);
      // Once per plan change (health flips, reloads): says when the kernel tables changed.
      this.log.info("xdp plan written", { service: service.name, kind: plan.kind, members: [...plan.members], slots: plan.slots.length, slots_written: written });
    } catch (err) {
      this.log.error("xdp plan not written; the service keeps its previous plan", { service: service.name, reason: (err as Error).message });
      if (isXdpError(err, "plan_too_large")) throw err;
    }
  }

  /** Whether flb_backends already holds `backend` at (svc, id): an adopted slot keeps its generation and gauge. */
  private holds(svc: number, id: number, backend: Backend): boolean {
    const cur = this.program.maps.backends.lookup(this.program.backendKey(svc, id));
    return cur !== undefined && backend.ip !== undefined && IPV4.test(backend.ip) && cur.addr === ipv4ToU32(backend.ip) && cur.port === backend.config.port;
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
    if (a.interface !== b.interface || a.attach !== b.attach || a.flow_table_size !== b.flow_table_size || a.snat_address !== b.snat_address) {
      this.log.warn("xdp.interface, xdp.attach, xdp.snat_address and xdp.flow_table_size take effect at the next restart");
    }
    if (a.snat_ports.first !== b.snat_ports.first || a.snat_ports.last !== b.snat_ports.last) this.changeSnatRange(a.snat_ports, b.snat_ports);
  }

  /**
   * New flows take ports from `to`; flows on ports of `from` keep translating (the program recognises
   * both ranges) and `from` stays reserved until a sweep finds no flow on it (retirePrevRange). A
   * range still draining from an earlier change is given up then (its flows may break), said in a warning.
   */
  private changeSnatRange(from: PortRange, to: PortRange): void {
    if (this.prevRange) {
      this.log.warn("xdp.snat_ports changed again before flows left the range before; flows still on it may be reset", { range: `${this.prevRange.first}-${this.prevRange.last}` });
    }
    this.prevRange = { first: from.first, last: from.last };
    this.reserve([to, this.prevRange]);
    const cfg = this.program.readConfig();
    this.program.writeConfig({ ...cfg, snatFirst: to.first, snatLast: to.last, prevFirst: from.first, prevLast: from.last });
    this.log.info("xdp.snat_ports changed: new flows use the new range, open flows keep theirs", { new: `${to.first}-${to.last}`, previous: `${from.first}-${from.last}` });
    // Release the previous range at once if no flow uses it (a sweep already running leaves it to the next).
    setTimeout(() => void this.sweep(), 0);
  }

  /** No flow uses the replaced SNAT range any more: stop recognising it and release it. */
  private retirePrevRange(): void {
    const prev = this.prevRange!;
    this.prevRange = undefined;
    const cfg = this.program.readConfig();
    this.program.writeConfig({ ...cfg, prevFirst: 0, prevLast: 0 });
    this.reserve([this.config.xdp.snat_ports]);
    this.log.info("xdp: no flow uses the previous SNAT range any more; released", { range: `${prev.first}-${prev.last}` });
  }

  /** Reserve `ranges` in place of what is reserved now. */
  private reserve(ranges: readonly PortRange[]): void {
    this.releasePorts();
    this.releasePorts = tryReserve(ranges, this.log, this.host);
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
      st.rejectedNoBackend = this.program.reasonRow(index).no_backend;
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

  /** Every outcome and event in total, per service those counted once the service was known, and the tables' entries. */
  xdpStats(): XdpStats {
    const services = new Map<string, Record<string, number>>();
    for (const { service, index } of this.mirrored.values()) {
      const row = this.program.reasonRow(index);
      services.set(service.name, Object.fromEntries(REASONS.filter((r) => !GLOBAL_ONLY.has(r)).map((r) => [r, row[r]])));
    }
    return { total: this.program.reasons(), services, kinds: Object.fromEntries(REASONS.map((r) => [r, reasonKind(r)])), entries: { ...this.entries } };
  }

  maps(): PlaneMaps {
    const maps = this.program.mapMemory().map((m) => ({ name: m.name, max_entries: m.maxEntries, bytes: m.bytes }));
    return { capacity: { ...this.program.capacity }, maps, bytes: maps.reduce((n, m) => n + m.bytes, 0) };
  }

  /** Stop new flows (their SYNs are answered with an RST in XDP); wait for open flows to close. */
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
    // A start that failed before taking over: the handed-over program still runs, on its pinned link,
    // with its pinned maps and host changes. All of that stays for the next start.
    if (this.link.takeOver && !this.tookOver) return this.leave("xdp start abandoned; the handed-over program stays attached");
    this.stop();
    this.link.close(); // detaches the program
    this.program.close();
    this.pins?.removeAll();
    this.releasePorts();
    this.neighbours.release();
    this.host.close();
    this.log.info("xdp program detached", { interface: this.ifname });
  }

  /**
   * SIGUSR2: hand the data plane over to the next start. The link is pinned, so the program stays
   * attached and keeps forwarding every flow (and taking new ones with the plans it has) after this
   * process exits; the maps are pinned already; the host changes (reserved SNAT ports, managed
   * neighbour entries) stay, recorded for the next start to adopt (hoststate.ts). Throws a UserError
   * when nothing can be handed over (xdp.pin_path: off).
   */
  handover(): void {
    if (this.closed) return;
    if (!this.pins || this.link.fd === undefined) {
      throw new UserError("config", inFile(this.config, "SIGUSR2 hands the XDP data plane over through pinned maps, and xdp.pin_path is off; set xdp.pin_path, or stop with SIGTERM"));
    }
    if (!this.link.takeOver || this.tookOver) this.pins.pinLink(this.link.fd);
    this.leave("xdp data plane handed over: the program stays attached, maps and link pinned", { pinned: this.pins.dir });
  }

  /** Stop the timers and let go of the maps and the link without undoing anything. */
  private leave(message: string, fields: Record<string, unknown> = {}): void {
    this.stop();
    this.link.close(); // pinned: the attachment stays
    this.program.close();
    this.host.handOver();
    this.log.info(message, { interface: this.ifname, ...fields });
  }

  private stop(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.neighbours.stop();
    for (const m of this.mirrored.values()) m.unsubscribe();
  }
}

/** Reserve SNAT port ranges (hoststate.ts); a failure is a warning, and the restore then does nothing. */
export function tryReserve(ranges: readonly PortRange[], log: Logger, host: HostState): () => void {
  try {
    const [main, ...also] = ranges;
    return host.reservePorts(main!.first, main!.last, also);
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
