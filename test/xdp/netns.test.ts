/**
 * End-to-end test of mode: xdp in network namespaces the test builds itself (netns/topology.ts): a
 * client with eight addresses, the LB, three backends on one bridge, TX checksum offload off on client
 * and backends (a wrong checksum fails the transfer). For every algorithm it starts an LB process and
 * checks: the spread of new connections, a 16 MiB echo intact both ways (SHA-256 on the client and on
 * the backend), that a killed backend leaves the pick set within fall × interval (+ slack) while new
 * connections succeed on the others, that ping/UDP/another TCP port still reach the LB's own stack,
 * and that SIGKILL of the LB leaves no XDP program attached.
 *
 * A last case reuses SNAT ports toward a backend that closes first (its TIME_WAIT sockets) from two
 * client addresses: PAWS must not reject any SYN (TCP timestamp modulation, bpf/tsmod.h).
 *
 * The LB process is the real thing, as in every integration test (test/support/lb.ts): FEATHERLB_BIN
 * (`make test` sets dist/featherlb), else `bun src/main.ts`. Sticky algorithms are checked per client IP
 * against featherlb's own algorithm code (test/support/predict.ts) reading the config the LB runs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AlgorithmName } from "../../src/config/types.ts";
import { featherlbCommand } from "../support/lb.ts";
import { readLbConfig } from "../support/lbconfig.ts";
import { predictor } from "../support/predict.ts";
import { writeXdpConfig } from "./netns/config.ts";
import { nsMetrics, xdpReasons } from "./netns/metrics.ts";
import { Proc } from "../support/proc.ts";
import { BACKEND_IPS, CLIENT_IPS, LB_IF, LB_IP, NS, inNs, run, setLbForwarding, setup, teardown, xdpAttached } from "./netns/topology.ts";
import { bpfSuiteEnabled } from "./require.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const BUN = process.execPath;
const HERE = join(ROOT, "test/xdp/netns");
const HEALTH = { interval: 500, timeout: 300, rise: 1, fall: 2 };
const NAMES = ["b1", "b2", "b3"];

/** featherlb in the LB namespace with `config`. */
const lbCommand = (config: string) => inNs(NS.lb, ...featherlbCommand(), config);
const lbKind = process.env.FEATHERLB_BIN ? "binary" : "source";

function writeConfig(dir: string, algorithm: AlgorithmName, weights: number[], attach: string): string {
  return writeXdpConfig(dir, `${algorithm}-${attach}`, {
    listen: `${LB_IP}:80`,
    snat: "40000-49999",
    attach,
    algorithm,
    health: HEALTH,
    backends: BACKEND_IPS.map((ip, i) => ({ address: `${ip}:8080`, weight: weights[i]! })),
  });
}

/** Run the client script in the client namespace; parse its JSON line. */
function client(args: string[], deadlineS = 40): Record<string, any> {
  const r = Bun.spawnSync(inNs(NS.client, BUN, join(HERE, "client.ts"), ...args), {
    env: { ...process.env, FLBX_DEADLINE_S: String(deadlineS) },
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = r.stdout.toString().trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(out);
  } catch {
    throw new Error(`client ${args.join(" ")} printed no JSON (exit ${r.exitCode}): ${out} ${r.stderr.toString()}`);
  }
}

const totals = (byIp: Record<string, Record<string, number>>) => {
  const t: Record<string, number> = { b1: 0, b2: 0, b3: 0 };
  for (const m of Object.values(byIp)) for (const [b, n] of Object.entries(m)) t[b] = (t[b] ?? 0) + n;
  return t;
};

interface Case {
  algorithm: AlgorithmName;
  weights: number[];
  count: number;
  /** Keep every connection open until all are made (least/p2c need load to balance on). */
  hold: boolean;
  /** Judges the spread; `config` is the file the LB runs with. */
  check: (byIp: Record<string, Record<string, number>>, config: string) => void;
  /** Default auto (generic on a veth). native: the peer veth gets an XDP_PASS program so XDP_TX delivers. */
  attach?: "native";
  /** IPv4 forwarding in the LB namespace; default off, as on a fresh host. */
  forwarding?: "on";
}

function shares(weights: number[], count: number, tolerance = 0.05) {
  return (byIp: Record<string, Record<string, number>>) => {
    const t = totals(byIp);
    const sum = weights.reduce((a, b) => a + b, 0);
    NAMES.forEach((b, i) => expect({ b, share: Math.abs(t[b]! / count - weights[i]! / sum) <= tolerance }).toEqual({ b, share: true }));
  };
}

/** Every client IP saw exactly the backend featherlb's own algorithm code picks for it. */
function sticky(byIp: Record<string, Record<string, number>>, config: string) {
  const predict = predictor(readLbConfig(readFileSync(config, "utf8"), config).services[0]!);
  for (const ip of CLIENT_IPS) {
    const seen = Object.keys(byIp[ip] ?? {});
    expect({ ip, backends: seen }).toEqual({ ip, backends: [NAMES[BACKEND_IPS.indexOf(predict(ip)!)]!] });
  }
}

const CASES: Case[] = [
  { algorithm: "round_robin", weights: [1, 1, 1], count: 300, hold: false, check: (b) => expect(totals(b)).toEqual({ b1: 100, b2: 100, b3: 100 }) },
  { algorithm: "weighted_round_robin", weights: [1, 2, 3], count: 300, hold: false, check: (b) => expect(totals(b)).toEqual({ b1: 50, b2: 100, b3: 150 }) },
  { algorithm: "least_connections", weights: [1, 2, 3], count: 300, hold: true, check: shares([1, 2, 3], 300) },
  { algorithm: "random", weights: [1, 2, 3], count: 1200, hold: false, check: shares([1, 2, 3], 1200) },
  { algorithm: "power_of_two", weights: [1, 1, 1], count: 300, hold: true, check: shares([1, 1, 1], 300) },
  { algorithm: "source_hash", weights: [1, 1, 1], count: 320, hold: false, check: sticky },
  { algorithm: "maglev", weights: [1, 1, 1], count: 320, hold: false, check: sticky },
  { algorithm: "round_robin", weights: [1, 1, 1], count: 300, hold: false, check: (b) => expect(totals(b)).toEqual({ b1: 100, b2: 100, b3: 100 }), attach: "native" },
  { algorithm: "round_robin", weights: [1, 1, 1], count: 300, hold: false, check: (b) => expect(totals(b)).toEqual({ b1: 100, b2: 100, b3: 100 }), forwarding: "on" },
];

function caseName(c: Case): string {
  if (c.attach) return `${c.algorithm} (native XDP; the peer veth runs an XDP_PASS program)`;
  if (c.forwarding) return `${c.algorithm} (IPv4 forwarding on in the LB namespace: next hops from bpf_fib_lookup)`;
  return c.algorithm;
}
const PASS_OBJ = join(ROOT, "build/bpf/xdp_pass.bpf.o");

/** What the program attached to the LB's interface counted, by reason (its /metrics). */
const reasonCounts = () => xdpReasons(nsMetrics(NS.lb));

/** Diagnostics on failure. */
function reasons(): string {
  try {
    return "xdp reasons: " + JSON.stringify(reasonCounts());
  } catch (e) {
    return `xdp reasons: ${(e as Error).message}`;
  }
}

/** Figures for the report, printed at the end. */
const report: Record<string, unknown>[] = [];

if (bpfSuiteEnabled("xdp netns integration")) {
  let dir = "";
  /** ip_local_reserved_ports of flbx-lb before the suite's first LB started there. */
  let reservedBefore = "";
  const backends: (Proc | undefined)[] = [];
  let lbstack: Proc | undefined;

  async function startBackend(i: number): Promise<Proc> {
    const p = new Proc(inNs(NS.backends[i]!, BUN, join(HERE, "backend.ts"), NAMES[i]!, "8080"));
    await p.waitFor((j) => j.event === "ready", 15000);
    backends[i] = p;
    return p;
  }

  beforeAll(async () => {
    setup();
    reservedBefore = Bun.spawnSync(inNs(NS.lb, "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports")).stdout.toString().trim();
    dir = mkdtempSync(join(tmpdir(), "flbx-"));
    await Promise.all([0, 1, 2].map(startBackend));
    lbstack = new Proc(inNs(NS.lb, BUN, join(HERE, "lbstack.ts"), LB_IP));
    await lbstack.waitFor((j) => j.event === "ready", 15000);
  }, 60000);

  afterAll(async () => {
    await Promise.all([...backends, lbstack].map((p) => p?.stop()));
    teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (report.length) console.log("xdp netns figures:\n" + report.map((r) => JSON.stringify(r)).join("\n"));
  }, 30000);

  describe("mode: xdp in network namespaces", () => {
    for (const c of CASES) {
      test(
        caseName(c),
        async () => {
          // Cases are independent: bring back any backend an earlier (failed) case left dead.
          for (let i = 0; i < 3; i++) if (backends[i]?.proc.exitCode !== null) await startBackend(i);
          const attach = c.attach ?? process.env.FLBX_ATTACH ?? "auto";
          if (c.attach === "native") run(NS.br, "ip", "link", "set", "dev", "p-lb", "xdpdrv", "obj", PASS_OBJ, "sec", "xdp");
          setLbForwarding(c.forwarding === "on");
          const config = writeConfig(dir, c.algorithm, c.weights, attach);
          const lb = new Proc(lbCommand(config));
          const figures: Record<string, unknown> = { algorithm: c.algorithm, lb: lbKind };
          try {
            const attached = await lb.waitFor((j) => j.msg === "xdp program attached" || j.event === "error", 20000);
            expect(attached.json.event).toBeUndefined();
            figures.attach = attached.json.mode;
            if (c.attach) expect(attached.json.mode).toBe(c.attach);
            await lb.waitFor((j) => j.msg === "xdp services applied", 10000);
            expect(xdpAttached()).toContain("featherlb");

            // 1. Spread of new connections.
            const spread = client(["spread", LB_IP, "80", String(c.count), "8", c.hold ? "1" : "0", CLIENT_IPS.join(",")]);
            expect(spread.failures, `${JSON.stringify(spread.errors)}\n${lb.tail(30)}\n${spread.failures ? reasons() : ""}`).toBe(0);
            figures.spread = totals(spread.byIp);
            c.check(spread.byIp, config);
            // Which next-hop source served the backends: the kernel's FIB with forwarding on, featherlb's
            // neighbour table with it off (the kernel refuses bpf_fib_lookup then). Never a route failure.
            const r = reasonCounts();
            figures.forwarding = c.forwarding ?? "off";
            figures.neighTable = r.neigh_table;
            expect({ fib_fail: r.fib_fail, no_neigh: r.no_neigh, neigh_table_used: r.neigh_table! > 0 }).toEqual({
              fib_fail: 0,
              no_neigh: 0,
              neigh_table_used: c.forwarding !== "on",
            });

            // 2. 16 MiB echoed intact both ways.
            const echoFrom = backends.map((b) => b!.lines.length);
            const echo = client(["echo", LB_IP, "80", String(16 << 20), CLIENT_IPS[3]!]);
            expect(echo.received).toBe(16 << 20);
            expect(echo.recvSha).toBe(echo.sentSha);
            const bi = NAMES.indexOf(echo.backend);
            const conn = await backends[bi]!.waitFor((j) => j.event === "conn" && j.bytes === 16 << 20, 10000, echoFrom[bi]);
            expect(conn.json.sha256).toBe(echo.sentSha);
            figures.echo = { bytes: echo.received, sha256: echo.sentSha.slice(0, 16), ms: echo.ms, backend: echo.backend };

            // 3. Traffic XDP does not balance reaches the LB's own stack.
            const ping = Bun.spawnSync(inNs(NS.client, "ping", "-c", "1", "-W", "2", LB_IP));
            expect(ping.exitCode).toBe(0);
            expect(client(["udp", LB_IP, "9999"]).reply).toBe("lbstack:ping-udp");
            expect(client(["line", LB_IP, "2222"]).line).toBe("lbstack");

            // 4. A dead backend leaves the pick set within fall × interval; new connections use the others.
            const victim = 1;
            const from = lb.lines.length;
            const killedAt = Date.now();
            await backends[victim]!.stop();
            await lb.waitFor((j) => j.msg === "backend down" && String(j.backend).startsWith(BACKEND_IPS[victim]!), 10000, from);
            // The health flip is logged just before the plan is rebuilt; the data plane logs when the
            // new plan is in the kernel tables. That is the moment that counts.
            const down = await lb.waitFor((j) => j.msg === "xdp plan written" && Array.isArray(j.members) && !j.members.includes(victim), 10000, from);
            const tookMs = down.at - killedAt;
            figures.downDetectedMs = tookMs;
            expect(tookMs).toBeLessThanOrEqual(HEALTH.fall * HEALTH.interval + HEALTH.interval + HEALTH.timeout + 1500);
            const after = client(["spread", LB_IP, "80", "60", "4", "0", CLIENT_IPS.join(",")]);
            expect(after.failures, `${JSON.stringify(after.errors)}\n${lb.tail(30)}\n${after.failures ? reasons() : ""}`).toBe(0);
            expect(totals(after.byIp).b2).toBe(0);
            const upFrom = lb.lines.length;
            await startBackend(victim);
            await lb.waitFor((j) => j.msg === "xdp plan written" && Array.isArray(j.members) && j.members.includes(victim), 10000, upFrom);

            // 5. SIGKILL leaves no XDP program behind (the bpf_link dies with the process).
            lb.kill("SIGKILL");
            await lb.proc.exited;
            const end = Date.now() + 3000;
            while (xdpAttached() !== "" && Date.now() < end) await Bun.sleep(100);
            expect(xdpAttached()).toBe("");
            report.push(figures);
          } finally {
            lb.kill("SIGKILL");
            await lb.proc.exited;
            if (c.attach === "native") run(NS.br, "ip", "link", "set", "dev", "p-lb", "xdpdrv", "off");
            setLbForwarding(false);
          }
        },
        120000,
      );
    }

    test("GSO super-packets from a TSO-enabled client are forwarded, not passed to the stack (16 MiB echo intact)", async () => {
      // Generic XDP sees up-to-64 KiB GSO packets from a veth peer with TSO on (as in Docker). They
      // exceed the MTU; the program must forward them as they are, not refuse them.
      for (let i = 0; i < 3; i++) if (backends[i]?.proc.exitCode !== null) await startBackend(i);
      const lb = new Proc(lbCommand(writeConfig(dir, "round_robin", [1, 1, 1], "generic")));
      run(NS.client, "ethtool", "-K", "c0", "tx", "on", "tso", "on", "gso", "on");
      try {
        await lb.waitFor((j) => j.msg === "xdp services applied", 20000);
        const echo = client(["echo", LB_IP, "80", String(16 << 20), CLIENT_IPS[1]!]);
        expect(echo.received).toBe(16 << 20);
        expect(echo.recvSha).toBe(echo.sentSha);
      } finally {
        run(NS.client, "ethtool", "-K", "c0", "tx", "off");
        lb.kill("SIGKILL");
        await lb.proc.exited;
      }
    }, 60000);

    test("SNAT ports reused within the backend's TIME_WAIT by two clients: no PAWS rejects, no SYN-retransmit stalls", async () => {
      // The backend closes first, so each connection leaves a TIME_WAIT socket keyed by (LB, SNAT port)
      // holding the last TSval it saw. 1024 SNAT ports (the minimum) and 3000 connections reuse every
      // port about three times within TIME_WAIT (60 s), alternating two client addresses whose Linux TS
      // offsets differ (random per address pair). Without modulation about a quarter of the
      // cross-client reuses are rejected by PAWS (TcpExtPAWSTimewait) and wait ≥ 1 s for a retransmit.
      const COUNT = 3000;
      const ns = NS.backends[0]!;
      const tw = new Proc(inNs(ns, BUN, join(HERE, "backend.ts"), "tw", "8081", "close-first"));
      const path = writeXdpConfig(dir, "paws", { listen: `${LB_IP}:80`, snat: "40000-41023", backends: [{ address: `${BACKEND_IPS[0]}:8081` }] });
      const lb = new Proc(lbCommand(path));
      const pawsTimewait = () => {
        const lines = run(ns, "cat", "/proc/net/netstat").split("\n").filter((l) => l.startsWith("TcpExt:"));
        const names = lines[0]!.split(/\s+/);
        return Number(lines[1]!.split(/\s+/)[names.indexOf("PAWSTimewait")]);
      };
      try {
        await tw.waitFor((j) => j.event === "ready", 15000);
        await lb.waitFor((j) => j.msg === "xdp services applied", 20000);
        const before = pawsTimewait();
        const churn = client(["churn", LB_IP, "80", String(COUNT), "4", CLIENT_IPS.slice(0, 2).join(",")], 100);
        const paws = pawsTimewait() - before;
        const timeWait = run(ns, "ss", "-Htan", "state", "time-wait", "( sport = :8081 and dport >= :40000 and dport <= :41023 )").trim().split("\n").filter(Boolean).length;
        report.push({ case: "snat reuse in TIME_WAIT", connections: churn.count, slowOver500ms: churn.slow, maxMs: churn.maxMs, p50Ms: churn.p50Ms, p99Ms: churn.p99Ms, pawsTimewait: paws, backendTimeWait: timeWait });
        // A client that hit its deadline (stalled connections) reports {error} instead of figures.
        expect({ pawsTimewait: paws, slow: churn.slow, failures: churn.failures, error: churn.error }).toEqual({ pawsTimewait: 0, slow: 0, failures: 0, error: undefined });
        expect(churn.count).toBe(COUNT);
        expect(timeWait).toBeGreaterThan(900); // nearly every SNAT port sits in TIME_WAIT, and COUNT is ~3× the ports
      } finally {
        lb.kill("SIGKILL");
        await lb.proc.exited;
        await tw.stop();
      }
    }, 120000);

    test("SIGHUP reload switches the plan in place; SIGTERM drains, detaches, restores reserved ports and removes the managed neighbours", async () => {
      for (let i = 0; i < 3; i++) if (backends[i]?.proc.exitCode !== null) await startBackend(i);
      const path = writeConfig(dir, "round_robin", [1, 1, 1], "auto");
      // The earlier cases ended with SIGKILL and left the SNAT range reserved and their tagged managed
      // entries behind; this LB adopts them, so its SIGTERM must restore the value from before the first
      // LB of the suite and remove every managed backend entry, the leftovers included.
      const managed = () =>
        (JSON.parse(Bun.spawnSync(inNs(NS.lb, "ip", "-j", "neigh", "show", "dev", LB_IF)).stdout.toString() || "[]") as { dst: string; managed?: null }[])
          .filter((n) => "managed" in n && BACKEND_IPS.includes(n.dst))
          .map((n) => n.dst)
          .sort();
      const lb = new Proc(lbCommand(path));
      try {
        await lb.waitFor((j) => j.msg === "xdp services applied", 20000);
        expect(managed()).toEqual([...BACKEND_IPS].sort());
        expect(Bun.spawnSync(inNs(NS.lb, "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports")).stdout.toString()).toContain("40000-49999");
        expect(totals(client(["spread", LB_IP, "80", "30", "4", "0", CLIENT_IPS.join(",")]).byIp)).toEqual({ b1: 10, b2: 10, b3: 10 });

        writeFileSync(path, readFileSync(writeConfig(dir, "weighted_round_robin", [1, 2, 3], "auto"), "utf8"));
        const from = lb.lines.length;
        lb.kill("SIGHUP");
        await lb.waitFor((j) => j.msg === "config reloaded", 10000, from);
        const spread = client(["spread", LB_IP, "80", "60", "4", "0", CLIENT_IPS.join(",")]);
        expect(totals(spread.byIp), `${JSON.stringify(spread.errors)}\n${lb.tail(30)}\n${reasons()}`).toEqual({ b1: 10, b2: 20, b3: 30 });

        lb.kill("SIGTERM");
        expect(await lb.proc.exited).toBe(0);
        expect(xdpAttached()).toBe("");
        const reservedAfter = Bun.spawnSync(inNs(NS.lb, "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports")).stdout.toString().trim();
        expect(reservedAfter).toBe(reservedBefore);
        expect(managed()).toEqual([]);
      } finally {
        lb.kill("SIGKILL");
        await lb.proc.exited;
      }
    }, 60000);
  });
}
