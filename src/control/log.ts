/**
 * JSON-lines logging: one object per line on stderr, {"ts","level","msg",...fields}. The level can be
 * changed at run time (a reload sets it from the new config).
 */
import type { LogLevel } from "../config/types.ts";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export class Logger {
  constructor(
    public level: LogLevel = "info",
    private readonly write: (line: string) => void = (line) => process.stderr.write(line),
    /** Fields every line carries (a proxy worker thread's `worker` index). */
    private readonly base?: Fields,
  ) {}

  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.level];
  }

  debug(msg: string, fields?: Fields): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.log("error", msg, fields);
  }

  private log(level: LogLevel, msg: string, fields?: Fields): void {
    if (!this.enabled(level)) return;
    this.write(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...this.base, ...fields }) + "\n");
  }
}
