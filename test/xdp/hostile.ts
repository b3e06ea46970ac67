/**
 * Hostile traffic against mode: xdp, in network namespaces (what the program does about each:
 * bpf/README.md "Flows" and "SYNs the kernel never sees"):
 *
 *   flood   a spoofed-source SYN flood (hping3 --flood --rand-source -S) while long-lived connections
 *           echo: they must all keep echoing, no packet of theirs may find no flow, and the handshake
 *           table must return to what is in use soon after the flood
 *   rst     spoofed RSTs with random sequence numbers on the 4-tuples of live flows, from the client
 *           side and from the backend side: every flow must keep echoing
 *   soak    many short connections from many client addresses through a small flow table, each
 *           echoing its own random bytes: none may come back wrong, none may reach another client
 *   refuse  SYNs of a service with no healthy backend, then of a draining one, while a process listens
 *           on the service address and port in the LB's namespace: it must get no connection
 *
 * test/xdp/hostile.test.ts runs CI-sized versions (seconds each) with assertions; `make bench-hostile`
 * (bun test/xdp/hostile.ts [--ci] [flood|rst|soak|refuse…]) runs them at the sizes of issue 11 (or the
 * CI sizes) and prints the figures, with
 * the XDP program's cost per packet (bpf_stats, enabled for the run through bpf_enable_stats) and CPU.
 * Root only; every load is bounded in time; the namespaces are removed at the end.
 *
 *   flbf-c  (c0: 10.81.0.10-25) ─┐
 *   flbf-lb (lb0: 10.81.0.1)    ─┼─ flbf-br (bridge br0)       (FLB_NS_TAG is appended to "flbf")
 *   flbf-b1…b3 (10.81.0.26-28)  ─┘
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { closeFd, enableRunTimeStats } from "../../src/dataplane/xdp/libbpf.ts";
import { featherlbCommand } from "../support/lb.ts";
import { Proc } from "../support/proc.ts";
import { writeXdpConfig } from "./netns/config.ts";
import { nsMetrics, xdpFlows, xdpReasons } from "./netns/metrics.ts";
import { LB_IF, inNs, run, sh, topology } from "./netns/topology.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const HERE = join(ROOT, "test/xdp/netns");
const BUN = process.execPath;
const SNAT = { first: 40000, last: 49999 };
const BE_PORT = 8080;

/** The sizes of one run of each scenario (CI or the issue's). */
export interface Sizes {
  flood: { flowTableSize: number; conns: number; intervalMs: number; floodSeconds: number };
  rst: { flows: number; rsts: number };
  /** concurrency × pauseMs keeps about `concurrency` connections open at once: above flowTableSize the table is full and evicts. */
  soak: { flowTableSize: number; conns: number; concurrency: number; bytes: number; clientIps: number; pauseMs: number };
  refuse: { attempts: number };
}

/** The figures of issue 11. */
export const ISSUE: Sizes = {
  flood: { flowTableSize: 4096, conns: 200, intervalMs: 1000, floodSeconds: 10 },
  rst: { flows: 100, rsts: 10_000 },
  soak: { flowTableSize: 1024, conns: 20_000, concurrency: 700, bytes: 1024, clientIps: 16, pauseMs: 300 },
  refuse: { attempts: 50 },
};

/** Small enough for `make test`: a few seconds each. */
export const CI: Sizes = {
  flood: { flowTableSize: 1024, conns: 30, intervalMs: 250, floodSeconds: 3 },
  rst: { flows: 20, rsts: 2000 },
  soak: { flowTableSize: 1024, conns: 4000, concurrency: 700, bytes: 1024, clientIps: 8, pauseMs: 300 },
  refuse: { attempts: 10 },
};

const sleep = (ms: number) => Bun.sleep(ms);

/** Changes of the counters `names` between two readings. */
function deltas(before: Record<string, number>, after: Record<string, number>, names: string[]): Record<string, number> {
  return Object.fromEntries(names.map((n) => [n, (after[n] ?? 0) - (before[n] ?? 0)]));
}

/** System-wide CPU time by kind (/proc/stat, clock ticks), to turn into shares over a window. */
function cpuTimes() {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  return { busy: user + nice + system + irq + softirq + steal, softirq, total: user + nice + system + idle + iowait + irq + softirq + steal };
}

/** A process's CPU time (user + system) in clock ticks (/proc/<pid>/stat fields 14 and 15). */
function procTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

/** The load average, rounded: printed with every figure (the machine may be shared). */
const load = () => loadavg().map((x) => Math.round(x * 100) / 100);

/** Long-lived echoing connections (client.ts echoers), open: their 4-tuples, and their outcome once done. */
interface Echoers {
  tuples: { ip: string; port: number }[];
  /** Waits for the end: echoes answered, connections that failed, the first errors. */
  result(): Promise<{ echoes: number; failed: number; errors: string[] }>;
  stop(): Promise<number>;
}

/** The network-namespace lab: topology, backends, the featherlb under test, the client, the tools. */
export class Lab {
  readonly topo = topology({ prefix: "flbf", net: "10.81.0", clients: 16, backends: 3, txOff: true });
  private dir = "";
  private readonly procs: Proc[] = [];
  private statsFd = -1;
  rawtcp = "";

  get lbIp(): string {
    return this.topo.lbIp;
  }

  async start(): Promise<void> {
    this.topo.setup();
    this.dir = mkdtempSync(join(tmpdir(), "flbf-"));
    this.rawtcp = join(this.dir, "rawtcp");
    sh(["clang", "-O2", "-Wall", "-o", this.rawtcp, join(ROOT, "test/xdp/tools/rawtcp.c")]);
    for (const [i, ns] of this.topo.ns.backends.entries()) {
      const p = this.spawn(inNs(ns, BUN, join(HERE, "backend.ts"), `b${i + 1}`, String(BE_PORT)));
      await p.waitFor((j) => j.event === "ready", 15_000);
    }
    // The kernel's per-program run time (bpf_stats) while the lab runs; off again when this fd closes.
    this.statsFd = enableRunTimeStats();
  }

  async stop(): Promise<void> {
    for (const p of this.procs.splice(0)) await p.stop();
    closeFd(this.statsFd);
    this.topo.teardown();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** A process the lab stops at the end (and each scenario stops itself before). */
  spawn(cmd: string[], env?: Record<string, string>): Proc {
    const p = new Proc(cmd, env ? { env: { ...process.env, ...env } } : {});
    this.procs.push(p);
    return p;
  }

  /** featherlb with one service on lbIp:80 over the three backends (or `backends`), attached and applied. */
  async lb(o: { flowTableSize: number; drainTimeout?: string; backends?: string[]; name?: string }): Promise<Proc> {
    const config = writeXdpConfig(this.dir, o.name ?? `lb-${this.procs.length}`, {
      listen: `${this.lbIp}:80`,
      snat: `${SNAT.first}-${SNAT.last}`,
      flowTableSize: o.flowTableSize,
      drainTimeout: o.drainTimeout,
      backends: (o.backends ?? this.topo.backendIps.map((ip) => `${ip}:${BE_PORT}`)).map((address) => ({ address })),
    });
    const lb = this.spawn(inNs(this.topo.ns.lb, ...featherlbCommand(), config));
    const up = await lb.waitFor((j) => j.msg === "xdp services applied" || j.event === "error", 20_000);
    if (up.json.event === "error") throw new Error(`featherlb did not start: ${lb.tail(5)}`);
    return lb;
  }

  /**
   * The client script in the client namespace, to completion: its JSON result. Asynchronous on purpose:
   * while it runs, this process keeps reading the backends' output (a blocked pipe would stall them).
   */
  async client(args: string[], deadlineS: number): Promise<Record<string, any>> {
    const p = Bun.spawn(inNs(this.topo.ns.client!, BUN, join(HERE, "client.ts"), ...args), { env: { ...process.env, FLBX_DEADLINE_S: String(deadlineS) }, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    const last = out.trim().split("\n").at(-1) ?? "";
    try {
      return JSON.parse(last);
    } catch {
      throw new Error(`client ${args.join(" ")} printed no JSON (exit ${code}): ${last} ${err}`);
    }
  }

  /** `conns` connections from the client addresses, each echoing every intervalMs for `seconds`, all open. */
  async echoers(conns: number, intervalMs: number, seconds: number): Promise<Echoers> {
    const p = this.clientProc(["echoers", this.lbIp, "80", String(conns), String(intervalMs), String(seconds), this.topo.clientIps.join(",")], seconds + 60);
    const ready = await p.waitFor((j) => j.event === "ready" || j.error !== undefined, 30_000);
    if (ready.json.error) {
      await p.stop();
      throw new Error(`echoers: ${ready.json.error}`);
    }
    return {
      tuples: ready.json.tuples as { ip: string; port: number }[],
      stop: () => p.stop(),
      result: async () => {
        const r = await p.waitFor((j) => j.echoes !== undefined || j.error !== undefined, (seconds + 60) * 1000);
        if (r.json.error) throw new Error(`echoers: ${r.json.error}\n${p.tail(5)}`);
        return { echoes: r.json.echoes as number, failed: r.json.failed as number, errors: r.json.errors as string[] };
      },
    };
  }

  /** The client script as a process (for modes that report while they run). */
  clientProc(args: string[], deadlineS: number): Proc {
    return this.spawn(inNs(this.topo.ns.client!, BUN, join(HERE, "client.ts"), ...args), { FLBX_DEADLINE_S: String(deadlineS) });
  }

  reasons(): Record<string, number> {
    return xdpReasons(nsMetrics(this.topo.ns.lb));
  }

  /** The flow tables' entries by stage as the LB's last sweep saw them (/metrics). */
  sweptFlows(): { established: number; handshake: number } {
    return xdpFlows(nsMetrics(this.topo.ns.lb));
  }

  /** The attached program (bpftool's view of it). */
  private prog(): { run_time_ns?: number; run_cnt?: number; map_ids: number[] } {
    const link = JSON.parse(run(this.topo.ns.lb, "ip", "-j", "-d", "link", "show", LB_IF))[0];
    const id = link?.xdp?.prog?.id ?? link?.xdp?.attached?.[0]?.prog?.id;
    if (!id) throw new Error(`no XDP program on ${LB_IF}`);
    return JSON.parse(sh(["bpftool", "-j", "prog", "show", "id", String(id)]));
  }

  /** The attached program's kernel run-time statistics (bpf_stats): total ns and runs. */
  progStats(): { ns: number; runs: number } {
    const prog = this.prog();
    return { ns: Number(prog.run_time_ns ?? 0), runs: Number(prog.run_cnt ?? 0) };
  }

  /** Entries in the forward tables right now (bpftool dumps of the attached program's maps). */
  flows(): { established: number; handshake: number } {
    const out = { established: NaN, handshake: NaN };
    for (const id of this.prog().map_ids) {
      const name = JSON.parse(sh(["bpftool", "-j", "map", "show", "id", String(id)])).name;
      const stage = name === "flb_fwd" ? "established" : name === "flb_syn_fwd" ? "handshake" : undefined;
      if (stage) out[stage] = JSON.parse(sh(["bpftool", "-j", "map", "dump", "id", String(id)])).length;
    }
    return out;
  }

  /** The established 4-tuples toward the backends: (backend ip, its port, LB ip, SNAT port), from `ss` in each backend namespace. */
  backendTuples(): { ns: string; tuples: string[] }[] {
    return this.topo.ns.backends.map((ns) => {
      const lines = run(ns, "ss", "-Htn", "state", "established", `( sport = :${BE_PORT} )`).trim().split("\n").filter(Boolean);
      const tuples = lines.flatMap((l) => {
        const [local, peer] = l.trim().split(/\s+/).slice(-2) as [string, string];
        const [pip, pport] = [peer.slice(0, peer.lastIndexOf(":")), Number(peer.slice(peer.lastIndexOf(":") + 1))];
        if (pip !== this.lbIp || pport < SNAT.first || pport > SNAT.last) return []; // the LB's own health checks
        return [`${local.slice(0, local.lastIndexOf(":"))} ${BE_PORT} ${pip} ${pport}`];
      });
      return { ns, tuples };
    });
  }

  /** Send `count` spoofed segments with `flags` per tuple ("src sport dst dport") from namespace `ns`. */
  rawtcpFrom(ns: string, flags: string, count: number, tuples: string[]): number {
    const r = Bun.spawnSync(inNs(ns, this.rawtcp, flags, String(count)), { stdin: Buffer.from(tuples.join("\n") + "\n"), stdout: "pipe", stderr: "pipe", timeout: 60_000 });
    if (r.exitCode !== 0) throw new Error(`rawtcp in ${ns}: ${r.stderr.toString()}`);
    return JSON.parse(r.stdout.toString()).sent;
  }
}

/** A program's cost and CPU share over a window between two readings. */
function costs(lab: Lab, lb: Proc, run: () => Promise<void>) {
  return async () => {
    const hz = 100;
    const p0 = lab.progStats();
    const c0 = cpuTimes();
    const l0 = procTicks(lb.pid);
    const t0 = performance.now();
    await run();
    const wallS = (performance.now() - t0) / 1000;
    const p1 = lab.progStats();
    const c1 = cpuTimes();
    const l1 = procTicks(lb.pid);
    const runs = p1.runs - p0.runs;
    return {
      programRuns: runs,
      programNsPerPacket: runs ? Math.round((p1.ns - p0.ns) / runs) : 0,
      /** Share of one CPU the XDP program ran (it runs in softirq context, on the CPU a packet arrived on). */
      programCpuPct: Math.round(((p1.ns - p0.ns) / 1e9 / wallS) * 1000) / 10,
      /** Share of all CPUs in softirq (the XDP program, the veths, the bridge, the stacks). */
      softirqPct: Math.round(((c1.softirq - c0.softirq) / (c1.total - c0.total)) * 1000) / 10,
      busyPct: Math.round(((c1.busy - c0.busy) / (c1.total - c0.total)) * 1000) / 10,
      /** The featherlb process itself (control plane, sweeper): its CPU share of one core. */
      lbProcessCpuPct: Math.round(((l1 - l0) / hz / wallS) * 1000) / 10,
      wallS: Math.round(wallS * 10) / 10,
    };
  };
}

/** Time until `cond` holds, polling every 250 ms up to `limitMs`; -1 if never. */
async function secondsUntil(cond: () => boolean, limitMs: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < limitMs) {
    if (cond()) return Math.round((performance.now() - t0) / 100) / 10;
    await sleep(250);
  }
  return -1;
}

/** What every scenario ends its figures with: the changes of the watched counters since `before`, the load. */
const closing = (lab: Lab, before: Record<string, number>) => ({ reasons: deltas(before, lab.reasons(), WATCHED), loadavg: load() });

const WATCHED = ["no_flow", "no_flow_backend", "pair_mismatch", "rst_out_of_window", "rst_in_window", "syn_busy", "snat_exhausted", "bad_handshake", "port_reclaimed", "established"];

export async function flood(lab: Lab, s: Sizes["flood"]) {
  const lb = await lab.lb({ flowTableSize: s.flowTableSize, name: "flood" });
  const recoverS = 15;
  // The echoers run through the flood and 3 s past it; the handshake table is watched longer.
  const echo = await lab.echoers(s.conns, s.intervalMs, 2 + s.floodSeconds + 3);
  try {
    await sleep(1500); // a baseline second of echoes
    const before = lab.reasons();
    const base = lab.flows();
    let hping = "";
    let fresh: Record<string, any> = {};
    let atEnd = base;
    const cost = await costs(lab, lb, async () => {
      const h = Bun.spawn(inNs(lab.topo.ns.client!, "timeout", "-s", "INT", String(s.floodSeconds), "hping3", "--flood", "--rand-source", "-S", "-p", "80", lab.lbIp), { stdout: "pipe", stderr: "pipe" });
      // New connections while it floods (not a target: a flood churns the handshake table they need).
      await sleep(500);
      const spread = lab.client(["spread", lab.lbIp, "80", "40", "2", "0", lab.topo.clientIps.join(",")], s.floodSeconds + 10);
      const [out, err] = await Promise.all([new Response(h.stdout).text(), new Response(h.stderr).text(), h.exited]);
      // Read when the flood stops, while the echoers still run (the new connections may take longer on a busy machine).
      atEnd = lab.flows();
      hping = out + err;
      fresh = await spread;
    })();
    const floodPackets = Number(/(\d+) packets transmitted/.exec(hping)?.[1] ?? NaN);
    // The handshake table, full of the flood's SYNs, back to what is in use (none: the echoers' flows are established).
    const recoveredS = await secondsUntil(() => lab.flows().handshake <= base.handshake, recoverS * 1000);
    const result = await echo.result();
    return {
      conns: s.conns,
      flowTableSize: s.flowTableSize,
      floodSeconds: s.floodSeconds,
      floodPackets,
      floodPps: Math.round(floodPackets / s.floodSeconds),
      echoes: result.echoes,
      echoFailed: result.failed,
      echoErrors: result.errors,
      newConnsDuringFlood: { tried: 40, failed: fresh.failures, errors: fresh.errors },
      tablesBefore: base,
      tablesAtFloodEnd: atEnd,
      handshakeTableBackInS: recoveredS,
      ...cost,
      ...closing(lab, before),
    };
  } finally {
    await echo.stop();
    await lb.stop();
  }
}

export async function blindRst(lab: Lab, s: Sizes["rst"]) {
  const lb = await lab.lb({ flowTableSize: 65536, name: "rst" });
  const perSide = Math.ceil(s.rsts / 2 / s.flows);
  // Echoing before, through and 3 s after the barrage (sending 10,000 takes well under a second).
  const echo = await lab.echoers(s.flows, 500, 5 + Math.ceil(s.rsts / 5000));
  try {
    const clientTuples = echo.tuples.map((t) => `${t.ip} ${t.port} ${lab.lbIp} 80`);
    const backendSide = lab.backendTuples();
    const before = lab.reasons();
    let sent = 0;
    const cost = await costs(lab, lb, async () => {
      sent += lab.rawtcpFrom(lab.topo.ns.client!, "R", perSide, clientTuples);
      for (const { ns, tuples } of backendSide) if (tuples.length) sent += lab.rawtcpFrom(ns, "R", perSide, tuples);
    })();
    const result = await echo.result();
    return {
      flows: s.flows,
      backendTuples: backendSide.reduce((n, b) => n + b.tuples.length, 0),
      rstsSent: sent,
      echoes: result.echoes,
      flowsFailed: result.failed,
      echoErrors: result.errors,
      ...cost,
      ...closing(lab, before),
    };
  } finally {
    await echo.stop();
    await lb.stop();
  }
}

export async function soak(lab: Lab, s: Sizes["soak"]) {
  const lb = await lab.lb({ flowTableSize: s.flowTableSize, name: "soak" });
  try {
    const before = lab.reasons();
    let result: Record<string, any> = {};
    const ips = lab.topo.clientIps.slice(0, s.clientIps);
    const cost = await costs(lab, lb, async () => {
      result = await lab.client(["soak", lab.lbIp, "80", String(s.conns), String(s.concurrency), String(s.bytes), ips.join(","), String(s.pauseMs)], 30 + s.conns / 100);
    })();
    return {
      conns: s.conns,
      clientIps: ips.length,
      flowTableSize: s.flowTableSize,
      ok: result.ok as number,
      shaMismatches: result.mismatched as number,
      wrongClient: result.wrongClient as number,
      failures: result.failures as number,
      errors: result.errors,
      connsPerS: Math.round(s.conns / cost.wallS),
      ...cost,
      ...closing(lab, before),
    };
  } finally {
    await lb.stop();
  }
}

export async function refuse(lab: Lab, s: Sizes["refuse"]) {
  const listener = lab.spawn(inNs(lab.topo.ns.lb, BUN, join(HERE, "listener.ts"), lab.lbIp, "80"));
  await listener.waitFor((j) => j.event === "ready", 15_000);
  const accepted = () => listener.lines.filter((l) => l.json?.event === "accepted").length;
  try {
    // 1. No healthy backend: the only backend's port has no listener, so its health checks fail.
    let lb = await lab.lb({ flowTableSize: 1024, backends: [`${lab.topo.backendIps[0]}:9`], name: "refuse-down" });
    const down = await secondsUntil(() => nsMetrics(lab.topo.ns.lb).get("featherlb_service_backends_eligible", { service: "svc" }) === 0, 15_000);
    if (down < 0) throw new Error("the backend never went down");
    const noBackend = await lab.client(["attempts", lab.lbIp, "80", String(s.attempts), "2000"], 60);
    const noBackendCounted = nsMetrics(lab.topo.ns.lb).get("featherlb_service_xdp_packets_total", { service: "svc", reason: "no_backend" });
    await lb.stop();

    // 2. Draining: a healthy backend, one connection held open so the drain lasts, then SIGTERM.
    lb = await lab.lb({ flowTableSize: 1024, drainTimeout: "6s", name: "refuse-drain" });
    const held = await lab.echoers(1, 300, 8);
    const from = lb.lines.length;
    lb.kill("SIGTERM");
    await lb.waitFor((j) => j.msg === "draining", 5000, from);
    await sleep(300);
    const draining = await lab.client(["attempts", lab.lbIp, "80", String(s.attempts), "2000"], 60);
    const stillAttached = run(lab.topo.ns.lb, "ip", "-d", "-j", "link", "show", LB_IF).includes('"xdp"');
    await held.stop();
    await lb.stop();
    return { noBackend, noBackendCounted, draining, drainingWhileAttached: stillAttached, listenerAccepted: accepted() };
  } finally {
    await listener.stop();
  }
}

/**
 * What the program costs per packet on well-behaved traffic (bpf_stats), to compare builds: keep-alive
 * (established flows echoing small messages) and short connections (handshake, one echo, close).
 * FEATHERLB_BIN picks the build; run it for each and compare the medians of `rounds`.
 */
export async function cost(lab: Lab, o: { seconds: number; conns: number; shortConns: number; rounds: number } = { seconds: 5, conns: 64, shortConns: 3000, rounds: 3 }) {
  const lb = await lab.lb({ flowTableSize: 65536, name: "cost" });
  const keepalive: number[] = [];
  const short: number[] = [];
  try {
    for (let r = 0; r < o.rounds; r++) {
      const echo = await lab.echoers(o.conns, 10, o.seconds + 1);
      await sleep(500);
      const k = await costs(lab, lb, () => sleep(o.seconds * 1000))();
      keepalive.push(k.programNsPerPacket);
      await echo.result();
      await echo.stop();
      const c = await costs(lab, lb, async () => void (await lab.client(["soak", lab.lbIp, "80", String(o.shortConns), "32", "64", lab.topo.clientIps.join(","), "0"], 120)))();
      short.push(c.programNsPerPacket);
    }
  } finally {
    await lb.stop();
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { keepaliveNsPerPacket: median(keepalive), shortNsPerPacket: median(short), keepalive, short, loadavg: load() };
}

export const SCENARIOS = { flood, rst: blindRst, soak, refuse, cost } as const;

if (import.meta.main) {
  process.env.FEATHERLB_BIN ??= "dist/featherlb"; // what `make bench-hostile` builds
  const args = process.argv.slice(2);
  const sizesOf = args.includes("--ci") ? CI : ISSUE;
  const given = args.filter((a) => a !== "--ci");
  const names = given.length ? (given as (keyof typeof SCENARIOS)[]) : (["flood", "rst", "soak", "refuse"] as const);
  for (const n of names) if (!(n in SCENARIOS)) throw new Error(`unknown scenario ${n} (one of ${Object.keys(SCENARIOS).join(", ")})`);
  if (process.getuid?.() !== 0) throw new Error("hostile.ts needs root (network namespaces, XDP)");
  const lab = new Lab();
  try {
    await lab.start();
    for (const n of names) {
      const sizes = n === "cost" ? undefined : sizesOf[n];
      console.log(`[hostile] ${n} ${JSON.stringify(sizes)} (load ${loadavg().map((x) => x.toFixed(2)).join(" ")})`);
      const figures = await SCENARIOS[n](lab, sizes as never);
      console.log(JSON.stringify({ scenario: n, ...figures }, null, 2));
    }
  } finally {
    await lab.stop();
  }
}
