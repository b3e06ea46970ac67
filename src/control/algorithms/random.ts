import { RANDOM_TABLE_SIZE } from "../../config/limits.ts";
import { proportionalSlots } from "./plan.ts";
import { makePlan } from "./plan.ts";
import type { Algorithm } from "./types.ts";

/**
 * Uniform random over a table in which each backend owns slots in proportion to its weight. 4096 slots
 * keep every share exact to within 1/4096 while staying one small map in the kernel. The size lives in
 * config/limits.ts: the config check of mode: xdp counts it against the BPF plan tables.
 */
export { RANDOM_TABLE_SIZE };

export const random: Algorithm = {
  name: "random",
  summary: "uniformly random, in proportion to weight",
  plan: (members) => makePlan("random", members, proportionalSlots(members, RANDOM_TABLE_SIZE)),
};
