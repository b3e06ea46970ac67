/**
 * A service at run time: its config, its backends, and the current immutable Picker.
 *
 * The Service is the one owner of its backends' state (gobetween's model): membership and operator
 * intent (`update`, on load and reload), health (`markHealth`, from active and passive checks) and
 * addresses (`setAddresses`, from DNS). Checkers and resolvers only report to it; it decides, logs a
 * change once, and rebuilds. Whenever the pick set may have changed, `rebuild()` computes a new Plan
 * from the eligible backends and swaps it in (Pingora's model). Data planes that mirror the plan
 * elsewhere (the XDP maps) subscribe with `onPlan`.
 */
import { MAX_BACKENDS } from "../config/limits.ts";
import type { ServiceConfig } from "../config/types.ts";
import { planFingerprint } from "./algorithms/fingerprint.ts";
import { ALGORITHMS } from "./algorithms/index.ts";
import { Picker } from "./algorithms/picker.ts";
import type { Member } from "./algorithms/types.ts";
import { Backend, type HealthState } from "./backend.ts";
import { Logger } from "./log.ts";
import { ServiceShared } from "./shared.ts";
import { ServiceCounters } from "./stats.ts";

export type PlanListener = (service: Service) => void;

export class Service {
  /** Backends by id. Ids are small and stable for a backend's lifetime; freed ids are reused. */
  readonly backends = new Map<number, Backend>();
  readonly stats = new ServiceCounters();
  /** What the proxy's worker threads share of this service: cursor, active counts, counter rows (shared.ts). */
  readonly shared: ServiceShared;
  picker!: Picker;
  /** The current plan's fingerprint (algorithms/fingerprint.ts): equal on instances that pick alike. */
  fingerprint = "";
  private readonly listeners = new Set<PlanListener>();

  constructor(
    public config: ServiceConfig,
    private readonly log: Logger = new Logger(),
    /** Proxy worker threads that will count into `shared`. */
    workers = 1,
  ) {
    this.shared = ServiceShared.create(workers);
    this.update(config);
  }

  get name(): string {
    return this.config.name;
  }

  /**
   * How many backends this service would hold after `update(config)`: the config's, plus removed ones
   * that still drain connections. The runtime refuses a reload that would need more than MAX_BACKENDS
   * ids before it changes anything.
   */
  backendsAfter(config: ServiceConfig): number {
    const wanted = new Set(config.backends.map((b) => b.address));
    let draining = 0;
    for (const b of this.backends.values()) if (!wanted.has(b.key) && this.busy(b)) draining++;
    return config.backends.length + draining;
  }

  /** Apply a new config for this service (initial load or reload): diff backends by address. */
  update(config: ServiceConfig): void {
    this.config = config;
    const wanted = new Map(config.backends.map((b) => [b.address, b]));
    for (const backend of this.backends.values()) {
      const next = wanted.get(backend.key);
      if (next) {
        backend.config = next;
        backend.enabled = true;
        wanted.delete(backend.key);
      } else {
        backend.enabled = false;
      }
    }
    // Removed backends without connections free their ids before new backends take ids.
    this.collectDrained();
    for (const cfg of wanted.values()) {
      const id = this.freeId();
      this.shared.resetBackend(id);
      this.backends.set(id, new Backend(id, cfg));
    }
    this.changed();
  }

  /**
   * The result of health checks (active or passive) for one of this service's backends. Only a flip
   * counts: it is logged once and rebuilds the plan.
   */
  markHealth(backend: Backend, health: HealthState, reason: string): void {
    if (backend.health === health) return;
    backend.health = health;
    const fields = { service: this.name, backend: backend.key, reason };
    if (health === "down") this.log.warn("backend down", fields);
    else this.log.info("backend up", fields);
    this.changed();
  }

  /**
   * DNS answers (name → IPv4 address) for backends written as names. Enabled backends of those names
   * whose address changed take the new one (each change logged once); one rebuild covers them all.
   */
  setAddresses(answers: ReadonlyMap<string, string>): void {
    let changed = false;
    for (const backend of this.backends.values()) {
      const ip = answers.get(backend.config.host);
      if (ip === undefined || !backend.enabled || ip === backend.ip) continue;
      this.log.info("backend address resolved", { service: this.name, backend: backend.key, ip, previous: backend.ip ?? null });
      backend.ip = ip;
      changed = true;
    }
    if (changed) this.changed();
  }

  /** Remove backends that a reload disabled once their last connection has ended. */
  collectDrained(): void {
    for (const [id, b] of this.backends) if (!b.enabled && !this.busy(b)) this.backends.delete(id);
  }

  /** Connections to `b` are open: counted live by proxy workers (shared), copied in by the XDP plane (stats). */
  private busy(b: Backend): boolean {
    return b.stats.active > 0 || this.shared.backendActive(b.id) > 0;
  }

  /** Recompute the plan from the eligible backends and notify subscribers. */
  rebuild(): void {
    const members: Member[] = [...this.backends.values()]
      .filter((b) => b.eligible)
      .sort((a, b) => a.id - b.id)
      .map((b) => ({ id: b.id, weight: b.config.weight, key: b.key }));
    const plan = ALGORITHMS[this.config.algorithm].plan(members, {
      maglevTableSize: this.config.maglev_table_size,
    });
    this.shared.resetCursor();
    this.picker = new Picker(plan, { active: (id) => this.shared.backendActive(id) }, undefined, this.shared);
    this.fingerprint = planFingerprint(this.config.algorithm, plan, (id) => this.backends.get(id)!.key);
    for (const listener of this.listeners) listener(this);
  }

  onPlan(listener: PlanListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Something that decides the pick set changed (membership, health, an address). Every state change
   * comes through here: today it rebuilds at once; coalescing rebuilds (say, once per tick) is a change
   * to this method alone.
   */
  private changed(): void {
    this.rebuild();
  }

  private freeId(): number {
    for (let id = 0; id < MAX_BACKENDS; id++) if (!this.backends.has(id)) return id;
    // The runtime checks backendsAfter() before it updates a service, so this is a bug if reached.
    throw new Error(`service ${this.config.name}: more than ${MAX_BACKENDS} backends`);
  }
}
