/**
 * The TypeScript interpreter of a Plan (the proxy's picker). bpf/select.h is its C twin; keep the two
 * in step: same cursor walk, same modulo, same tie-breaking.
 */
import type { Cursor } from "../shared.ts";
import type { LoadView, PickInput, Plan } from "./types.ts";

export const NONE = -1;

export type RandomU32 = () => number;
const mathRandomU32: RandomU32 = () => (Math.random() * 0x1_0000_0000) >>> 0;

/** A cursor of this picker's own (one thread, and tests). */
class LocalCursor implements Cursor {
  private at = 0;
  next(length: number): number {
    const at = this.at % length;
    this.at = (at + 1) % length;
    return at;
  }
}

export class Picker {
  constructor(
    readonly plan: Plan,
    private readonly load: LoadView,
    private readonly randomU32: RandomU32 = mathRandomU32,
    /**
     * Where sequence plans keep their position: every proxy worker's Picker of a service shares one
     * (control/shared.ts), as the BPF program keeps one per service in a map.
     */
    private readonly cursor: Cursor = new LocalCursor(),
  ) {}

  /** The plan reads live connection counts: a pick and its count must not interleave with another's. */
  get readsLoad(): boolean {
    return this.plan.kind === "least" || this.plan.kind === "two_choices";
  }

  get size(): number {
    return this.plan.members.length;
  }

  /**
   * Pick a member id, or NONE when the healthy set is empty. `exclude` holds ids that already failed for
   * this client (connect retries): they are skipped while any other member remains.
   */
  pick(input: PickInput, exclude?: ReadonlySet<number>): number {
    const { plan } = this;
    if (plan.members.length === 0) return NONE;
    switch (plan.kind) {
      case "sequence":
        return this.walk(this.cursor.next(plan.slots.length), exclude);
      case "random":
        return this.walk(this.randomU32() % plan.slots.length, exclude);
      case "hash":
        return this.walk(input.clientHash % plan.slots.length, exclude);
      case "least":
        return this.least(exclude);
      case "two_choices":
        return this.twoChoices(exclude);
    }
  }

  /** slots[start], or the next slot whose member is not excluded (a bounded linear probe). */
  private walk(start: number, exclude?: ReadonlySet<number>): number {
    const { slots } = this.plan;
    for (let i = 0; i < slots.length; i++) {
      const id = slots[(start + i) % slots.length]!;
      if (!exclude?.has(id)) return id;
    }
    return NONE;
  }

  /** Compare active/weight without division: a/wa < b/wb  ⇔  a·wb < b·wa. */
  private lighter(a: number, wa: number, b: number, wb: number): boolean {
    return this.load.active(a) * wb < this.load.active(b) * wa;
  }

  private least(exclude?: ReadonlySet<number>): number {
    const { members, weights } = this.plan;
    let best = NONE;
    let bestWeight = 1;
    for (let i = 0; i < members.length; i++) {
      const id = members[i]!;
      if (exclude?.has(id)) continue;
      if (best === NONE || this.lighter(id, weights[i]!, best, bestWeight)) {
        best = id;
        bestWeight = weights[i]!;
      }
    }
    return best;
  }

  private twoChoices(exclude?: ReadonlySet<number>): number {
    const { members, weights } = this.plan;
    const n = members.length;
    if (exclude?.size) return this.least(exclude);
    if (n === 1) return members[0]!;
    // Two distinct indexes: the second is drawn from the n − 1 others.
    const i = this.randomU32() % n;
    const j = (i + 1 + (this.randomU32() % (n - 1))) % n;
    return this.lighter(members[j]!, weights[j]!, members[i]!, weights[i]!) ? members[j]! : members[i]!;
  }
}
