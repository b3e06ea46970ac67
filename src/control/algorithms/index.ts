/** The algorithm registry: the config schema's picklist and the data planes both read it. */
import type { AlgorithmName } from "../../config/types.ts";
import { leastConnections } from "./least_connections.ts";
import { maglev } from "./maglev.ts";
import { powerOfTwo } from "./power_of_two.ts";
import { random } from "./random.ts";
import { roundRobin } from "./round_robin.ts";
import { sourceHash } from "./source_hash.ts";
import type { Algorithm, AlgorithmOptions, Member, PlanBuild } from "./types.ts";
import { weightedRoundRobin } from "./weighted_round_robin.ts";

export const ALGORITHMS: Readonly<Record<AlgorithmName, Algorithm>> = {
  round_robin: roundRobin,
  weighted_round_robin: weightedRoundRobin,
  least_connections: leastConnections,
  random,
  power_of_two: powerOfTwo,
  source_hash: sourceHash,
  maglev,
};

export type { Algorithm, Member, Plan, PlanBuild, PlanKind, LoadView, PickInput, AlgorithmOptions } from "./types.ts";

/** A resumable build of `algorithm`'s plan: its own when it has one, else the whole plan in one step. */
export function planBuild(algorithm: Algorithm, members: readonly Member[], options: AlgorithmOptions): PlanBuild {
  if (algorithm.build) return algorithm.build(members, options);
  return { step: () => algorithm.plan(members, options) };
}
