/**
 * The messages between the main thread (pool.ts) and a proxy worker thread (worker.ts). Everything a
 * worker decides with is either in shared memory (counts, cursors: control/shared.ts, shared.ts) or
 * arrives here: service states on every new plan, listener changes in two phases (prepare, then
 * commit or abort), drain and close. Workers send back replies, passive health results and their
 * own faults; their log lines go straight to stderr.
 */
import type { LogLevel, ServiceConfig } from "../../config/types.ts";
import type { UserErrorCode } from "../../errors.ts";
import type { PlaneSharedInit } from "./shared.ts";
import type { TableInit } from "./splice/table.ts";
import type { ServiceState } from "./view.ts";

/** A service's listener in a prepare: the service by uid, and its config from the config being applied. */
export interface ListenerSpec {
  uid: number;
  config: ServiceConfig;
}

export type ToWorker =
  | { t: "init"; index: number; plane: PlaneSharedInit; level: LogLevel }
  | { t: "service"; uid: number; state: ServiceState }
  | { t: "forget"; uids: number[] }
  | { t: "prepare"; seq: number; listeners: ListenerSpec[] }
  | { t: "commit"; seq: number }
  | { t: "abort"; seq: number }
  | { t: "level"; level: LogLevel }
  /** Answered with "synced" once everything sent before it is handled (a barrier). */
  | { t: "sync"; seq: number }
  /** Bring the counters of kernel-relayed connections up to date, then answer "synced" (before a scrape). */
  | { t: "stats"; seq: number }
  /** Stop accepting (answered with "stopped" at once), then "drained" once connections end or at `deadline`. */
  | { t: "drain"; seq: number; deadline: number }
  | { t: "close" }
  /** Test hook (FEATHERLB_TEST_HOOKS=1): throw an uncaught exception, as a bug would. */
  | { t: "crash" };

export type FromWorker =
  | { t: "ready" }
  | { t: "prepared"; seq: number; error?: { code: UserErrorCode; message: string } }
  | { t: "synced"; seq: number }
  | { t: "stopped"; seq: number }
  | { t: "drained" }
  | { t: "failed"; uid: number; id: number; key: string; reason: string }
  | { t: "connected"; uid: number; id: number; key: string }
  | { t: "local"; errno: string; fields: Record<string, unknown> }
  // Its kernel relay thread started: the table the pool cleans up after the worker, should it die.
  | { t: "relay"; table: TableInit }
  | { t: "internal"; where: string; name: string; message: string; stack?: string; fields: Record<string, unknown> };
