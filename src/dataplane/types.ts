/**
 * What the runtime asks of a data plane. Both the proxy and the XDP plane implement this; the runtime
 * (src/runtime.ts) owns the Service objects and calls these in order: apply (start) → apply* (on
 * reload) → drain → close.
 */
import type { Config, ServiceConfig } from "../config/types.ts";
import type { Backend } from "../control/backend.ts";
import type { XdpStats } from "../control/metrics.ts";
import type { Service } from "../control/service.ts";

/**
 * One service of the config being applied and the Service object that serves it. On a reload `config`
 * is the new one: apply runs before the runtime moves existing Services to their new config, so a
 * data plane reads listen addresses from `config`, never from `service.config`.
 */
export interface ServicePair {
  readonly config: ServiceConfig;
  readonly service: Service;
}

/**
 * What a data plane sees of connects to backends: passive health checks. The runtime sends these to the
 * health checker, which counts them with the active checks and tells the backend's Service on a flip.
 */
export interface ConnectHooks {
  /** A connect to `backend` failed or timed out. */
  onConnectFailure(backend: Backend, reason: string): void;
  /** A connect to `backend` succeeded. */
  onConnectSuccess(backend: Backend): void;
}

/** How an XDP program is attached to its interface (/status shows it). */
export type AttachMode = "native" | "generic";

export interface DataPlane {
  readonly kind: "proxy" | "xdp";
  /** xdp: how the program is attached (native driver mode or generic); undefined for the proxy. */
  readonly attachMode?: AttachMode;
  /**
   * Start serving `services` (the first call) or switch to a new set (reload); `config` carries the
   * plane-wide sections (xdp:). Services whose listen address is unchanged keep their listeners and
   * established connections. Throws a UserError (with one clear sentence) when something the user
   * controls is wrong: port in use, missing privilege…
   */
  apply(config: Config, services: readonly ServicePair[]): Promise<void>;
  /** Copy data-plane-side counters into the Service/Backend Counters (called before each scrape). */
  refreshStats(): void;
  /** xdp: packets by what the program did with them (outcomes and events) and the flow tables' entries, for /metrics. */
  xdpStats?(): XdpStats;
  /** Stop accepting new connections; resolve once established ones finished or `deadline` (epoch ms) passed. */
  drain(deadline: number): Promise<void>;
  /** Release everything now (close sockets, detach programs). */
  close(): void;
}
