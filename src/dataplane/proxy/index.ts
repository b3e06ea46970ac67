/**
 * The user-space data plane: one Bun.listen per service listen address, relaying each client to a
 * backend chosen by the service's Picker.
 */
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { formatHostPort } from "../../config/address.ts";
import type { Config, HostPort } from "../../config/types.ts";
import type { Logger } from "../../control/log.ts";
import type { Service } from "../../control/service.ts";
import { UserError } from "../../errors.ts";
import type { ConnectHooks, DataPlane, ServicePair } from "../types.ts";
import { raiseBacklogs } from "./backlog.ts";
import { Connector } from "./connect.ts";
import { clock, Relay } from "./relay.ts";

/** Clock and connect-timeout resolution. */
const TICK_MS = 250;
/** Idle timeouts are checked every second (a walk over all connections; idle timeouts are long). */
const IDLE_SWEEP_TICKS = 4;

/** What a listener serves; reload swaps `service` in place so the listening socket stays open. */
interface Binding {
  service: Service;
  listener: TCPSocketListener<Relay>;
  address: string;
}

export class ProxyDataPlane implements DataPlane {
  readonly kind = "proxy";
  private readonly bindings = new Map<string, Binding>();
  private readonly relays = new Set<Relay>();
  private readonly connector: Connector;
  private readonly sweeper: ReturnType<typeof setInterval>;
  private idleDrainResolve: (() => void) | null = null;
  private ticks = 0;

  constructor(
    private readonly log: Logger,
    hooks: ConnectHooks,
  ) {
    this.connector = new Connector(hooks);
    // One timer for all connections instead of any per socket: it advances the coarse clock and
    // expires connect attempts every tick, and checks idle timeouts every IDLE_SWEEP_TICKS ticks.
    this.sweeper = setInterval(() => this.tick(), TICK_MS);
    this.sweeper.unref();
  }

  async apply(_config: Config, services: readonly ServicePair[]): Promise<void> {
    const wanted = new Map<string, ServicePair>();
    for (const pair of services) wanted.set(formatHostPort(pair.config.listen), pair);
    // Bind every new address before changing anything, so a failed bind leaves the old set serving.
    const fresh: Binding[] = [];
    try {
      for (const [address, { config, service }] of wanted) {
        if (!this.bindings.has(address)) fresh.push(this.bind(address, config.listen, service));
      }
    } catch (err) {
      for (const b of fresh) b.listener.stop(true);
      throw err;
    }
    for (const [address, binding] of this.bindings) {
      const pair = wanted.get(address);
      if (pair) binding.service = pair.service;
      else {
        // Removed from the config: stop accepting; established connections keep flowing.
        binding.listener.stop(false);
        this.bindings.delete(address);
        this.log.info("listener closed", { address });
      }
    }
    for (const b of fresh) {
      this.bindings.set(b.address, b);
      this.log.info("listening", { service: b.service.name, address: b.address });
    }
    if (process.platform === "linux") {
      const raised = raiseBacklogs(fresh.map((b) => ({ host: wanted.get(b.address)!.config.listen.host, port: b.listener.port })));
      fresh.forEach((b, i) => {
        const r = raised[i]!;
        if ("error" in r) this.log.warn("accept backlog left at Bun's 512", { address: b.address, reason: r.error });
        else this.log.debug("accept backlog raised", { address: b.address, backlog: r.backlog });
      });
    }
  }

  private bind(address: string, { host, port }: HostPort, service: Service): Binding {
    const binding = { service, address } as Binding;
    try {
      binding.listener = Bun.listen<Relay>({
        hostname: host,
        port,
        allowHalfOpen: true,
        socket: this.clientHandlers(binding),
      });
    } catch (err) {
      throw listenError(err as { code?: string }, address, service.name);
    }
    return binding;
  }

  private clientHandlers(binding: Binding): SocketHandler<Relay> {
    return {
      binaryType: "buffer",
      open: (socket) => this.accept(socket, binding.service),
      data: (socket, data) => socket.data.fromClient(data),
      drain: (socket) => {
        const relay = socket.data;
        if (relay.backendSocket) relay.drained(relay.down, socket, relay.backendSocket);
      },
      end: (socket) => socket.data.ended(socket.data.up, socket.data.backendSocket),
      close: (socket, error) => socket.data?.closed(socket, error),
      error: () => {
        // `close` follows; the relay decides there.
      },
    };
  }

  private accept(socket: Socket<Relay>, service: Service): void {
    const { stats, config } = service;
    const relay = new Relay(socket, service, (r) => this.finished(r));
    socket.data = relay;
    if (config.max_connections > 0 && stats.active >= config.max_connections) {
      stats.rejectedMaxConn++;
      relay.finished = true;
      socket.end();
      return;
    }
    stats.active++;
    stats.total++;
    this.relays.add(relay);
    // Bun sets TCP_NODELAY on accepted sockets itself; setting it again would cost a syscall.
    this.connector.start(relay);
  }

  private finished(relay: Relay): void {
    if (!this.relays.delete(relay)) return;
    relay.service.stats.active--;
    if (relay.backend) relay.backend.stats.active--;
    if (this.relays.size === 0) this.idleDrainResolve?.();
  }

  private tick(): void {
    const now = Date.now();
    // A tick more than one period late means the event loop was blocked for that long.
    const late = now - clock.now - TICK_MS;
    clock.now = now;
    this.connector.expire(now, late > TICK_MS ? late : 0);
    if (++this.ticks % IDLE_SWEEP_TICKS !== 0) return;
    for (const relay of this.relays) {
      const idle = relay.service.config.idle_timeout_ms;
      if (idle > 0 && clock.now - relay.lastActive >= idle) relay.finish(true);
    }
  }

  refreshStats(): void {
    // The proxy updates its counters as bytes flow; nothing to copy.
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
  }
}

function listenError(err: { code?: string; message?: string }, address: string, service: string): UserError {
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
