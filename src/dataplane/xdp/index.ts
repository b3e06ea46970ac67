/**
 * `mode: xdp` — the kernel data plane. createXdpDataPlane loads the BPF program (bpf/featherlb.bpf.c),
 * attaches it to the interface with a bpf_link (gone when the process dies, even by SIGKILL), and the
 * returned DataPlane mirrors every Service's plan and backends into the BPF maps.
 *
 * Everything a user can get wrong (privileges, kernel support, interface) surfaces as one UserError
 * sentence; the control plane's mode `auto` catches it and runs the proxy instead.
 */
import { isIPv4 } from "../../config/address.ts";
import type { Config } from "../../config/types.ts";
import { xdpRefusal } from "../../config/xdp.ts";
import type { Logger } from "../../control/log.ts";
import type { Backend } from "../../control/backend.ts";
import type { Service } from "../../control/service.ts";
import { UserError } from "../../errors.ts";
import type { DataPlane, ServicePair } from "../types.ts";
import { CFG_FLAGS, MAX_BACKENDS_BPF, ipv4ToU32 } from "./layout.ts";
import { HostState } from "./hoststate.ts";
import { ifindexOf, interfaceOwning, manageNeighbour, releaseNeighbour, reservedPorts, taggedNeighbours } from "./netif.ts";
import { NeighbourTable, forwardingOn, interfaceMac } from "./nexthops.ts";
import { PlanTooLargeError } from "./pool.ts";
import type { CounterSums, XdpProgram } from "./program.ts";
import type { Counters } from "../../control/stats.ts";

type Libbpf = typeof import("./libbpf.ts");
type ProgramModule = typeof import("./program.ts");

/** How often the flow sweeper walks the forward table. */
export const SWEEP_INTERVAL_MS = 10_000;
/** Idle limit for flows of services with idle_timeout 0 ("never" in the proxy): above TCP's default
 * keepalive (7200 s + 9 × 75 s), so a kept-alive idle connection is never expired. */
export const DEFAULT_IDLE_S = 3 * 3600;
/** A closed flow (both FINs or a RST seen) whose final ACK never came is removed after this long. */
export const CLOSED_LINGER_S = 60;
/** How often the neighbour table (nexthops.ts) is re-read; a moved backend MAC reaches flows this fast. */
export const NEIGHBOUR_REFRESH_MS = 1000;
/** While a backend's MAC is still unknown (just after start), the table is re-read this often. */
const NEIGHBOUR_RETRY_MS = 50;

export type AttachedMode = "native" | "generic";

/** One service as mirrored in the maps. */
interface Mirrored {
  index: number;
  service: Service;
  /** The listen address written to flb_svc (the map key). */
  listen: { host: string; port: number };
  unsubscribe: () => void;
  /** Which Backend object owns each id slot, to reset counters when an id is reused. */
  slots: Map<number, Backend>;
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
  private readonly mirrored = new Map<string, Mirrored>();
  private closed = false;
  private warnedV6 = new Set<string>();
  /** Backend IPs whose next hop we asked the kernel to keep resolved. */
  private readonly neighbours = new Set<string>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  private sweeping = false;
  /** Backend next-hop MACs for the program when forwarding is off (nexthops.ts). */
  private readonly neighbourTable: NeighbourTable;
  private neighbourTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly program: XdpProgram,
    private readonly ffi: Libbpf,
    private readonly log: Logger,
    private config: Config,
    private readonly linkFd: number,
    readonly ifname: string,
    readonly attachMode: AttachedMode,
    private releasePorts: () => void,
    /** What we changed on the host, recorded so a start after a crash can undo it (hoststate.ts). */
    private readonly host: HostState = HostState.unrecorded(log, reservedPorts),
  ) {
    // Deliberately not unref'd: while the program is attached this timer is what keeps the process
    // (and so the bpf_link) alive — unlike the proxy, the XDP plane has no listening socket.
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.neighbourTable = new NeighbourTable(ifname, {
      set: (ip, mac) => program.setNeighbour(ip, mac),
      delete: (ip) => program.deleteNeighbour(ip),
    });
  }

  /**
   * Re-read the next hops of every IPv4 backend into flb_nbr, then again in NEIGHBOUR_REFRESH_MS, or
   * sooner while a MAC is still being resolved (the managed entries resolve within milliseconds).
   */
  private refreshNeighbours(): void {
    if (this.closed) return;
    clearTimeout(this.neighbourTimer);
    const ips = new Set<string>();
    for (const { service } of this.mirrored.values()) {
      for (const backend of service.backends.values()) if (backend.ip && isIPv4(backend.ip)) ips.add(backend.ip);
    }
    this.neighbourTable.setBackends(ips);
    let missing: string[] = [];
    try {
      missing = this.neighbourTable.refresh();
    } catch (err) {
      this.log.warn("could not refresh the neighbour table", { reason: (err as Error).message });
    }
    const retry = missing.length > 0 && Date.now() - this.neighbourSince < 5000;
    this.neighbourTimer = setTimeout(() => this.refreshNeighbours(), retry ? NEIGHBOUR_RETRY_MS : NEIGHBOUR_REFRESH_MS);
    this.neighbourTimer.unref();
  }
  /** When the set of backends last changed: the fast retries stop 5 s after it. */
  private neighbourSince = Date.now();

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
      for (const { index, slots } of this.mirrored.values()) {
        for (const id of slots.keys()) {
          const raw = this.program.backendActiveRaw(index, id);
          this.program.setBackendAdjust(index, id, raw - (result.open.get(index * MAX_BACKENDS_BPF + id) ?? 0));
        }
      }
      if (result.deleted) this.log.debug("xdp flows expired", { idle: result.expired, closed: result.deleted - result.expired });
      // Keep Backend.stats.active current even when nobody scrapes /metrics: the runtime removes a
      // drained backend once it reads 0 there.
      this.refreshStats();
      return result;
    } finally {
      this.sweeping = false;
    }
  }

  async apply(config: Config, services: readonly ServicePair[]): Promise<void> {
    // The loader refuses these for mode: xdp. Under mode: auto it does not (auto may run the proxy),
    // so a reload of an auto config that XDP cannot serve is refused here and the old one keeps serving.
    const refusal = xdpRefusal(config);
    if (refusal) throw new UserError("config", inFile(config, `${refusal}.`));
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
    for (const [key, { service, listen }] of wanted) {
      let m = this.mirrored.get(key);
      if (!m) {
        let index = 0;
        while (used.has(index)) index++;
        used.add(index);
        this.program.resetServiceCounters(index);
        m = { index, service, listen, unsubscribe: () => {}, slots: new Map() };
        this.mirrored.set(key, m);
      }
      // Re-subscribe on every apply: a reload may hand us a new Service object for the same address.
      m.unsubscribe();
      m.service = service;
      const mirror = m;
      m.unsubscribe = service.onPlan(() => void this.write(mirror));
      const failed = this.write(m);
      if (failed instanceof PlanTooLargeError) {
        throw new UserError("config", inFile(config, `service ${service.name}'s plan (${service.picker.plan.slots.length} slots) does not fit the XDP plan tables next to the other services'; lower maglev.table_size or weights, or use mode: proxy.`));
      }
      this.program.setService(m.index, ipv4ToU32(listen.host), listen.port);
    }
    this.neighbourSince = Date.now();
    this.refreshNeighbours();
    this.log.info("xdp services applied", { interface: this.ifname, services: wanted.size });
  }

  /**
   * Mirror one service's backends and current plan (called on apply and on every onPlan event). A plan
   * that cannot be written is logged and the service keeps its previous plan; the error is returned.
   */
  private write(m: Mirrored): Error | undefined {
    if (this.closed) return undefined;
    const { service, index } = m;
    for (const [id, backend] of service.backends) {
      if (m.slots.get(id) !== backend) {
        this.program.resetBackendCounters(index, id);
        m.slots.set(id, backend);
      }
      if (backend.ip && isIPv4(backend.ip)) {
        this.keepResolved(backend.ip);
        this.program.setBackend(index, id, ipv4ToU32(backend.ip), backend.config.port);
      } else {
        this.program.clearBackend(index, id);
        if (backend.ip && !this.warnedV6.has(backend.key)) {
          this.warnedV6.add(backend.key);
          this.log.warn("xdp balances IPv4 backends only; this backend gets no new flows", { service: service.name, backend: backend.key });
        }
      }
    }
    for (const id of m.slots.keys()) {
      if (service.backends.has(id)) continue;
      this.program.clearBackend(index, id);
      m.slots.delete(id);
    }
    if (this.neighbourTimer !== undefined) {
      // A plan event may carry a new backend address (DNS): resolve it now, not at the next tick.
      this.neighbourSince = Date.now();
      this.refreshNeighbours();
    }
    try {
      const plan = service.picker.plan;
      this.program.writePlan(index, plan);
      // Once per plan change (health flips, reloads): says when the kernel tables changed.
      this.log.info("xdp plan written", { service: service.name, kind: plan.kind, members: [...plan.members], slots: plan.slots.length });
    } catch (err) {
      this.log.error("xdp plan not written; the service keeps its previous plan", { service: service.name, reason: (err as Error).message });
      return err as Error;
    }
    return undefined;
  }

  private keepResolved(ip: string): void {
    if (this.neighbours.has(ip)) return;
    this.neighbours.add(ip);
    const r = manageNeighbour(this.ifname, ip);
    if ("error" in r) {
      this.log.warn("could not ask the kernel to keep a backend's MAC resolved; its first SYNs may be reset until ARP resolves it", { backend: ip, reason: r.error });
    } else if (r.ours) {
      this.host.ownNeighbour({ dev: this.ifname, dst: r.nexthop });
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

  refreshStats(): void {
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
        copyTraffic(bs, this.program.backendCounters(index, id));
        bs.active = this.program.backendActive(index, id);
        active += bs.active;
      }
      st.active = active;
    }
  }

  packetReasons(): Readonly<Record<string, number>> {
    return this.program.reasons();
  }

  /** Stop new flows (their SYNs go to the kernel, which resets them); wait for open flows to close. */
  async drain(deadline: number): Promise<void> {
    if (this.closed) return;
    const cfg = this.program.readConfig();
    this.program.writeConfig({ ...cfg, flags: cfg.flags | CFG_FLAGS.DRAINING });
    while (Date.now() < deadline) {
      this.refreshStats();
      const open = [...this.mirrored.values()].reduce((n, m) => n + m.service.stats.active, 0);
      if (open === 0) return;
      await Bun.sleep(Math.min(250, Math.max(0, deadline - Date.now())));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    clearTimeout(this.neighbourTimer);
    for (const m of this.mirrored.values()) m.unsubscribe();
    this.ffi.closeFd(this.linkFd); // detaches the program
    this.program.close();
    this.releasePorts();
    for (const n of this.host.neighbours()) {
      releaseNeighbour(n.dev, n.dst);
      this.host.forgetNeighbour(n);
    }
    this.host.close();
    this.log.info("xdp program detached", { interface: this.ifname });
  }
}

function tryReserve(first: number, last: number, log: Logger, host: HostState): () => void {
  try {
    return host.reservePorts(first, last);
  } catch (err) {
    log.warn("could not reserve the SNAT ports in net.ipv4.ip_local_reserved_ports; the LB's own connections may collide with them", {
      reason: (err as Error).message,
    });
    return () => {};
  }
}

/** The interface to attach to: xdp.interface, else the one owning the services' listen addresses. */
function chooseInterface(config: Config): string {
  if (config.xdp.interface) return config.xdp.interface;
  const owners = new Set<string>();
  for (const s of config.services) {
    const ip = s.listen.host;
    const owner = interfaceOwning(ip);
    if (!owner) {
      throw new UserError("interface", `service ${s.name} listens on ${ip}, which no network interface has; add the address to an interface or set xdp.interface.`);
    }
    owners.add(owner);
  }
  if (owners.size === 0) throw new UserError("interface", "mode: xdp needs at least one service to find its interface; add a service or set xdp.interface.");
  if (owners.size > 1) {
    throw new UserError("interface", `the services listen on addresses of several interfaces (${[...owners].join(", ")}); mode: xdp attaches to one, so set xdp.interface.`);
  }
  return [...owners][0]!;
}

/**
 * Load and attach the XDP program for `config`; the returned plane is empty until `apply`. Throws a
 * UserError (code permission, unsupported or interface) with one sentence naming what is missing.
 */
export async function createXdpDataPlane(config: Config, log: Logger): Promise<DataPlane> {
  return createXdpDataPlaneDetailed(config, log);
}

/**
 * As createXdpDataPlane, typed with the XDP specifics (attach mode, interface) for tests and logs. Its
 * errors name the config file: they cannot point at a line, because they depend on the host.
 */
export async function createXdpDataPlaneDetailed(config: Config, log: Logger): Promise<XdpDataPlane> {
  try {
    return await attach(config, log);
  } catch (err) {
    throw err instanceof UserError ? new UserError(err.code, inFile(config, err.message)) : err;
  }
}

/** "lb.yaml: message" once loadConfig has named the file (a Config built in a test has no source). */
function inFile(config: Config, message: string): string {
  return config.source === undefined ? message : `${config.source}: ${message}`;
}

async function attach(config: Config, log: Logger): Promise<XdpDataPlane> {
  if (process.platform !== "linux") throw new UserError("unsupported", "mode: xdp needs Linux; use mode: proxy on this platform.");
  // What the file alone rules out comes first: for mode: xdp the loader has refused it already, and
  // mode: auto falls back to the proxy for it before anything is loaded or attached.
  const refusal = xdpRefusal(config);
  if (refusal) throw new UserError("config", `${refusal}.`);
  const ifname = chooseInterface(config);
  const ifindex = ifindexOf(ifname);

  let ffi: Libbpf;
  let mod: ProgramModule;
  try {
    ffi = await import("./libbpf.ts");
    mod = await import("./program.ts");
  } catch (err) {
    throw new UserError("unsupported", `the embedded libbpf could not be loaded (${(err as Error).message}); use mode: proxy.`);
  }

  let program: XdpProgram;
  try {
    program = await mod.XdpProgram.load({ flowTableSize: config.xdp.flow_table_size });
  } catch (err) {
    throw loadError(err, ffi);
  }

  let host: HostState | undefined;
  let linkFd = -1;
  let attachMode: AttachedMode = "generic";
  try {
    // Before changing anything on the host: refuses if another featherlb owns this namespace's changes.
    host = HostState.claim(log, reservedPorts, taggedNeighbours());
    program.writeConfig({ snatFirst: config.xdp.snat_ports.first, snatLast: config.xdp.snat_ports.last, flags: 0, smac: interfaceMac(ifname) });
    // auto on a veth: generic. Native XDP_TX on a veth reaches the wire only if the peer veth runs an
    // XDP program too (or has GRO on), which is outside our control; generic XDP has no such condition.
    const veth = config.xdp.attach === "auto" && (await isVeth(ifname));
    if (veth) log.info("xdp.attach auto on a veth: using generic mode (native XDP_TX on veth needs an XDP program on the peer)", { interface: ifname });
    const modes: [AttachedMode, number][] =
      veth
        ? [["generic", ffi.XDP_FLAGS_SKB_MODE]]
        : config.xdp.attach === "native"
        ? [["native", ffi.XDP_FLAGS_DRV_MODE]]
        : config.xdp.attach === "generic"
          ? [["generic", ffi.XDP_FLAGS_SKB_MODE]]
          : [
              ["native", ffi.XDP_FLAGS_DRV_MODE],
              ["generic", ffi.XDP_FLAGS_SKB_MODE],
            ];
    let rc = 0;
    for (const [name, flags] of modes) {
      rc = ffi.xdpLinkCreate(program.progFd, ifindex, flags);
      if (rc >= 0) {
        linkFd = rc;
        attachMode = name;
        break;
      }
      log.debug("xdp attach failed", { interface: ifname, mode: name, errno: -rc });
    }
    if (linkFd < 0) throw attachError(-rc, ifname, config.xdp.attach, ffi);
  } catch (err) {
    program.close();
    host?.close();
    throw err;
  }
  const release = tryReserve(config.xdp.snat_ports.first, config.xdp.snat_ports.last, log, host);
  log.info("xdp program attached", { interface: ifname, ifindex, mode: attachMode, flow_table_size: config.xdp.flow_table_size });
  if (forwardingOn(ifname) === false) {
    // Not a problem, and nothing is changed: said once so an operator reading the pass reasons knows.
    log.info("IPv4 forwarding is off on the interface: backend next hops come from featherlb's neighbour table (main routing table + ARP cache, re-read every second)", { interface: ifname });
  }
  if (attachMode === "native" && (await isVeth(ifname))) {
    log.warn("native XDP on a veth transmits (XDP_TX) only if the peer veth also has an XDP program; use xdp.attach: generic or auto if packets do not arrive", { interface: ifname });
  }
  return new XdpDataPlane(program, ffi, log, config, linkFd, ifname, attachMode, release, host);
}

async function isVeth(ifname: string): Promise<boolean> {
  try {
    const uevent = await Bun.file(`/sys/class/net/${ifname}/device/uevent`).exists();
    if (uevent) return false;
    const link = Bun.spawnSync(["ip", "-d", "link", "show", ifname]);
    return link.stdout.toString().includes("veth");
  } catch {
    return false;
  }
}

function loadError(err: unknown, ffi: Libbpf): UserError {
  if (err instanceof UserError) return err;
  if (err instanceof ffi.BpfError) {
    if (err.errno === ffi.EPERM) {
      return new UserError("permission", "loading the XDP program needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON); run featherlb as root or use mode: proxy.");
    }
    const last = err.log.trim().split("\n").slice(-3).join(" | ");
    return new UserError("unsupported", `this kernel rejected the XDP program (${err.message}${last ? `: ${last}` : ""}); XDP needs Linux ≥ 5.15 with BTF, or use mode: proxy.`);
  }
  return new UserError("unsupported", `the XDP program could not be loaded (${(err as Error).message}); use mode: proxy.`);
}

function attachError(errno: number, ifname: string, mode: string, ffi: Libbpf): UserError {
  if (errno === ffi.EPERM) return new UserError("permission", `attaching XDP to ${ifname} needs CAP_NET_ADMIN; run featherlb as root or use mode: proxy.`);
  if (errno === ffi.EBUSY || errno === ffi.EEXIST) {
    return new UserError("interface", `interface ${ifname} already has an XDP program attached; detach it with "ip link set dev ${ifname} xdp off" or choose another xdp.interface.`);
  }
  if (errno === ffi.ENODEV) return new UserError("interface", `interface ${ifname} disappeared while attaching XDP; set xdp.interface to an existing interface.`);
  if (mode === "native" && (errno === ffi.EOPNOTSUPP || errno === ffi.EINVAL)) {
    return new UserError("unsupported", `the driver of ${ifname} has no native XDP support; set xdp.attach: generic (or auto).`);
  }
  return new UserError("unsupported", `attaching XDP to ${ifname} failed (errno ${errno}); check the kernel supports XDP links (Linux ≥ 5.9) or use mode: proxy.`);
}
