/**
 * Several featherlb instances behind ECMP routing (docs/scale-out.md), in network namespaces the test
 * builds (fabric.ts): a router running BIRD with fib_multipath_hash_policy=1, two featherlb instances
 * that announce the VIP through a BIRD of their own (deploy/bird/*.conf, BGP with a 3 s hold time), three
 * backends, a client with 16 source addresses. Each backend greets with its name and the address of the
 * instance that connected to it, so every connection tells who carried it and who served it.
 *
 * Checked, with the figures printed:
 *  - new connections spread over both instances, each taking ≥ 25 %;
 *  - every client IP reaches one backend whichever instance carried it: the one featherlb's own Maglev
 *    code predicts (test/support/predict.ts), since both instances build the same plan;
 *  - SIGTERM of one instance withdraws its route from the router within 3 s, and no connection opened
 *    after that reaches it; ≥ 99.5 % of the new connections opened during the failover succeed, and the
 *    connections held through the surviving instance keep working;
 *  - the instance started again is announced again and takes new connections;
 *  - an instance that vanishes without a word (its link cut) is dropped by the router within the BGP
 *    hold time (3 s) plus the time BIRD takes to act on it.
 *
 * Both data planes, one after the other, each in a fabric of its own: `mode: proxy` (each instance binds
 * the VIP on its loopback) and `mode: xdp` (generic XDP on the instance's fabric interface; the VIP
 * stays on the loopback, never ARPed for). In xdp mode the config has no xdp.snat_address, so the one
 * file gives each instance its own: the interface's address, which is what the backends then greet
 * with, and where their replies return.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { featherlbCommand } from "../support/lb.ts";
import { PLANES, type Plane } from "../../src/config/types.ts";
import { readLbConfig } from "../support/lbconfig.ts";
import { predictor } from "../support/predict.ts";
import { Proc } from "../support/proc.ts";
import { inNs, run } from "../xdp/netns/topology.ts";
import { bpfSuiteEnabled, toolsPresent } from "../xdp/require.ts";
import { birdConfig, startBird, type Bird } from "./bird.ts";
import { BACKEND_IPS, CLIENT_IPS, INSTANCE_IPS, NS, ROUTER_IP, VIP, setup, teardown, vipNextHops } from "./fabric.ts";

const HERE = import.meta.dir;
const BUN = process.execPath;
const TABLE = 100;
const NAMES = ["b1", "b2", "b3"];
const SUITE = "scale-out ECMP suite";

// xdp: the fabric interface by name (the VIP is on the loopback, which would be chosen otherwise);
// generic, since native XDP_TX on a veth needs an XDP program on its peer, the bridge's port.
const planeYaml: Record<Plane, string> = { proxy: "mode: proxy", xdp: "mode: xdp\nxdp: { interface: f0, attach: generic }" };

const yamlFor = (plane: Plane) => `${planeYaml[plane]}
log: { level: info }
admin: { listen: off }
drain_timeout: 2s
announce: { table: ${TABLE}, withdraw_grace: 1s }
services:
  - name: web
    listen: "${VIP}:80"
    algorithm: maglev
    health_check: { interval: 200ms, timeout: 150ms, rise: 1, fall: 2 }
    backends:
${BACKEND_IPS.map((ip) => `      - address: "${ip}:8080"`).join("\n")}
`;

type Flow = [start: number, ipIndex: number, who: string];

/** Run the client script in the client namespace to completion; its JSON line. */
async function client(args: string[]): Promise<any> {
  const proc = new Proc(inNs(NS.client, BUN, join(HERE, "client.ts"), ...args));
  await proc.proc.exited;
  const line = proc.lines.filter((l) => l.stream === "out").at(-1);
  if (!line?.json || "error" in line.json) throw new Error(`client ${args[0]}: ${proc.tail()}`);
  return line.json;
}
/** New connections for `seconds`, and on a loaded host for longer, until `atLeast` were made (10 s more at most). */
const flows = (seconds: number, concurrency: number, atLeast = 0) =>
  client(["flows", VIP, "80", String(seconds), String(concurrency), CLIENT_IPS.join(","), String(atLeast)]) as Promise<{ flows: Flow[] }>;
/** Enough connections for shares to mean something (16 client IPs over 2 instances). */
const SPREAD_MIN = 200;

/** "b2@10.81.1.3" → backend name and instance index (0/1). */
function parse(who: string): { backend: string; instance: number } | undefined {
  if (who.startsWith("!")) return undefined;
  const [backend, peer] = who.split("@");
  return { backend: backend!, instance: INSTANCE_IPS.indexOf(peer as (typeof INSTANCE_IPS)[number]) };
}

/** Shares per instance, and per client IP the set of backends that served it. */
function summarise(records: Flow[]) {
  const perInstance = [0, 0];
  const perIp = new Map<string, Set<string>>();
  let failed = 0;
  const errors = new Map<string, number>();
  for (const [, i, who] of records) {
    const p = parse(who);
    if (!p) {
      failed++;
      errors.set(who, (errors.get(who) ?? 0) + 1);
      continue;
    }
    perInstance[p.instance]!++;
    const ip = CLIENT_IPS[i]!;
    if (!perIp.has(ip)) perIp.set(ip, new Set());
    perIp.get(ip)!.add(p.backend);
  }
  const ok = records.length - failed;
  const failures = [...errors].map(([e, n]) => `${e.slice(1)} ×${n}`).join(", ");
  return { total: records.length, ok, failed, failures, perInstance, share: perInstance.map((n) => n / Math.max(1, ok)), perIp };
}

/** Every client IP saw exactly the backend featherlb's Maglev code picks for it (on both instances). */
function expectSticky(perIp: Map<string, Set<string>>): void {
  const predict = predictor(readLbConfig(yamlFor("proxy")).services[0]!);
  for (const ip of CLIENT_IPS) {
    const want = NAMES[BACKEND_IPS.indexOf(predict(ip) as (typeof BACKEND_IPS)[number])];
    expect({ ip, backends: [...(perIp.get(ip) ?? [])] }).toEqual({ ip, backends: [want!] });
  }
}

async function waitForNextHops(want: string[], timeoutMs: number): Promise<number> {
  const start = Date.now();
  for (;;) {
    const hops = await vipNextHops();
    if (JSON.stringify(hops) === JSON.stringify([...want].sort())) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`router next hops for ${VIP}: ${JSON.stringify(hops)}, want ${JSON.stringify(want)}`);
    await Bun.sleep(20);
  }
}

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
/** What the failed connections died of, if any: "; failed: connect:ECONNRESET ×1". */
const failures = (s: { failed: number; failures: string }) => (s.failed ? `; failed: ${s.failures}` : "");

if (bpfSuiteEnabled(SUITE) && toolsPresent(SUITE, ["bird"], "Debian: apt-get install bird2; bpf/install-deps.sh installs it")) {
  for (const plane of PLANES) suite(plane);
}

function suite(plane: Plane): void {
  const tag = `[ecmp ${plane}]`;
  describe(`two featherlb instances behind ECMP (${plane} mode, maglev)`, () => {
    const procs: Proc[] = [];
    const birds: Bird[] = [];
    let configPath = "";
    const lbs: (Proc | undefined)[] = [undefined, undefined];

    async function startInstance(i: number): Promise<Proc> {
      // A run dir of the test's own (hoststate.ts): xdp mode records its host changes there.
      const lb = new Proc(inNs(NS.instances[i]!, "env", `FEATHERLB_RUN_DIR=${dirname(configPath)}`, ...featherlbCommand(), configPath));
      lbs[i] = lb;
      await lb.waitFor((j) => j.msg === "address announced", 10_000);
      return lb;
    }

    beforeAll(async () => {
      setup();
      configPath = join(mkdtempSync(join(tmpdir(), "featherlb-ecmp-")), "lb.yaml");
      writeFileSync(configPath, yamlFor(plane));
      NS.backends.forEach((ns, i) => {
        const b = new Proc(inNs(ns, BUN, join(HERE, "../xdp/netns/backend.ts"), NAMES[i]!, "8080", "echo-peer"));
        procs.push(b);
      });
      for (const b of procs) await b.waitFor((j) => j.event === "ready", 10_000);
      birds.push(await startBird(NS.router, birdConfig("router.conf", { ROUTER_ID: ROUTER_IP, ROUTER_AS: "65000", LB_AS: "65001", LB_NET: "10.81.1.0/24", VIPS: "[ 10.81.9.0/24{32,32} ]" })));
      for (const [i, ns] of NS.instances.entries()) {
        const defines = { SELF: INSTANCE_IPS[i]!, LB_AS: "65001", ROUTER: ROUTER_IP, ROUTER_AS: "65000", ANNOUNCE_TABLE: String(TABLE) };
        birds.push(await startBird(ns, birdConfig("instance.conf", defines)));
      }
      await Promise.all([startInstance(0), startInstance(1)]);
      const ms = await waitForNextHops([...INSTANCE_IPS], 20_000);
      console.log(`${tag} both instances announced; the router had both next hops ${ms} ms after featherlb's announcement`);
    }, 60_000);

    afterAll(async () => {
      for (const lb of lbs) if (lb) await lb.stop(3000);
      for (const b of birds) await b.stop();
      for (const p of procs) await p.stop(1000);
      teardown();
      if (configPath) rmSync(dirname(configPath), { recursive: true, force: true });
    });

    test("new connections spread over both instances (each ≥ 25 %); each client IP reaches one backend through either", async () => {
      const s = summarise((await flows(2, 8, SPREAD_MIN)).flows);
      console.log(`${tag} spread: ${s.ok} connections, instance 1 ${pct(s.share[0]!)}, instance 2 ${pct(s.share[1]!)}, failed ${s.failed}${failures(s)}`);
      expect(s.failed).toBe(0);
      expect(s.ok).toBeGreaterThanOrEqual(SPREAD_MIN);
      for (const share of s.share) expect(share).toBeGreaterThanOrEqual(0.25);
      expectSticky(s.perIp);
    }, 30_000);

    test("SIGTERM withdraws the instance's route within 3 s; ≥ 99.5 % of new connections succeed; the survivor's connections are unaffected", async () => {
      const holder = client(["hold", VIP, "80", "4", CLIENT_IPS.join(",")]) as Promise<{ held: { ip: string; who: string | null; ok: boolean; error?: string }[] }>;
      await Bun.sleep(500);
      const load = flows(5, 4);
      await Bun.sleep(1500);
      // The router's route changes as they happen (each line stamped on arrival), for the timing;
      // polling `ip route` below is the check, but its own latency would blur the figure.
      const monitor = new Proc(["ip", "-n", NS.router, "monitor", "route"]);
      await Bun.sleep(100);
      const sigterm = Date.now();
      lbs[0]!.kill("SIGTERM");
      const polledMs = await waitForNextHops([INSTANCE_IPS[1]], 3000);
      const change = monitor.lines.find((l) => l.at >= sigterm && l.text.includes(VIP));
      monitor.kill("SIGTERM");
      const failoverMs = change ? change.at - sigterm : polledMs;
      const withdrawnAt = sigterm + failoverMs;
      const [{ flows: records }, { held }] = await Promise.all([load, holder]);
      expect(await lbs[0]!.proc.exited).toBe(0);
      lbs[0] = undefined;

      const s = summarise(records);
      const after = records.filter(([start]) => start >= withdrawnAt).map(([, , who]) => parse(who));
      const viaSurvivor = held.filter((h) => h.who?.endsWith(`@${INSTANCE_IPS[1]}`));
      const viaStopped = held.filter((h) => h.who?.endsWith(`@${INSTANCE_IPS[0]}`));
      console.log(
        `${tag} failover: the router's route lost the stopped instance ${failoverMs} ms after SIGTERM (seen by polling after ${polledMs} ms); new connections during it: ${s.ok}/${s.total} succeeded (${((100 * s.ok) / s.total).toFixed(2)} %${failures(s)}), ` +
          `${after.length} opened after the withdrawal, ${after.filter((p) => p?.instance === 0).length} of them on the stopped instance; ` +
          `held connections: ${viaSurvivor.filter((h) => h.ok).length}/${viaSurvivor.length} through the survivor still echo, ${viaStopped.filter((h) => !h.ok).length}/${viaStopped.length} through the stopped one broke (flows that move)`,
      );
      expect(failoverMs).toBeLessThan(3000);
      expect(s.ok / s.total).toBeGreaterThanOrEqual(0.995);
      expect(after.length).toBeGreaterThan(0);
      expect(after.filter((p) => p?.instance !== 1)).toEqual([]);
      expect(viaSurvivor.length).toBeGreaterThan(0);
      expect(viaSurvivor.filter((h) => !h.ok)).toEqual([]);
      expectSticky(s.perIp);
    }, 30_000);

    test("the stopped instance, started again, is announced again and takes new connections", async () => {
      const start = Date.now();
      await startInstance(0);
      await waitForNextHops([...INSTANCE_IPS], 15_000); // xdp loads and attaches its program first: slow on a loaded host
      console.log(`${tag} rejoin: both next hops on the router ${Date.now() - start} ms after the restart`);
      const s = summarise((await flows(1.5, 8, SPREAD_MIN)).flows);
      console.log(`${tag} spread after rejoin: instance 1 ${pct(s.share[0]!)}, instance 2 ${pct(s.share[1]!)} of ${s.ok}, failed ${s.failed}${failures(s)}`);
      expect(s.failed).toBe(0);
      for (const share of s.share) expect(share).toBeGreaterThanOrEqual(0.25);
      expectSticky(s.perIp);
    }, 45_000);

    test("an instance whose link is cut is dropped by the router within the 3 s hold time", async () => {
      // The bridge side of the instance's veth: nothing reaches it, nothing leaves it, nobody is told.
      run(NS.br, "ip", "link", "set", "p-l1", "down");
      try {
        const droppedMs = await waitForNextHops([INSTANCE_IPS[1]], 6000);
        console.log(`${tag} link cut: the router dropped the silent instance after ${droppedMs} ms (hold time 3 s, keepalive 1 s)`);
        expect(droppedMs).toBeLessThanOrEqual(3500);
      } finally {
        run(NS.br, "ip", "link", "set", "p-l1", "up");
      }
    }, 30_000);
  });
}
