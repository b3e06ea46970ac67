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

/** A change a data plane has prepared but not made yet (see ProxyDataPlane.prepare). */
export interface PlaneChange {
  /** Make it: cannot fail. */
  commit(): void;
  /** Undo the preparation; the plane serves as before. */
  abort(): void;
}

/** The XDP plane's maps as /status shows them: sized at load time from the config (xdp/capacity.ts). */
export interface PlaneMaps {
  /** What the maps were sized for: services, backends per service, plan slots, neighbour entries. */
  capacity: Readonly<Record<string, number>>;
  /** Per map: entries and the bytes the kernel charges for it. */
  maps: { name: string; max_entries: number; bytes: number }[];
  /** The sum of `bytes`. */
  bytes: number;
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
  /** Copy data-plane-side counters into the Service/Backend Counters (called before each scrape; xdp: in slices). */
  refreshStats(): void | Promise<void>;
  /** xdp: packets by what the program did with them (outcomes and events) and the flow tables' entries, for /metrics. */
  xdpStats?(): XdpStats;
  /** xdp: the BPF maps' sizes and kernel memory, and the capacity they were sized for (/status, /metrics). */
  maps?(): PlaneMaps;
  /** Stop accepting new connections; resolve once established ones finished or `deadline` (epoch ms) passed. */
  drain(deadline: number): Promise<void>;
  /** Release everything now (close sockets, detach programs). */
  close(): void;
  /**
   * xdp, SIGUSR2: let go without undoing anything — the program stays attached on a pinned link, its
   * maps pinned, for the next start to adopt. Throws a UserError when it cannot (nothing is pinned).
   */
  handover?(): void;
}
