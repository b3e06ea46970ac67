import { proportionalSlots } from "./plan.ts";
import { makePlan } from "./plan.ts";
import type { Algorithm } from "./types.ts";

/**
 * Uniform random over a table in which each backend owns slots in proportion to its weight. 4096 slots
 * keep every share exact to within 1/4096 while staying one small map in the kernel.
 */
export const RANDOM_TABLE_SIZE = 4096;

export const random: Algorithm = {
  name: "random",
  summary: "uniformly random, in proportion to weight",
  plan: (members) => makePlan("random", members, proportionalSlots(members, RANDOM_TABLE_SIZE)),
};
