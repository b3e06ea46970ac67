/**
 * Behaviour of the seven algorithms, through the same Picker the proxy uses. The shared conformance
 * block runs for every algorithm; the blocks after it pin each one's promise.
 */
import { describe, expect, test } from "bun:test";
import { ALGORITHM_NAMES } from "../../config/types.ts";
import { planSlotsBound } from "../../config/xdp.ts";
import { clientHash, fmix32 } from "./hash.ts";
import { ALGORITHMS } from "./index.ts";
import { maglevTable } from "./maglev.ts";
import { NONE, Picker } from "./picker.ts";
import type { LoadView, Member } from "./types.ts";

const OPTIONS = { maglevTableSize: 65537 };
const members = (weights: number[]): Member[] => weights.map((weight, id) => ({ id, weight, key: `10.0.0.${id + 1}:80` }));
const noLoad: LoadView = { active: () => 0 };

/** A deterministic xorshift32 so random-based tests are reproducible. */
function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

function counts(picker: Picker, n: number, hashOf: (i: number) => number = () => 0): number[] {
  const out = new Array<number>(picker.size).fill(0);
  for (let i = 0; i < n; i++) out[picker.pick({ clientHash: hashOf(i) })]! += 1;
  return out;
}

describe.each(ALGORITHM_NAMES.map((n) => [n]))("%s (conformance)", (name) => {
  const algorithm = ALGORITHMS[name];

  test("registry name matches", () => expect(algorithm.name).toBe(name));

  test("an empty healthy set picks nothing", () => {
    expect(new Picker(algorithm.plan([], OPTIONS), noLoad).pick({ clientHash: 7 })).toBe(NONE);
  });

  test("picks only members of the healthy set", () => {
    const set = [3, 5, 9].map((id) => ({ id, weight: 1 + (id % 3), key: `h${id}:1` }));
    const picker = new Picker(algorithm.plan(set, OPTIONS), noLoad, seeded(1));
    for (let i = 0; i < 2000; i++) expect([3, 5, 9]).toContain(picker.pick({ clientHash: fmix32(i) }));
  });

  test("a single member always wins", () => {
    const picker = new Picker(algorithm.plan(members([4]), OPTIONS), noLoad, seeded(2));
    for (let i = 0; i < 100; i++) expect(picker.pick({ clientHash: i })).toBe(0);
  });

  test("excluded members are skipped while others remain, and all-excluded picks nothing", () => {
    const picker = new Picker(algorithm.plan(members([1, 1, 1]), OPTIONS), noLoad, seeded(3));
    for (let i = 0; i < 200; i++) expect(picker.pick({ clientHash: fmix32(i) }, new Set([0, 2]))).toBe(1);
    expect(picker.pick({ clientHash: 1 }, new Set([0, 1, 2]))).toBe(NONE);
  });

  test("plans are immutable data: building twice gives the same tables", () => {
    const set = members([1, 2, 3]);
    expect(algorithm.plan(set, OPTIONS)).toEqual(algorithm.plan(set, OPTIONS));
  });

  test("no healthy subset's plan has more slots than config/xdp.ts planSlotsBound, which the full set reaches", () => {
    // Weights with a common divisor (2) whose subsets have larger ones ({6, 12}: 6), so the gcd reduction
    // is exercised both ways; a small prime Maglev table keeps 64 subsets quick.
    const weights = [6, 4, 10, 2, 8, 12];
    const options = { maglevTableSize: 1009 };
    const bound = planSlotsBound(name, weights, options.maglevTableSize);
    const all = members(weights);
    for (let mask = 0; mask < 1 << all.length; mask++) {
      const subset = all.filter((_, i) => mask & (1 << i));
      expect(algorithm.plan(subset, options).slots.length).toBeLessThanOrEqual(bound);
    }
    expect(algorithm.plan(all, options).slots.length).toBe(bound);
  });
});

describe("round_robin", () => {
  test("exact order, weights ignored", () => {
    const picker = new Picker(ALGORITHMS.round_robin.plan(members([1, 5, 1]), OPTIONS), noLoad);
    const order = Array.from({ length: 9 }, () => picker.pick({ clientHash: 0 }));
    expect(order).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2]);
  });
});

describe("weighted_round_robin", () => {
  test("smooth interleaving as NGINX: weights 5,1,1 give a,a,b,a,c,a,a", () => {
    const picker = new Picker(ALGORITHMS.weighted_round_robin.plan(members([5, 1, 1]), OPTIONS), noLoad);
    expect(Array.from({ length: 7 }, () => picker.pick({ clientHash: 0 }))).toEqual([0, 0, 1, 0, 2, 0, 0]);
  });

  test("shares within 1% over 100k picks", () => {
    const weights = [1, 2, 3, 7];
    const picker = new Picker(ALGORITHMS.weighted_round_robin.plan(members(weights), OPTIONS), noLoad);
    const c = counts(picker, 100_000);
    const total = weights.reduce((a, b) => a + b);
    weights.forEach((w, i) => expect(Math.abs(c[i]! / 100_000 - w / total)).toBeLessThan(0.01));
  });

  test("equal weights never pick the same backend twice in a row", () => {
    const picker = new Picker(ALGORITHMS.weighted_round_robin.plan(members([3, 3, 3]), OPTIONS), noLoad);
    let last = -2;
    for (let i = 0; i < 1000; i++) {
      const id = picker.pick({ clientHash: 0 });
      expect(id).not.toBe(last);
      last = id;
    }
  });

  test("weights are reduced by their gcd: 200/400 cycles in 3 slots", () => {
    expect(ALGORITHMS.weighted_round_robin.plan(members([200, 400]), OPTIONS).slots.length).toBe(3);
  });
});

describe("random", () => {
  test("weight-aware: shares within 1% over 100k picks", () => {
    const weights = [1, 3, 6];
    const picker = new Picker(ALGORITHMS.random.plan(members(weights), OPTIONS), noLoad, seeded(42));
    const c = counts(picker, 100_000);
    weights.forEach((w, i) => expect(Math.abs(c[i]! / 100_000 - w / 10)).toBeLessThan(0.01));
  });
});

describe("least_connections", () => {
  test("follows the live counts, per unit of weight", () => {
    const active = [5, 2, 9];
    const load: LoadView = { active: (id) => active[id]! };
    const picker = new Picker(ALGORITHMS.least_connections.plan(members([1, 1, 1]), OPTIONS), load);
    expect(picker.pick({ clientHash: 0 })).toBe(1);
    active[1] = 6;
    expect(picker.pick({ clientHash: 0 })).toBe(0);
    // weight 4 with 9 active (2.25 per weight) beats weight 1 with 5 and 6.
    const weighted = new Picker(ALGORITHMS.least_connections.plan(members([1, 1, 4]), OPTIONS), load);
    expect(weighted.pick({ clientHash: 0 })).toBe(2);
  });

  test("ties go to the earlier backend; live counts spread a burst evenly", () => {
    const active = [0, 0, 0];
    const picker = new Picker(ALGORITHMS.least_connections.plan(members([1, 1, 1]), OPTIONS), {
      active: (id) => active[id]!,
    });
    const order: number[] = [];
    for (let i = 0; i < 6; i++) {
      const id = picker.pick({ clientHash: 0 });
      order.push(id);
      active[id]! += 1;
    }
    expect(order).toEqual([0, 1, 2, 0, 1, 2]);
  });
});

describe("power_of_two", () => {
  test("of the two sampled, the one with fewer active connections wins", () => {
    const active = [100, 0, 100, 100];
    const picker = new Picker(ALGORITHMS.power_of_two.plan(members([1, 1, 1, 1]), OPTIONS), {
      active: (id) => active[id]!,
    }, seeded(9));
    const c = counts(picker, 10_000);
    // Backend 1 wins whenever it is sampled: P = 1 − (3/4 · 2/3) = 1/2.
    expect(c[1]! / 10_000).toBeGreaterThan(0.47);
    expect(c[1]! / 10_000).toBeLessThan(0.53);
  });

  test("the most loaded backend is never picked", () => {
    const active = [1, 2, 3, 50];
    const picker = new Picker(ALGORITHMS.power_of_two.plan(members([1, 1, 1, 1]), OPTIONS), {
      active: (id) => active[id]!,
    }, seeded(5));
    expect(counts(picker, 10_000)[3]).toBe(0);
  });
});

describe.each([["source_hash"], ["maglev"]] as const)("%s stickiness", (name) => {
  test("one client always maps to one backend; clients spread over all backends", () => {
    const picker = new Picker(ALGORITHMS[name].plan(members([1, 1, 1]), OPTIONS), noLoad);
    const seen = new Set<number>();
    for (let c = 0; c < 200; c++) {
      const h = clientHash(`192.168.${c >> 8}.${c & 255}`);
      const first = picker.pick({ clientHash: h });
      for (let i = 0; i < 5; i++) expect(picker.pick({ clientHash: h })).toBe(first);
      seen.add(first);
    }
    expect(seen.size).toBe(3);
  });
});

describe("maglev", () => {
  const share = (table: Uint32Array, id: number) => table.filter((x) => x === id).length / table.length;

  test.each([[3], [10], [100]])("%i backends: every share within ±2 percent of fair", (n) => {
    const table = maglevTable(members(new Array(n).fill(1)), 65537);
    for (let id = 0; id < n; id++) expect(Math.abs(share(table, id) * n - 1)).toBeLessThan(0.02);
  });

  test("weights scale the share", () => {
    const table = maglevTable(members([1, 3]), 65537);
    expect(share(table, 1)).toBeCloseTo(0.75, 2);
  });

  test.each([[5], [10], [50]])("removing one of %i backends remaps at most 1/N + 2 percent of entries", (n) => {
    const all = members(new Array(n).fill(1));
    const before = maglevTable(all, 65537);
    const after = maglevTable(all.filter((m) => m.id !== 2), 65537);
    let moved = 0;
    for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) moved++;
    expect(moved / before.length).toBeLessThanOrEqual(1 / n + 0.02);
    // Every slot the removed backend did not own and that moved is churn; the owned ones must all move.
    for (let i = 0; i < before.length; i++) if (before[i] === 2) expect(after[i]).not.toBe(2);
  });

  // The XDP program and the proxy read these tables, so a changed table would move clients on upgrade.
  // Fingerprints of tables built by the original transcription of the paper's pseudocode (before the
  // typed-array build): the fast build must give exactly the same tables.
  const fingerprint = (t: Uint32Array) => t.reduce((h, id, i) => fmix32(h ^ id ^ (i << 11)), 0);
  const keyed = (n: number, weight: (i: number) => number) =>
    Array.from({ length: n }, (_, id) => ({ id, weight: weight(id), key: `10.${(id >> 16) & 255}.${(id >> 8) & 255}.${id & 255}:8080` }));
  test.each([
    [3, 65537, false, 290282817],
    [250, 65537, false, 886978521],
    [250, 65537, true, 1306857518],
    [1024, 102407, false, 2532657109],
    [100, 1009, true, 3379142472],
  ])("%i backends, %i slots (weighted: %p): the same table as before the fast build", (n, size, weighted, expected) => {
    expect(fingerprint(maglevTable(keyed(n, weighted ? (i) => 1 + ((i * 7) % 5) : () => 1), size))).toBe(expected);
  });

  test("a build in slices (stopped at deadlines and resumed) gives the one-step table", () => {
    const set = keyed(300, (i) => 1 + (i % 3));
    const whole = maglevTable(set, 65537);
    const build = ALGORITHMS.maglev.build!(set, { maglevTableSize: 65537 });
    let steps = 1;
    let plan = build.step(0); // a deadline already passed: one batch of claims, then it stops
    while (!plan) {
      plan = build.step(performance.now() - 1);
      steps++;
    }
    expect(steps).toBeGreaterThan(10);
    expect(fingerprint(plan.slots)).toBe(fingerprint(whole));
    expect(plan).toEqual(ALGORITHMS.maglev.plan(set, { maglevTableSize: 65537 }));
  });

  test("a backend's slots depend on its key, not its id (stable across reloads that renumber)", () => {
    const a = maglevTable(members([1, 1, 1]), 65537);
    const renumbered = members([1, 1, 1]).map((m) => ({ ...m, id: m.id + 10 }));
    const b = maglevTable(renumbered, 65537);
    expect(Array.from(b, (x) => x - 10)).toEqual(Array.from(a));
  });
});

describe("clientHash", () => {
  test("IPv4 and IPv4-mapped IPv6 agree; values are pinned (the BPF program computes the same)", () => {
    expect(clientHash("10.0.0.1")).toBe(clientHash("::ffff:10.0.0.1"));
    expect(clientHash("10.0.0.1")).toBe(fmix32(0x0a000001));
    // Golden values of MurmurHash3's fmix32; bpf/ tests feed the same inputs to the C implementation.
    expect(fmix32(0x0a000001)).toBe(0x1b0ba38f);
    expect(fmix32(0xc0a80001)).toBe(0xa3d2bba6);
    expect(clientHash("::1")).not.toBe(clientHash("::2"));
  });
});
