import { SOURCE_HASH_TABLE_SIZE } from "../../config/limits.ts";
import { makePlan, proportionalSlots } from "./plan.ts";
import type { Algorithm } from "./types.ts";

/** 4096 slots, as random's table. Defined in config/limits.ts: the mode: xdp check counts it against the BPF plan tables. */
export { SOURCE_HASH_TABLE_SIZE };

/**
 * Classic (non-consistent) hashing of the client IP into a weight-proportional table: one client always
 * lands on one backend while the set is unchanged. A change of the set remaps most clients; use maglev
 * where that matters.
 */
export const sourceHash: Algorithm = {
  name: "source_hash",
  summary: "hash of the client IP, so a client sticks to one backend while the set is unchanged",
  plan: (members) => makePlan("hash", members, proportionalSlots(members, SOURCE_HASH_TABLE_SIZE)),
};
