/**
 * XDP tests need root (CAP_BPF + CAP_NET_ADMIN). Locally without root they are skipped with a notice;
 * in CI (`CI` set) a missing privilege is a FAILURE, never a silent skip.
 */
import { test } from "bun:test";

export const isRoot = process.getuid?.() === 0;

/** True when the suite can run. In CI without root, registers a failing test and returns false. */
export function bpfSuiteEnabled(suite: string): boolean {
  if (isRoot) return true;
  if (process.env.CI) {
    test(`${suite}: requires root`, () => {
      throw new Error(`${suite} needs root (BPF and netns) and CI must run it: run the tests as root`);
    });
  } else {
    console.warn(`[skip] ${suite}: needs root (run as root; in CI this fails instead of skipping)`);
  }
  return false;
}

/** True when every command in `tools` is on PATH; otherwise as bpfSuiteEnabled: a failing test in CI, a notice locally. */
export function toolsPresent(suite: string, tools: string[], install: string): boolean {
  const missing = tools.filter((t) => Bun.which(t) === null);
  if (missing.length === 0) return true;
  const why = `${suite} needs ${missing.join(", ")} (${install})`;
  if (process.env.CI) {
    test(`${suite}: requires ${missing.join(", ")}`, () => {
      throw new Error(why);
    });
  } else {
    console.warn(`[skip] ${why}; in CI this fails instead of skipping`);
  }
  return false;
}
