/**
 * `announce:` on its own, in one network namespace ("flba" + FLB_NS_TAG) with the VIP on its loopback
 * and one backend: the route featherlb keeps in its table follows servability — there while
 * a backend is healthy, gone when the last one goes down, back when it returns, moved by a reload that
 * changes the table — and a SIGTERM removes it before the listener closes, which keeps accepting for
 * withdraw_grace. Routes of the table left by a killed featherlb (proto 241) are cleared at start; other
 * routes in it are not touched.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { featherlbCommand } from "../support/lb.ts";
import { Proc } from "../support/proc.ts";
import { addNamespace, deleteNamespaces, inNs, run, tagged } from "../xdp/netns/topology.ts";
import { bpfSuiteEnabled } from "../xdp/require.ts";

const NS = `${tagged("flba")}-lb`;
const VIP = "10.82.9.1";
const BACKEND = "127.0.0.1:8080";

const yaml = (table: number) => `log: { level: info }
admin: { listen: off }
drain_timeout: 1s
config_watch: off
announce: { table: ${table}, withdraw_grace: 1500ms }
services:
  - name: web
    listen: "${VIP}:80"
    health_check: { interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }
    backends: [{ address: "${BACKEND}" }]
`;

/** The routes in `table`, as "dst proto" (241 is featherlb's); none while the table does not exist. */
function routes(table: number): string[] {
  const r = Bun.spawnSync(inNs(NS, "ip", "-j", "route", "show", "table", String(table)), { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0 && /table does not exist/.test(r.stderr.toString())) return [];
  if (r.exitCode !== 0) throw new Error(`ip route show table ${table}: ${r.stderr.toString()}`);
  const out = r.stdout.toString();
  return (JSON.parse(out || "[]") as { dst: string; protocol: string }[]).map((r) => `${r.dst} ${r.protocol}`).sort();
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
  return Date.now() - start;
}

/** Run a client in the namespace: the greeting of one connection to the VIP (or the error). */
async function greet(): Promise<string> {
  const proc = new Proc(inNs(NS, process.execPath, "-e", `import { greetConn } from "${join(import.meta.dir, "../support/conn.ts")}"; const r = await greetConn({ host: "${VIP}", port: 80 }); console.log(JSON.stringify({ who: r.ok ? r.backend : "!" + r.error }));`));
  await proc.proc.exited;
  return String(proc.lines.find((l) => l.json)?.json?.who);
}

if (bpfSuiteEnabled("announce suite")) {
  describe("announce: a /32 per servable VIP in featherlb's table", () => {
    let backend: Proc | undefined;
    let lb: Proc;
    let configPath = "";
    const startBackend = async () => {
      backend = new Proc(inNs(NS, process.execPath, join(import.meta.dir, "../xdp/netns/backend.ts"), "b1", "8080"));
      await backend.waitFor((j) => j.event === "ready", 10_000);
    };

    beforeAll(async () => {
      deleteNamespaces([NS]);
      addNamespace(NS);
      run(NS, "ip", "addr", "add", `${VIP}/32`, "dev", "lo");
      // Left by a featherlb that was killed, and an operator's route in the same table.
      run(NS, "ip", "route", "add", "blackhole", "10.82.9.9/32", "table", "100", "proto", "241");
      run(NS, "ip", "route", "add", "blackhole", "10.82.9.8/32", "table", "100", "proto", "static");
      await startBackend();
      configPath = join(mkdtempSync(join(tmpdir(), "featherlb-announce-")), "lb.yaml");
      writeFileSync(configPath, yaml(100));
      lb = new Proc(inNs(NS, ...featherlbCommand(), configPath));
      await lb.waitFor((j) => j.msg === "address announced", 10_000);
    }, 30_000);

    afterAll(async () => {
      await lb?.stop(3000);
      await backend?.stop(1000);
      deleteNamespaces([NS]);
      if (configPath) rmSync(dirname(configPath), { recursive: true, force: true });
    });

    test("announced at start; a stale featherlb route is cleared, another protocol's route is left", () => {
      expect(routes(100)).toEqual([`${VIP} 241`, `10.82.9.8 static`]);
    });

    test("the last backend down withdraws the route; back up announces it again", async () => {
      await backend!.stop(1000);
      const down = await until("the route withdrawn", () => !routes(100).includes(`${VIP} 241`));
      const line = await lb.waitFor((j) => j.msg === "address withdrawn", 5000);
      expect(line.json).toMatchObject({ address: VIP, table: 100, reason: "no healthy backend" });
      await startBackend();
      const up = await until("the route back", () => routes(100).includes(`${VIP} 241`));
      console.log(`[announce] withdrawn ${down} ms after the backend stopped (fall 1 × 100 ms checks); announced ${up} ms after it was back`);
    }, 20_000);

    test("a reload that changes the table moves the route", async () => {
      writeFileSync(configPath, yaml(101));
      const mark = lb.lines.length;
      lb.kill("SIGHUP");
      await lb.waitFor((j) => j.msg === "config reloaded", 5000, mark);
      await until("the route in table 101", () => routes(101).includes(`${VIP} 241`) && !routes(100).includes(`${VIP} 241`));
      await lb.waitFor((j) => j.msg === "address withdrawn" && j.reason === "moving to another table", 5000, mark);
      expect(routes(100)).toEqual([`10.82.9.8 static`]);
    }, 20_000);

    test("SIGTERM withdraws first, keeps accepting for withdraw_grace, then drains and exits", async () => {
      const mark = lb.lines.length;
      lb.kill("SIGTERM");
      const withdrawn = await lb.waitFor((j) => j.msg === "address withdrawn" && j.reason === "shutdown", 5000, mark);
      expect(routes(101)).toEqual([]);
      // Within the grace the listener is still open: routers may still send a few new flows here.
      expect(await greet()).toBe("b1");
      expect(await lb.proc.exited).toBe(0);
      const closed = lb.lines.slice(mark).find((l) => l.json?.msg === "stopped")!;
      expect(closed.at - withdrawn.at).toBeGreaterThanOrEqual(1400);
    }, 20_000);
  });
}
