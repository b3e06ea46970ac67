/**
 * One backend of one service, as the control plane owns it: identity, resolved address, health and
 * counters. Only the control plane mutates it (single event loop: no locks), data planes read it.
 */
import { isIpLiteral } from "../config/address.ts";
import type { BackendConfig } from "../config/types.ts";
import { Counters } from "./stats.ts";

export type HealthState = "up" | "down";

export class Backend {
  /** The IP the data planes connect to; undefined until DNS has answered for a hostname. */
  ip: string | undefined;
  /** Result of active and passive checks. Starts "up" so a fresh LB serves at once (as HAProxy does). */
  health: HealthState = "up";
  /**
   * Operator intent: false once a reload removed this backend. It then leaves the pick set at once and
   * disappears when its last connection ends (drain).
   */
  enabled = true;
  readonly stats = new Counters();

  constructor(
    /** Position in the service's backend list: the member id the algorithms see. */
    readonly id: number,
    public config: BackendConfig,
  ) {
    this.ip = isIpLiteral(config.host) ? config.host : undefined;
  }

  get key(): string {
    return this.config.address;
  }

  /** In the pick set: enabled, healthy, and with an address to connect to. */
  get eligible(): boolean {
    return this.enabled && this.health === "up" && this.ip !== undefined;
  }
}
