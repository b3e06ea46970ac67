/**
 * Runs featherlb as a real child process (the compiled binary when FEATHERLB_BIN is set — `make test`
 * sets it — else `bun src/main.ts`), with a config file written to a temp dir. Exposes its JSON log
 * lines and its admin endpoints.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Metrics, parseMetrics } from "./metrics.ts";
import { freePort, waitFor } from "./net.ts";
import { Proc } from "./proc.ts";

const ROOT = resolve(import.meta.dir, "../..");

/** Resident set size of a process, from /proc. */
export function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
}

/** How every test starts featherlb: FEATHERLB_BIN (resolved from the repository root), else the source. */
export function featherlbCommand(): string[] {
  const bin = process.env.FEATHERLB_BIN;
  return bin ? [resolve(ROOT, bin)] : [process.execPath, join(ROOT, "src/main.ts")];
}

/** Run featherlb to completion with `args`; returns exit code and output. */
export async function runCli(args: string[], opts: { cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([...featherlbCommand(), ...args], { cwd: opts.cwd, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

export function tempConfig(yaml: string, name = "lb.yaml"): string {
  const dir = mkdtempSync(join(tmpdir(), "featherlb-test-"));
  const path = join(dir, name);
  writeFileSync(path, yaml);
  return path;
}

export interface RunningLB {
  pid: number;
  configPath: string;
  adminPort: number;
  /** Its log lines (stderr), parsed; a line that is not JSON is `{ msg: line, raw: true }`. */
  logs(): Array<Record<string, unknown>>;
  stderr(): string;
  waitForLog(msg: string, timeoutMs?: number, after?: number): Promise<Record<string, unknown>>;
  /** How many log lines with this `msg` so far (counted incrementally: cheap to poll). */
  count(msg: string): number;
  metrics(): Promise<string>;
  metric(name: string, labels: Record<string, string>): Promise<number | undefined>;
  status(): Promise<any>;
  rewrite(yaml: string): void;
  signal(sig: "SIGHUP" | "SIGTERM" | "SIGINT" | "SIGKILL" | "SIGUSR1"): void;
  exited: Promise<number>;
  stop(): Promise<number>;
}

/**
 * Start featherlb with `yaml` (the string `ADMIN` in it is replaced by a free admin address) and wait
 * until its admin listener answers. `write` places the file and returns the path featherlb is given
 * (default: a plain file in a temp dir); `wrap` is a command prefix that ends by exec'ing its arguments.
 */
export async function startLB(yaml: string, opts: { write?: (yaml: string) => string; wrap?: string[]; env?: Record<string, string> } = {}): Promise<RunningLB> {
  const adminPort = freePort();
  const admin = `http://127.0.0.1:${adminPort}`;
  const configPath = (opts.write ?? tempConfig)(yaml.replaceAll("ADMIN", `127.0.0.1:${adminPort}`));
  // `wrap` runs featherlb under another command that execs it (so `pid` stays featherlb's), e.g. a shell
  // that lowers `ulimit -n` first.
  const proc = new Proc([...(opts.wrap ?? []), ...featherlbCommand(), configPath], opts.env ? { env: { ...process.env, ...opts.env } } : {});
  const logLines = () => proc.lines.filter((l) => l.stream === "err");
  const counts = new Map<string, { seen: number; n: number }>();
  const lb: RunningLB = {
    pid: proc.pid,
    configPath,
    adminPort,
    logs: () => logLines().map((l) => l.json ?? { msg: l.text, raw: true }),
    stderr: () => logLines().map((l) => l.text).join("\n"),
    async waitForLog(msg, timeoutMs = 10_000, after = 0) {
      let found: Record<string, unknown> | undefined;
      await waitFor(`log "${msg}"`, () => {
        found = lb.logs().slice(after).find((l) => l.msg === msg);
        return found !== undefined || proc.exitCode !== null;
      }, timeoutMs);
      if (!found) throw new Error(`featherlb exited (${proc.exitCode}) before logging "${msg}": ${lb.stderr()}`);
      return found;
    },
    count(msg) {
      const c = counts.get(msg) ?? { seen: 0, n: 0 };
      counts.set(msg, c);
      for (; c.seen < proc.lines.length; c.seen++) {
        const l = proc.lines[c.seen]!;
        if (l.stream === "err" && l.json?.msg === msg) c.n++;
      }
      return c.n;
    },
    metrics: () => fetch(`${admin}/metrics`).then((r) => r.text()),
    metric: async (name, labels) => new Metrics(parseMetrics(await lb.metrics())).get(name, labels),
    status: () => fetch(`${admin}/status`).then((r) => r.json()),
    rewrite: (y) => writeFileSync(configPath, y.replaceAll("ADMIN", `127.0.0.1:${adminPort}`)),
    signal: (sig) => proc.kill(sig),
    exited: proc.proc.exited,
    async stop() {
      proc.kill("SIGKILL");
      return proc.proc.exited;
    },
  };
  // Ready when the admin listener answers (it starts after the data plane is serving).
  await waitFor("featherlb to start", async () => {
    if (proc.exitCode !== null) throw new Error(`featherlb exited with ${proc.exitCode} before it was ready: ${lb.stderr()}`);
    return fetch(`${admin}/healthz`).then((r) => r.ok, () => false);
  }, 15_000);
  return lb;
}
