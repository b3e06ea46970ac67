/**
 * Judging the spread of connections the client script's `spread` mode reports ({client IP: {backend
 * name: count}}) over backends b1, b2, b3: totals, weight shares, and stickiness per client IP against
 * featherlb's own algorithm code reading the config the LB runs (netns.test.ts, dsr.test.ts).
 */
import { expect } from "bun:test";
import { readFileSync } from "node:fs";
import { readLbConfig } from "../../support/lbconfig.ts";
import { predictor } from "../../support/predict.ts";

export type ByIp = Record<string, Record<string, number>>;
export const NAMES = ["b1", "b2", "b3"];

/** Connections per backend, over every client IP. */
export function totals(byIp: ByIp): Record<string, number> {
  const t: Record<string, number> = { b1: 0, b2: 0, b3: 0 };
  for (const m of Object.values(byIp)) for (const [b, n] of Object.entries(m)) t[b] = (t[b] ?? 0) + n;
  return t;
}

/** Each backend's share of `count` connections within `tolerance` of its weight share. */
export function shares(weights: number[], count: number, tolerance = 0.05) {
  return (byIp: ByIp) => {
    const t = totals(byIp);
    const sum = weights.reduce((a, b) => a + b, 0);
    NAMES.forEach((b, i) => expect({ b, share: Math.abs(t[b]! / count - weights[i]! / sum) <= tolerance }).toEqual({ b, share: true }));
  };
}

/** Every client IP saw exactly the backend featherlb's own algorithm code picks for it (the config's first service). */
export function sticky(clientIps: readonly string[], backendIps: readonly string[]) {
  return (byIp: ByIp, config: string) => {
    const predict = predictor(readLbConfig(readFileSync(config, "utf8"), config).services[0]!);
    for (const ip of clientIps) {
      expect({ ip, backends: Object.keys(byIp[ip] ?? {}) }).toEqual({ ip, backends: [NAMES[backendIps.indexOf(predict(ip)!)]!] });
    }
  };
}
