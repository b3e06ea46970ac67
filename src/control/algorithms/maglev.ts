import { fnv1a } from "./hash.ts";
import { makePlan } from "./plan.ts";
import type { Algorithm, Member } from "./types.ts";

/**
 * Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4 "Pseudocode 1").
 *
 * Each backend gets a permutation of the M table slots from two hashes of its key:
 *   offset = h1(key) mod M,  skip = h2(key) mod (M − 1) + 1,  permutation[j] = (offset + j·skip) mod M.
 * Because M is prime, every skip is coprime with M and each permutation visits every slot. Backends then
 * take turns claiming their next preferred free slot until the table is full, so each gets ~M/N slots and
 * removing one backend only moves the slots it owned (plus a few percent of churn).
 *
 * Weights: a backend with weight w takes w turns per round (the paper's weighted variant), so its share
 * is proportional to its weight.
 */
export const maglev: Algorithm = {
  name: "maglev",
  summary: "Maglev consistent hashing of the client IP: sticky, and removing a backend moves only its clients",
  plan: (members, { maglevTableSize }) => makePlan("hash", members, maglevTable(members, maglevTableSize)),
};

/** Two independent hash bases (FNV's and an arbitrary odd constant) for offset and skip. */
const OFFSET_BASIS = 0x811c9dc5;
const SKIP_BASIS = 0x5bd1e995;

export function maglevTable(members: readonly Member[], size: number): Uint32Array {
  const table = new Uint32Array(size);
  if (members.length === 0) return new Uint32Array(0);
  const taken = new Uint8Array(size);
  const offset = members.map((m) => fnv1a(m.key, OFFSET_BASIS) % size);
  const skip = members.map((m) => (fnv1a(m.key, SKIP_BASIS) % (size - 1)) + 1);
  const next = new Array<number>(members.length).fill(0);
  const maxWeight = Math.max(...members.map((m) => m.weight));
  let filled = 0;
  // Weighted turns: in each round, member i claims a slot in `weight_i` of `maxWeight` sub-rounds.
  for (let round = 0; filled < size; round++) {
    const sub = round % maxWeight;
    for (let i = 0; i < members.length && filled < size; i++) {
      if (sub >= members[i]!.weight) continue;
      let slot: number;
      do {
        slot = (offset[i]! + next[i]! * skip[i]!) % size;
        next[i]! += 1;
      } while (taken[slot]);
      taken[slot] = 1;
      table[slot] = members[i]!.id;
      filled++;
    }
  }
  return table;
}
