/**
 * The kernel the XDP program needs, checked before anything is loaded so that the user reads one
 * sentence instead of a verifier log about an unknown helper.
 */
import { UserError } from "../../errors.ts";

/**
 * The oldest kernel the program loads on: bpf_loop (5.17) in the SNAT port search (bpf/snat.h); the
 * rest needs less (managed neighbour entries 5.16, compare-and-swap on map values 5.12).
 */
export const MIN_KERNEL: readonly [number, number] = [5, 17];

/**
 * A UserError when `release` (uname -r) is older than MIN_KERNEL, so the user reads why instead of a
 * verifier log about an unknown helper. An unparsable release is let through (the load then says).
 */
export function checkKernel(release: string): void {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  const [wantMajor, wantMinor] = MIN_KERNEL;
  if (major > wantMajor || (major === wantMajor && minor >= wantMinor)) return;
  throw new UserError("unsupported", `mode: xdp needs Linux ≥ ${wantMajor}.${wantMinor} (the XDP program uses bpf_loop); this kernel is ${release}. Upgrade the kernel or use mode: proxy.`);
}

