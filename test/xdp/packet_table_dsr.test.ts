/**
 * forwarding: dsr through BPF_PROG_TEST_RUN (bpf/dsr.h), packet by packet: every client packet leaves
 * byte for byte as it came but for the two MACs (no address, port, option or checksum changes), a flow
 * is a handshake until the client's first ACK, then established and counted, closed (gauge −1, once)
 * by the client's FIN or RST but kept for its last packets, started over by a SYN; nothing is ever
 * written to the reverse tables. The world of fixture.ts (CFG_STATIC_NEIGH, MACs from flb_nbr) with a
 * second service on VIP:8080 (the backends' port: DSR translates none) marked SVC_DSR.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ALGORITHMS } from "../../src/control/algorithms/index.ts";
import { FLOW_KEY, FLOW_STATE, SVC_FLAGS, ipv4ToU32 } from "../../src/dataplane/xdp/layout.ts";
import { monotonicSeconds } from "../../src/dataplane/xdp/libbpf.ts";
import { loadTestProgram, type TestProgram } from "./program-test.ts";
import { LB_MAC, TCP, hex, tcpPacket, type TcpSpec } from "./packets.ts";
import { BACKENDS, BE_PORT, CLIENT, VIP, XDP_PASS, XDP_TX, beMac, members, setupProgram } from "./fixture.ts";
import { bpfSuiteEnabled } from "./require.ts";

const DSR = 1; // service index
const packet = (sport: number, flags: number, o: Partial<TcpSpec> = {}): TcpSpec => ({ src: CLIENT, dst: VIP, sport, dport: BE_PORT, flags, seq: 1000, ...o });
/** The client packet as the backend must get it: the same bytes, the LB's MAC as source, the backend's as destination. */
const toBackend = (s: TcpSpec, be: number) => tcpPacket({ ...s, srcMac: LB_MAC, dstMac: beMac(be) });
const keyOf = (sport: number) => FLOW_KEY.encode({ saddr: ipv4ToU32(CLIENT), daddr: ipv4ToU32(VIP), sport, dport: BE_PORT });

if (bpfSuiteEnabled("xdp packet table, forwarding: dsr")) {
  let p: TestProgram;

  beforeAll(async () => {
    p = await loadTestProgram({ flowTableSize: 65536 });
    setupProgram(p);
    p.setService(DSR, ipv4ToU32(VIP), BE_PORT, SVC_FLAGS.DSR);
    BACKENDS.forEach((ip, i) => p.setBackend(DSR, i, ipv4ToU32(ip), BE_PORT));
    p.writePlan(DSR, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
  });
  afterAll(() => p?.close());

  /** Run `s` from the client; it must leave for backend `be` with only its MACs changed. */
  const carried = (s: TcpSpec, be: number) => {
    const r = p.run(tcpPacket(s));
    expect(r.retval).toBe(XDP_TX);
    expect(hex(r.data)).toBe(hex(toBackend(s, be)));
  };

  describe("one flow, as the LB sees it (the client's side only)", () => {
    const port = 6000;
    const opts = Uint8Array.of(2, 4, 0x05, 0xb4, 1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0); // MSS, NOP, NOP, timestamps
    test("SYN → the first backend, only the MACs rewritten (options, timestamps, checksum untouched); a handshake, not counted", () => {
      carried(packet(port, TCP.SYN, { tcpOptions: opts }), 0);
      expect(p.flowCounts()).toEqual({ fwd: 0, rev: 0, synFwd: 1, synRev: 0 });
      expect(p.backendActive(DSR, 0)).toBe(0);
    });
    test("a retransmitted SYN follows it", () => {
      carried(packet(port, TCP.SYN, { tcpOptions: opts }), 0);
      expect(p.flowCounts()).toEqual({ fwd: 0, rev: 0, synFwd: 1, synRev: 0 });
    });
    test("the client's first ACK establishes it: counted once, FLOW_DSR, no reverse entry, no SNAT port", () => {
      carried(packet(port, TCP.ACK, { seq: 1001, ack: 7001 }), 0);
      expect(p.flowCounts()).toEqual({ fwd: 1, rev: 0, synFwd: 0, synRev: 0 });
      expect(p.backendActive(DSR, 0)).toBe(1);
      const f = p.lookupFlow(keyOf(port))!;
      expect(f.state & (FLOW_STATE.DSR | FLOW_STATE.COUNTED)).toBe(FLOW_STATE.DSR | FLOW_STATE.COUNTED);
      expect(f.snat_port).toBe(0);
    });
    test("data with any sequence numbers goes the same way (no window to check without the backend's side)", () => {
      carried(packet(port, TCP.ACK | TCP.PSH, { seq: 1001, ack: 7001, payload: new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n") }), 0);
      carried(packet(port, TCP.ACK, { seq: 0x12345678, ack: 9 }), 0);
    });
    test("the client's FIN closes it (gauge −1) and is carried; its last ACK still reaches the backend", () => {
      carried(packet(port, TCP.FIN | TCP.ACK, { seq: 1019, ack: 7001 }), 0);
      expect(p.backendActive(DSR, 0)).toBe(0);
      expect(p.lookupFlow(keyOf(port))!.state & FLOW_STATE.CLOSED).toBe(FLOW_STATE.CLOSED);
      carried(packet(port, TCP.ACK, { seq: 1020, ack: 7002 }), 0);
      carried(packet(port, TCP.RST, { seq: 1020 }), 0); // a second close changes nothing
      expect(p.backendActive(DSR, 0)).toBe(0);
      expect(p.flowCounts()).toEqual({ fwd: 1, rev: 0, synFwd: 0, synRev: 0 });
    });
    test("a SYN on the closed 4-tuple starts a new flow, picked anew (round robin: the next backend)", () => {
      carried(packet(port, TCP.SYN, { seq: 50_000 }), 1);
      expect(p.flowCounts()).toEqual({ fwd: 0, rev: 0, synFwd: 1, synRev: 0 });
    });
    test("an RST during the handshake is carried and ends it", () => {
      carried(packet(port, TCP.RST, { seq: 50_001 }), 1);
      expect(p.flowCounts()).toEqual({ fwd: 0, rev: 0, synFwd: 0, synRev: 0 });
    });
  });

  describe("what is not a flow", () => {
    test("a non-SYN packet of no flow is passed (the kernel resets its sender)", () => {
      const s = packet(6100, TCP.ACK, { ack: 5 });
      const r = p.run(tcpPacket(s));
      expect(r.retval).toBe(XDP_PASS);
      expect(hex(r.data)).toBe(hex(tcpPacket(s)));
    });
    test("the client's RST on an established flow closes it (gauge −1) and keeps it", () => {
      carried(packet(6200, TCP.SYN), 2);
      carried(packet(6200, TCP.ACK, { seq: 1001, ack: 1 }), 2);
      expect(p.backendActive(DSR, 2)).toBe(1);
      carried(packet(6200, TCP.RST | TCP.ACK, { seq: 1001, ack: 1 }), 2);
      expect(p.backendActive(DSR, 2)).toBe(0);
      expect(p.lookupFlow(keyOf(6200))!.state & FLOW_STATE.CLOSED).toBe(FLOW_STATE.CLOSED);
    });
    test("the backend → client counters stay 0: no packet of a DSR service ever came from a backend", () => {
      const c = p.serviceCounters(DSR);
      expect({ packets_out: c.packets_out, bytes_out: c.bytes_out }).toEqual({ packets_out: 0, bytes_out: 0 });
      expect(c.packets_in).toBe(13);
      expect(c.flows_new).toBe(2);
    });
  });

  describe("the sweeper", () => {
    test("expires DSR flows: a handshake after SYN_TIMEOUT_S, an open flow after its idle timeout, a closed one after half_close_timeout", async () => {
      carried(packet(6300, TCP.SYN), 0); // a handshake
      carried(packet(6400, TCP.SYN), 1);
      carried(packet(6400, TCP.ACK, { seq: 1001, ack: 1 }), 1); // open, counted
      expect(p.flowCounts()).toEqual({ fwd: 2, rev: 0, synFwd: 1, synRev: 0 }); // 6200 (closed) and 6400
      const now = monotonicSeconds();
      // Nothing is old yet: the open flow stays counted (the least-connection recount sees it).
      const fresh = await p.sweepFlows(() => 300, 60, now);
      expect(fresh.deleted).toBe(0);
      expect(fresh.open.get(p.keys.backend(DSR, 1))).toBe(1);
      expect((await p.sweepHandshakes(now + 10)).deleted).toBe(1);
      // The closed flow (6200): after the service's half_close_timeout (here 20 s), not the NAT linger (60 s).
      expect((await p.sweepFlows(() => 300, 60, now + 15, undefined, { dsrClosed: () => 20 })).deleted).toBe(0);
      const later = await p.sweepFlows(() => 300, 60, now + 30, undefined, { dsrClosed: () => 20 });
      expect({ deleted: later.deleted, expired: later.expired }).toEqual({ deleted: 1, expired: 0 });
      const idle = await p.sweepFlows(() => 300, 60, now + 400); // the open one, idle
      expect({ deleted: idle.deleted, expired: idle.expired }).toEqual({ deleted: 1, expired: 1 });
      expect(p.flowCounts()).toEqual({ fwd: 0, rev: 0, synFwd: 0, synRev: 0 });
    });
  });

  describe("a backend that dies during a handshake", () => {
    test("a retransmitted SYN whose backend left the pick set is balanced anew (syn_moved)", () => {
      const syn = packet(6900, TCP.SYN, { seq: 60_000 });
      const first = p.run(tcpPacket(syn));
      expect(first.retval).toBe(XDP_TX);
      const be = BACKENDS.findIndex((_, i) => hex(first.data) === hex(toBackend(syn, i)));
      expect(be).toBeGreaterThanOrEqual(0);
      p.setBackend(DSR, be, ipv4ToU32(BACKENDS[be]!), BE_PORT, false); // the health check took it out
      p.writePlan(DSR, ALGORITHMS.round_robin.plan(members([1, 1, 1]).filter((m) => m.id !== be), { maglevTableSize: 65537 }));
      try {
        const moved = p.reasonRow(DSR).syn_moved;
        const r = p.run(tcpPacket(syn));
        expect(r.retval).toBe(XDP_TX);
        expect(hex(r.data)).not.toBe(hex(toBackend(syn, be)));
        expect(p.reasonRow(DSR).syn_moved).toBe(moved + 1);
        expect(p.flowCounts().synFwd).toBe(1);
        p.run(tcpPacket(packet(6900, TCP.RST, { seq: 60_001 })));
      } finally {
        p.setBackend(DSR, be, ipv4ToU32(BACKENDS[be]!), BE_PORT);
        p.writePlan(DSR, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
      }
    });
  });
}
