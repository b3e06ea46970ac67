import { fnv1a } from "./hash.ts";
import { makePlan } from "./plan.ts";
import type { Algorithm, Member, PlanBuild } from "./types.ts";

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
  build(members, { maglevTableSize }): PlanBuild {
    const build = new MaglevBuild(members, maglevTableSize);
    return { step: (until) => (build.run(until) ? makePlan("hash", members, build.table) : undefined) };
  },
};

/** Two independent hash bases (FNV's and an arbitrary odd constant) for offset and skip. */
const OFFSET_BASIS = 0x811c9dc5;
const SKIP_BASIS = 0x5bd1e995;
/** A table slot no backend has claimed yet (member ids are far below it). */
const FREE = 0xffff_ffff;
/**
 * Claims between two looks at the clock while a build runs against a deadline (~30 µs of work). In the
 * last 1/TAIL of the table, where one claim looks at hundreds of taken slots, the clock is read after
 * every claim: cheap next to the claim, and the build still stops within a fraction of a millisecond.
 */
const CLAIMS_PER_CHECK = 1024;
const TAIL = 32;

export function maglevTable(members: readonly Member[], size: number): Uint32Array {
  const build = new MaglevBuild(members, size);
  build.run(Number.POSITIVE_INFINITY);
  return build.table;
}

/**
 * One Maglev table build that can stop at a deadline and resume (Service builds plans in slices, so a
 * million-slot table never holds the event loop for its whole build). The claims happen in exactly the
 * order of the paper's pseudocode — round by round, member by member in the order given, each taking its
 * next free preferred slot — so the table is the same whether it is built at once or in slices.
 *
 * What keeps it cheap (65,537 slots × 250 backends in ~2 ms, where the direct transcription took ~14):
 * typed arrays only, no allocation per slot; each member's next preferred slot is kept as a position
 * advanced by `skip` with one conditional subtraction, instead of `(offset + j·skip) mod M` per probe;
 * the table itself marks free slots (FREE), so there is no separate `taken` array to keep in step; and
 * a sub-round walks only the members whose weight gives them a turn in it.
 */
export class MaglevBuild {
  /** The table being filled: member ids, FREE where unclaimed. Complete once run() returned true. */
  readonly table: Uint32Array;
  private readonly ids: Uint32Array;
  /** Each member's next preferred slot (its permutation's cursor). */
  private readonly pos: Uint32Array;
  private readonly skip: Uint32Array;
  /** turns[k]: the member indexes (ascending) whose weight exceeds k, i.e. who claim in sub-round k. */
  private readonly turns: Uint32Array[];
  /** Where the build stopped: round, and the index into this round's `turns` list. */
  private round = 0;
  private at = 0;
  private filled = 0;

  constructor(members: readonly Member[], private readonly size: number) {
    const n = members.length;
    this.table = new Uint32Array(n === 0 ? 0 : size).fill(FREE);
    this.ids = Uint32Array.from(members, (m) => m.id);
    this.pos = Uint32Array.from(members, (m) => fnv1a(m.key, OFFSET_BASIS) % size);
    this.skip = Uint32Array.from(members, (m) => (fnv1a(m.key, SKIP_BASIS) % (size - 1)) + 1);
    // Member i claims in sub-round k (k = round mod maxWeight) when k < weight_i. A list per distinct
    // weight step, shared between the sub-rounds it covers, keeps heavy-tailed weights cheap.
    const maxWeight = members.reduce((w, m) => Math.max(w, m.weight), 0);
    this.turns = [];
    let list: Uint32Array | undefined;
    for (let k = 0; k < maxWeight; k++) {
      const count = members.reduce((c, m) => c + (m.weight > k ? 1 : 0), 0);
      if (list === undefined || list.length !== count) {
        list = new Uint32Array(count);
        let j = 0;
        for (let i = 0; i < n; i++) if (members[i]!.weight > k) list[j++] = i;
      }
      this.turns.push(list);
    }
  }

  /** Claim slots until the table is full (true) or `until` (performance.now() ms) has passed (false). */
  run(until: number): boolean {
    const { table, ids, pos, skip, turns, size } = this;
    if (table.length === 0) return true;
    let { round, at, filled } = this;
    let budget = CLAIMS_PER_CHECK;
    const tail = size - Math.ceil(size / TAIL);
    while (filled < size) {
      const list = turns[round % turns.length]!;
      for (; at < list.length && filled < size; at++) {
        const i = list[at]!;
        let slot = pos[i]!;
        let next = slot + skip[i]!;
        while (table[slot] !== FREE) {
          slot = next >= size ? next - size : next;
          next = slot + skip[i]!;
        }
        pos[i] = next >= size ? next - size : next;
        table[slot] = ids[i]!;
        filled++;
        if (--budget === 0 || filled > tail) {
          budget = CLAIMS_PER_CHECK;
          if (performance.now() >= until) {
            this.round = round;
            this.at = at + 1;
            this.filled = filled;
            return filled >= size;
          }
        }
      }
      if (at >= list.length) {
        at = 0;
        round++;
      }
    }
    this.round = round;
    this.at = at;
    this.filled = filled;
    return true;
  }
}
