import { makePlan } from "./plan.ts";
import type { Algorithm } from "./types.ts";

/** The backend with the fewest active connections per unit of weight; ties go to the earlier backend. */
export const leastConnections: Algorithm = {
  name: "least_connections",
  summary: "fewest active connections per unit of weight",
  plan: (members) => makePlan("least", members, []),
};
