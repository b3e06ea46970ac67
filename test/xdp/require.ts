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
