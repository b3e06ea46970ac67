/**
 * The one algorithm interface both data planes share.
 *
 * An algorithm is a pure function from the healthy backend set to a *plan*: a small, immutable table
 * that says how to pick. The control plane builds a new plan whenever membership, health or weights
 * change and swaps it in; picking is then cheap and allocation-free.
 *
 * The proxy interprets a plan in TypeScript (pick.ts). The XDP data plane writes the same plan into BPF
 * maps and interprets it in C, so both planes balance identically by construction.
 */
import type { AlgorithmName } from "../../config/types.ts";

/** What an algorithm sees of one backend. `id` is the backend's position in the service's backend list. */
export interface Member {
  readonly id: number;
  /** Integer weight ≥ 1. */
  readonly weight: number;
  /** Stable identity used for hashing (the configured "host:port"); keeps Maglev stable across reloads. */
  readonly key: string;
}

/**
 * How to pick, in a form a BPF program can execute with bounded loops.
 *
 * - sequence: a shared cursor walks `slots` in order (round robin, smooth weighted round robin).
 * - random:   `slots[uniform random % slots.length]` (weights are pre-expanded into slot counts).
 * - hash:     `slots[clientHash % slots.length]` (source hash, Maglev lookup table).
 * - least:    the member with the lowest active/weight ratio; ties go to the earlier member.
 * - two_choices: two uniform random members, the lower active/weight wins.
 *
 * `slots` always holds member ids. `members` and `weights` are parallel arrays of the healthy set.
 */
export type PlanKind = "sequence" | "random" | "hash" | "least" | "two_choices";

export interface Plan {
  readonly kind: PlanKind;
  readonly slots: Uint32Array;
  readonly members: Uint32Array;
  readonly weights: Uint32Array;
}

export interface AlgorithmOptions {
  /** Maglev table size (prime). Ignored by the other algorithms. */
  readonly maglevTableSize: number;
}

export interface Algorithm {
  readonly name: AlgorithmName;
  /** One line for README and --help. */
  readonly summary: string;
  /** Build the plan for this healthy set. Members arrive sorted by id; an empty set gives an empty plan. */
  plan(members: readonly Member[], options: AlgorithmOptions): Plan;
  /**
   * The same plan, built in steps that each stop at a deadline (maglev: a table of up to a million
   * slots). Algorithms whose plans are cheap leave it out and are built in one step (`planBuild`).
   */
  build?(members: readonly Member[], options: AlgorithmOptions): PlanBuild;
}

/** A plan being built: each `step` works until `until` (performance.now() ms); the plan once done. */
export interface PlanBuild {
  step(until: number): Plan | undefined;
}

/** Live per-backend state a pick may read: active connection counts, indexed by member id. */
export interface LoadView {
  active(id: number): number;
}

/** Per-pick input. */
export interface PickInput {
  /** 32-bit hash of the client IP (see hash.ts: clientHash); the XDP program computes the same value. */
  readonly clientHash: number;
}
