/**
 * What mode: xdp leaves on a host after `kill -9` (issue 9): featherlb in network namespaces the test
 * builds itself (netns/topology.ts), started, killed with SIGKILL, started again and stopped with
 * SIGTERM. At the end net.ipv4.ip_local_reserved_ports and the backends' neighbour entries (state,
 * managed flag, protocol tag) must be exactly as before the first start, operator reservations and
 * entries included.
 *
 *   flbh-lb (lb0: 10.79.0.1) ─┐
 *   flbh-b1 (b0: 10.79.0.21) ─┼─ flbh-br (bridge br0)
 *   flbh-b2 (b0: 10.79.0.22) ─┘
 *
 * Every name starts with "flbh" (other suites use flbx, flbe…), so leftovers of a crashed run are found
 * and removed. Runs FEATHERLB_BIN (`make test` sets dist/featherlb), else `bun src/main.ts`, as every
 * integration test does (test/support/lb.ts). Nothing here forwards traffic: IPv4 forwarding is switched
 * on inside flbh-lb only because the XDP data plane expects it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NEIGH_PROTOCOL } from "../../src/dataplane/xdp/netif.ts";
import { featherlbCommand } from "../support/lb.ts";
import { writeXdpConfig } from "./netns/config.ts";
import { Proc } from "../support/proc.ts";
import { LB_IF, inNs, run, sh, topology } from "./netns/topology.ts";
import { bpfSuiteEnabled } from "./require.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const BUN = process.execPath;
const HOST = topology({ prefix: "flbh", net: "10.79.0", clients: 0, backends: 2, txOff: false });
const NS = HOST.ns;
const LB_IP = HOST.lbIp;
const BACKEND_IPS = HOST.backendIps;
const RESERVED = "/proc/sys/net/ipv4/ip_local_reserved_ports";
const PROTOCOL = String(NEIGH_PROTOCOL); // as `ip -N -j neigh` prints it
const STEP_MS = 20000; // the longest any single wait below may take

/** The topology, and IPv4 forwarding on in the LB namespace (the XDP data plane expects it). */
function setup(): void {
  HOST.setup();
  run(NS.lb, "sysctl", "-qw", "net.ipv4.ip_forward=1");
}

const reserved = () => run(NS.lb, "cat", RESERVED).trim();
const setReserved = (value: string) => run(NS.lb, "sh", "-c", `echo '${value}' > ${RESERVED}`);

/** The backends' neighbour entries on lb0 as the test compares them (null: no entry). */
function neighbours(): Record<string, { state: string[]; managed: boolean; protocol: string | null; lladdr: string | null } | null> {
  const all = JSON.parse(run(NS.lb, "ip", "-N", "-j", "neigh", "show", "dev", LB_IF) || "[]") as Record<string, any>[];
  return Object.fromEntries(
    BACKEND_IPS.map((ip) => {
      const e = all.find((n) => n.dst === ip);
      // A managed entry's MAC and state follow resolution; the rest is what featherlb decides.
      const steady = e && !("managed" in e);
      return [ip, e ? { state: steady ? e.state : ["(resolving)"], managed: "managed" in e, protocol: e.protocol ?? null, lladdr: steady ? (e.lladdr ?? null) : null } : null];
    }),
  );
}
const ours = () =>
  Object.entries(neighbours())
    .filter(([, e]) => e?.managed && e.protocol === PROTOCOL)
    .map(([ip]) => ip);

function writeConfig(dir: string, name: string, snat: string, backends = BACKEND_IPS): string {
  return writeXdpConfig(dir, name, { listen: `${LB_IP}:80`, snat, interface: LB_IF, backends: backends.map((ip) => ({ address: `${ip}:8080` })) });
}

/** Start featherlb in flbh-lb and wait until it runs (its services in the maps, its neighbours made). */
async function startLB(config: string, runDir?: string): Promise<Proc> {
  const env = runDir ? ["env", `FEATHERLB_RUN_DIR=${runDir}`] : [];
  const lb = new Proc(inNs(NS.lb, ...env, ...featherlbCommand(), config));
  await lb.waitFor((j) => j.msg === "featherlb started", STEP_MS);
  // main.ts installs its SIGTERM handler just after that line: a SIGTERM before it kills the process
  // outright (exit 143). Wait until the kernel shows SIGTERM caught (SigCgt bit 14, i.e. signal 15).
  const end = Date.now() + STEP_MS;
  while (!(BigInt(`0x${/SigCgt:\s*([0-9a-f]+)/.exec(await Bun.file(`/proc/${lb.pid}/status`).text())![1]}`) & (1n << 14n))) {
    if (Date.now() > end) throw new Error(`featherlb (pid ${lb.pid}) never installed its SIGTERM handler:\n${lb.tail()}`);
    await Bun.sleep(20);
  }
  return lb;
}

async function crash(lb: Proc): Promise<void> {
  lb.kill("SIGKILL");
  expect(await lb.proc.exited).not.toBe(0);
}

async function stop(lb: Proc): Promise<void> {
  lb.kill("SIGTERM");
  const t = setTimeout(() => lb.kill("SIGKILL"), STEP_MS);
  const code = await lb.proc.exited;
  clearTimeout(t);
  expect(code, lb.tail()).toBe(0);
}

const logged = (lb: Proc, level: string, prefix: string) => lb.lines.some((l) => l.json?.level === level && String(l.json.msg).startsWith(prefix));

if (bpfSuiteEnabled("xdp host state after a crash")) {
  let dir = "";
  let netns = "";
  const backends: Proc[] = [];
  const lbs: Proc[] = [];
  const track = (p: Proc) => (lbs.push(p), p);

  /** Back to a namespace featherlb never touched: no reservation, no backend entries, no record. */
  function reset(): void {
    setReserved("");
    for (const ip of BACKEND_IPS) sh(inNs(NS.lb, "ip", "neigh", "del", ip, "dev", LB_IF), true);
    rmSync(join("/run/featherlb", `netns-${netns}.json`), { force: true });
  }

  beforeAll(async () => {
    setup();
    dir = mkdtempSync(join(tmpdir(), "flbh-"));
    netns = /\[(\d+)\]/.exec(run(NS.lb, "readlink", "/proc/self/ns/net"))![1]!;
    for (const [i, ns] of NS.backends.entries()) {
      const b = new Proc(inNs(ns, BUN, join(ROOT, "test/xdp/netns/backend.ts"), `b${i + 1}`, "8080"));
      backends.push(b);
      await b.waitFor((j) => j.event === "ready", STEP_MS);
    }
  }, 60000);

  // A failed case leaves no LB running into the next one.
  afterEach(async () => {
    for (const lb of lbs.splice(0)) {
      lb.kill("SIGKILL");
      await lb.proc.exited;
    }
  });

  afterAll(async () => {
    await Promise.all(backends.map((p) => p.stop()));
    if (netns) rmSync(join("/run/featherlb", `netns-${netns}.json`), { force: true });
    HOST.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30000);

  describe("mode: xdp host state", () => {
    test("kill -9, start, SIGTERM: reserved ports and neighbour entries end as before the first start", async () => {
      reset();
      const config = writeConfig(dir, "plain", "40000-49999");
      const record = join("/run/featherlb", `netns-${netns}.json`);
      const before = { reserved: reserved(), neighbours: neighbours() };

      const first = track(await startLB(config));
      expect(reserved()).toBe("40000-49999");
      expect(ours()).toEqual(BACKEND_IPS);
      expect((await Bun.file(record).json()).pid).toBe(first.pid);
      await crash(first);
      expect({ reserved: reserved(), ours: ours() }).toEqual({ reserved: "40000-49999", ours: BACKEND_IPS }); // what a crash leaves

      const second = track(await startLB(config));
      expect(logged(second, "info", "adopting the host changes of a featherlb that did not exit cleanly"), second.tail()).toBe(true);
      await stop(second);

      const after = { reserved: reserved(), neighbours: neighbours() };
      console.log("hoststate case 1", JSON.stringify({ before, after }));
      expect(after).toEqual(before);
      expect(existsSync(record)).toBe(false);
    }, 90000);

    test("operator ports overlapping the SNAT range and an operator entry survive a crash, a SIGHUP range change and a backend dropped meanwhile", async () => {
      reset();
      const runDir = join(dir, "run");
      setReserved("8000-8010,40005-40010");
      // The operator pins b2's MAC (its real one, so health checks still pass): someone else's entry.
      const mac = JSON.parse(run(NS.backends[1]!, "ip", "-j", "link", "show", "b0"))[0].address as string;
      run(NS.lb, "ip", "neigh", "replace", BACKEND_IPS[1]!, "dev", LB_IF, "lladdr", mac, "nud", "permanent");
      const before = { reserved: reserved(), neighbours: neighbours() };
      expect(before.reserved).toBe("8000-8010,40005-40010");

      const path = writeConfig(dir, "operator", "40000-49999");
      const first = track(await startLB(path, runDir));
      expect(reserved()).toBe("8000-8010,40000-49999"); // the kernel merged 40005-40010 into our range
      expect(ours()).toEqual([BACKEND_IPS[0]!]);
      expect(neighbours()[BACKEND_IPS[1]!]).toEqual(before.neighbours[BACKEND_IPS[1]!]!);

      writeFileSync(path, await Bun.file(writeConfig(dir, "operator-41k", "41000-42999")).text());
      const from = first.lines.length;
      first.kill("SIGHUP");
      await first.waitFor((j) => j.msg === "config reloaded", STEP_MS, from);
      // The previous range stays reserved while flows use it: none do here, so the next sweep releases it.
      await first.waitFor((j) => j.msg === "xdp: no flow uses the previous SNAT range any more; released", STEP_MS, from);
      expect(reserved()).toBe("8000-8010,40005-40010,41000-42999");
      const recorded = await Bun.file(join(runDir, `netns-${netns}.json`)).json();
      expect(recorded.reservedPorts).toEqual({ range: "41000-42999", before: "8000-8010,40005-40010", wrote: "8000-8010,40005-40010,41000-42999" });
      await crash(first);

      // The next start no longer balances b1: its leftover entry is adopted all the same, and removed at exit.
      const second = track(await startLB(writeConfig(dir, "operator-b2", "41000-42999", [BACKEND_IPS[1]!]), runDir));
      expect(logged(second, "info", "adopting the host changes"), second.tail()).toBe(true);
      await stop(second);

      const after = { reserved: reserved(), neighbours: neighbours() };
      console.log("hoststate case 2", JSON.stringify({ before, after }));
      expect(after).toEqual(before);
      expect(readdirSync(runDir)).toEqual([]);
    }, 90000);

    test("a second featherlb in the namespace is refused while the first runs; a record the operator's edit contradicts is not adopted", async () => {
      reset();
      const runDir = join(dir, "run3");
      const config = writeConfig(dir, "second", "40000-49999");
      const first = track(await startLB(config, runDir));

      const again = Bun.spawnSync(inNs(NS.lb, "env", `FEATHERLB_RUN_DIR=${runDir}`, ...featherlbCommand(), config), { stdout: "pipe", stderr: "pipe", timeout: STEP_MS });
      expect(again.exitCode).toBe(2);
      expect(again.stderr.toString().trim().split("\n").at(-1)).toBe(
        `featherlb: ${config}: another featherlb (pid ${first.pid}) runs mode: xdp in this network namespace and owns its host changes (${join(runDir, `netns-${netns}.json`)}); stop it first, or run this one in another network namespace or with mode: proxy.`,
      );
      expect(first.proc.exitCode).toBeNull();
      await crash(first);

      // The operator reserves one more port after the crash: the recorded value no longer holds.
      setReserved("40000-49999,50005");
      const third = track(await startLB(config, runDir));
      expect(logged(third, "warn", "the featherlb record for this network namespace does not match"), third.tail()).toBe(true);
      await stop(third);
      // What was there at this start is kept (the operator's edit included); our entries go, found by their tag.
      expect(reserved()).toBe("40000-49999,50005");
      expect(neighbours()).toEqual({ [BACKEND_IPS[0]!]: null, [BACKEND_IPS[1]!]: null });
    }, 90000);

    test("the neighbour entries of 200 backends are made and removed over netlink: no process per backend", async () => {
      reset();
      // Every `ip` featherlb runs is logged by a wrapper first on its PATH (before issue 16: three per
      // backend at start, two at exit, and one to tell a veth; now none: netlink does all of it).
      const trap = join(dir, "trap");
      const calls = join(dir, "ip-calls.log");
      const realIp = run(NS.lb, "sh", "-c", "command -v ip").trim();
      mkdirSync(trap, { recursive: true });
      writeFileSync(join(trap, "ip"), `#!/bin/sh\necho "$*" >> ${calls}\nexec ${realIp} "$@"\n`, { mode: 0o755 });
      writeFileSync(calls, "");
      const many = Array.from({ length: 200 }, (_, i) => `10.79.0.${i + 40}`); // hosts that do not exist: entries all the same
      const config = writeConfig(dir, "many", "40000-49999", many);
      const tagged = () => (JSON.parse(run(NS.lb, "ip", "-N", "-j", "neigh", "show", "proto", PROTOCOL) || "[]") as { dst: string; managed?: null }[]).filter((e) => "managed" in e).length;
      try {
        const lb = new Proc(inNs(NS.lb, "env", `PATH=${trap}:${process.env.PATH}`, ...featherlbCommand(), config));
        track(lb);
        await lb.waitFor((j) => j.msg === "xdp services applied", STEP_MS);
        expect(tagged()).toBe(200);
        lb.kill("SIGTERM");
        expect(await lb.proc.exited, lb.tail()).toBe(0);
        expect(tagged()).toBe(0);
        const spawned = (await Bun.file(calls).text()).trim().split("\n").filter(Boolean);
        console.log(`hoststate: 200 backends, \`ip\` run ${spawned.length} times: ${JSON.stringify(spawned)}`);
        expect(spawned).toEqual([]);
      } finally {
        sh(inNs(NS.lb, "ip", "neigh", "flush", "proto", PROTOCOL), true);
      }
    }, 90000);
  });
}
