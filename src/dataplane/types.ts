/**
 * What the control plane asks of a data plane. Both the proxy and the XDP plane implement this; the
 * control plane (src/control/runtime.ts) owns the Service objects and calls these in order:
 * start → apply* (on reload) → drain → close.
 */
import type { Config } from "../config/types.ts";
import type { Service } from "../control/service.ts";

export interface DataPlane {
  readonly kind: "proxy" | "xdp";
  /**
   * Start serving `services` (the first call) or switch to a new set (reload). Services whose listen
   * address is unchanged keep their listeners and established connections. Throws a UserError (with
   * one clear sentence) when something the user controls is wrong: port in use, missing privilege…
   */
  apply(config: Config, services: readonly Service[]): Promise<void>;
  /** Copy data-plane-side counters into the Service/Backend Counters (called before each scrape). */
  refreshStats(): void;
  /** xdp: packets by what the program did with them (flb_reasons: passes, transmits), for /metrics. */
  packetReasons?(): Readonly<Record<string, number>>;
  /** Stop accepting new connections; resolve once established ones finished or `deadline` (epoch ms) passed. */
  drain(deadline: number): Promise<void>;
  /** Release everything now (close sockets, detach programs). */
  close(): void;
}
