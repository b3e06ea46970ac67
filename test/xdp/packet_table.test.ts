/**
 * Packet-table tests of the XDP program through BPF_PROG_TEST_RUN (Katran's fixture style): each row is
 * (description, input packet, expected action, expected output packet). Expected packets are built from
 * scratch with checksums computed over the whole header (packets.ts), and compared byte for byte.
 *
 * The program runs with CFG_STATIC_NEIGH (a TEST ONLY flag in flb_config): MACs come from the flb_nbr
 * map instead of bpf_fib_lookup, since the test process has no routes to these addresses (fixture.ts).
 * The fib path is exercised by the network-namespace test (netns.test.ts). ICMP errors and partial
 * checksums have their own table (packet_table_icmp.test.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ALGORITHMS } from "../../src/control/algorithms/index.ts";
import { clientHash } from "../../src/control/algorithms/hash.ts";
import { Picker } from "../../src/control/algorithms/picker.ts";
import { CFG_FLAGS, FLOW_KEY, FLOW_STATE, MAX_BACKENDS, TIMING, ipv4ToU32 } from "../../src/dataplane/xdp/layout.ts";
import { XdpError } from "../../src/dataplane/xdp/errors.ts";
import { EINVAL } from "../../src/dataplane/xdp/libbpf.ts";
import { TEST_CAPACITY, loadTestProgram, type TestProgram } from "./program-test.ts";
import {
  CLIENT_MAC,
  ETH_P_8021Q,
  ETH_P_ARP,
  ETH_P_IP,
  ETH_P_IPV6,
  LB_MAC,
  TCP,
  ethernet,
  TCPOPT,
  hex,
  ipv4,
  linuxDataOptions,
  linuxSynOptions,
  mac,
  monotonicMs,
  parseTcp,
  tcpChecksumOk,
  tcpOptionsOf,
  tcpPacket,
  tcpSegment,
  timestamps,
  tsOption,
  type TcpSpec,
} from "./packets.ts";
import { BACKENDS, BE_PORT, LB_ADDR, SNAT, VIP, VPORT, XDP_DROP, XDP_PASS, XDP_TX, backendOf, backendPkt, beMac, client, clientOf, fromBackend, handshake, members, rstFor, runRow, setupProgram, toBackend, toBackendOf, type Opened } from "./fixture.ts";
import { bpfSuiteEnabled } from "./require.ts";

if (bpfSuiteEnabled("xdp packet table")) {
  let p: TestProgram;

  beforeAll(async () => {
    p = await loadTestProgram({ flowTableSize: 65536 });
    setupProgram(p);
    p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
  });
  afterAll(() => p?.close());

  /** Run a row whose output must be exactly `expected` (or the input itself for PASS rows). */
  const row = (input: Uint8Array, action: number, expected?: Uint8Array) => runRow(p, input, action, expected);

  describe("passes what it does not balance, untouched", () => {
    const unknown = tcpPacket(client(1111, TCP.SYN));
    const cases: [string, () => Uint8Array, string][] = [
      ["Ethernet header only (14 bytes)", () => ethernet(LB_MAC, CLIENT_MAC, ETH_P_IP, new Uint8Array(0)), "truncated"],
      ["truncated IPv4 header (10 bytes)", () => unknown.slice(0, 14 + 10), "truncated"],
      ["truncated TCP header (10 bytes)", () => unknown.slice(0, 14 + 20 + 10), "truncated"],
      ["IPv4 with options (IHL 6)", () => tcpPacket(client(1112, TCP.SYN, { ipOptions: Uint8Array.of(1, 1, 1, 0) })), "ip_options"],
      ["first fragment (MF)", () => tcpPacket(client(1113, TCP.SYN, { fragOff: 0x2000 })), "fragment"],
      ["later fragment (offset 8)", () => tcpPacket(client(1114, TCP.SYN, { fragOff: 0x0001 })), "fragment"],
      ["802.1Q VLAN-tagged IPv4", () => ethernet(LB_MAC, CLIENT_MAC, ETH_P_8021Q, Uint8Array.of(0, 5, 0x08, 0, ...unknown.slice(14))), "not_ipv4"],
      ["IPv6", () => ethernet(LB_MAC, CLIENT_MAC, ETH_P_IPV6, new Uint8Array(60).fill(0x60, 0, 1)), "not_ipv4"],
      ["ARP", () => ethernet("ff:ff:ff:ff:ff:ff", CLIENT_MAC, ETH_P_ARP, new Uint8Array(28)), "not_ipv4"],
      ["UDP to the service address and port", () => ethernet(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4("10.0.0.10", VIP, 17, Uint8Array.of(0x12, 0x34, 0, 80, 0, 8, 0, 0))), "not_tcp"],
      ["ICMP echo to the service address", () => ethernet(LB_MAC, CLIENT_MAC, ETH_P_IP, ipv4("10.0.0.10", VIP, 1, Uint8Array.of(8, 0, 0xf7, 0xff, 0, 0, 0, 0))), "not_tcp"],
      ["TCP SYN to another port of the LB", () => tcpPacket({ ...client(1115, TCP.SYN), dport: 22 }), "not_ours"],
      ["non-SYN first packet of an unknown flow", () => tcpPacket(client(1116, TCP.ACK, { ack: 5 })), "no_flow"],
      ["backend packet to a SNAT port without a flow", () => fromBackend(0, SNAT.first + 7, 1, TCP.ACK).input, "no_flow_backend"],
      ["the LB's own traffic (reply to a health check, port below the SNAT range)", () => tcpPacket({ src: BACKENDS[0]!, dst: LB_ADDR, sport: BE_PORT, dport: 35000, flags: TCP.SYN | TCP.ACK }), "not_ours"],
    ];
    for (const [desc, input, reason] of cases) {
      test(desc, () => {
        const before = p.reasons()[reason as keyof ReturnType<TestProgram["reasons"]>];
        row(input(), XDP_PASS);
        expect(p.reasons()[reason as keyof ReturnType<TestProgram["reasons"]>]).toBe(before + 1);
      });
    }
    test("truncated Ethernet (13 bytes): the kernel refuses the run (drivers never deliver < 14)", () => {
      let err: unknown;
      try {
        p.run(ethernet(LB_MAC, CLIENT_MAC, ETH_P_IP, new Uint8Array(0)).slice(0, 13));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(XdpError);
      expect((err as XdpError).errno).toBe(EINVAL);
    });
    test("no PASS row created flow state", () => {
      expect(p.flowCounts()).toEqual({ fwd: 0, rev: 0, synFwd: 0, synRev: 0 });
    });
  });

  describe("NAT both ways", () => {
    let snat = 0;
    let be = -1;
    const syn = client(5000, TCP.SYN, { seq: 111, tcpOptions: Uint8Array.of(2, 4, 0x05, 0xb4) });

    test("client SYN → rewritten to a backend from the SNAT address (not the VIP):snat, MACs from the neighbour table", () => {
      const r = p.run(tcpPacket(syn));
      expect(r.retval).toBe(XDP_TX);
      be = backendOf(r.data);
      snat = parseTcp(r.data).sport;
      expect(be).toBe(0); // round robin starts at slot 0
      expect(snat).toBeGreaterThanOrEqual(SNAT.first);
      expect(snat).toBeLessThanOrEqual(SNAT.last);
      expect(hex(r.data)).toBe(hex(toBackend(syn, be, snat)));
      // A SYN is a handshake, not yet a flow: the handshake table holds it, the gauge does not count it.
      expect(p.backendActive(0, be)).toBe(0);
      expect(p.flowCounts()).toEqual({ fwd: 0, rev: 0, synFwd: 1, synRev: 1 });
    });
    test("backend SYN-ACK → rewritten to the client from VIP:80", () => {
      const { input, expected } = fromBackend(be, snat, 5000, TCP.SYN | TCP.ACK, { seq: 9000, ack: 112 });
      row(input, XDP_TX, expected);
    });
    test("client data (odd length, 1461 bytes) acknowledging the SYN-ACK → backend, checksum exact; the flow is established", () => {
      const payload = crypto.getRandomValues(new Uint8Array(1461));
      const s = client(5000, TCP.ACK | TCP.PSH, { seq: 112, ack: 9001, payload });
      const established = p.reasons().established;
      row(tcpPacket(s), XDP_TX, toBackend(s, be, snat));
      expect(p.serviceCounters(0).bytes_in).toBe(1461);
      expect(p.backendActive(0, be)).toBe(1);
      expect(p.flowCounts()).toEqual({ fwd: 1, rev: 1, synFwd: 0, synRev: 0 });
      expect(p.reasons().established).toBe(established + 1);
      expect(p.serviceCounters(0).flows_new).toBe(1);
    });
    test("a backend packet to the VIP (not the SNAT address) on the flow's SNAT port is passed: replies are recognised by SNAT address + port", () => {
      // Behind ECMP every instance holds the VIP: a reply addressed to it is no instance's own.
      const { input } = fromBackend(be, snat, 5000, TCP.ACK, { seq: 9001, ack: 1573, dst: VIP });
      const passed = p.reasons().no_flow_backend;
      row(input, XDP_PASS);
      expect(p.reasons().no_flow_backend).toBe(passed + 1);
      expect(p.serviceCounters(0).packets_out).toBe(1);
    });
    test("backend data → client", () => {
      const payload = crypto.getRandomValues(new Uint8Array(700));
      const { input, expected } = fromBackend(be, snat, 5000, TCP.ACK, { seq: 9001, ack: 1573, payload });
      row(input, XDP_TX, expected);
      const s = p.serviceCounters(0);
      expect(s.bytes_out).toBe(700);
      expect(s.packets_out).toBe(2);
      expect(p.backendCounters(0, be).packets_in).toBe(2);
    });
    test("client without a kernel neighbour entry: the reply goes to the MAC its SYN came from", () => {
      const s: TcpSpec = { src: "10.0.2.5", dst: VIP, sport: 5100, dport: VPORT, flags: TCP.SYN, srcMac: "02:00:00:00:00:77" };
      const r = p.run(tcpPacket(s));
      expect(r.retval).toBe(XDP_TX);
      const b = backendOf(r.data);
      const port = parseTcp(r.data).sport;
      const before = p.reasons().neigh_learned;
      const spec: TcpSpec = { srcMac: beMac(b), dstMac: LB_MAC, src: BACKENDS[b]!, dst: LB_ADDR, sport: BE_PORT, dport: port, flags: TCP.SYN | TCP.ACK, ack: 1001 };
      row(tcpPacket(spec), XDP_TX, tcpPacket({ ...spec, srcMac: LB_MAC, dstMac: "02:00:00:00:00:77", src: VIP, dst: "10.0.2.5", sport: VPORT, dport: 5100 }));
      expect(p.reasons().neigh_learned).toBe(before + 1);
      // The client gives up during the handshake: an RST at its next sequence number ends it.
      row(tcpPacket({ ...s, flags: TCP.RST, seq: 1001 }), XDP_TX, toBackend({ ...s, flags: TCP.RST, seq: 1001 }, b, port));
    });
    test("SYN retransmission of an open flow keeps its backend and port", () => {
      const r = p.run(tcpPacket(syn));
      expect(r.retval).toBe(XDP_TX);
      expect(hex(r.data)).toBe(hex(toBackend(syn, be, snat)));
      expect(p.backendActive(0, be)).toBe(1);
    });
    test("a backend's new MAC reaches its open flow within a second (the per-flow next hop is re-resolved each second)", async () => {
      const f = handshake(p, 5200);
      const b = f.be;
      const port = f.snat;
      const data = client(5200, TCP.ACK, { seq: f.cseq, ack: f.bseq });
      /** Client packets until the backend-facing destination MAC is `want`; ms it took (or -1 after 2.5 s). */
      const msUntil = async (want: string) => {
        const t0 = performance.now();
        while (performance.now() - t0 < 2500) {
          const out = p.run(tcpPacket(data));
          expect(out.retval).toBe(XDP_TX);
          if (hex(out.data.subarray(0, 6)) === hex(mac(want))) return performance.now() - t0;
          await Bun.sleep(20);
        }
        return -1;
      };
      expect(await msUntil(beMac(b))).toBeGreaterThanOrEqual(0);
      const moved = "02:00:00:00:00:99";
      p.setNeighbour(ipv4ToU32(BACKENDS[b]!), mac(moved));
      try {
        const ms = await msUntil(moved);
        expect(ms).toBeGreaterThanOrEqual(0);
        expect(ms).toBeLessThan(1200); // one coarse second plus a jiffy or two
        expect(hex(p.run(tcpPacket(data)).data)).toBe(hex(toBackend(data, b, port).map((x, i) => (i < 6 ? mac(moved)[i]! : x))));
      } finally {
        p.setNeighbour(ipv4ToU32(BACKENDS[b]!), mac(beMac(b)));
        expect(await msUntil(beMac(b))).toBeGreaterThanOrEqual(0); // no stale hop left for later rows
        expect(p.run(tcpPacket(client(5200, TCP.RST, { seq: f.cseq }))).retval).toBe(XDP_TX);
      }
    });
    test("200 random flows: every rewrite is byte-exact (incremental checksums vs from scratch)", () => {
      for (let i = 0; i < 200; i++) {
        const rnd = crypto.getRandomValues(new Uint32Array(3));
        const s: TcpSpec = {
          src: `10.0.1.${rnd[0]! & 255}`,
          dst: VIP,
          sport: 1024 + (rnd[1]! % 60000),
          dport: VPORT,
          flags: TCP.SYN,
          seq: rnd[2]!,
          payload: crypto.getRandomValues(new Uint8Array(i % 7)),
          ttl: 1 + (i % 255),
          id: rnd[1]! & 0xffff,
        };
        const r = p.run(tcpPacket(s));
        expect(r.retval).toBe(XDP_TX);
        const b = backendOf(r.data);
        const port = parseTcp(r.data).sport;
        expect(hex(r.data)).toBe(hex(toBackend(s, b, port)));
        const back = fromBackend(b, port, s.sport, TCP.SYN | TCP.ACK, { seq: rnd[0]!, ack: (s.seq! + 1) >>> 0, payload: crypto.getRandomValues(new Uint8Array(i % 5)) });
        const out = p.run(back.input);
        expect(out.retval).toBe(XDP_TX);
        expect(hex(out.data)).toBe(hex(tcpPacket({ ...back, srcMac: LB_MAC, dstMac: CLIENT_MAC, src: VIP, dst: s.src, sport: VPORT, dport: s.sport, flags: TCP.SYN | TCP.ACK, seq: rnd[0]!, ack: (s.seq! + 1) >>> 0, payload: back.input.slice(54) })));
      }
    });
  });

  describe("TCP timestamp modulation: TSvals toward backends come from one LB clock", () => {
    const u32 = (n: number) => n >>> 0;
    const s32 = (n: number) => n | 0;
    const onlyBackend0 = () => p.writePlan(0, ALGORITHMS.round_robin.plan([{ id: 0, weight: 1, key: "a" }], { maglevTableSize: 65537 }));
    const flowOf = (src: string, port: number) =>
      p.lookupFlow(FLOW_KEY.encode({ saddr: ipv4ToU32(src), daddr: ipv4ToU32(VIP), sport: port, dport: VPORT }));
    /** The backend reply `o` and what the client must get for it when its options become `outOptions`. */
    const reply = (snat: number, port: number, flags: number, o: Partial<TcpSpec>, outOptions: Uint8Array) => ({
      input: fromBackend(0, snat, port, flags, o).input,
      expected: fromBackend(0, snat, port, flags, { ...o, tcpOptions: outOptions }).expected,
    });
    /** Run `input` bracketed by CLOCK_MONOTONIC reads: the TSval' it got must lie in [before, after] (u32 ms). */
    function runOnLbClock(input: Uint8Array) {
      const before = monotonicMs();
      const r = p.run(input);
      const after = monotonicMs();
      expect(r.retval).toBe(XDP_TX);
      const ts = timestamps(r.data)!;
      expect(ts).toBeDefined();
      expect({ tsvalSinceBefore: u32(ts.tsval - before) <= u32(after - before) }).toEqual({ tsvalSinceBefore: true });
      return { r, ts };
    }

    beforeAll(onlyBackend0);
    afterAll(() => p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 })));

    describe("one flow (client TSvals near the u32 wrap)", () => {
      const PORT = 5200;
      const TS0 = 0xfffffff0; // the client's clock wraps during the flow
      let snat = 0;
      let off = 0;

      test("SYN: TSval' = LB clock, ts_off stored; MSS, SACK-permitted, NOP, wscale untouched; checksum exact", () => {
        const syn = client(PORT, TCP.SYN, { seq: 500, tcpOptions: linuxSynOptions(TS0) });
        const { r, ts } = runOnLbClock(tcpPacket(syn));
        snat = parseTcp(r.data).sport;
        off = u32(ts.tsval - TS0);
        expect(ts.tsecr).toBe(0);
        // Byte for byte what a from-scratch build with only TSval changed gives (all other options equal).
        expect(hex(r.data)).toBe(hex(toBackend({ ...syn, tcpOptions: linuxSynOptions(ts.tsval) }, 0, snat)));
        expect(tcpChecksumOk(r.data)).toBe(true);
        const f = flowOf("10.0.0.10", PORT)!;
        expect(f.state & FLOW_STATE.TS_MOD).toBe(FLOW_STATE.TS_MOD);
        expect(f.ts_off).toBe(off);
      });
      test("backend SYN-ACK: TSecr' = TSecr − ts_off echoes the client's own TSval; the backend's TSval untouched", () => {
        const { input, expected } = reply(snat, PORT, TCP.SYN | TCP.ACK, { seq: 7000, ack: 501, tcpOptions: linuxSynOptions(424242, u32(TS0 + off)) }, linuxSynOptions(424242, TS0));
        const r = row(input, XDP_TX, expected);
        expect(tcpChecksumOk(r.data)).toBe(true);
      });
      test("two client segments: TSval' = TSval + ts_off, so their difference is exactly the input's (1000)", () => {
        const outs = [TS0 + 7, TS0 + 1007].map((tsval, i) => {
          const s = client(PORT, TCP.ACK | TCP.PSH, { seq: 501 + i * 3, ack: 7001, payload: Uint8Array.of(1, 2, 3), tcpOptions: linuxDataOptions(u32(tsval), 424242) });
          const r = row(tcpPacket(s), XDP_TX, toBackend({ ...s, tcpOptions: linuxDataOptions(u32(tsval + off), 424242) }, 0, snat));
          expect(tcpChecksumOk(r.data)).toBe(true);
          return timestamps(r.data)!.tsval;
        });
        expect(u32(outs[1]! - outs[0]!)).toBe(1000);
      });
      test("backend data: TSecr' restores the client's TSval (across the client's u32 wrap)", () => {
        const payload = crypto.getRandomValues(new Uint8Array(333));
        const { input, expected } = reply(snat, PORT, TCP.ACK, { seq: 7001, ack: 507, payload, tcpOptions: linuxDataOptions(424300, u32(TS0 + 1007 + off)) }, linuxDataOptions(424300, u32(TS0 + 1007)));
        const r = row(input, XDP_TX, expected);
        expect(tcpChecksumOk(r.data)).toBe(true);
      });
      test("retransmitted SYN keeps its flow: same backend, same SNAT port, same ts_off (not re-stamped)", () => {
        const counts = p.flowCounts();
        const active = p.backendActive(0, 0);
        const syn = client(PORT, TCP.SYN, { seq: 500, tcpOptions: linuxSynOptions(u32(TS0 + 1000)) });
        row(tcpPacket(syn), XDP_TX, toBackend({ ...syn, tcpOptions: linuxSynOptions(u32(TS0 + 1000 + off)) }, 0, snat));
        expect(p.flowCounts()).toEqual(counts);
        expect(p.backendActive(0, 0)).toBe(active);
        expect(flowOf("10.0.0.10", PORT)!.ts_off).toBe(off);
      });
      const malformed: [string, Uint8Array, Uint8Array?][] = [
        ["timestamp option of length 9", Uint8Array.of(TCPOPT.NOP, TCPOPT.NOP, TCPOPT.TIMESTAMP, 9, 0, 0, 0, 1, 0, 0, 0, 2)],
        ["an option of length 0 before the timestamps", Uint8Array.of(TCPOPT.WSCALE, 0, ...tsOption(1, 2))],
        ["an option of length 1 before the timestamps", Uint8Array.of(TCPOPT.WSCALE, 1, ...tsOption(1, 2))],
        ["EOL before the timestamps", Uint8Array.of(TCPOPT.EOL, TCPOPT.EOL, ...tsOption(1, 2))],
        ["timestamps running past doff into the payload", Uint8Array.of(TCPOPT.NOP, TCPOPT.NOP, TCPOPT.TIMESTAMP, 10, 0, 0, 0, 1), Uint8Array.of(0, 0, 0, 2)],
        ["40 bytes of NOPs (the longest walk)", new Uint8Array(40).fill(TCPOPT.NOP)],
      ];
      for (const [desc, opts, payload] of malformed) {
        test(`${desc}: NAT only, options and payload unmodified`, () => {
          const s = client(PORT, TCP.ACK, { seq: 510, ack: 7334, tcpOptions: opts, payload });
          const r = row(tcpPacket(s), XDP_TX, toBackend(s, 0, snat));
          expect(hex(tcpOptionsOf(r.data))).toBe(hex(opts));
        });
      }
      test("a client segment without options in a modulated flow: NAT only", () => {
        const s = client(PORT, TCP.RST, { seq: 510 });
        row(tcpPacket(s), XDP_TX, toBackend(s, 0, snat));
        expect(flowOf("10.0.0.10", PORT)).toBeUndefined();
      });
    });

    test("SYN without timestamps: no modulation, and a later timestamp option passes through unchanged", () => {
      const f = handshake(p, 5210, { syn: { tcpOptions: Uint8Array.of(TCPOPT.MSS, 4, 0x05, 0xb4) } });
      expect(flowOf("10.0.0.10", 5210)!.state & FLOW_STATE.TS_MOD).toBe(0);
      const d = clientOf(f, TCP.ACK, { tcpOptions: linuxDataOptions(77, 88) });
      row(tcpPacket(d), XDP_TX, toBackendOf(f, d));
      const back = reply(f.snat, 5210, TCP.ACK, { seq: f.bseq, ack: f.cseq, tcpOptions: linuxDataOptions(99, 77) }, linuxDataOptions(99, 77));
      row(back.input, XDP_TX, back.expected);
      const rst = clientOf(f, TCP.RST);
      row(tcpPacket(rst), XDP_TX, toBackendOf(f, rst));
    });

    test("timestamps at an odd offset (NOP, TS, NOP): TSval' and TSecr' rewritten with exact checksums both ways", () => {
      const odd = (tsval: number, tsecr: number) => Uint8Array.of(TCPOPT.NOP, ...tsOption(tsval, tsecr), TCPOPT.NOP);
      const syn = client(5230, TCP.SYN, { seq: 900, tcpOptions: odd(0x12345678, 0) });
      const { r, ts } = runOnLbClock(tcpPacket(syn));
      const snat = parseTcp(r.data).sport;
      expect(tcpChecksumOk(r.data)).toBe(true);
      expect(hex(r.data)).toBe(hex(toBackend({ ...syn, tcpOptions: odd(ts.tsval, 0) }, 0, snat)));
      const off = u32(ts.tsval - 0x12345678);
      const back = reply(snat, 5230, TCP.SYN | TCP.ACK, { seq: 3000, ack: 901, tcpOptions: odd(0x0badcafe, ts.tsval) }, odd(0x0badcafe, 0x12345678));
      expect(tcpChecksumOk(row(back.input, XDP_TX, back.expected).data)).toBe(true);
      const d = client(5230, TCP.ACK, { seq: 901, ack: 3001, tcpOptions: odd(0x12345679, 0x0badcafe) });
      expect(tcpChecksumOk(row(tcpPacket(d), XDP_TX, toBackend({ ...d, tcpOptions: odd(u32(0x12345679 + off), 0x0badcafe) }, 0, snat)).data)).toBe(true);
      row(tcpPacket(client(5230, TCP.RST, { seq: 901 })), XDP_TX, toBackend(client(5230, TCP.RST, { seq: 901 }), 0, snat));
    });

    test("SYN whose options run past the end of the frame: forwarded, nothing read or written beyond data_end", () => {
      // doff says 40 bytes of options; the frame ends 30 bytes in, inside the timestamp option at 28.
      const opts = Uint8Array.of(...new Array(28).fill(TCPOPT.NOP), ...tsOption(5, 0), TCPOPT.NOP, TCPOPT.NOP);
      const full = tcpPacket(client(5220, TCP.SYN, { tcpOptions: opts }));
      const cut = full.slice(0, 14 + 20 + 20 + 30);
      const r = p.run(cut);
      expect(r.retval).toBe(XDP_TX);
      expect(r.data.length).toBe(cut.length);
      expect(hex(r.data.slice(14 + 20 + 20))).toBe(hex(cut.slice(14 + 20 + 20)));
      expect(flowOf("10.0.0.10", 5220)!.state & FLOW_STATE.TS_MOD).toBe(0);
      expect(p.run(tcpPacket(client(5220, TCP.RST, { seq: 1001 }))).retval).toBe(XDP_TX);
    });

    test("a SNAT port reused toward one backend by a client with a far-off clock: TSval' continues on the LB clock", async () => {
      const cfg = p.readConfig();
      p.writeConfig({ ...cfg, snatFirst: 50010, snatLast: 50010, smac: mac(LB_MAC) }); // one port: reuse is certain
      try {
        const X = { src: "10.0.1.1", port: 5300, ts: 123 };
        const Y = { src: "10.0.1.2", port: 5301, ts: 0x9abcdef0 }; // "older" than X by s32 comparison
        const sx: TcpSpec = { src: X.src, dst: VIP, sport: X.port, dport: VPORT, flags: TCP.SYN, tcpOptions: linuxSynOptions(X.ts) };
        const a = runOnLbClock(tcpPacket(sx));
        expect(parseTcp(a.r.data).sport).toBe(50010);
        expect(p.run(fromBackend(0, 50010, X.port, TCP.SYN | TCP.ACK, { seq: 5000, ack: 1001 }).input).retval).toBe(XDP_TX);
        // X's last segment (it completes the handshake), 3 ms later on X's clock; then X resets and its entries go.
        const last: TcpSpec = { ...sx, flags: TCP.ACK, seq: 1001, ack: 5001, tcpOptions: linuxDataOptions(X.ts + 3, 1) };
        const lastOut = timestamps(p.run(tcpPacket(last)).data)!.tsval;
        expect(u32(lastOut - a.ts.tsval)).toBe(3);
        expect(p.run(tcpPacket({ ...sx, flags: TCP.RST, seq: 1001, tcpOptions: undefined })).retval).toBe(XDP_TX);
        await Bun.sleep(5);
        const sy: TcpSpec = { src: Y.src, dst: VIP, sport: Y.port, dport: VPORT, flags: TCP.SYN, tcpOptions: linuxSynOptions(Y.ts) };
        const b = runOnLbClock(tcpPacket(sy));
        expect(parseTcp(b.r.data).sport).toBe(50010);
        expect(backendOf(b.r.data)).toBe(0);
        // What PAWS on the backend's TIME_WAIT socket asks: the new SYN's TSval is after the last one seen.
        expect(s32(b.ts.tsval - lastOut)).toBeGreaterThan(0);
        expect(s32(Y.ts - (X.ts + 3))).toBeLessThan(0); // …which the clients' own TSvals were not
        expect(p.run(tcpPacket({ ...sy, flags: TCP.RST, seq: 1001, tcpOptions: undefined })).retval).toBe(XDP_TX);
      } finally {
        p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
      }
    });
  });

  describe("FIN/RST tracking leaves no entries or counts behind", () => {
    const flowKey = (port: number) => FLOW_KEY.encode({ saddr: ipv4ToU32("10.0.0.10"), daddr: ipv4ToU32(VIP), sport: port, dport: VPORT });

    test("FIN from client, FIN from backend, then the client's ACK of the backend's FIN (checked by its ACK number): entries deleted, active −1 once", () => {
      const before = p.flowCounts();
      const f = handshake(p, 6000);
      const active = p.backendActive(0, f.be);
      const closed = p.serviceCounters(0).flows_closed;
      const finC = clientOf(f, TCP.FIN | TCP.ACK);
      row(tcpPacket(finC), XDP_TX, toBackendOf(f, finC));
      expect(p.backendActive(0, f.be)).toBe(active); // half-closed still counts
      const finB = backendPkt(f, TCP.FIN | TCP.ACK, { ack: f.cseq + 1 });
      row(finB.input, XDP_TX, finB.expected);
      expect(p.backendActive(0, f.be)).toBe(active - 1);
      expect(p.flowCounts()).toEqual({ ...before, fwd: before.fwd + 1, rev: before.rev + 1 }); // kept until the last ACK
      // An ACK after both FINs that does not acknowledge the backend's FIN is not the last ACK.
      const early = clientOf(f, TCP.ACK, { seq: f.cseq + 1 });
      row(tcpPacket(early), XDP_TX, toBackendOf(f, early));
      expect(p.flowCounts().fwd).toBe(before.fwd + 1);
      const last = clientOf(f, TCP.ACK, { seq: f.cseq + 1, ack: f.bseq + 1 });
      row(tcpPacket(last), XDP_TX, toBackendOf(f, last));
      expect(p.flowCounts()).toEqual(before);
      expect(p.lookupFlow(flowKey(6000))).toBeUndefined();
      expect(p.serviceCounters(0).flows_closed).toBe(closed + 1);
      // A retransmitted FIN afterwards is the kernel's business (it answers RST); counts do not move.
      row(finB.input, XDP_PASS);
      expect(p.backendActive(0, f.be)).toBe(active - 1);
    });

    test("FIN from backend first, then client: the backend's ACK of the client's FIN ends it, an ACK of less does not", () => {
      const before = p.flowCounts();
      const f = handshake(p, 6001);
      const active = p.backendActive(0, f.be);
      const finB = backendPkt(f, TCP.FIN | TCP.ACK);
      row(finB.input, XDP_TX, finB.expected);
      const fin = clientOf(f, TCP.FIN | TCP.ACK, { ack: f.bseq + 1 });
      row(tcpPacket(fin), XDP_TX, toBackendOf(f, fin));
      expect(p.backendActive(0, f.be)).toBe(active - 1);
      row(tcpPacket(fin), XDP_TX, toBackendOf(f, fin)); // a duplicate FIN does not decrement twice
      expect(p.backendActive(0, f.be)).toBe(active - 1);
      const short = backendPkt(f, TCP.ACK, { seq: f.bseq + 1, ack: f.cseq });
      row(short.input, XDP_TX, short.expected);
      expect(p.flowCounts().fwd).toBe(before.fwd + 1);
      const ack = backendPkt(f, TCP.ACK, { seq: f.bseq + 1, ack: f.cseq + 1 });
      row(ack.input, XDP_TX, ack.expected);
      expect(p.flowCounts()).toEqual(before);
    });

    test("RST from backend at the client's next number: translated, both entries deleted, active −1 exactly once", () => {
      const before = p.flowCounts();
      const f = handshake(p, 6002);
      const active = p.backendActive(0, f.be);
      const rst = backendPkt(f, TCP.RST | TCP.ACK);
      row(rst.input, XDP_TX, rst.expected);
      expect(p.backendActive(0, f.be)).toBe(active - 1);
      expect(p.flowCounts()).toEqual(before);
      row(rst.input, XDP_PASS); // a second RST finds no flow
      expect(p.backendActive(0, f.be)).toBe(active - 1);
    });

    test("RST from client at the backend's next number", () => {
      const before = p.flowCounts();
      const f = handshake(p, 6003);
      const active = p.backendActive(0, f.be);
      const rst = clientOf(f, TCP.RST);
      row(tcpPacket(rst), XDP_TX, toBackendOf(f, rst));
      expect(p.backendActive(0, f.be)).toBe(active - 1);
      expect(p.flowCounts()).toEqual(before);
    });

    test("a SYN reusing the 4-tuple of a closed (not yet forgotten) flow starts a new handshake", () => {
      const before = p.flowCounts();
      const f = handshake(p, 6004);
      const active = p.backendActive(0, f.be);
      const fin = clientOf(f, TCP.FIN | TCP.ACK);
      row(tcpPacket(fin), XDP_TX, toBackendOf(f, fin));
      const finB = backendPkt(f, TCP.FIN | TCP.ACK, { ack: f.cseq + 1 });
      row(finB.input, XDP_TX, finB.expected);
      expect(p.backendActive(0, f.be)).toBe(active - 1);
      const again = client(6004, TCP.SYN, { seq: 3000 });
      expect(p.run(tcpPacket(again)).retval).toBe(XDP_TX);
      expect(p.flowCounts()).toEqual({ ...before, synFwd: before.synFwd + 1, synRev: before.synRev + 1 });
      expect(p.run(tcpPacket(client(6004, TCP.RST, { seq: 3001 }))).retval).toBe(XDP_TX);
      expect(p.flowCounts()).toEqual(before);
    });
  });

  describe("RFC 5961: an RST ends a flow only at the receiver's next sequence number", () => {
    for (const side of ["client", "backend"] as const) {
      test(`from the ${side}: out of the window dropped and counted; in the window forwarded, the flow kept; at the next number it ends the flow`, () => {
        const f = handshake(p, side === "client" ? 6100 : 6101, { isn: 0xfffff000, bisn: 0x7ffff000 }); // numbers that wrap
        const before = p.flowCounts();
        const active = p.backendActive(0, f.be);
        const next = side === "client" ? f.cseq : f.bseq;
        const rst = (seq: number) => {
          const o = { seq: seq >>> 0 };
          if (side === "client") {
            const spec = clientOf(f, TCP.RST, o);
            return { input: tcpPacket(spec), expected: toBackendOf(f, spec) };
          }
          return backendPkt(f, TCP.RST | TCP.ACK, o);
        };
        const r0 = p.reasons();
        // The window is 64240 (no window scale in this handshake): RSTs before, far after, half the space away.
        for (const seq of [next - 1, next - 100000, next + 64241, next + 70000, next + 0x80000000]) {
          expect(p.run(rst(seq).input).retval).toBe(XDP_DROP);
        }
        expect(p.reasons().rst_out_of_window).toBe(r0.rst_out_of_window + 5);
        const inside = rst(next + 1000);
        row(inside.input, XDP_TX, inside.expected);
        expect(p.reasons().rst_in_window).toBe(r0.rst_in_window + 1);
        expect(p.flowCounts()).toEqual(before);
        expect(p.backendActive(0, f.be)).toBe(active);
        // The flow still carries data both ways.
        const c = clientOf(f, TCP.ACK | TCP.PSH, { payload: Uint8Array.of(1, 2, 3) });
        row(tcpPacket(c), XDP_TX, toBackendOf(f, c));
        const b = backendPkt(f, TCP.ACK, { ack: f.cseq + 3 });
        row(b.input, XDP_TX, b.expected);
        const exact = rst(side === "client" ? f.cseq + 3 : f.bseq);
        row(exact.input, XDP_TX, exact.expected);
        expect(p.backendActive(0, f.be)).toBe(active - 1);
        expect(p.flowCounts()).toEqual({ ...before, fwd: before.fwd - 1, rev: before.rev - 1 });
      });
    }

    test("spoofed segments cannot move the numbers the check relies on: a data segment beyond the window and an ACK of unsent data change nothing", () => {
      const f = handshake(p, 6102);
      const far = clientOf(f, TCP.ACK | TCP.PSH, { seq: f.cseq + 1_000_000, payload: Uint8Array.of(9) });
      row(tcpPacket(far), XDP_TX, toBackendOf(f, far)); // forwarded (the endpoint drops it), not tracked
      const lying = backendPkt(f, TCP.ACK, { ack: f.cseq + 500_000 });
      row(lying.input, XDP_TX, lying.expected);
      const flow = p.lookupFlow(FLOW_KEY.encode({ saddr: ipv4ToU32("10.0.0.10"), daddr: ipv4ToU32(VIP), sport: 6102, dport: VPORT }))!;
      expect({ clientEnd: flow.c2b.end, backendAck: flow.b2c.ack }).toEqual({ clientEnd: f.cseq, backendAck: f.cseq });
      // So an RST at the spoofed number is out of the window, and the genuine one still works.
      expect(p.run(tcpPacket(clientOf(f, TCP.RST, { seq: f.cseq + 1_000_001 }))).retval).toBe(XDP_DROP);
      const rst = clientOf(f, TCP.RST);
      row(tcpPacket(rst), XDP_TX, toBackendOf(f, rst));
    });
  });

  describe("handshakes: a SYN makes a handshake; only the client's ACK of the SYN-ACK makes a flow", () => {
    test("an ACK before the SYN-ACK, a SYN-ACK not acknowledging the SYN, an ACK not acknowledging the SYN-ACK: dropped, no flow", () => {
      const before = p.flowCounts();
      const r0 = p.reasons();
      const activeAll = () => [0, 1, 2].reduce((n, b) => n + p.backendActive(0, b), 0);
      const active0 = activeAll();
      const s = client(6200, TCP.SYN, { seq: 100 });
      const r = p.run(tcpPacket(s));
      expect(r.retval).toBe(XDP_TX);
      const f: Opened = { be: backendOf(r.data), snat: parseTcp(r.data).sport, port: 6200, src: "10.0.0.10", cseq: 101, bseq: 801 };
      expect(p.run(tcpPacket(clientOf(f, TCP.ACK))).retval).toBe(XDP_DROP); // no SYN-ACK yet
      expect(p.run(backendPkt(f, TCP.SYN | TCP.ACK, { seq: 800, ack: 555 }).input).retval).toBe(XDP_DROP);
      const synAck = backendPkt(f, TCP.SYN | TCP.ACK, { seq: 800, ack: 101 });
      row(synAck.input, XDP_TX, synAck.expected);
      expect(p.run(tcpPacket(clientOf(f, TCP.ACK, { ack: 12345 }))).retval).toBe(XDP_DROP);
      expect(p.run(tcpPacket(clientOf(f, TCP.ACK, { ack: 800 }))).retval).toBe(XDP_DROP); // one short
      expect(p.reasons().bad_handshake).toBe(r0.bad_handshake + 4);
      expect(p.flowCounts()).toEqual({ ...before, synFwd: before.synFwd + 1, synRev: before.synRev + 1 });
      expect(activeAll()).toBe(active0); // a handshake is not counted
      // The genuine ACK promotes: the entries move, the flow is counted once.
      const active = p.backendActive(0, f.be);
      const ack = clientOf(f, TCP.ACK);
      row(tcpPacket(ack), XDP_TX, toBackendOf(f, ack));
      expect(p.flowCounts()).toEqual({ ...before, fwd: before.fwd + 1, rev: before.rev + 1 });
      expect(p.backendActive(0, f.be)).toBe(active + 1);
      row(tcpPacket(ack), XDP_TX, toBackendOf(f, ack)); // a duplicate ACK is an established packet
      expect(p.backendActive(0, f.be)).toBe(active + 1);
      const rst = clientOf(f, TCP.RST);
      row(tcpPacket(rst), XDP_TX, toBackendOf(f, rst));
    });

    test("the backend answers the SYN with an ACK of an older connection (a stale socket on the 4-tuple): an RST from that ACK number goes back to it; the client's next SYN gets through", () => {
      const s = client(6150, TCP.SYN, { seq: 700 });
      const r = p.run(tcpPacket(s));
      expect(r.retval).toBe(XDP_TX);
      const be = backendOf(r.data);
      const snat = parseTcp(r.data).sport;
      // RFC 5961 §4's challenge ACK: the stale socket's own numbers, nothing to do with the SYN.
      const challenge = fromBackend(be, snat, 6150, TCP.ACK, { seq: 31337, ack: 424242, partialCsum: false }).input;
      const stale = p.reasons().stale_reset;
      const rst = tcpPacket({ srcMac: LB_MAC, dstMac: beMac(be), src: LB_ADDR, dst: BACKENDS[be]!, sport: snat, dport: BE_PORT, flags: TCP.RST, seq: 424242, ack: 0, window: 0, id: 0, ttl: 64 });
      row(challenge, XDP_TX, rst);
      expect(p.reasons().stale_reset).toBe(stale + 1);
      expect(p.reasonRow(0).stale_reset).toBe(1);
      // The handshake is still there: the retransmitted SYN takes the same backend and port.
      row(tcpPacket(s), XDP_TX, toBackend(s, be, snat));
      const synack = fromBackend(be, snat, 6150, TCP.SYN | TCP.ACK, { seq: 9000, ack: 701 });
      row(synack.input, XDP_TX, synack.expected);
      expect(p.run(tcpPacket(client(6150, TCP.RST, { seq: 701 }))).retval).toBe(XDP_TX);
    });

    test("the backend refuses (RST|ACK acknowledging the SYN): forwarded, the handshake ends; an RST acknowledging something else is dropped", () => {
      const before = p.flowCounts();
      const s = client(6201, TCP.SYN, { seq: 7777 });
      const r = p.run(tcpPacket(s));
      const f: Opened = { be: backendOf(r.data), snat: parseTcp(r.data).sport, port: 6201, src: "10.0.0.10", cseq: 7778, bseq: 0 };
      expect(p.run(backendPkt(f, TCP.RST | TCP.ACK, { seq: 0, ack: 9999 }).input).retval).toBe(XDP_DROP);
      const refused = backendPkt(f, TCP.RST | TCP.ACK, { seq: 0, ack: 7778 });
      row(refused.input, XDP_TX, refused.expected);
      expect(p.flowCounts()).toEqual(before);
    });

    test("a handshake whose reverse entry was evicted starts over on the client's retransmitted SYN; its ACK finds no flow", () => {
      const before = p.flowCounts();
      const s = client(6205, TCP.SYN, { seq: 300 });
      const r = p.run(tcpPacket(s));
      expect(r.retval).toBe(XDP_TX);
      const be = backendOf(r.data);
      const snat = parseTcp(r.data).sport;
      p.maps.synRev.delete({ saddr: ipv4ToU32(BACKENDS[be]!), daddr: ipv4ToU32(LB_ADDR), sport: BE_PORT, dport: snat });
      row(fromBackend(be, snat, 6205, TCP.SYN | TCP.ACK, { seq: 50, ack: 301 }).input, XDP_PASS); // no owner: the kernel resets the backend
      const again = p.run(tcpPacket(s));
      expect(again.retval).toBe(XDP_TX);
      expect(p.flowCounts()).toEqual({ ...before, synFwd: before.synFwd + 1, synRev: before.synRev + 1 });
      const port2 = parseTcp(again.data).sport;
      p.maps.synRev.delete({ saddr: ipv4ToU32(BACKENDS[backendOf(again.data)]!), daddr: ipv4ToU32(LB_ADDR), sport: BE_PORT, dport: port2 });
      row(tcpPacket(client(6205, TCP.ACK, { seq: 301, ack: 51 })), XDP_PASS);
      expect(p.flowCounts()).toEqual(before);
    });

    test(`an abandoned handshake's SNAT port is taken back for a new SYN after ${TIMING.SYN_TIMEOUT_S} s without a packet, not before`, () => {
      const cfg = p.readConfig();
      p.writeConfig({ ...cfg, snatFirst: 50020, snatLast: 50020, smac: mac(LB_MAC) }); // one port
      p.writePlan(0, ALGORITHMS.round_robin.plan([{ id: 0, weight: 1, key: "a" }], { maglevTableSize: 65537 }));
      try {
        const a = client(6210, TCP.SYN);
        expect(parseTcp(p.run(tcpPacket(a)).data).sport).toBe(50020);
        const b = client(6211, TCP.SYN);
        expect(p.run(tcpPacket(b)).retval).toBe(XDP_DROP); // the port is a live handshake's
        const key = FLOW_KEY.encode({ saddr: ipv4ToU32("10.0.0.10"), daddr: ipv4ToU32(VIP), sport: 6210, dport: VPORT });
        const held = p.maps.synFwd.lookup(key)!;
        p.maps.synFwd.update(key, { ...held, last_seen: held.last_seen - TIMING.SYN_TIMEOUT_S - 1 }); // as if 6 s went by
        p.maps.snatFull.update(0, 0n); // (the failed search above paused searches toward backend 0 for 100 ms)
        const reclaimed = p.reasons().port_reclaimed;
        const r = p.run(tcpPacket(b));
        expect(r.retval).toBe(XDP_TX);
        expect(parseTcp(r.data).sport).toBe(50020);
        expect(p.reasons().port_reclaimed).toBe(reclaimed + 1);
        expect(p.lookupFlow(key)!.state & FLOW_STATE.DEAD).toBe(FLOW_STATE.DEAD);
        // The abandoned client's late ACK finds a dead handshake: no flow, and it cannot promote onto b's port.
        expect(p.run(tcpPacket(client(6210, TCP.ACK, { seq: 1001, ack: 1 }))).retval).toBe(XDP_PASS);
        expect(p.run(tcpPacket(client(6211, TCP.RST, { seq: 1001 }))).retval).toBe(XDP_TX);
      } finally {
        p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
        p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
      }
    });

    test("a SYN flood churns only the handshake table: 600 established flows of a 1024-entry table all survive 6000 spoofed SYNs", async () => {
      const small = await loadTestProgram({ flowTableSize: 1024 });
      try {
        setupProgram(small);
        small.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
        const flows = Array.from({ length: 600 }, (_, i) => handshake(small, 30000 + i, { src: `10.0.1.${i % 200}` }));
        for (let i = 0; i < 6000; i++) {
          const rnd = crypto.getRandomValues(new Uint32Array(2));
          const src = `10.0.${3 + (rnd[0]! & 127)}.${rnd[0]! >>> 24}`;
          expect(small.run(tcpPacket({ src, dst: VIP, sport: 1024 + (rnd[1]! % 60000), dport: VPORT, flags: TCP.SYN, seq: rnd[1]! })).retval).toBe(XDP_TX);
        }
        const counts = small.flowCounts();
        expect(counts.synFwd).toBeLessThanOrEqual(1024);
        expect({ fwd: counts.fwd, rev: counts.rev }).toEqual({ fwd: 600, rev: 600 });
        let carried = 0;
        for (const f of flows) {
          const spec = clientOf(f, TCP.ACK);
          const r = small.run(tcpPacket(spec));
          if (r.retval === XDP_TX && hex(r.data) === hex(toBackendOf(f, spec))) carried++;
        }
        expect(carried).toBe(600);
      } finally {
        small.close();
      }
    }, 60_000);
  });

  describe("one flow, one truth: a packet is rewritten only if its forward and reverse entries agree", () => {
    const revKey = (f: Opened) => ({ saddr: ipv4ToU32(BACKENDS[f.be]!), daddr: ipv4ToU32(LB_ADDR), sport: BE_PORT, dport: f.snat });

    test("the reverse entry is gone (evicted): client packets are passed (pair_mismatch) and the forward entry is forgotten, active −1", () => {
      const f = handshake(p, 6300);
      const before = p.flowCounts();
      const active = p.backendActive(0, f.be);
      p.maps.rev.delete(revKey(f));
      const r0 = p.reasons().pair_mismatch;
      row(tcpPacket(clientOf(f, TCP.ACK)), XDP_PASS);
      expect(p.reasons().pair_mismatch).toBe(r0 + 1);
      expect(p.flowCounts()).toEqual({ ...before, fwd: before.fwd - 1, rev: before.rev - 1 });
      expect(p.backendActive(0, f.be)).toBe(active - 1);
      row(backendPkt(f, TCP.ACK).input, XDP_PASS);
    });

    test("the reverse entry names another flow: neither direction is rewritten", () => {
      const f = handshake(p, 6301);
      const rk = revKey(f);
      const r = p.maps.rev.lookup(rk)!;
      p.maps.rev.update(rk, { ...r, id: r.id + 1n });
      row(backendPkt(f, TCP.ACK).input, XDP_PASS);
      row(tcpPacket(clientOf(f, TCP.ACK)), XDP_PASS);
      p.maps.rev.delete(rk);
    });

    test("a port whose reverse entry was evicted goes to a new flow; the old flow's packets never reach it, its replies go to the new client only", () => {
      const cfg = p.readConfig();
      p.writeConfig({ ...cfg, snatFirst: 50030, snatLast: 50030, smac: mac(LB_MAC) });
      p.writePlan(0, ALGORITHMS.round_robin.plan([{ id: 0, weight: 1, key: "a" }], { maglevTableSize: 65537 }));
      try {
        const a = handshake(p, 6302, { src: "10.0.1.7" });
        p.maps.rev.delete(revKey(a)); // as an LRU eviction would
        const b = handshake(p, 6303, { src: "10.0.1.8", isn: 90_000, bisn: 70_000 });
        expect(b.snat).toBe(a.snat);
        // a's data is not rewritten onto b's connection at the backend.
        const late = clientOf(a, TCP.ACK | TCP.PSH, { payload: Uint8Array.of(1, 2, 3) });
        row(tcpPacket(late), XDP_PASS);
        // The backend's reply on the port reaches b.
        const reply = backendPkt(b, TCP.ACK | TCP.PSH, { payload: Uint8Array.of(4, 5) });
        row(reply.input, XDP_TX, reply.expected);
        expect(p.run(tcpPacket(clientOf(b, TCP.RST))).retval).toBe(XDP_TX);
      } finally {
        p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
        p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
      }
    });
  });

  describe("SYNs the kernel never sees: answered in XDP", () => {
    test("no healthy backend: the SYN (options and data included) is answered with an RST|ACK built in XDP, counted as no_backend; no state", () => {
      p.writePlan(0, ALGORITHMS.round_robin.plan([], { maglevTableSize: 65537 }));
      const before = p.flowCounts();
      const nb = p.reasonRow(0).no_backend;
      const s = client(7000, TCP.SYN, { seq: 0xfffffffe, tcpOptions: linuxSynOptions(5), payload: Uint8Array.of(1, 2, 3) });
      row(tcpPacket(s), XDP_TX, rstFor(s));
      expect(p.reasonRow(0).no_backend).toBe(nb + 1);
      expect(p.flowCounts()).toEqual(before);
      p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
    });
    test("backend MAC unknown (NO_NEIGH): the SYN is dropped (the client retransmits while it resolves), no state", () => {
      const before = p.flowCounts();
      p.setBackend(0, 2, ipv4ToU32("10.0.0.99"), BE_PORT); // no neighbour entry
      p.writePlan(0, ALGORITHMS.round_robin.plan([{ id: 2, weight: 1, key: "x" }], { maglevTableSize: 65537 }));
      const n = p.reasons().no_neigh;
      row(tcpPacket(client(7001, TCP.SYN)), XDP_DROP);
      expect(p.reasons().no_neigh).toBe(n + 1);
      expect(p.flowCounts()).toEqual(before);
      p.setBackend(0, 2, ipv4ToU32(BACKENDS[2]!), BE_PORT);
      p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
    });
    test("a retransmitted SYN whose backend left the pick set before answering is balanced anew (syn_moved); one whose backend is still in it keeps it", () => {
      const before = p.flowCounts();
      const syn = client(7050, TCP.SYN, { seq: 4242 });
      const first = p.run(tcpPacket(syn));
      expect(first.retval).toBe(XDP_TX);
      const be = backendOf(first.data);
      // Still eligible: the retransmission follows the handshake (same backend, same SNAT port).
      const again = p.run(tcpPacket(syn));
      expect({ be: backendOf(again.data), port: parseTcp(again.data).sport }).toEqual({ be, port: parseTcp(first.data).sport });
      // The health check takes the backend out: the plan loses it and its slot loses BACKEND_ELIGIBLE.
      const others = members([1, 1, 1]).filter((m) => m.id !== be);
      p.setBackend(0, be, ipv4ToU32(BACKENDS[be]!), BE_PORT, false);
      p.writePlan(0, ALGORITHMS.round_robin.plan(others, { maglevTableSize: 65537 }));
      try {
        const moved = p.reasonRow(0).syn_moved;
        const r = p.run(tcpPacket(syn));
        expect(r.retval).toBe(XDP_TX);
        expect(others.map((m) => m.id)).toContain(backendOf(r.data));
        expect(p.reasonRow(0).syn_moved).toBe(moved + 1);
        // One handshake for the 4-tuple, toward the new backend; the old one's entries are gone.
        expect(p.flowCounts()).toEqual({ ...before, synFwd: before.synFwd + 1, synRev: before.synRev + 1 });
        expect(p.run(tcpPacket(client(7050, TCP.RST, { seq: 4243 }))).retval).toBe(XDP_TX);
        expect(p.flowCounts()).toEqual(before);
      } finally {
        p.setBackend(0, be, ipv4ToU32(BACKENDS[be]!), BE_PORT);
        p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
      }
    });
    test("SNAT ports exhausted: the SYN is dropped and counted, no state; a flow toward the backend ending frees a port at once", () => {
      const cfg = p.readConfig();
      p.writeConfig({ ...cfg, snatFirst: 50000, snatLast: 50001, smac: mac(LB_MAC) }); // 2 ports
      p.writePlan(0, ALGORITHMS.round_robin.plan([{ id: 0, weight: 1, key: "a" }], { maglevTableSize: 65537 }));
      try {
        const before = p.flowCounts();
        const a = handshake(p, 7100);
        expect(p.run(tcpPacket(client(7101, TCP.SYN))).retval).toBe(XDP_TX);
        const failed = p.reasonRow(0).snat_exhausted;
        row(tcpPacket(client(7102, TCP.SYN)), XDP_DROP);
        row(tcpPacket(client(7102, TCP.SYN)), XDP_DROP); // within the 100 ms pause: no search at all
        expect(p.reasonRow(0).snat_exhausted).toBe(failed + 2);
        expect(p.flowCounts()).toEqual({ ...before, fwd: before.fwd + 1, rev: before.rev + 1, synFwd: before.synFwd + 1, synRev: before.synRev + 1 });
        expect(p.run(tcpPacket(clientOf(a, TCP.RST))).retval).toBe(XDP_TX); // a ends: its port is free again
        const r = p.run(tcpPacket(client(7102, TCP.SYN)));
        expect(r.retval).toBe(XDP_TX);
        expect(parseTcp(r.data).sport).toBe(a.snat);
        for (const port of [7101, 7102]) expect(p.run(tcpPacket(client(port, TCP.RST, { seq: 1001 }))).retval).toBe(XDP_TX);
        expect(p.flowCounts()).toEqual(before);
      } finally {
        p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
        p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
      }
    });
    test("SNAT allocation finds the one free port of a nearly full range (1024 ports, the free one far from the cursor)", () => {
      const cfg = p.readConfig();
      p.writeConfig({ ...cfg, snatFirst: 51000, snatLast: 52023, smac: mac(LB_MAC) });
      p.writePlan(0, ALGORITHMS.round_robin.plan([{ id: 0, weight: 1, key: "a" }], { maglevTableSize: 65537 }));
      const ports: number[] = [];
      try {
        for (let i = 0; i < 1024; i++) {
          const r = p.run(tcpPacket({ src: `10.0.4.${i & 255}`, dst: VIP, sport: 20000 + i, dport: VPORT, flags: TCP.SYN }));
          expect(r.retval).toBe(XDP_TX);
          ports.push(parseTcp(r.data).sport);
        }
        expect(new Set(ports).size).toBe(1024);
        const victim = 517; // give back one port in the middle of the range
        expect(p.run(tcpPacket({ src: `10.0.4.${victim & 255}`, dst: VIP, sport: 20000 + victim, dport: VPORT, flags: TCP.RST, seq: 1001 })).retval).toBe(XDP_TX);
        const r = p.run(tcpPacket({ src: "10.0.5.1", dst: VIP, sport: 20000, dport: VPORT, flags: TCP.SYN }));
        expect(r.retval).toBe(XDP_TX);
        expect(parseTcp(r.data).sport).toBe(ports[victim]!);
        ports.push(0);
      } finally {
        for (let i = 0; i < 1024; i++) p.run(tcpPacket({ src: `10.0.4.${i & 255}`, dst: VIP, sport: 20000 + i, dport: VPORT, flags: TCP.RST, seq: 1001 }));
        p.run(tcpPacket({ src: "10.0.5.1", dst: VIP, sport: 20000, dport: VPORT, flags: TCP.RST, seq: 1001 }));
        p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
        p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
      }
    });
    test("draining: new SYNs are answered with an RST, established flows keep working", () => {
      const f = handshake(p, 7002);
      const cfg = p.readConfig();
      p.writeConfig({ ...cfg, flags: cfg.flags | CFG_FLAGS.DRAINING, smac: mac(LB_MAC) });
      try {
        const s = client(7003, TCP.SYN, { seq: 42 });
        const d = p.reasonRow(0).draining;
        row(tcpPacket(s), XDP_TX, rstFor(s));
        expect(p.reasonRow(0).draining).toBe(d + 1);
        const data = clientOf(f, TCP.ACK);
        row(tcpPacket(data), XDP_TX, toBackendOf(f, data));
      } finally {
        p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
      }
      expect(p.run(tcpPacket(clientOf(f, TCP.RST))).retval).toBe(XDP_TX);
    });
  });

  describe("reloads", () => {
    test("a snat_ports change keeps flows on the previous range translating both ways while flb_config names it", () => {
      const f = handshake(p, 7200);
      const cfg = p.readConfig();
      p.writeConfig({ ...cfg, snatFirst: 30000, snatLast: 30999, prevFirst: SNAT.first, prevLast: SNAT.last, smac: mac(LB_MAC) });
      try {
        const b = backendPkt(f, TCP.ACK | TCP.PSH, { payload: Uint8Array.of(1) });
        row(b.input, XDP_TX, b.expected);
        const c = clientOf(f, TCP.ACK, { ack: f.bseq + 1 });
        row(tcpPacket(c), XDP_TX, toBackendOf(f, c));
        const r = p.run(tcpPacket(client(7201, TCP.SYN)));
        expect(parseTcp(r.data).sport).toBeGreaterThanOrEqual(30000);
        expect(parseTcp(r.data).sport).toBeLessThanOrEqual(30999);
        expect(p.run(tcpPacket(client(7201, TCP.RST, { seq: 1001 }))).retval).toBe(XDP_TX);
        // Without the previous range the backend's packets are not recognised (what happened before).
        p.writeConfig({ ...cfg, snatFirst: 30000, snatLast: 30999, smac: mac(LB_MAC) });
        row(backendPkt(f, TCP.ACK, { seq: f.bseq + 1 }).input, XDP_PASS);
      } finally {
        p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
      }
      expect(p.run(tcpPacket(clientOf(f, TCP.RST, { ack: f.bseq + 1 }))).retval).toBe(XDP_TX);
    });

    test("a new SNAT address: new flows leave from it, open flows keep the one they were opened with, both ways", () => {
      const f = handshake(p, 7250);
      const cfg = p.readConfig();
      const other = "10.0.0.3";
      p.writeConfig({ ...cfg, snatAddr: ipv4ToU32(other), smac: mac(LB_MAC) });
      try {
        const c = clientOf(f, TCP.ACK | TCP.PSH, { payload: Uint8Array.of(7) });
        row(tcpPacket(c), XDP_TX, toBackendOf(f, c)); // still from LB_ADDR
        const b = backendPkt(f, TCP.ACK, { ack: f.cseq + 1 });
        row(b.input, XDP_TX, b.expected);
        const syn = client(7251, TCP.SYN);
        const r = p.run(tcpPacket(syn));
        expect(r.retval).toBe(XDP_TX);
        const { sport } = parseTcp(r.data);
        const be = backendOf(r.data);
        expect(hex(r.data)).toBe(hex(tcpPacket({ ...syn, srcMac: LB_MAC, dstMac: beMac(be), src: other, dst: BACKENDS[be]!, sport, dport: BE_PORT })));
        const synack = fromBackend(be, sport, 7251, TCP.SYN | TCP.ACK, { seq: 3000, ack: 1001, dst: other });
        row(synack.input, XDP_TX, synack.expected);
        expect(p.run(tcpPacket(client(7251, TCP.RST, { seq: 1001 }))).retval).toBe(XDP_TX);
      } finally {
        p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
      }
      expect(p.run(tcpPacket(clientOf(f, TCP.RST, { seq: f.cseq + 1, ack: f.bseq }))).retval).toBe(XDP_TX);
    });

    test("another backend takes a slot (a new generation): flows of the previous one neither add to nor subtract from its gauge", () => {
      const f = handshake(p, 7300);
      expect(p.backendActive(0, f.be)).toBeGreaterThan(0);
      const gen = p.backendGen(0, f.be);
      p.resetBackendCounters(0, f.be);
      expect(p.backendGen(0, f.be)).toBe(gen + 1);
      expect(p.backendActiveRaw(0, f.be)).toBe(0);
      expect(p.run(tcpPacket(clientOf(f, TCP.RST))).retval).toBe(XDP_TX);
      expect(p.backendActiveRaw(0, f.be)).toBe(0); // not −1: the old flow was counted under the old generation
      const g = handshake(p, 7301, { src: "10.0.0.10" });
      expect(p.backendActiveRaw(0, g.be)).toBe(g.be === f.be ? 1 : p.backendActiveRaw(0, g.be));
      expect(p.run(tcpPacket(clientOf(g, TCP.RST))).retval).toBe(XDP_TX);
    });
  });

  describe("plan interpreter matches picker.ts", () => {
    let port = 10000;
    const synFrom = (src: string) => tcpPacket({ src, dst: VIP, sport: port++, dport: VPORT, flags: TCP.SYN });
    const pick = (src = "10.0.0.10") => {
      const r = p.run(synFrom(src));
      expect(r.retval).toBe(XDP_TX);
      return backendOf(r.data);
    };
    const opts = { maglevTableSize: 1009 };

    test("round_robin / weighted_round_robin: the exact sequence of the TS picker", () => {
      for (const name of ["round_robin", "weighted_round_robin"] as const) {
        const plan = ALGORITHMS[name].plan(members([5, 2, 3]), opts);
        p.writePlan(0, plan);
        const picker = new Picker(plan, { active: () => 0 });
        const want = Array.from({ length: 40 }, () => picker.pick({ clientHash: 0 }));
        const got = Array.from({ length: 40 }, () => pick());
        expect(got).toEqual(want);
      }
    });

    test("source_hash / maglev: slots[clientHash % len] for 300 client IPs (fmix32 identical in C)", () => {
      for (const name of ["source_hash", "maglev"] as const) {
        const plan = ALGORITHMS[name].plan(members([1, 2, 1]), opts);
        p.writePlan(0, plan);
        const picker = new Picker(plan, { active: () => 0 });
        for (let i = 0; i < 300; i++) {
          const ip = `10.0.1.${i % 256}`;
          expect(pick(ip)).toBe(picker.pick({ clientHash: clientHash(ip) }));
        }
      }
    });

    test("least_connections: lowest active/weight, ties to the earlier member, as picker.ts", () => {
      const plan = ALGORITHMS.least_connections.plan(members([1, 2, 1]), opts);
      p.writePlan(0, plan);
      [7, 3, 9].forEach((n, id) => p.setBackendActive(0, id, n));
      const picker = new Picker(plan, { active: (id) => p.backendActive(0, id) });
      for (let i = 0; i < 60; i++) {
        const want = picker.pick({ clientHash: 0 });
        expect(pick()).toBe(want); // each pick opens a flow: the active counts move on both sides alike
      }
    });

    test("random: only members, shares follow weights (±5% of 3000 picks)", () => {
      p.writePlan(0, ALGORITHMS.random.plan(members([1, 2, 1]), opts));
      const n = [0, 0, 0];
      for (let i = 0; i < 3000; i++) n[pick()]! += 1;
      expect(Math.abs(n[0]! / 3000 - 0.25)).toBeLessThan(0.05);
      expect(Math.abs(n[1]! / 3000 - 0.5)).toBeLessThan(0.05);
    });

    test("power_of_two: two distinct draws, so the heaviest of three is never chosen", () => {
      p.writePlan(0, ALGORITHMS.power_of_two.plan(members([1, 1, 1]), opts));
      [1_000_000, 0, 0].forEach((n, id) => p.setBackendActive(0, id, n));
      const n = [0, 0, 0];
      for (let i = 0; i < 300; i++) n[pick()]! += 1;
      expect(n[0]).toBe(0);
      expect(n[1]! + n[2]!).toBe(300);
    });

    test("a plan flip does not move established flows", () => {
      p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), opts));
      const f = handshake(p, 12000);
      p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]).filter((m) => m.id !== f.be), opts));
      const d = clientOf(f, TCP.ACK);
      row(tcpPacket(d), XDP_TX, toBackendOf(f, d));
      expect(pick()).not.toBe(f.be);
    });
  });

  describe("the largest service (MAX_BACKENDS members; maps sized at load time)", () => {
    test(`least_connections over ${MAX_BACKENDS} members finds the least loaded one, the last included; maglev over them too`, async () => {
      const big = await loadTestProgram({ flowTableSize: 65536, capacity: { ...TEST_CAPACITY, backends: MAX_BACKENDS, slots: 1 << 20 } });
      try {
        setupProgram(big);
        // Every member on one of the three backend addresses (so each has a neighbour entry); ids 0 … 4095.
        for (let id = 0; id < MAX_BACKENDS; id++) big.setBackend(0, id, ipv4ToU32(BACKENDS[id % 3]!), BE_PORT + id);
        const all = Array.from({ length: MAX_BACKENDS }, (_, id) => ({ id, weight: 1, key: `m${id}` }));
        big.writePlan(0, ALGORITHMS.least_connections.plan(all, { maglevTableSize: 65537 }));
        for (const least of [MAX_BACKENDS - 1, 1234]) {
          for (let id = 0; id < MAX_BACKENDS; id++) big.setBackendActive(0, id, id === least ? 0 : 5);
          const r = big.run(tcpPacket(client(13000 + least, TCP.SYN)));
          expect(r.retval).toBe(XDP_TX);
          expect(parseTcp(r.data).dport).toBe(BE_PORT + least);
        }
        const plan = ALGORITHMS.maglev.plan(all, { maglevTableSize: 409_609 });
        big.writePlan(0, plan);
        const picker = new Picker(plan, { active: () => 0 });
        for (let i = 0; i < 50; i++) {
          const src = `10.0.1.${i}`;
          const r = big.run(tcpPacket({ src, dst: VIP, sport: 14000 + i, dport: VPORT, flags: TCP.SYN }));
          expect(parseTcp(r.data).dport).toBe(BE_PORT + picker.pick({ clientHash: clientHash(src) }));
        }
      } finally {
        big.close();
      }
    });
  });

  describe("flow table full (LRU)", () => {
    test("1024-entry tables: 3000 new handshakes all get through; the newest still translates both ways", async () => {
      const small = await loadTestProgram({ flowTableSize: 1024 });
      try {
        setupProgram(small);
        small.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
        let last = { port: 0, be: 0, snat: 0 };
        for (let i = 0; i < 3000; i++) {
          const s: TcpSpec = { src: `10.0.1.${i % 256}`, dst: VIP, sport: 20000 + i, dport: VPORT, flags: TCP.SYN };
          const r = small.run(tcpPacket(s));
          expect(r.retval).toBe(XDP_TX);
          last = { port: s.sport, be: backendOf(r.data), snat: parseTcp(r.data).sport };
          expect(hex(r.data)).toBe(hex(toBackend(s, last.be, last.snat)));
        }
        const { synFwd, synRev } = small.flowCounts();
        expect(synFwd).toBeLessThanOrEqual(1024);
        expect(synRev).toBeLessThanOrEqual(1024);
        const src = `10.0.1.${2999 % 256}`;
        const spec: TcpSpec = { srcMac: beMac(last.be), dstMac: LB_MAC, src: BACKENDS[last.be]!, dst: LB_ADDR, sport: BE_PORT, dport: last.snat, flags: TCP.SYN | TCP.ACK, ack: 1001 };
        const out = small.run(tcpPacket(spec));
        expect(out.retval).toBe(XDP_TX);
        expect(hex(out.data)).toBe(hex(tcpPacket({ ...spec, srcMac: LB_MAC, dstMac: CLIENT_MAC, src: VIP, dst: src, sport: VPORT, dport: last.port })));
        expect(small.reasons().snat_exhausted).toBe(0);
      } finally {
        small.close();
      }
    });
  });
}
