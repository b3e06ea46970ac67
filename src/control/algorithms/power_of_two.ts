import { makePlan } from "./plan.ts";
import type { Algorithm } from "./types.ts";

/** Two distinct random healthy backends; the one with fewer active connections per weight wins. */
export const powerOfTwo: Algorithm = {
  name: "power_of_two",
  summary: "two random healthy backends, the one with fewer active connections wins",
  plan: (members) => makePlan("two_choices", members, []),
};
