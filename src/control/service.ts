/**
 * A service at run time: its config, its backends, and the current immutable Picker.
 *
 * The Service is the one owner of its backends' state (gobetween's model): membership and operator
 * intent (`update`, on load and reload), health (`markHealth`, from active and passive checks) and
 * addresses (`setAddresses`, from DNS). Checkers and resolvers only report to it; it decides, logs a
 * change once, and marks itself dirty (`changed`). The rebuild queue (rebuild.ts) then rebuilds the
 * plan — coalesced, at most once per interval, in slices — from the eligible backends and swaps it in
 * (Pingora's model), unless the pick set is the one the live plan was built from. Data planes that
 * mirror the plan elsewhere (the XDP maps) subscribe with `onPlan`: one notification per new plan.
 *
 * A new Service picks nothing until its first plan is built: `settled()` resolves once it is (the
 * runtime waits for it before a data plane serves the service).
 */
import { MAX_BACKENDS } from "../config/limits.ts";
import type { ServiceConfig } from "../config/types.ts";
import { planFingerprint } from "./algorithms/fingerprint.ts";
import { ALGORITHMS, planBuild } from "./algorithms/index.ts";
import { makePlan } from "./algorithms/plan.ts";
import { Picker } from "./algorithms/picker.ts";
import type { Member, Plan, PlanBuild } from "./algorithms/types.ts";
import { Backend, type HealthState } from "./backend.ts";
import { Logger } from "./log.ts";
import { REBUILDS, type Rebuildable, type RebuildQueue } from "./rebuild.ts";
import { ServiceShared } from "./shared.ts";
import { ServiceCounters } from "./stats.ts";

/** A rebuild in progress: the pick set it was started from, and the build. */
interface Building {
  from: string;
  members: Member[];
  build: PlanBuild;
}

export type PlanListener = (service: Service) => void;

export class Service implements Rebuildable {
  /** Backends by id. Ids are small and stable for a backend's lifetime; freed ids are reused. */
  readonly backends = new Map<number, Backend>();
  readonly stats = new ServiceCounters();
  /** What the proxy's worker threads share of this service: cursor, active counts, counter rows (shared.ts). */
  readonly shared: ServiceShared;
  /** The live plan's picker; an empty plan (picks nothing) until the first build is done. */
  picker: Picker;
  /** The live plan's fingerprint, computed when first asked for (a SHA-256 over its slots). */
  private fingerprintCache: string | undefined;
  private readonly listeners = new Set<PlanListener>();
  /** The pick set the live plan was built from (see pickSet); undefined before the first build. */
  private builtFrom: string | undefined;
  private building: Building | undefined;

  constructor(
    public config: ServiceConfig,
    private readonly log: Logger = new Logger(),
    private readonly rebuilds: RebuildQueue = REBUILDS,
    /** Proxy worker threads that will count into `shared`. */
    workers = 1,
  ) {
    this.shared = ServiceShared.create(workers);
    this.picker = this.pickerOf(makePlan("sequence", [], []));
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
   * True when an address changed.
   */
  setAddresses(answers: ReadonlyMap<string, string>): boolean {
    let changed = false;
    for (const backend of this.backends.values()) {
      const ip = answers.get(backend.config.host);
      if (ip === undefined || !backend.enabled || ip === backend.ip) continue;
      this.log.info("backend address resolved", { service: this.name, backend: backend.key, ip, previous: backend.ip ?? null });
      backend.ip = ip;
      changed = true;
    }
    if (changed) this.changed();
    return changed;
  }

  /** Remove backends that a reload disabled once their last connection has ended. */
  collectDrained(): void {
    for (const [id, b] of this.backends) if (!b.enabled && !this.busy(b)) this.backends.delete(id);
  }

  /** Connections to `b` are open: counted live by proxy workers (shared), copied in by the XDP plane (stats). */
  private busy(b: Backend): boolean {
    return b.stats.active > 0 || this.shared.backendActive(b.id) > 0;
  }

  /**
   * Recompute the plan from the eligible backends now, in one step, and notify subscribers; a queued
   * rebuild is dropped. For tests and tools: state changes go through `changed()` and the queue.
   */
  rebuild(): void {
    this.rebuilds.cancel(this);
    this.building = undefined;
    const { members, from } = this.pickSet();
    this.install(ALGORITHMS[this.config.algorithm].plan(members, this.options()), from);
  }

  /**
   * The queue's step (rebuild.ts): start a build from the current pick set — none when it is the one
   * the live plan was built from — and work on it until `until`. True once done.
   */
  rebuildStep(until: number): boolean {
    if (!this.building) {
      const { members, from } = this.pickSet();
      if (from === this.builtFrom) return true;
      this.building = { from, members, build: planBuild(ALGORITHMS[this.config.algorithm], members, this.options()) };
    }
    const plan = this.building.build.step(until);
    if (!plan) return false;
    const { from } = this.building;
    this.building = undefined;
    this.install(plan, from);
    return true;
  }

  /** The live plan picks nothing (no eligible backend, or not built yet): rebuilds do not wait (rebuild.ts). */
  get starved(): boolean {
    return this.picker.size === 0;
  }

  /** Resolves once the plan reflects every change made so far (at once when nothing is pending). */
  settled(): Promise<void> {
    return this.rebuilds.settled(this);
  }

  onPlan(listener: PlanListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Something that decides the pick set changed (membership, health, an address, the algorithm). Every
   * state change comes through here; the rebuild queue decides when the plan is rebuilt (rebuild.ts).
   */
  private changed(): void {
    this.rebuilds.request(this);
  }

  /**
   * The eligible backends as members (sorted by id), and a string naming everything a plan and its
   * subscribers depend on: algorithm, table size, and each member's id, weight, key and address (the
   * XDP plane mirrors addresses on each plan). Equal strings: the same plan, nothing to rebuild.
   */
  private pickSet(): { members: Member[]; from: string } {
    const eligible = [...this.backends.values()].filter((b) => b.eligible).sort((a, b) => a.id - b.id);
    const members = eligible.map((b) => ({ id: b.id, weight: b.config.weight, key: b.key }));
    const from = `${this.config.algorithm}/${this.config.maglev_table_size}/${eligible.map((b) => `${b.id}:${b.config.weight}:${b.key}:${b.ip}`).join(",")}`;
    return { members, from };
  }

  private options() {
    return { maglevTableSize: this.config.maglev_table_size };
  }

  /** Sequence plans walk the shared cursor and least_connections/power_of_two read the shared counts (shared.ts). */
  private pickerOf(plan: Plan): Picker {
    return new Picker(plan, { active: (id) => this.shared.backendActive(id) }, undefined, this.shared);
  }

  /** The current plan's fingerprint (algorithms/fingerprint.ts): equal on instances that pick alike. */
  get fingerprint(): string {
    const plan = this.picker.plan;
    this.fingerprintCache ??= planFingerprint(this.config.algorithm, plan, (id) => this.backends.get(id)!.key);
    return this.fingerprintCache;
  }

  private install(plan: Plan, from: string): void {
    // A new plan starts its sequence from the first slot, in every worker.
    this.shared.resetCursor();
    this.picker = this.pickerOf(plan);
    this.fingerprintCache = undefined;
    this.builtFrom = from;
    for (const listener of this.listeners) listener(this);
  }

  private freeId(): number {
    for (let id = 0; id < MAX_BACKENDS; id++) if (!this.backends.has(id)) return id;
    // The runtime checks backendsAfter() before it updates a service, so this is a bug if reached.
    throw new Error(`service ${this.config.name}: more than ${MAX_BACKENDS} backends`);
  }
}
