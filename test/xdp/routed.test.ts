/**
 * mode: xdp with a router between the LB and some of its clients and backends (netns/routed.ts): ICMP
 * errors follow their flow (bpf/icmp.h) and partial checksums are rewritten as partial (bpf/l4csum.h).
 *
 * Path MTU: the router's links toward the client and the backend behind it have MTU 1280, their hosts
 * 1500, so they advertise an MSS the path cannot carry and every full-size segment toward them makes the
 * router answer "fragmentation needed" (type 3 code 4; Linux sends TCP with DF) to the segment's
 * source: the service address. Only if the LB translates it and sends it to the other end of the flow
 * does the sender lower its path MTU; otherwise the transfer stalls (the LB's stack drops the error).
 * Both directions: a 4 MiB download to the client behind the router (the error comes from the client
 * side, goes to the backend) and a 4 MiB upload to the backend behind the router (from the backend
 * side, to the client). The LB has IPv4 forwarding off, as on a fresh host, and reaches both networks
 * through the router (routes in its main table).
 *
 * Partial checksums: the client and the backend behind the router send with TX checksum offload on
 * (CHECKSUM_PARTIAL skbs: the TCP checksum field holds the pseudo-header sum only), the router completes
 * checksums in software on its way to them (TX offload off on its legs), and they verify every segment
 * (RX offload off): a checksum the LB got wrong shows as TcpInCsumErrors and the connection fails.
 * Generic mode (the skb stays partial through XDP_TX) and native mode (XDP_TX sends an xdp_frame, which
 * arrives as CHECKSUM_NONE: the program completes the checksum itself) are both checked.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { featherlbCommand } from "../support/lb.ts";
import { parseMetrics } from "../support/metrics.ts";
import { Proc } from "../support/proc.ts";
import { routedTopology } from "./netns/routed.ts";
import { runClient } from "./netns/runclient.ts";
import { inNs, run } from "./netns/topology.ts";
import { bpfSuiteEnabled } from "./require.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const HERE = join(ROOT, "test/xdp/netns");
const BUN = process.execPath;
const PASS_OBJ = join(ROOT, "build/bpf/xdp_pass.bpf.o");
const T = routedTopology({ prefix: "flbi", net: "10.78", linkMtu: 1280 });
const VIP = T.base.lbIp;
const BULK = 4 << 20;
/** The transfers must finish within this (the bound); the client gives up a little later. */
const BULK_MS = 10_000;

/** Run the client script in a namespace; parse its JSON line. */
const client = (ns: string, args: string[], deadlineS = 15) => runClient(ns, args, deadlineS);

/** featherlb_xdp_packets_total by reason, from /metrics (admin on 127.0.0.1:9090 in the LB namespace). */
function xdpReasons(): Record<string, number> {
  const text = run(T.base.ns.lb, "curl", "-sf", "--max-time", "5", "http://127.0.0.1:9090/metrics");
  const out: Record<string, number> = {};
  for (const s of parseMetrics(text)) if (s.name === "featherlb_xdp_packets_total") out[s.labels.reason!] = s.value;
  return out;
}

/** The path MTU a namespace's stack has learned toward the service address (from "fragmentation needed"), or undefined. */
function learnedMtu(ns: string): number | undefined {
  const m = / mtu (\d+)/.exec(run(ns, "ip", "route", "get", VIP));
  return m ? Number(m[1]) : undefined;
}

function lbConfig(dir: string, attach: string): string {
  const path = join(dir, `lb-${attach}.yaml`);
  writeFileSync(
    path,
    `mode: xdp
log: { level: info }
drain_timeout: 1s
xdp: { interface: lb0, attach: ${attach}, snat_ports: "40000-49999" }
services:
  - { name: download, listen: "${VIP}:80", backends: [ { address: "${T.base.backendIps[0]}:8080" } ] }
  - { name: upload, listen: "${VIP}:81", backends: [ { address: "${T.rbIp}:8081" } ] }
  - { name: echo, listen: "${VIP}:82", backends: [ { address: "${T.rbIp}:8082" } ] }
`,
  );
  return path;
}

/** Figures for the report, printed at the end. */
const report: Record<string, unknown>[] = [];

if (bpfSuiteEnabled("xdp behind a router")) {
  let dir = "";
  const procs: Proc[] = [];
  let sourceSha = "";
  let sink: Proc;
  let lb: Proc | undefined;

  async function startLb(attach: string): Promise<Proc> {
    const p = new Proc(inNs(T.base.ns.lb, ...featherlbCommand(), lbConfig(dir, attach)));
    const up = await p.waitFor((j) => j.msg === "xdp services applied" || j.event === "error", 20_000);
    expect(up.json.event).toBeUndefined();
    return p;
  }

  async function stopLb(): Promise<void> {
    lb?.kill("SIGKILL");
    await lb?.proc.exited;
    lb = undefined;
  }

  beforeAll(async () => {
    T.setup();
    dir = mkdtempSync(join(tmpdir(), "flbi-"));
    const source = new Proc(inNs(T.base.ns.backends[0]!, BUN, join(HERE, "backend.ts"), "b1", "8080", "source", String(BULK)));
    sink = new Proc(inNs(T.ns.rb, BUN, join(HERE, "backend.ts"), "rb", "8081", "source", "0"));
    const echo = new Proc(inNs(T.ns.rb, BUN, join(HERE, "backend.ts"), "rb", "8082"));
    procs.push(source, sink, echo);
    sourceSha = String((await source.waitFor((j) => j.event === "ready", 15_000)).json.sourceSha);
    await sink.waitFor((j) => j.event === "ready", 15_000);
    await echo.waitFor((j) => j.event === "ready", 15_000);
    lb = await startLb("auto");
  }, 60_000);

  afterAll(async () => {
    await stopLb();
    await Promise.all(procs.map((p) => p.stop()));
    T.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (report.length) console.log("xdp behind a router, figures:\n" + report.map((r) => JSON.stringify(r)).join("\n"));
  }, 30_000);

  describe("ICMP errors follow their flow (path MTU discovery through the LB)", () => {
    test("fragmentation needed from the client's side reaches the backend: a 4 MiB download over a 1280-byte link completes intact", () => {
      const before = xdpReasons();
      const unreach = T.counter(T.ns.router, "Icmp", "OutDestUnreachs");
      const get = client(T.ns.rc, ["get", VIP, "80"]);
      report.push({ case: "download, client behind the router", ...get, routerUnreachs: T.counter(T.ns.router, "Icmp", "OutDestUnreachs") - unreach });
      expect({ bytes: get.bytes, sha256: get.sha256, error: get.error }).toEqual({ bytes: BULK, sha256: sourceSha, error: undefined });
      expect(get.ms).toBeLessThan(BULK_MS);
      // It was path MTU discovery: the router refused full-size segments, the backend learned 1280.
      expect(T.counter(T.ns.router, "Icmp", "OutDestUnreachs")).toBeGreaterThan(unreach);
      expect(learnedMtu(T.base.ns.backends[0]!)).toBe(1280);
      const after = xdpReasons();
      expect(after.icmp_c2b! - (before.icmp_c2b ?? 0)).toBeGreaterThan(0);
      // Replies reached the client through the router with forwarding off: no route or neighbour failure.
      expect({ fib_fail: after.fib_fail, no_neigh: after.no_neigh }).toEqual({ fib_fail: 0, no_neigh: 0 });
    }, 30_000);

    test("fragmentation needed from the backend's side reaches the client: a 4 MiB upload over a 1280-byte link completes intact", async () => {
      const before = xdpReasons();
      const from = sink.lines.length;
      const put = client(T.base.ns.client!, ["put", VIP, "81", String(BULK)]);
      expect(put.error).toBeUndefined();
      const t0 = Date.now();
      // The client is done once the kernel has its bytes; the backend reports what arrived when it closes.
      const got = await sink.waitFor((j) => j.event === "conn" && j.sha256 === put.sha256, Math.max(1000, BULK_MS - put.ms), from);
      report.push({ case: "upload, backend behind the router", bytes: got.json.bytes, ms: put.ms + (got.at - t0) });
      expect(got.json.bytes).toBe(BULK);
      expect(learnedMtu(T.base.ns.client!)).toBe(1280);
      expect(xdpReasons().icmp_b2c! - (before.icmp_b2c ?? 0)).toBeGreaterThan(0);
    }, 30_000);
  });

  describe("partial checksums (TX offload on at the senders, verified in software at the receivers)", () => {
    /** From the client behind the router to the backend behind it, both with TX offload on: a 1000-byte echo and 50 greetings. */
    function echoes(mode: string): void {
      const errors = () => T.counter(T.ns.rb, "Tcp", "InCsumErrors") + T.counter(T.ns.rc, "Tcp", "InCsumErrors");
      const before = errors();
      T.setTxCsum(T.ns.rc, "c0", true);
      T.setTxCsum(T.ns.rb, "b0", true);
      let e: Record<string, any>, s: Record<string, any>;
      try {
        e = client(T.ns.rc, ["echo", VIP, "82", "1000", T.rcIp], 5);
        s = client(T.ns.rc, ["spread", VIP, "82", "50", "4", "0", T.rcIp], 10);
      } finally {
        T.setTxCsum(T.ns.rc, "c0", false);
        T.setTxCsum(T.ns.rb, "b0", false);
      }
      const csumErrors = errors() - before;
      report.push({ case: `partial checksums, ${mode}`, connections: 51, csumErrors });
      expect({ echo: e.error ?? (e.recvSha === e.sentSha && e.received), greetings: s.error ?? s.byIp?.[T.rcIp]?.rb, failures: s.failures, csumErrors }).toEqual({
        echo: 1000,
        greetings: 50,
        failures: 0,
        csumErrors: 0,
      });
    }

    test("generic XDP: partial in, partial out (the router completes them)", () => {
      echoes("generic");
    }, 60_000);

    test("native XDP: partial in, completed by the program (XDP_TX sends the bytes as they are)", async () => {
      await stopLb();
      run(T.base.ns.br, "ip", "link", "set", "dev", "p-lb", "xdpdrv", "obj", PASS_OBJ, "sec", "xdp");
      try {
        lb = await startLb("native");
        echoes("native");
      } finally {
        await stopLb();
        run(T.base.ns.br, "ip", "link", "set", "dev", "p-lb", "xdpdrv", "off");
      }
    }, 60_000);
  });
}
