/**
 * A service at run time: its config, its backends, and the current immutable Picker.
 *
 * Whenever membership, health, weights or the algorithm change, `rebuild()` computes a new Plan from the
 * eligible backends and swaps it in (Pingora's model). Data planes that mirror the plan elsewhere (the
 * XDP maps) subscribe with `onPlan`.
 */
import { MAX_BACKENDS } from "../config/limits.ts";
import type { ServiceConfig } from "../config/types.ts";
import { ALGORITHMS } from "./algorithms/index.ts";
import { Picker } from "./algorithms/picker.ts";
import type { Member } from "./algorithms/types.ts";
import { Backend } from "./backend.ts";
import { ServiceCounters } from "./stats.ts";

/** Upper bound on backends per service (defined with the other config bounds in config/limits.ts). */
export { MAX_BACKENDS };

export type PlanListener = (service: Service) => void;

export class Service {
  /** Backends by id. Ids are small and stable for a backend's lifetime; freed ids are reused. */
  readonly backends = new Map<number, Backend>();
  readonly stats = new ServiceCounters();
  picker!: Picker;
  private readonly listeners = new Set<PlanListener>();

  constructor(public config: ServiceConfig) {
    this.update(config);
  }

  get name(): string {
    return this.config.name;
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
    for (const cfg of wanted.values()) {
      const id = this.freeId();
      this.backends.set(id, new Backend(id, cfg));
    }
    this.collectDrained();
    this.rebuild();
  }

  /** Remove backends that a reload disabled once their last connection has ended. */
  collectDrained(): void {
    for (const [id, b] of this.backends) if (!b.enabled && b.stats.active === 0) this.backends.delete(id);
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
    this.picker = new Picker(plan, { active: (id) => this.backends.get(id)?.stats.active ?? 0 });
    for (const listener of this.listeners) listener(this);
  }

  onPlan(listener: PlanListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private freeId(): number {
    for (let id = 0; id < MAX_BACKENDS; id++) if (!this.backends.has(id)) return id;
    throw new Error(`service ${this.config.name}: more than ${MAX_BACKENDS} backends`);
  }
}
