/**
 * One backend of one service: identity, resolved address, health, operator intent and counters. Its
 * Service is the one writer of `ip`, `health` and `enabled` (service.ts: update, markHealth,
 * setAddresses); the data planes read them and fill `stats`. Single event loop: no locks.
 */
import { isIpLiteral } from "../config/address.ts";
import type { BackendConfig } from "../config/types.ts";
import { Counters } from "./stats.ts";

export type HealthState = "up" | "down";

export class Backend {
  /** The IP the data planes connect to; undefined until DNS has answered for a hostname. */
  ip: string | undefined;
  /** Written as a hostname (DNS gives its address), not an IP literal. */
  readonly named: boolean;
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
    this.named = !isIpLiteral(config.host);
    this.ip = this.named ? undefined : config.host;
  }

  get key(): string {
    return this.config.address;
  }

  /** In the pick set: enabled, healthy, and with an address to connect to. */
  get eligible(): boolean {
    return this.enabled && this.health === "up" && this.ip !== undefined;
  }
}
