/**
 * Choosing and connecting a backend for one client, with a connect timeout and retries on other healthy
 * backends. Failures are reported to the health module (passive checks), except those that are the
 * LB's own (out of descriptors or local ports: incidents.ts), which close the client and are counted
 * apart. Timeouts are enforced by the data plane's 250 ms tick (`expire`), so a timeout fires within
 * 250 ms after its deadline.
 */
import type { Socket, SocketHandler } from "bun";
import { clientHash } from "../../control/algorithms/hash.ts";
import { NONE } from "../../control/algorithms/picker.ts";
import { localErrno, type Incidents } from "../../control/incidents.ts";
import { B, S, ServiceShared } from "../../control/shared.ts";
import type { Relay } from "./relay.ts";
import type { ProxiedBackend, ProxyHooks } from "./view.ts";

/** What the proxy reports of its own faults (control/incidents.ts, or a worker's messenger to it). */
export type IncidentSink = Pick<Incidents, "localError" | "internalError">;

/** An exception thrown inside a socket handler (Bun hands it to `error`): counted, logged, pair closed. */
export type HandlerFault = (where: string, socket: Socket<Relay>, err: Error) => void;

/**
 * Handlers for every backend socket, declared once (Bun shares one handler set per object). The
 * relay is the socket's `data`; until `attach`, it is a pending attempt. Socket errors (resets) arrive
 * in `close`; Bun calls `error` only for an exception thrown by one of these handlers.
 */
function backendHandlers(fault: HandlerFault): SocketHandler<Relay> {
  return {
    binaryType: "buffer",
    data: (socket, data) => socket.data.fromBackend(data),
    drain: (socket) => socket.data.drained(socket.data.up, socket, socket.data.client),
    end: (socket) => socket.data.ended(socket.data.down, socket.data.client),
    close: (socket, error) => {
      const relay = socket.data;
      if (relay.backendSocket === socket) relay.closed(socket, error);
    },
    error: (socket, err) => fault("backend socket handler", socket, err),
  };
}

/** One connect to one backend for one relay, settled exactly once: opened, failed or timed out. */
class Attempt {
  settled = false;
  constructor(
    readonly relay: Relay,
    readonly backend: ProxiedBackend,
    /** Epoch ms; the data plane's tick expires it (no timer per connect). */
    public deadline: number,
  ) {}
}

export class Connector {
  /** Attempts not settled yet, checked against their deadline by `expire`. */
  private readonly pending = new Set<Attempt>();
  private readonly handlers: SocketHandler<Relay>;

  constructor(
    private readonly hooks: ProxyHooks,
    private readonly incidents: IncidentSink,
    private readonly fault: HandlerFault,
    /** This thread's worker slot in the services' shared state. */
    private readonly worker: number,
  ) {
    this.handlers = backendHandlers(fault);
  }

  /** Pick a backend for `relay` and connect; on failure retry others; finish the relay if none works. */
  start(relay: Relay): void {
    const { service } = relay;
    const { picker, shared } = service;
    // Only hash plans read the client hash; the others skip parsing the address string.
    const hash = picker.plan.kind === "hash" ? clientHash(relay.clientIp) : 0;
    // Plans that read the active counts pick and count under the service's lock, so that two workers
    // picking at once see each other's choice (control/shared.ts).
    const locked = picker.readsLoad;
    let backend: ProxiedBackend | undefined;
    if (locked) shared.lock();
    try {
      const id = picker.pick({ clientHash: hash }, relay.failed ?? undefined);
      backend = id === NONE ? undefined : service.backends.get(id);
      // Counted as active from the pick, not the connect: a burst of accepts must already see it, or
      // least_connections would send the whole burst to one backend.
      if (backend?.ip) shared.backendOpened(this.worker, backend.id);
    } finally {
      if (locked) shared.unlock();
    }
    if (!backend || !backend.ip) {
      if (!relay.failed) relay.row[S.rejectedNoBackend]!++;
      // Closed at once with a FIN, as HAProxy does: the client sees a clean EOF, never a hang.
      relay.finish(false);
      return;
    }
    const attempt = new Attempt(relay, backend, Date.now() + service.config.connect_timeout_ms);
    this.pending.add(attempt);
    // Bun sets TCP_NODELAY on connected sockets itself; setting it again would cost a syscall.
    Bun.connect<Relay>({
      hostname: backend.ip,
      port: backend.config.port,
      allowHalfOpen: true,
      data: relay,
      socket: this.handlers,
    })
      .then(
        (socket) => this.opened(attempt, socket),
        (err: { code?: string }) => this.failed(attempt, err.code ?? "connect failed"),
      )
      .catch((err: Error) => this.fault("backend connect", relay.client, err));
  }

  /**
   * Fail every attempt whose deadline has passed (called from the data plane's periodic tick).
   * `stalledMs` is how late the tick itself ran: time our own event loop was blocked (GC, a busy
   * host) is not the backend's fault, so deadlines move by it — otherwise one stall would time out
   * every pending connect at once and the passive checks would mark healthy backends down.
   */
  expire(now: number, stalledMs: number): void {
    for (const attempt of this.pending) {
      if (stalledMs > 0) attempt.deadline += stalledMs;
      else if (now >= attempt.deadline) this.failed(attempt, "connect timeout");
    }
  }

  private settle(attempt: Attempt): boolean {
    if (attempt.settled) return false;
    attempt.settled = true;
    this.pending.delete(attempt);
    return true;
  }

  private opened(attempt: Attempt, socket: Socket<Relay>): void {
    const { relay, backend } = attempt;
    if (!this.settle(attempt)) {
      // Timed out already (and counted as a failure): this socket is not wanted.
      socket.terminate();
      return;
    }
    if (relay.finished) {
      // The client left while we connected.
      relay.service.shared.backendClosed(this.worker, backend.id);
      socket.terminate();
      return;
    }
    this.hooks.connected(relay.service, backend);
    relay.attach(socket, backend);
  }

  private failed(attempt: Attempt, reason: string): void {
    if (!this.settle(attempt)) return;
    const { relay, backend } = attempt;
    const { service, row } = relay;
    service.shared.backendClosed(this.worker, backend.id);
    const local = localErrno(reason);
    if (local) {
      // The LB's own shortage: another backend would fare no better, and this one is not to blame.
      row[S.rejectedLocal]!++;
      this.incidents.localError(local, { service: service.name, backend: backend.key, during: "connect to backend" });
      relay.finish(false);
      return;
    }
    row[ServiceShared.backendBase(backend.id) + B.connectFailures]!++;
    row[S.connectFailures]!++;
    this.hooks.connectFailed(service, backend, reason);
    if (relay.finished) return;
    (relay.failed ??= new Set()).add(backend.id);
    if (relay.failed.size > service.config.connect_retries) return relay.finish(false);
    this.start(relay);
  }
}
