/**
 * How many proxied connections the descriptor limit leaves room for. Each takes two descriptors (client
 * and backend). Running out is worse than refusing: a connect whose socket() fails looks like a refusal
 * by the backend (Bun reports it as ECONNREFUSED), and an accept that fails with EMFILE leaves the
 * client in the kernel's queue while the event loop wakes for it again and again (a busy loop). So the
 * proxy refuses new clients at once while fewer than FD_RESERVE descriptors would stay free, as HAProxy
 * derives its maxconn from `ulimit -n`.
 */
import { readdirSync, readFileSync } from "node:fs";

/**
 * Descriptors kept free for what is not a proxied connection: listeners, the admin listener and its
 * clients, health checks and DNS lookups in flight, the XDP plane's maps when both planes run, and
 * Bun's own (epoll, timers, pipes).
 */
export const FD_RESERVE = 64;

/** The soft RLIMIT_NOFILE of this process (Bun raises it to the hard limit at start), or Infinity. */
export function descriptorLimit(): number {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
    return soft === undefined || soft === "unlimited" ? Infinity : Number(soft) || Infinity;
  } catch {
    return Infinity; // no /proc (not Linux): no cap
  }
}

/** Descriptors open in this process now (0 where /proc is missing). */
export function descriptorsOpen(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return 0;
  }
}

/** Proxied connections that fit: two descriptors each, after what is open now and the reserve. */
export function connectionCapacity(limit = descriptorLimit(), open = descriptorsOpen()): number {
  return limit === Infinity ? Infinity : Math.max(0, Math.floor((limit - open - FD_RESERVE) / 2));
}
