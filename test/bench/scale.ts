/**
 * How featherlb's costs grow with its backends (`make bench`, `run.sh scale`): for each mode and each
 * size — 10, 100, 1,000 and 10,000 backends in all, as services × backends of `maglev` — it measures
 *
 *   check      `featherlb check` of the file (median of 3), ms
 *   startup    from spawning featherlb until /healthz answers (the admin listener starts after the data
 *              plane serves every service), ms
 *   memory     VmRSS 2 s after start; xdp: the BPF maps' kernel memory (/status xdp_maps.bytes)
 *   reload     SIGHUP of the same file until "config reloaded" (median of 3), ms, and the worst /healthz
 *              answer while they ran
 *   storm      every backend refusing connections at once, then all back (test/support/storm.ts): how
 *              long each phase took, featherlb's CPU, the worst /healthz answer (how long the event loop
 *              was held) and the worst connection to a healthy service, against its latency before
 *
 * Health checks: interval 1 s, timeout 500 ms, rise 1, fall 1, so each phase flips every backend
 * within about a second — harsher than the defaults (2 s, fall 3). The backends are a farm process
 * (test/support/farm.ts).
 *
 *   proxy  on loopback (127.4.x.y:9000), in this network namespace;
 *   xdp    in namespaces of its own (prefix "flbs" + FLB_NS_TAG, 10.66.0.0/24): featherlb in flbs-lb
 *          (lb0 10.66.0.1, admin on 10.66.0.1:19990), the farm in flbs-b1 on 40 addresses × 250 ports
 *          (10.66.0.100+), a healthy backend on 10.66.0.21:8080; the measuring runs in flbs-c (this
 *          script re-executes itself there), so its probes cross the bridge like real clients.
 *
 *   bun test/bench/scale.ts [--modes proxy,xdp] [--sizes 10,100,1000,10000] [--out build/bench/scale.jsonl]
 *
 * Root for xdp. Every process and namespace it creates is removed at the end (Ctrl-C included); every
 * wait is bounded.
 */
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { farmAddresses } from "../support/farm.ts";
import { rssKiB } from "../support/lb.ts";
import { freePort } from "../support/net.ts";
import { Proc } from "../support/proc.ts";
import { runStorm, summarise, type StormResult } from "../support/storm.ts";
import { inNs, run, topology } from "../xdp/netns/topology.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = process.execPath;
const STEP_MS = 60_000;

export const SHAPES: Readonly<Record<number, [services: number, backends: number]>> = {
  10: [1, 10],
  100: [4, 25],
  1000: [4, 250],
  10000: [40, 250],
};

export interface ScaleRow {
  mode: "proxy" | "xdp";
  backends: number;
  services: number;
  check_ms: number;
  startup_ms: number;
  rss_kib: number;
  map_bytes: number | null;
  reload_ms: number;
  reload_worst_ms: number;
  idle_worst_ms: number;
  storm: StormResult;
}

// ------------------------------------------------------------------ arguments
function args() {
  const argv = process.argv.slice(2);
  const opt = (name: string, dflt: string) => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] ? argv[i + 1]! : dflt;
  };
  const modes = opt("--modes", "proxy,xdp").split(",") as ("proxy" | "xdp")[];
  const sizes = opt("--sizes", "10,100,1000,10000").split(",").map(Number);
  for (const s of sizes) if (!SHAPES[s]) throw new Error(`--sizes: ${s} is not one of ${Object.keys(SHAPES).join(", ")}`);
  return { modes, sizes, out: resolve(opt("--out", join(ROOT, "build/bench/scale.jsonl"))), bin: resolve(process.env.FEATHERLB ?? join(ROOT, "dist/featherlb")) };
}

const log = (msg: string) => console.error(`[scale ${new Date().toISOString().slice(11, 19)}] ${msg}`);

// ------------------------------------------------------------------ the environment of one mode
interface Env {
  mode: "proxy" | "xdp";
  /** The command prefix that runs something where featherlb runs. */
  lbCmd: (...cmd: string[]) => string[];
  /** Where the farm runs. */
  farmCmd: (...cmd: string[]) => string[];
  listenHost: string;
  /** The admin listener: where featherlb listens, and where the probes find it. */
  admin: { host: string; port: number };
  farmSpec: (n: number) => string;
  /** The healthy service the connection probe uses, and its one backend (host:port). */
  healthy: { host: string; port: number };
  healthyBackend: string;
  /** The listen port of services[s]. */
  port: (s: number) => number;
  extraYaml: string;
  cleanup: () => Promise<void>;
}

async function proxyEnv(): Promise<Env> {
  // The healthy backend in a process of its own, as in xdp mode: this one is busy reading featherlb's
  // log lines (20,000 in a storm) and must not add its delays to the connections it measures.
  const backendPort = freePort();
  const backend = new Proc([BUN, join(ROOT, "test/xdp/netns/backend.ts"), "healthy", String(backendPort)]);
  await backend.waitFor((j) => j.event === "ready", STEP_MS);
  // Loopback is shared with whatever else runs on the machine: free ports, not fixed ones.
  const ports = new Map<number, number>();
  return {
    mode: "proxy",
    lbCmd: (...cmd) => cmd,
    farmCmd: (...cmd) => cmd,
    listenHost: "127.0.0.1",
    admin: { host: "127.0.0.1", port: freePort() },
    farmSpec: (n) => `127.4/${n}:9000`,
    healthy: { host: "127.0.0.1", port: freePort() },
    healthyBackend: `127.0.0.1:${backendPort}`,
    port: (s) => ports.get(s) ?? (ports.set(s, freePort()), ports.get(s)!),
    extraYaml: "",
    cleanup: async () => void (await backend.stop()),
  };
}

const XDP_TOPO = () => topology({ prefix: "flbs", net: "10.66.0", clients: 1, backends: 1, txOff: false });
const FARM_FIRST = 100;
const FARM_HOSTS = 40;

/** xdp: the topology (built by the outer process, which then runs this script in the client namespace). */
function xdpEnv(): Env {
  const t = XDP_TOPO();
  const healthyBackend = new Proc(inNs(t.ns.backends[0]!, BUN, join(ROOT, "test/xdp/netns/backend.ts"), "healthy", "8080"));
  return {
    mode: "xdp",
    lbCmd: (...cmd) => inNs(t.ns.lb, ...cmd),
    farmCmd: (...cmd) => inNs(t.ns.backends[0]!, ...cmd),
    listenHost: t.lbIp,
    admin: { host: t.lbIp, port: 19990 },
    farmSpec: (n) => `10.66.0.${FARM_FIRST}+${Math.ceil(n / 250)}:9000+${Math.min(n, 250)}`,
    healthy: { host: t.lbIp, port: 8000 },
    healthyBackend: `${t.backendIps[0]}:8080`,
    port: (s) => 20000 + s,
    extraYaml: "xdp:\n  interface: lb0\n",
    cleanup: async () => void (await healthyBackend.stop()),
  };
}

// ------------------------------------------------------------------ one cell
function configYaml(env: Env, services: number, per: number, addresses: string[]): string {
  const lines = [
    `mode: ${env.mode}`,
    "log: { level: info }",
    `admin: { listen: "${env.admin.host}:${env.admin.port}" }`,
    env.extraYaml.trimEnd(),
    "defaults:",
    "  health_check: { interval: 1s, timeout: 500ms, rise: 1, fall: 1 }",
    "services:",
    "  - name: healthy",
    `    listen: "${env.healthy.host}:${env.healthy.port}"`,
    "    health_check: { enabled: false }",
    `    backends: [{ address: "${env.healthyBackend}" }]`,
  ];
  for (let s = 0; s < services; s++) {
    lines.push(`  - name: s${s}`, `    listen: "${env.listenHost}:${env.port(s)}"`, "    algorithm: maglev", "    backends:");
    for (const a of addresses.slice(s * per, (s + 1) * per)) lines.push(`      - address: ${a}`);
  }
  return lines.filter(Boolean).join("\n") + "\n";
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, ms = STEP_MS, every = 5): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await Bun.sleep(every);
  }
}

async function cell(env: Env, bin: string, total: number, dir: string): Promise<ScaleRow> {
  const [services, per] = SHAPES[total]!;
  const spec = env.farmSpec(total);
  const addresses = farmAddresses(spec);
  const config = join(dir, `${env.mode}-${total}.yaml`);
  writeFileSync(config, configYaml(env, services, per, addresses));
  const admin = `http://${env.admin.host}:${env.admin.port}`;

  const checks: number[] = [];
  for (let i = 0; i < 3; i++) {
    const { ms, value } = await timed(async () => Bun.spawnSync([bin, "check", config], { stdout: "pipe", stderr: "pipe" }));
    if (value.exitCode !== 0) throw new Error(`check failed: ${value.stderr.toString()}`);
    checks.push(ms);
  }

  const farm = new Proc(env.farmCmd(BUN, join(ROOT, "test/support/farm.ts"), spec));
  let lb: Proc | undefined;
  try {
    await waitUntil("the farm", () => farm.lines.some((l) => l.text.startsWith("ready ")) || farm.exitCode !== null);
    if (farm.exitCode !== null) throw new Error(`farm: ${farm.tail()}`);

    const healthz = () => fetch(`${admin}/healthz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
    const start = performance.now();
    const proc = new Proc(env.lbCmd(bin, config));
    lb = proc;
    await waitUntil("featherlb to serve", async () => {
      if (proc.exitCode !== null) throw new Error(`featherlb exited: ${proc.tail()}`);
      return healthz();
    });
    const startupMs = performance.now() - start;
    await Bun.sleep(2000);
    const rss = rssKiB(proc.pid);
    const status = (await (await fetch(`${admin}/status`)).json()) as { xdp_maps?: { bytes: number } };

    // Reloads of the same file, with /healthz sampled throughout.
    const samples: number[] = [];
    let probing = true;
    const probe = (async () => {
      while (probing) {
        const t = performance.now();
        await healthz();
        samples.push(performance.now() - t);
        await Bun.sleep(5);
      }
    })();
    await Bun.sleep(1000);
    const idleWorst = summarise(samples).worst;
    samples.length = 0;
    const reloads: number[] = [];
    for (let i = 0; i < 3; i++) {
      const from = proc.lines.length;
      const t = performance.now();
      proc.kill("SIGHUP");
      await proc.waitFor((j) => j.msg === "config reloaded" || j.msg === "reload rejected, still serving the previous config", STEP_MS, from);
      reloads.push(performance.now() - t);
      await Bun.sleep(300);
    }
    probing = false;
    await probe;
    const reloadWorst = summarise(samples).worst;

    let downs = 0;
    let ups = 0;
    let seen = 0;
    const count = () => {
      for (; seen < proc.lines.length; seen++) {
        const msg = proc.lines[seen]!.json?.msg;
        if (msg === "backend down") downs++;
        else if (msg === "backend up") ups++;
      }
    };
    const storm = await runStorm(
      {
        admin,
        healthy: env.healthy,
        downs: () => (count(), downs),
        ups: () => (count(), ups),
        backends: total,
        pid: proc.pid,
        phaseTimeoutMs: 120_000,
      },
      farm,
    );
    return {
      mode: env.mode,
      backends: total,
      services,
      check_ms: median(checks),
      startup_ms: startupMs,
      rss_kib: rss,
      map_bytes: status.xdp_maps?.bytes ?? null,
      reload_ms: median(reloads),
      reload_worst_ms: reloadWorst,
      idle_worst_ms: idleWorst,
      storm,
    };
  } finally {
    if (lb) await lb.stop(10_000);
    await farm.stop();
  }
}

// ------------------------------------------------------------------ main
async function measure(mode: "proxy" | "xdp", sizes: number[], bin: string, out: string): Promise<void> {
  const env = mode === "proxy" ? await proxyEnv() : xdpEnv();
  const dir = mkdtempSync(join(tmpdir(), "flb-scale-"));
  try {
    for (const total of sizes) {
      log(`${mode} ${total} backends (${SHAPES[total]!.join(" × ")}), load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
      const row = await cell(env, bin, total, dir);
      appendFileSync(out, JSON.stringify({ ...row, loadavg: loadavg()[0] }) + "\n");
      const s = row.storm;
      log(
        `  check ${row.check_ms.toFixed(0)} ms, start ${row.startup_ms.toFixed(0)} ms, RSS ${(row.rss_kib / 1024).toFixed(0)} MiB` +
          (row.map_bytes === null ? "" : `, maps ${(row.map_bytes / 2 ** 20).toFixed(1)} MiB`) +
          `, reload ${row.reload_ms.toFixed(0)} ms (worst /healthz ${row.reload_worst_ms.toFixed(0)} ms); storm: down ${s.downMs.toFixed(0)} ms, up ${s.upMs.toFixed(0)} ms, ` +
          `CPU ${s.cpuS.toFixed(2)} s, worst /healthz ${s.admin.worst.toFixed(1)} ms, healthy conns worst ${s.conns.worst.toFixed(1)} ms (p50 before ${s.connsBefore.p50.toFixed(2)} ms)`,
      );
    }
  } finally {
    await env.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { modes, sizes, out, bin } = args();
  if (process.env.FLB_SCALE_INNER === "xdp") return measure("xdp", sizes, bin, out);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ meta: { date: new Date().toISOString(), cpus: cpus().length, kernel: Bun.spawnSync(["uname", "-r"]).stdout.toString().trim(), loadavg_start: loadavg().map((x) => x.toFixed(2)).join(" "), commit: Bun.spawnSync(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.toString().trim(), binary: bin } }) + "\n");
  if (modes.includes("proxy")) await measure("proxy", sizes, bin, out);
  if (modes.includes("xdp")) {
    const t = XDP_TOPO();
    const stop = () => t.teardown();
    process.on("SIGINT", () => (stop(), process.exit(130)));
    process.on("SIGTERM", () => (stop(), process.exit(143)));
    try {
      t.setup();
      const farmNs = t.ns.backends[0]!;
      for (let h = 0; h < FARM_HOSTS; h++) run(farmNs, "ip", "addr", "add", `10.66.0.${FARM_FIRST + h}/24`, "dev", "b0");
      // The LB's admin and the healthy service listen on the LB's address; the probes come from flbs-c.
      const inner = Bun.spawn(inNs(t.ns.client!, "env", "FLB_SCALE_INNER=xdp", `FLB_NS_TAG=${process.env.FLB_NS_TAG ?? ""}`, BUN, import.meta.path, ...process.argv.slice(2)), { stdout: "inherit", stderr: "inherit" });
      const code = await inner.exited;
      if (code !== 0) throw new Error(`the xdp measurements failed (exit ${code})`);
    } finally {
      stop();
    }
  }
  appendFileSync(out, JSON.stringify({ end: { loadavg_end: loadavg().map((x) => x.toFixed(2)).join(" ") } }) + "\n");
  log(`results in ${out}`);
}

if (import.meta.main) await main();
