/**
 * What goes wrong inside featherlb itself, kept apart from what backends do:
 *
 * - local resource errors: the LB is out of descriptors (EMFILE, ENFILE), local ports (EADDRNOTAVAIL:
 *   the LB closes first toward backends, so TIME_WAIT piles up on its side) or kernel memory (ENOBUFS,
 *   ENOMEM). They say nothing about the backend being dialled, so they never count as failed checks;
 *   the client concerned is closed. Counted by errno, logged at most once a second.
 * - exceptions thrown inside socket handlers (a bug): counted by kind, each kind logged once with its
 *   stack; the connection concerned is closed and the others carry on.
 */
import { closeSync, openSync } from "node:fs";
import type { Logger } from "./log.ts";

/** The errnos that name a shortage on the LB's side, not a fault of the peer. */
export const LOCAL_ERRNOS: readonly string[] = ["EMFILE", "ENFILE", "EADDRNOTAVAIL", "ENOBUFS", "ENOMEM"];

/** Local errors are logged at most this often; the next line says how many were not logged. */
export const LOCAL_LOG_INTERVAL_MS = 1000;

/**
 * The local errno behind a failed connect, or undefined when the failure is the peer's (refused, timed
 * out, unreachable). Bun reports a connect whose socket() call failed as ECONNREFUSED, the code a
 * backend's refusal has too; the two are told apart by asking the descriptor table right away (one
 * open/close of /dev/null, only on this failure path). The rejection reaches us in a microtask after
 * the failed call, before the event loop can close any descriptor, so the answer is the one the
 * socket() call got.
 */
export function localErrno(code: string | undefined): string | undefined {
  if (code === undefined) return undefined;
  if (LOCAL_ERRNOS.includes(code)) return code;
  if (code !== "ECONNREFUSED") return undefined;
  try {
    closeSync(openSync("/dev/null", "r"));
    return undefined;
  } catch (err) {
    const probe = (err as { code?: string }).code;
    return probe === "EMFILE" || probe === "ENFILE" ? probe : undefined;
  }
}

export class Incidents {
  /** Local resource errors by errno. */
  readonly local = new Map<string, number>();
  /** Handler exceptions by kind ("client handler: TypeError"). */
  readonly internal = new Map<string, number>();
  private lastLocalLog = -Infinity;
  private unlogged = 0;

  constructor(private readonly log: Logger) {}

  /** A local resource error (`errno`) made featherlb close a client or skip a check. */
  localError(errno: string, fields: Record<string, unknown>): void {
    this.local.set(errno, (this.local.get(errno) ?? 0) + 1);
    const now = Date.now();
    if (now - this.lastLocalLog < LOCAL_LOG_INTERVAL_MS) {
      this.unlogged++;
      return;
    }
    this.lastLocalLog = now;
    const more = this.unlogged;
    this.unlogged = 0;
    this.log.warn("local resources exhausted; not counted against the backend", { errno, ...fields, ...(more ? { not_logged_since_last: more } : {}) });
  }

  /** An exception thrown inside a handler: counted, and logged once per kind with its stack. */
  internalError(where: string, err: unknown, fields: Record<string, unknown> = {}): void {
    const name = err instanceof Error ? err.name : typeof err;
    const kind = `${where}: ${name}`;
    const seen = this.internal.get(kind) ?? 0;
    this.internal.set(kind, seen + 1);
    if (seen > 0) return;
    this.log.error("internal error in a handler; the connection was closed (logged once per kind)", {
      kind,
      error: err instanceof Error ? err.message : String(err),
      stack: err instanceof Error ? err.stack : undefined,
      ...fields,
    });
  }
}
