/** Helpers for building plans; each algorithm file composes these. */
import type { Member, Plan, PlanKind } from "./types.ts";

/** A plan; `slots` given as a Uint32Array becomes the plan's own (not copied: plans are immutable). */
export function makePlan(kind: PlanKind, members: readonly Member[], slots: ArrayLike<number>): Plan {
  return {
    kind,
    slots: slots instanceof Uint32Array ? slots : Uint32Array.from(slots),
    members: Uint32Array.from(members, (m) => m.id),
    weights: Uint32Array.from(members, (m) => m.weight),
  };
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Weights divided by their greatest common divisor: {2,4,6} schedules like {1,2,3}, in a third of the slots. */
export function reducedWeights(members: readonly Member[]): number[] {
  const g = members.reduce((acc, m) => gcd(acc, m.weight), 0) || 1;
  return members.map((m) => m.weight / g);
}

/**
 * A table of `size` slots where each member owns a share proportional to its weight (largest-remainder
 * rounding, so shares are exact to within one slot), interleaved so neighbouring slots differ.
 */
export function proportionalSlots(members: readonly Member[], size: number): number[] {
  if (members.length === 0) return [];
  const total = members.reduce((s, m) => s + m.weight, 0);
  const exact = members.map((m) => (m.weight * size) / total);
  const counts = exact.map(Math.floor);
  let left = size - counts.reduce((s, c) => s + c, 0);
  const byRemainder = exact.map((e, i) => [e - Math.floor(e), i] as const).sort((x, y) => y[0] - x[0] || x[1] - y[1]);
  for (const [, i] of byRemainder) {
    if (left-- <= 0) break;
    counts[i]! += 1;
  }
  // Interleave with the smooth weighted round-robin walk over the counts, which spreads each member's
  // slots evenly through the table instead of in one block.
  return smoothSequence(members.map((m, i) => ({ ...m, weight: counts[i]! })).filter((m) => m.weight > 0));
}

/**
 * NGINX's smooth weighted round robin (ngx_http_upstream_get_peer): each step every member gains its
 * weight, the richest is chosen and pays the total. Over sum(weights) steps each member is chosen exactly
 * `weight` times, and heavy members are spread out rather than picked in bursts.
 */
export function smoothSequence(members: readonly Member[]): number[] {
  const current = new Array<number>(members.length).fill(0);
  const total = members.reduce((s, m) => s + m.weight, 0);
  const out: number[] = [];
  for (let step = 0; step < total; step++) {
    let best = 0;
    for (let i = 0; i < members.length; i++) {
      current[i]! += members[i]!.weight;
      if (current[i]! > current[best]!) best = i;
    }
    current[best]! -= total;
    out.push(members[best]!.id);
  }
  return out;
}
