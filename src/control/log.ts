/**
 * JSON-lines logging: one object per line on stderr, {"ts","level","msg",...fields}. The level can be
 * changed at run time (a reload sets it from the new config).
 */
import { writeSync } from "node:fs";
import type { LogLevel } from "../config/types.ts";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

/**
 * stderr, written once per turn of the event loop: a health storm logs 20,000 lines within a second,
 * and one write() per line cost ~15 µs each on the event loop (300 ms). Lines are kept in order and
 * written with one write(2) at the end of the turn, when 64 KiB have gathered, and at exit.
 */
class StderrLines {
  private pending: string[] = [];
  private bytes = 0;
  private scheduled = false;

  constructor() {
    process.on("exit", () => this.flush());
  }

  write(line: string): void {
    this.pending.push(line);
    this.bytes += line.length;
    if (this.bytes >= 64 * 1024) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const text = this.pending.join("");
    this.pending = [];
    this.bytes = 0;
    try {
      writeSync(2, text);
    } catch {
      // stderr closed: nothing to tell anyone.
    }
  }
}

let stderr: StderrLines | undefined;
const toStderr = (line: string) => (stderr ??= new StderrLines()).write(line);

export class Logger {
  constructor(
    public level: LogLevel = "info",
    private readonly write: (line: string) => void = toStderr,
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
