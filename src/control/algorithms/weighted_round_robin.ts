import { makePlan, reducedWeights, smoothSequence } from "./plan.ts";
import type { Algorithm } from "./types.ts";

/** NGINX's smooth weighted round robin, precomputed into one cycle of sum(weights / gcd) slots. */
export const weightedRoundRobin: Algorithm = {
  name: "weighted_round_robin",
  summary: "in turn, in proportion to weight, interleaved smoothly as NGINX does (no bursts)",
  plan(members) {
    const weights = reducedWeights(members);
    return makePlan("sequence", members, smoothSequence(members.map((m, i) => ({ ...m, weight: weights[i]! }))));
  },
};
