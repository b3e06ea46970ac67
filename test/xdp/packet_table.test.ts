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
import { CFG_FLAGS, FLOW_KEY, FLOW_STATE, MAX_BACKENDS, ipv4ToU32 } from "../../src/dataplane/xdp/layout.ts";
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
import { BACKENDS, BE_PORT, SNAT, VIP, VPORT, XDP_PASS, XDP_TX, backendOf, beMac, client, fromBackend, members, runRow, setupProgram, toBackend } from "./fixture.ts";
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
      ["backend packet to a SNAT port without a flow", () => fromBackend(0, SNAT.first + 7, 1, TCP.ACK).input, "no_flow"],
      ["the LB's own traffic (reply to a health check, port below the SNAT range)", () => tcpPacket({ src: BACKENDS[0]!, dst: VIP, sport: BE_PORT, dport: 35000, flags: TCP.SYN | TCP.ACK }), "not_ours"],
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
      expect(p.flowCounts()).toEqual({ fwd: 0, rev: 0 });
    });
  });

  describe("NAT both ways", () => {
    let snat = 0;
    let be = -1;
    const syn = client(5000, TCP.SYN, { seq: 111, tcpOptions: Uint8Array.of(2, 4, 0x05, 0xb4) });

    test("client SYN → rewritten to a backend from VIP:snat, MACs from the neighbour table", () => {
      const r = p.run(tcpPacket(syn));
      expect(r.retval).toBe(XDP_TX);
      be = backendOf(r.data);
      snat = parseTcp(r.data).sport;
      expect(be).toBe(0); // round robin starts at slot 0
      expect(snat).toBeGreaterThanOrEqual(SNAT.first);
      expect(snat).toBeLessThanOrEqual(SNAT.last);
      expect(hex(r.data)).toBe(hex(toBackend(syn, be, snat)));
      expect(p.backendActive(0, be)).toBe(1);
    });
    test("backend SYN-ACK → rewritten to the client from VIP:80", () => {
      const { input, expected } = fromBackend(be, snat, 5000, TCP.SYN | TCP.ACK, { seq: 9000, ack: 112 });
      row(input, XDP_TX, expected);
    });
    test("client data (odd length, 1461 bytes) → backend, checksum exact", () => {
      const payload = crypto.getRandomValues(new Uint8Array(1461));
      const s = client(5000, TCP.ACK | TCP.PSH, { seq: 112, ack: 9001, payload });
      row(tcpPacket(s), XDP_TX, toBackend(s, be, snat));
      expect(p.serviceCounters(0).bytes_in).toBe(1461);
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
      const spec: TcpSpec = { srcMac: beMac(b), dstMac: LB_MAC, src: BACKENDS[b]!, dst: VIP, sport: BE_PORT, dport: port, flags: TCP.SYN | TCP.ACK };
      row(tcpPacket(spec), XDP_TX, tcpPacket({ ...spec, srcMac: LB_MAC, dstMac: "02:00:00:00:00:77", src: VIP, dst: "10.0.2.5", sport: VPORT, dport: 5100 }));
      expect(p.reasons().neigh_learned).toBe(before + 1);
      row(tcpPacket({ ...s, flags: TCP.RST }), XDP_TX, toBackend({ ...s, flags: TCP.RST }, b, port));
    });
    test("SYN retransmission of an open flow keeps its backend and port", () => {
      const r = p.run(tcpPacket(syn));
      expect(r.retval).toBe(XDP_TX);
      expect(hex(r.data)).toBe(hex(toBackend(syn, be, snat)));
      expect(p.backendActive(0, be)).toBe(1);
    });
    test("a backend's new MAC reaches its open flow within a second (the per-flow next hop is re-resolved each second)", async () => {
      const s = client(5200, TCP.SYN);
      const r = p.run(tcpPacket(s));
      expect(r.retval).toBe(XDP_TX);
      const b = backendOf(r.data);
      const port = parseTcp(r.data).sport;
      const data = client(5200, TCP.ACK, { seq: 1, ack: 1 });
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
        p.run(tcpPacket(client(5200, TCP.RST)));
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
        const { fwd, rev } = p.flowCounts();
        const active = p.backendActive(0, 0);
        const syn = client(PORT, TCP.SYN, { seq: 500, tcpOptions: linuxSynOptions(u32(TS0 + 1000)) });
        row(tcpPacket(syn), XDP_TX, toBackend({ ...syn, tcpOptions: linuxSynOptions(u32(TS0 + 1000 + off)) }, 0, snat));
        expect(p.flowCounts()).toEqual({ fwd, rev });
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
      const syn = client(5210, TCP.SYN, { tcpOptions: Uint8Array.of(TCPOPT.MSS, 4, 0x05, 0xb4) });
      const r = p.run(tcpPacket(syn));
      expect(r.retval).toBe(XDP_TX);
      const snat = parseTcp(r.data).sport;
      expect(hex(r.data)).toBe(hex(toBackend(syn, 0, snat)));
      expect(flowOf("10.0.0.10", 5210)!.state & FLOW_STATE.TS_MOD).toBe(0);
      const d = client(5210, TCP.ACK, { seq: 1001, ack: 1, tcpOptions: linuxDataOptions(77, 88) });
      row(tcpPacket(d), XDP_TX, toBackend(d, 0, snat));
      const back = reply(snat, 5210, TCP.ACK, { tcpOptions: linuxDataOptions(99, 77) }, linuxDataOptions(99, 77));
      row(back.input, XDP_TX, back.expected);
      row(tcpPacket(client(5210, TCP.RST)), XDP_TX, toBackend(client(5210, TCP.RST), 0, snat));
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
      expect(p.run(tcpPacket(client(5220, TCP.RST))).retval).toBe(XDP_TX);
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
        // X's last segment, 3 ms later on X's clock; then X resets and its entries go.
        const last: TcpSpec = { ...sx, flags: TCP.ACK, tcpOptions: linuxDataOptions(X.ts + 3, 1) };
        const lastOut = timestamps(p.run(tcpPacket(last)).data)!.tsval;
        expect(u32(lastOut - a.ts.tsval)).toBe(3);
        expect(p.run(tcpPacket({ ...sx, flags: TCP.RST, tcpOptions: undefined })).retval).toBe(XDP_TX);
        await Bun.sleep(5);
        const sy: TcpSpec = { src: Y.src, dst: VIP, sport: Y.port, dport: VPORT, flags: TCP.SYN, tcpOptions: linuxSynOptions(Y.ts) };
        const b = runOnLbClock(tcpPacket(sy));
        expect(parseTcp(b.r.data).sport).toBe(50010);
        expect(backendOf(b.r.data)).toBe(0);
        // What PAWS on the backend's TIME_WAIT socket asks: the new SYN's TSval is after the last one seen.
        expect(s32(b.ts.tsval - lastOut)).toBeGreaterThan(0);
        expect(s32(Y.ts - (X.ts + 3))).toBeLessThan(0); // …which the clients' own TSvals were not
        expect(p.run(tcpPacket({ ...sy, flags: TCP.RST, tcpOptions: undefined })).retval).toBe(XDP_TX);
      } finally {
        p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
      }
    });
  });

  describe("FIN/RST tracking leaves no entries or counts behind", () => {
    const flowKey = (port: number) => FLOW_KEY.encode({ saddr: ipv4ToU32("10.0.0.10"), daddr: ipv4ToU32(VIP), sport: port, dport: VPORT });

    function open(port: number): { be: number; snat: number } {
      const r = p.run(tcpPacket(client(port, TCP.SYN)));
      expect(r.retval).toBe(XDP_TX);
      return { be: backendOf(r.data), snat: parseTcp(r.data).sport };
    }

    test("FIN from client, FIN from backend, last ACK from client: both entries deleted, active −1 once", () => {
      const { fwd, rev } = p.flowCounts();
      const { be, snat } = open(6000);
      const active = p.backendActive(0, be);
      const closed = p.serviceCounters(0).flows_closed;
      row(tcpPacket(client(6000, TCP.FIN | TCP.ACK, { seq: 2, ack: 2 })), XDP_TX, toBackend(client(6000, TCP.FIN | TCP.ACK, { seq: 2, ack: 2 }), be, snat));
      expect(p.backendActive(0, be)).toBe(active); // half-closed still counts
      const finB = fromBackend(be, snat, 6000, TCP.FIN | TCP.ACK, { seq: 2, ack: 3 });
      row(finB.input, XDP_TX, finB.expected);
      expect(p.backendActive(0, be)).toBe(active - 1);
      expect(p.flowCounts()).toEqual({ fwd: fwd + 1, rev: rev + 1 }); // kept until the last ACK
      const last = client(6000, TCP.ACK, { seq: 3, ack: 3 });
      row(tcpPacket(last), XDP_TX, toBackend(last, be, snat));
      expect(p.flowCounts()).toEqual({ fwd, rev });
      expect(p.lookupFlow(flowKey(6000))).toBeUndefined();
      expect(p.serviceCounters(0).flows_closed).toBe(closed + 1);
      // A retransmitted FIN afterwards is the kernel's business (it answers RST); counts do not move.
      row(finB.input, XDP_PASS);
      expect(p.backendActive(0, be)).toBe(active - 1);
    });

    test("FIN from backend first, then client: the backend's ACK ends it", () => {
      const { fwd, rev } = p.flowCounts();
      const { be, snat } = open(6001);
      const active = p.backendActive(0, be);
      row(fromBackend(be, snat, 6001, TCP.FIN | TCP.ACK).input, XDP_TX, fromBackend(be, snat, 6001, TCP.FIN | TCP.ACK).expected);
      const fin = client(6001, TCP.FIN | TCP.ACK);
      row(tcpPacket(fin), XDP_TX, toBackend(fin, be, snat));
      expect(p.backendActive(0, be)).toBe(active - 1);
      // A duplicate FIN does not decrement twice.
      row(tcpPacket(fin), XDP_TX, toBackend(fin, be, snat));
      expect(p.backendActive(0, be)).toBe(active - 1);
      const ack = fromBackend(be, snat, 6001, TCP.ACK);
      row(ack.input, XDP_TX, ack.expected);
      expect(p.flowCounts()).toEqual({ fwd, rev });
    });

    test("RST from backend: translated, both entries deleted, active −1 exactly once", () => {
      const { fwd, rev } = p.flowCounts();
      const { be, snat } = open(6002);
      const active = p.backendActive(0, be);
      const rst = fromBackend(be, snat, 6002, TCP.RST | TCP.ACK);
      row(rst.input, XDP_TX, rst.expected);
      expect(p.backendActive(0, be)).toBe(active - 1);
      expect(p.flowCounts()).toEqual({ fwd, rev });
      row(rst.input, XDP_PASS); // a second RST finds no flow
      expect(p.backendActive(0, be)).toBe(active - 1);
    });

    test("RST from client", () => {
      const { fwd, rev } = p.flowCounts();
      const { be, snat } = open(6003);
      const active = p.backendActive(0, be);
      const rst = client(6003, TCP.RST);
      row(tcpPacket(rst), XDP_TX, toBackend(rst, be, snat));
      expect(p.backendActive(0, be)).toBe(active - 1);
      expect(p.flowCounts()).toEqual({ fwd, rev });
    });

    test("a SYN reusing the 4-tuple of a closed (not yet forgotten) flow starts a new flow", () => {
      const { fwd, rev } = p.flowCounts();
      const first = open(6004);
      const active = p.backendActive(0, first.be);
      row(tcpPacket(client(6004, TCP.FIN | TCP.ACK)), XDP_TX, toBackend(client(6004, TCP.FIN | TCP.ACK), first.be, first.snat));
      row(fromBackend(first.be, first.snat, 6004, TCP.FIN | TCP.ACK).input, XDP_TX, fromBackend(first.be, first.snat, 6004, TCP.FIN | TCP.ACK).expected);
      expect(p.backendActive(0, first.be)).toBe(active - 1);
      const again = open(6004);
      expect(p.backendActive(0, again.be)).toBe(again.be === first.be ? active : p.backendActive(0, again.be));
      expect(p.flowCounts()).toEqual({ fwd: fwd + 1, rev: rev + 1 });
      row(tcpPacket(client(6004, TCP.RST)), XDP_TX, toBackend(client(6004, TCP.RST), again.be, again.snat));
      expect(p.flowCounts()).toEqual({ fwd, rev });
    });
  });

  describe("no backend, unknown neighbour", () => {
    test("empty plan: SYN passed (the kernel resets it), counted as no_backend", () => {
      p.writePlan(0, ALGORITHMS.round_robin.plan([], { maglevTableSize: 65537 }));
      const before = p.serviceCounters(0).no_backend;
      row(tcpPacket(client(7000, TCP.SYN)), XDP_PASS);
      expect(p.serviceCounters(0).no_backend).toBe(before + 1);
      p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
    });
    test("backend MAC unknown (NO_NEIGH): SYN passed and no flow state is created", () => {
      const { fwd, rev } = p.flowCounts();
      p.setBackend(0, 2, ipv4ToU32("10.0.0.99"), BE_PORT); // no neighbour entry
      p.writePlan(0, ALGORITHMS.round_robin.plan([{ id: 2, weight: 1, key: "x" }], { maglevTableSize: 65537 }));
      const before = p.reasons().no_neigh;
      row(tcpPacket(client(7001, TCP.SYN)), XDP_PASS);
      expect(p.reasons().no_neigh).toBe(before + 1);
      expect(p.flowCounts()).toEqual({ fwd, rev });
      p.setBackend(0, 2, ipv4ToU32(BACKENDS[2]!), BE_PORT);
      p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
    });
    test("SNAT ports exhausted: the SYN is passed and counted, no state is left behind", () => {
      const cfg = p.readConfig();
      p.writeConfig({ ...cfg, snatFirst: 50000, snatLast: 50001, smac: mac(LB_MAC) }); // 2 ports
      p.writePlan(0, ALGORITHMS.round_robin.plan([{ id: 0, weight: 1, key: "a" }], { maglevTableSize: 65537 }));
      const before = p.flowCounts();
      expect(p.run(tcpPacket(client(7100, TCP.SYN))).retval).toBe(XDP_TX);
      expect(p.run(tcpPacket(client(7101, TCP.SYN))).retval).toBe(XDP_TX);
      const failed = p.serviceCounters(0).snat_fail;
      row(tcpPacket(client(7102, TCP.SYN)), XDP_PASS);
      expect(p.serviceCounters(0).snat_fail).toBe(failed + 1);
      expect(p.flowCounts()).toEqual({ fwd: before.fwd + 2, rev: before.rev + 2 });
      for (const port of [7100, 7101]) expect(p.run(tcpPacket(client(port, TCP.RST))).retval).toBe(XDP_TX);
      p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
      p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
    });
    test("draining: new SYNs are passed, established flows keep working", () => {
      const r = p.run(tcpPacket(client(7002, TCP.SYN)));
      expect(r.retval).toBe(XDP_TX);
      const cfg = p.readConfig();
      p.writeConfig({ ...cfg, flags: cfg.flags | CFG_FLAGS.DRAINING, smac: mac(LB_MAC) });
      row(tcpPacket(client(7003, TCP.SYN)), XDP_PASS);
      expect(p.run(tcpPacket(client(7002, TCP.ACK))).retval).toBe(XDP_TX);
      p.writeConfig({ ...cfg, smac: mac(LB_MAC) });
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
      const s = client(12000, TCP.SYN);
      const r = p.run(tcpPacket(s));
      const be = backendOf(r.data);
      const snat = parseTcp(r.data).sport;
      p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]).filter((m) => m.id !== be), opts));
      const d = client(12000, TCP.ACK, { seq: 1001, ack: 1 });
      row(tcpPacket(d), XDP_TX, toBackend(d, be, snat));
      expect(pick()).not.toBe(be);
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
    test("1024-entry tables: 3000 new flows all get through; the newest still translates both ways", async () => {
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
        const { fwd, rev } = small.flowCounts();
        expect(fwd).toBeLessThanOrEqual(1024);
        expect(rev).toBeLessThanOrEqual(1024);
        const src = `10.0.1.${2999 % 256}`;
        const spec: TcpSpec = { srcMac: beMac(last.be), dstMac: LB_MAC, src: BACKENDS[last.be]!, dst: VIP, sport: BE_PORT, dport: last.snat, flags: TCP.SYN | TCP.ACK };
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
