/**
 * Choosing and connecting a backend for one client, with a connect timeout and retries on other healthy
 * backends. Failures are reported to the health module (passive checks).
 */
import type { Socket, SocketHandler } from "bun";
import type { Backend } from "../../control/backend.ts";
import { clientHash } from "../../control/algorithms/hash.ts";
import { NONE } from "../../control/algorithms/picker.ts";
import type { Relay } from "./relay.ts";

export interface ConnectHooks {
  /** A connect to `backend` failed or timed out (passive health). */
  onConnectFailure(backend: Backend, reason: string): void;
  /** A connect to `backend` succeeded. */
  onConnectSuccess(backend: Backend): void;
}

/**
 * Handlers for every backend socket, declared once (Bun shares one handler set per object). The
 * relay is the socket's `data`; until `attach`, it is a pending attempt.
 */
function backendHandlers(): SocketHandler<Relay> {
  return {
    binaryType: "buffer",
    data: (socket, data) => socket.data.fromBackend(data),
    drain: (socket) => socket.data.drained(socket.data.up, socket, socket.data.client),
    end: (socket) => socket.data.ended(socket.data.down, socket.data.client),
    close: (socket, error) => {
      const relay = socket.data;
      if (relay.backendSocket === socket) relay.closed(socket, error);
    },
    error: () => {
      // `close` follows every error; it decides what to do with the pair.
    },
  };
}
const BACKEND_HANDLERS = backendHandlers();

export class Connector {
  constructor(private readonly hooks: ConnectHooks) {}

  /** Pick a backend for `relay` and connect; on failure retry others; finish the relay if none works. */
  start(relay: Relay): void {
    const { service } = relay;
    const { picker } = service;
    // Only hash plans read the client hash; the others skip parsing the address string.
    const hash = picker.plan.kind === "hash" ? clientHash(relay.client.remoteAddress) : 0;
    const id = picker.pick({ clientHash: hash }, relay.failed ?? undefined);
    const backend = id === NONE ? undefined : service.backends.get(id);
    if (!backend || !backend.ip) {
      if (!relay.failed) service.stats.rejectedNoBackend++;
      // Closed at once with a FIN, as HAProxy does: the client sees a clean EOF, never a hang.
      relay.finish(false);
      return;
    }
    // Counted as active from the pick, not the connect: a burst of accepts must already see it, or
    // least_connections would send the whole burst to one backend.
    backend.stats.active++;
    relay.backend = null;
    this.attempt(relay, backend, backend.ip);
  }

  private attempt(relay: Relay, backend: Backend, ip: string): void {
    const { service } = relay;
    let settled = false;
    const fail = (reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      backend.stats.active--;
      backend.stats.connectFailures++;
      service.stats.connectFailures++;
      this.hooks.onConnectFailure(backend, reason);
      if (relay.finished) return;
      (relay.failed ??= new Set()).add(backend.id);
      if (relay.failed.size > service.config.connect_retries) return relay.finish(false);
      this.start(relay);
    };
    const timer = setTimeout(() => fail("connect timeout"), service.config.connect_timeout_ms);
    Bun.connect<Relay>({
      hostname: ip,
      port: backend.config.port,
      allowHalfOpen: true,
      data: relay,
      socket: BACKEND_HANDLERS,
    }).then(
      (socket) => {
        if (settled || relay.finished) {
          // Timed out meanwhile, or the client left: this socket is not wanted.
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            backend.stats.active--;
          }
          socket.terminate();
          return;
        }
        settled = true;
        clearTimeout(timer);
        socket.setNoDelay(true);
        this.hooks.onConnectSuccess(backend);
        relay.attach(socket, backend);
      },
      (err: { code?: string }) => fail(err.code ?? "connect failed"),
    );
  }
}
