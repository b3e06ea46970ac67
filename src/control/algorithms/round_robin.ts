import { makePlan } from "./plan.ts";
import type { Algorithm } from "./types.ts";

/** Each healthy backend in turn, ignoring weights. */
export const roundRobin: Algorithm = {
  name: "round_robin",
  summary: "each healthy backend in turn, weights ignored",
  plan: (members) => makePlan("sequence", members, members.map((m) => m.id)),
};
