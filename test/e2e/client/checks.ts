/**
 * What each algorithm promises, as checks over observed counts. Pure functions, so the unit tests can
 * feed them numbers. A check carries its verdict and the numbers behind it, for the log.
 */

export interface Check {
  name: string;
  pass: boolean;
  detail: string;
}

export interface BackendCount {
  backend: string;
  weight: number;
  count: number;
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const total = (rows: readonly BackendCount[]) => rows.reduce((s, r) => s + r.count, 0);
const totalWeight = (rows: readonly BackendCount[]) => rows.reduce((s, r) => s + r.weight, 0);

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** round_robin: weights ignored, every backend in turn; any N consecutive picks differ by at most 1. */
export function exactEqual(rows: readonly BackendCount[]): Check {
  const counts = rows.map((r) => r.count);
  const spread = Math.max(...counts) - Math.min(...counts);
  return {
    name: "round robin is exact (weights ignored)",
    pass: spread <= 1 && total(rows) > 0,
    detail: `max − min = ${spread} (allowed ≤ 1) over ${total(rows)} connections: ${rows.map((r) => `${r.backend} ${r.count}`).join(", ")}`,
  };
}

/**
 * weighted_round_robin: a fixed cycle of sum(weights/gcd) picks, so any N consecutive picks are within
 * one cycle of N·w/W for every backend; and the share is within ±5 percentage points of the weight share.
 */
export function weightedExact(rows: readonly BackendCount[]): Check[] {
  const n = total(rows);
  const w = totalWeight(rows);
  const g = rows.reduce((acc, r) => gcd(acc, r.weight), 0) || 1;
  const cycle = w / g;
  const dev = rows.map((r) => ({ r, expect: (n * r.weight) / w }));
  const worst = Math.max(...dev.map((d) => Math.abs(d.r.count - d.expect)));
  return [
    {
      name: "weighted round robin is exact (within one cycle)",
      pass: worst <= cycle && n > 0,
      detail: `worst |count − N·w/W| = ${worst.toFixed(1)} (allowed ≤ ${cycle}, one cycle): ${dev
        .map((d) => `${d.r.backend} ${d.r.count}/${d.expect.toFixed(1)}`)
        .join(", ")}`,
    },
    shareWithin(rows, 0.05, "weighted share within ±5 points"),
  ];
}

/**
 * Every backend's share within ±`tolerance` (absolute) of its weight share. With `random`, a share is
 * a binomial sample: when N is too small for the tolerance to be a fair test (σ = √(p(1−p)/N)), the
 * allowance widens to 4.5 σ, so the check fails on a bias, not on bad luck (about 1 in 150,000).
 */
export function shareWithin(
  rows: readonly BackendCount[],
  tolerance: number,
  name = `share within ±${tolerance * 100} points of weight share`,
  random = false,
): Check {
  const n = total(rows);
  const w = totalWeight(rows);
  const dev = rows.map((r) => {
    const expect = r.weight / w;
    const sigma = n ? Math.sqrt((expect * (1 - expect)) / n) : 0;
    return { r, share: n ? r.count / n : 0, expect, allowed: random ? Math.max(tolerance, 4.5 * sigma) : tolerance };
  });
  const bad = dev.filter((d) => Math.abs(d.share - d.expect) > d.allowed);
  const worst = Math.max(...dev.map((d) => Math.abs(d.share - d.expect)));
  const allowed = Math.max(...dev.map((d) => d.allowed));
  return {
    name,
    pass: n > 0 && bad.length === 0,
    detail: `worst deviation ${(worst * 100).toFixed(2)} points (allowed ${(allowed * 100).toFixed(allowed > tolerance ? 1 : 0)}${allowed > tolerance ? ", 4.5 σ at this N" : ""}): ${dev
      .map((d) => `${d.r.backend} ${pct(d.share)} vs ${pct(d.expect)}`)
      .join(", ")} over ${n}`,
  };
}

/**
 * least_connections / power_of_two under uneven hold times: the slow backend holds its connections
 * long, so an algorithm that looks at active connections must send it far less than its weight share
 * (round robin would send it exactly its turn).
 */
export function slowBackendAvoided(rows: readonly BackendCount[], slow: string, maxFractionOfWeightShare: number): Check {
  const n = total(rows);
  const row = rows.find((r) => r.backend === slow);
  const share = n && row ? row.count / n : 0;
  const weightShare = row ? row.weight / totalWeight(rows) : 0;
  const limit = weightShare * maxFractionOfWeightShare;
  return {
    name: `slow ${slow} gets ≤ ${maxFractionOfWeightShare}× its weight share`,
    pass: n > 0 && !!row && share <= limit,
    detail: `${slow} served ${row?.count ?? 0} of ${n} = ${pct(share)} (weight share ${pct(weightShare)}, limit ${pct(limit)})`,
  };
}

/** Every backend got at least one connection (nobody starved, nobody unreachable). */
export function allServed(rows: readonly BackendCount[]): Check {
  const idle = rows.filter((r) => r.count === 0).map((r) => r.backend);
  return {
    name: "every backend served",
    pass: idle.length === 0,
    detail: idle.length ? `no connections on ${idle.join(", ")}` : rows.map((r) => `${r.backend} ${r.count}`).join(", "),
  };
}

/** source_hash / maglev: each client source IP saw exactly one backend over all its connections. */
export function sticky(perSource: ReadonlyMap<string, ReadonlyMap<string, number>>, minSources: number): Check {
  const loose = [...perSource].filter(([, m]) => m.size !== 1);
  const conns = [...perSource.values()].reduce((s, m) => s + [...m.values()].reduce((a, b) => a + b, 0), 0);
  return {
    name: "sticky: one backend per client IP",
    pass: perSource.size >= minSources && loose.length === 0,
    detail:
      perSource.size < minSources
        ? `only ${perSource.size} client source IPs (need ≥ ${minSources}): cannot judge stickiness`
        : loose.length
          ? `${loose.length} of ${perSource.size} IPs saw several backends, e.g. ${loose[0]![0]} → ${[...loose[0]![1]].map(([b, n]) => `${b}×${n}`).join(" ")}`
          : `${perSource.size} IPs × ${Math.round(conns / perSource.size)} connections each, every IP on a single backend`,
  };
}

/** The observed backend of every source equals the one the algorithm's plan predicts for it. */
export function predicted(
  perSource: ReadonlyMap<string, ReadonlyMap<string, number>>,
  predict: (ip: string) => string | undefined,
  label = "observed backend = predicted by the plan, per client IP",
): Check {
  const wrong: string[] = [];
  for (const [ip, m] of perSource) {
    const want = predict(ip);
    const seen = [...m.keys()];
    if (seen.length !== 1 || seen[0] !== want) wrong.push(`${ip}: saw ${seen.join("+")} expected ${want}`);
  }
  return {
    name: label,
    pass: perSource.size > 0 && wrong.length === 0,
    detail: wrong.length ? `${wrong.length} of ${perSource.size} differ: ${wrong.slice(0, 3).join("; ")}` : `${perSource.size} of ${perSource.size} IPs match`,
  };
}

export function noErrors(errors: number, conns: number): Check {
  return { name: "no errors, every byte verified", pass: errors === 0 && conns > 0, detail: `${errors} errors in ${conns} connections` };
}

/**
 * send_proxy: every backend HELLO named, from the PROXY header featherlb sent, the address and port
 * this client connection really had — the client container's own IP, not featherlb's.
 */
export function clientAddressSeen(seen: number, wrong: number, ok: number, samples: readonly string[], example?: string): Check {
  return {
    name: "send_proxy: the backend saw each connection's real client address and port",
    pass: ok > 0 && seen >= ok && wrong === 0,
    detail:
      `${seen} HELLOs named a client address, ${wrong} of them not this connection's; ${ok} connections succeeded` +
      `${example ? ` (e.g. ${example}, the client's own address)` : ""}${samples.length ? `; ${samples.join("; ")}` : ""}`,
  };
}
