/**
 * The user-space data plane: one Bun.listen per service listen address, relaying each client to a
 * backend chosen by the service's Picker.
 *
 * A client goes through, in order: the descriptor capacity (descriptors.ts) and max_connections, both
 * checked at accept; with accept_proxy, its PROXY header (read within connect_timeout); then
 * max_connections_per_source, counted per client IP (the header's, with accept_proxy); then the
 * connect (connect.ts) and the relay (relay.ts). Each refusal closes the client at once and is
 * counted by reason. An exception thrown in a socket handler closes that connection only and is
 * counted (incidents.ts).
 */
import type { Socket, SocketHandler, TCPSocketListener, TCPSocketListenOptions } from "bun";
import { formatHostPort, listenersConflict } from "../../config/address.ts";
import type { Config, HostPort, ServiceConfig } from "../../config/types.ts";
import type { Logger } from "../../control/log.ts";
import { S } from "../../control/shared.ts";
import { UserError } from "../../errors.ts";
import type { PlaneChange } from "../types.ts";
import { raiseBacklogs } from "./backlog.ts";
import { Connector, type IncidentSink } from "./connect.ts";
import { connectionCapacity, descriptorLimit } from "./descriptors.ts";
import { decodeHeader } from "./proxyproto.ts";
import { clock, type Offload, Relay } from "./relay.ts";
import { PlaneShared } from "./shared.ts";
import { sourceKey, type SourceKey } from "./sources.ts";
import { EXTRA_SHARES, KernelRelay } from "./splice/index.ts";
import type { TableInit } from "./splice/table.ts";
import type { ProxiedService, ProxyHooks } from "./view.ts";

/** Clock and connect-timeout resolution. */
const TICK_MS = 250;
/** Idle and half-close timeouts are checked every second (a walk over all connections; they are long). */
const IDLE_SWEEP_TICKS = 4;
/** At most this many connections of one thread are in its relay thread at once; the rest stay here. */
const RELAY_SLOTS_MAX = 16384;

/** A service of the config being applied and what serves it (ServicePair, with the proxy's view of the service). */
export interface ProxiedPair {
  readonly config: ServiceConfig;
  readonly service: ProxiedService;
}

/** Where one thread's proxy sits among the workers. */
export interface WorkerSlot {
  /** This thread's index: its row in every service's shared counters. */
  index: number;
  /** What all workers share: the connection count against the descriptor capacity, the per-source table. */
  shared: PlaneShared;
  /** Log listeners opening and closing (the pool logs them once for all workers instead). */
  logListeners: boolean;
  /** Told the kernel relay thread's table when it starts, so the pool can clean up should this thread die. */
  onRelayTable?: (table: TableInit) => void;
}

/** What a listener serves; reload swaps `service` in place so the listening socket stays open. */
interface Binding {
  service: ProxiedService;
  listener: TCPSocketListener<Relay>;
  address: string;
  listen: HostPort;
}

/**
 * The proxy of one thread: its listeners (SO_REUSEPORT, so every worker thread has its own on each
 * address and the kernel spreads new connections over them) and its connections. In featherlb each
 * worker thread runs one (worker.ts); counts that decide picks and limits are shared (shared.ts,
 * control/shared.ts).
 */
export class ProxyDataPlane {
  private readonly bindings = new Map<string, Binding>();
  private readonly relays = new Set<Relay>();
  /** accept_proxy: connections whose PROXY header has not arrived yet (their deadline is in `awaiting`). */
  private readonly awaiting = new Set<Relay>();
  /** This thread's counter row of each service. */
  private readonly rows = new WeakMap<ProxiedService, Float64Array>();
  private readonly connector: Connector;
  private readonly sweeper: ReturnType<typeof setInterval>;
  private readonly slot: WorkerSlot;
  private idleDrainResolve: (() => void) | null = null;
  private ticks = 0;
  private capacityNoted = false;
  /** kernel_relay: this thread's relay thread (started with the first handover), and the pairs' view of it. */
  private readonly kernel: KernelRelay | null;
  private readonly offload: Offload | null;

  constructor(
    private readonly log: Logger,
    hooks: ProxyHooks,
    private readonly incidents: IncidentSink,
    /** Default: the only worker, with shared state of its own (tests that run the plane in their thread). */
    slot?: WorkerSlot,
  ) {
    this.slot = slot ?? { index: 0, shared: PlaneShared.create(1, connectionCapacity()), logListeners: true };
    this.connector = new Connector(hooks, incidents, (where, socket, err) => this.fault(where, socket, err), this.slot.index);
    const relay = this.slot.shared.init.relay;
    this.kernel = relay.enabled && process.platform === "linux" ? new KernelRelay(relay, Math.min(RELAY_SLOTS_MAX, this.capacity), log, this.slot.onRelayTable) : null;
    this.offload = this.kernel ? this.offloadTo(this.kernel) : null;
    // One timer for all connections instead of any per socket: it advances the coarse clock and
    // expires connect attempts and PROXY header waits every tick, and checks idle and half-close
    // timeouts every IDLE_SWEEP_TICKS ticks.
    this.sweeper = setInterval(() => this.tick(), TICK_MS);
    this.sweeper.unref();
  }

  /**
   * The kernel relay as pairs see it: a handover first takes the descriptors the relayed pair will
   * hold from the capacity (the pair stays here if they are not there), and gives them back when the
   * relay thread is done with it.
   */
  private offloadTo(kernel: KernelRelay): Offload {
    const { shared, index } = this.slot;
    return {
      after: kernel.settings.after_bytes,
      take: (relay) => {
        if (!kernel.available || !shared.reserve(index, EXTRA_SHARES)) return -1;
        const fd = (s: Socket<Relay> | null) => (s as { fd?: number } | null)?.fd; // Bun has it; its types omit it
        const slot = kernel.handOver(relay, fd(relay.client), fd(relay.backendSocket));
        if (slot < 0) shared.unreserve(index, EXTRA_SHARES);
        return slot;
      },
      release: () => shared.unreserve(index, EXTRA_SHARES),
      bytes: (slot) => kernel.bytes(slot),
      flags: (slot) => kernel.flags(slot),
      end: (slot, abort) => kernel.end(slot, abort),
    };
  }

  /** Bring the byte counters and FINs of kernel-relayed connections up to date (before a scrape). */
  syncRelayed(): void {
    for (const relay of this.relays) relay.sync();
  }

  /** Proxied connections the descriptor limit leaves room for, all workers together (descriptors.ts). */
  get capacity(): number {
    return this.slot.shared.capacity;
  }

  /** Connections open in this thread. */
  get connections(): number {
    return this.relays.size;
  }

  async apply(_config: Config, services: readonly ProxiedPair[]): Promise<void> {
    (await this.prepare(services)).commit();
  }

  /**
   * Bind every address `services` need that is not bound yet, changing nothing else: `commit` then
   * switches to the new set (listeners no longer wanted stop accepting; their established connections
   * keep flowing), `abort` closes what was bound. Listeners are keyed by address, so a service that
   * moves keeps no listener, and two services that swap addresses swap listeners.
   *
   * A new address that overlaps one being given up (0.0.0.0:80 → 10.0.0.5:80) cannot be bound beside
   * it: the old listener stops first, and `abort` binds it again.
   */
  async prepare(services: readonly ProxiedPair[]): Promise<PlaneChange> {
    const wanted = new Map<string, ProxiedPair>();
    for (const pair of services) wanted.set(formatHostPort(pair.config.listen), pair);
    const leaving = [...this.bindings.values()].filter((b) => !wanted.has(b.address));
    const fresh: Binding[] = [];
    const stopped: Binding[] = [];
    const abort = () => {
      for (const b of fresh) b.listener.stop(true);
      for (const b of stopped) this.rebind(b);
    };
    try {
      for (const [address, { config, service }] of wanted) {
        if (this.bindings.has(address)) continue;
        for (const old of leaving) {
          if (!stopped.includes(old) && listenersConflict(old.listen, config.listen)) {
            old.listener.stop(false);
            stopped.push(old);
          }
        }
        fresh.push(this.bind(address, config.listen, service));
      }
    } catch (err) {
      abort();
      throw err;
    }
    this.raiseBacklogs(fresh);
    return {
      commit: () => {
        for (const binding of leaving) {
          // Removed or moved: stop accepting; established connections keep flowing.
          if (!stopped.includes(binding)) binding.listener.stop(false);
          this.bindings.delete(binding.address);
          if (this.slot.logListeners) this.log.info("listener closed", { address: binding.address });
        }
        for (const [address, binding] of this.bindings) binding.service = wanted.get(address)!.service;
        for (const b of fresh) {
          this.bindings.set(b.address, b);
          if (this.slot.logListeners) this.log.info("listening", { service: b.service.name, address: b.address });
        }
        this.noteCapacity(services);
      },
      abort,
    };
  }

  /** Bind a listener that `prepare` stopped for an overlapping new one that then failed. */
  private rebind(b: Binding): void {
    try {
      // A new Binding: its handlers read the binding they were made with, which later reloads update.
      this.bindings.set(b.address, this.bind(b.address, b.listen, b.service));
    } catch (err) {
      // Forgotten, so the next reload binds it again.
      this.bindings.delete(b.address);
      this.log.error("a listener given up for a reload that failed could not be bound again", { address: b.address, error: (err as Error).message });
      return;
    }
    this.raiseBacklogs([this.bindings.get(b.address)!]);
  }

  /** Raise the accept backlog of new listeners from Bun's 512 (backlog.ts), one descriptor walk for all. */
  private raiseBacklogs(bindings: readonly Binding[]): void {
    if (process.platform !== "linux" || bindings.length === 0) return;
    const raised = raiseBacklogs(bindings.map((b) => ({ host: b.listen.host, port: b.listener.port, fd: (b.listener as { fd?: number }).fd })));
    bindings.forEach((b, i) => {
      const r = raised[i]!;
      if ("error" in r) this.log.warn("accept backlog left at Bun's 512", { address: b.address, reason: r.error });
      else this.log.debug("accept backlog raised", { address: b.address, backlog: r.backlog });
    });
  }

  private bind(address: string, listen: HostPort, service: ProxiedService): Binding {
    const binding = { service, address, listen } as Binding;
    // Every worker thread binds its own socket to the address; the kernel hashes each new connection to
    // one of them. (That another process cannot join the group unnoticed is checked by the pool, which
    // binds the address without the option first: pool.ts.) Bun accepts reusePort; its types omit it.
    const options: TCPSocketListenOptions<Relay> & { reusePort: boolean } = {
      hostname: listen.host,
      port: listen.port,
      allowHalfOpen: true,
      reusePort: true,
      socket: this.clientHandlers(binding),
    };
    try {
      binding.listener = Bun.listen<Relay>(options);
    } catch (err) {
      throw listenError(err as { code?: string }, address, service.name);
    }
    return binding;
  }

  /** Said once when the descriptor limit, not max_connections, bounds the proxied connections. */
  private noteCapacity(services: readonly ProxiedPair[]): void {
    const allowed = services.reduce((n, p) => n + (p.config.max_connections || Infinity), 0);
    if (!this.capacityNoted && this.slot.logListeners && services.length > 0 && this.capacity < allowed) {
      this.capacityNoted = true;
      this.log.info("the descriptor limit allows fewer proxied connections than max_connections; the excess is refused (raise ulimit -n for more)", { connections: this.capacity, ulimit_n: descriptorLimit() });
    }
  }

  private clientHandlers(binding: Binding): SocketHandler<Relay> {
    return {
      binaryType: "buffer",
      open: (socket) => this.accept(socket, binding.service),
      data: (socket, data) => {
        const relay = socket.data;
        if (relay.awaiting) this.readHeader(relay, data);
        else relay.fromClient(data);
      },
      drain: (socket) => {
        const relay = socket.data;
        if (relay.backendSocket) relay.drained(relay.down, socket, relay.backendSocket);
      },
      end: (socket) => {
        const relay = socket.data;
        if (relay.awaiting) this.headerFailed(relay, "the client closed before its PROXY header was complete");
        else relay.ended(relay.up, relay.backendSocket);
      },
      close: (socket, error) => socket.data?.closed(socket, error),
      // Socket errors (resets) arrive in `close`; Bun calls `error` only when a handler threw.
      error: (socket, err) => this.fault("client socket handler", socket, err),
    };
  }

  /** A handler threw: counted and logged (once per kind); this connection is closed, the others carry on. */
  private fault(where: string, socket: Socket<Relay>, err: Error): void {
    const relay = socket.data as Relay | undefined;
    this.incidents.internalError(where, err, relay ? { service: relay.service.name } : {});
    if (relay) relay.finish(true);
    else socket.terminate();
  }

  /** This thread's counter row of `service` (control/shared.ts). */
  private rowOf(service: ProxiedService): Float64Array {
    let row = this.rows.get(service);
    if (!row) this.rows.set(service, (row = service.shared.row(this.slot.index)));
    return row;
  }

  private accept(socket: Socket<Relay>, service: ProxiedService): void {
    const { config, shared } = service;
    const worker = this.slot.index;
    const relay = new Relay(socket, service, this.rowOf(service), (r) => this.finished(r), this.offload);
    socket.data = relay;
    if (!shared.admit(worker, config.max_connections)) {
      relay.row[S.rejectedMaxConn]!++;
      relay.finished = true;
      socket.end();
      return;
    }
    if (!this.slot.shared.open(worker)) {
      // Refused while descriptors remain, rather than failing at the backend connect (descriptors.ts).
      shared.leave(worker);
      relay.row[S.rejectedLocal]!++;
      this.incidents.localError("EMFILE", { service: service.name, during: "accept", reason: `the descriptor limit (ulimit -n) leaves room for ${this.capacity} proxied connections` });
      relay.finished = true;
      socket.end();
      return;
    }
    relay.row[S.total]!++;
    this.relays.add(relay);
    if (config.accept_proxy) {
      relay.awaiting = { buf: null, deadline: Date.now() + config.connect_timeout_ms };
      this.awaiting.add(relay);
      return;
    }
    this.admit(relay);
  }

  /** The client is known (its PROXY header read, if any): apply the per-source limit, then connect. */
  private admit(relay: Relay): void {
    const { service } = relay;
    const limit = service.config.max_connections_per_source;
    if (limit > 0) {
      const key = sourceKey(relay.clientIp);
      const got = this.slot.shared.sources.acquire(service.shared.uid, key, limit, this.slot.index);
      if (got !== "ok") {
        if (got === "limit") relay.row[S.rejectedPerSource]!++;
        else {
          relay.row[S.rejectedLocal]!++;
          this.incidents.localError("ENOMEM", { service: service.name, during: "accept", reason: "the per-source table is full" });
        }
        relay.finish(false);
        return;
      }
      relay.source = key;
    }
    // Bun sets TCP_NODELAY on accepted sockets itself; setting it again would cost a syscall.
    this.connector.start(relay);
  }

  /** accept_proxy: bytes before the header is complete. The header is consumed, never forwarded. */
  private readHeader(relay: Relay, data: Buffer): void {
    const wait = relay.awaiting!;
    wait.buf = wait.buf ? Buffer.concat([wait.buf, data]) : Buffer.from(data);
    const decoded = decodeHeader(wait.buf);
    if (decoded.kind === "more") return;
    if (decoded.kind === "invalid") return this.headerFailed(relay, decoded.reason);
    const rest = wait.buf.subarray(decoded.length);
    relay.awaiting = null;
    this.awaiting.delete(relay);
    relay.peer = decoded.endpoints;
    this.admit(relay);
    if (rest.length > 0 && !relay.finished) relay.fromClient(rest);
  }

  /** accept_proxy: no valid header (missing, malformed, too long, too late): counted, closed. */
  private headerFailed(relay: Relay, reason: string): void {
    relay.awaiting = null;
    this.awaiting.delete(relay);
    relay.row[S.rejectedProxyHeader]!++;
    this.log.debug("client closed: no valid PROXY protocol header", { service: relay.service.name, client: relay.client.remoteAddress, reason });
    relay.finish(false);
  }

  private finished(relay: Relay): void {
    if (!this.relays.delete(relay)) return;
    this.awaiting.delete(relay);
    const { service } = relay;
    const worker = this.slot.index;
    service.shared.leave(worker);
    this.slot.shared.close(worker);
    if (relay.backend) service.shared.backendClosed(worker, relay.backend.id);
    if (relay.source !== null) this.slot.shared.sources.release(service.shared.uid, relay.source, worker);
    if (this.relays.size === 0) this.idleDrainResolve?.();
  }

  private tick(): void {
    const now = Date.now();
    // A tick more than one period late means the event loop was blocked for that long.
    const late = now - clock.now - TICK_MS;
    clock.now = now;
    this.connector.expire(now, late > TICK_MS ? late : 0);
    for (const relay of this.awaiting) {
      if (late > TICK_MS) relay.awaiting!.deadline += late; // our stall, not the client's delay
      else if (now >= relay.awaiting!.deadline) this.headerFailed(relay, `no complete PROXY header within connect_timeout (${relay.service.config.connect_timeout_ms} ms)`);
    }
    if (++this.ticks % IDLE_SWEEP_TICKS !== 0) return;
    for (const relay of this.relays) {
      relay.sync(); // a kernel-relayed pair's bytes and FINs, for its metrics and timeouts
      const { idle_timeout_ms: idle, half_close_timeout_ms: halfClose } = relay.service.config;
      // lastActive is the coarse clock at the activity, up to one tick before it: count that tick as
      // activity, so a timeout never fires early (it fires up to IDLE_SWEEP_TICKS + 1 ticks late).
      const quiet = clock.now - relay.lastActive - TICK_MS;
      if (idle > 0 && quiet >= idle) relay.finish(true);
      // A half-closed pair whose other direction stays silent: ended like a finished one (FIN both ways).
      else if (halfClose > 0 && quiet >= halfClose && relay.halfClosed) relay.finish(false);
    }
  }

  async drain(deadline: number): Promise<void> {
    for (const b of this.bindings.values()) b.listener.stop(false);
    this.bindings.clear();
    if (this.relays.size === 0) return;
    await new Promise<void>((resolve) => {
      this.idleDrainResolve = resolve;
      setTimeout(resolve, Math.max(0, deadline - Date.now()));
    });
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const b of this.bindings.values()) b.listener.stop(true);
    this.bindings.clear();
    for (const relay of this.relays) relay.finish(true);
    this.kernel?.close();
  }
}

export function listenError(err: { code?: string; message?: string }, address: string, service: string): UserError {
  switch (err.code) {
    case "EADDRINUSE":
      return new UserError("port_in_use", `service ${service} cannot listen on ${address}: the address is already in use; stop the other process or change its listen address.`);
    case "EACCES":
      return new UserError("permission", `service ${service} cannot listen on ${address}: permission denied; use a port ≥ 1024 or run with CAP_NET_BIND_SERVICE.`);
    case "EADDRNOTAVAIL":
      return new UserError("config", `service ${service} cannot listen on ${address}: no local interface has that IP; use an address of this host or 0.0.0.0.`);
    default:
      return new UserError("config", `service ${service} cannot listen on ${address}: ${err.code ?? err.message ?? "unknown error"}.`);
  }
}
