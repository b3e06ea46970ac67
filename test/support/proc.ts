/**
 * A spawned process whose stdout/stderr lines (parsed as JSON when they are) the test can wait for:
 * featherlb itself (lb.ts), and the backends, clients and helpers the netns suites start inside network
 * namespaces. Stopped by its PID only.
 */
import type { Subprocess } from "bun";

export interface Line {
  stream: "out" | "err";
  text: string;
  json?: Record<string, unknown>;
  /** Date.now() when the line arrived. */
  at: number;
}

export class Proc {
  readonly lines: Line[] = [];
  private waiters: (() => void)[] = [];
  readonly proc: Subprocess<"pipe", "pipe", "pipe">;

  constructor(cmd: string[], opts: { env?: Record<string, string | undefined> } = {}) {
    this.proc = Bun.spawn(cmd, { stdin: "pipe", stdout: "pipe", stderr: "pipe", env: opts.env });
    void this.pump(this.proc.stdout, "out");
    void this.pump(this.proc.stderr, "err");
  }

  get pid(): number {
    return this.proc.pid;
  }

  get exitCode(): number | null {
    return this.proc.exitCode;
  }

  private push(stream: "out" | "err", text: string): void {
    let json: Record<string, unknown> | undefined;
    try {
      json = JSON.parse(text);
    } catch {}
    this.lines.push({ stream, text, json, at: Date.now() });
    for (const w of this.waiters.splice(0)) w();
  }

  private async pump(stream: ReadableStream<Uint8Array>, name: "out" | "err"): Promise<void> {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        this.push(name, buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    // A last line without "\n" (a message printed just before exit) still counts.
    if (buf) this.push(name, buf);
  }

  /** The first line (from `from` on) matching `pred`, waiting up to `ms`. */
  async waitFor(pred: (j: Record<string, unknown>) => boolean, ms: number, from = 0): Promise<{ json: Record<string, unknown>; at: number }> {
    const end = Date.now() + ms;
    for (;;) {
      const hit = this.lines.slice(from).find((l) => l.json && pred(l.json));
      if (hit) return { json: hit.json!, at: hit.at };
      if (this.proc.exitCode !== null && this.proc.exitCode !== undefined) {
        await Bun.sleep(50);
        const late = this.lines.slice(from).find((l) => l.json && pred(l.json));
        if (late) return { json: late.json!, at: late.at };
        throw new Error(`process exited (${this.proc.exitCode}) before the awaited line; output:\n${this.tail()}`);
      }
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms}ms; output:\n${this.tail()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  tail(n = 15): string {
    return this.lines.slice(-n).map((l) => l.text).join("\n");
  }

  kill(signal: NodeJS.Signals | number = "SIGTERM"): void {
    if (this.proc.exitCode === null) {
      try {
        process.kill(this.proc.pid, signal);
      } catch {}
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  async stop(graceMs = 3000): Promise<number> {
    this.kill("SIGTERM");
    const t = setTimeout(() => this.kill("SIGKILL"), graceMs);
    const code = await this.proc.exited;
    clearTimeout(t);
    return code;
  }
}
