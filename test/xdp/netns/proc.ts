/** A spawned process whose stdout/stderr JSON lines the test can wait for. Killed by PID only. */
import type { Subprocess } from "bun";

export class Proc {
  readonly lines: { stream: "out" | "err"; text: string; json?: Record<string, unknown>; at: number }[] = [];
  private waiters: (() => void)[] = [];
  readonly proc: Subprocess<"pipe", "pipe", "pipe">;

  constructor(cmd: string[]) {
    this.proc = Bun.spawn(cmd, { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    void this.pump(this.proc.stdout, "out");
    void this.pump(this.proc.stderr, "err");
  }

  get pid(): number {
    return this.proc.pid;
  }

  private async pump(stream: ReadableStream<Uint8Array>, name: "out" | "err"): Promise<void> {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(text);
        } catch {}
        this.lines.push({ stream: name, text, json, at: Date.now() });
        for (const w of this.waiters.splice(0)) w();
      }
    }
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

  async stop(): Promise<void> {
    this.kill("SIGTERM");
    const t = setTimeout(() => this.kill("SIGKILL"), 3000);
    await this.proc.exited;
    clearTimeout(t);
  }
}
