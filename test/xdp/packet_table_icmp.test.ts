/**
 * Packet table (BPF_PROG_TEST_RUN, as packet_table.test.ts) for ICMP errors about flows (bpf/icmp.h)
 * and for partial TCP checksums (bpf/l4csum.h). Expected packets are built from scratch (packets.ts):
 * every checksum — outer IP, ICMP over the whole message, quoted IP, quoted TCP, TCP — computed over
 * the whole header or message, never incrementally, and compared byte for byte.
 *
 * An ICMP error quotes a packet the LB sent; the one the other side gets must quote the packet *it*
 * sent, byte for byte as it sent it (IP header with its checksum, TCP header with its checksum): that is
 * what the rows check, from the backend side to the client and from the client side to the backend.
 * Flows are opened with a whole handshake (fixture.ts handshake: client ISN 1000, backend ISN 5000);
 * errors about a handshake still in progress (the SYN, the SYN-ACK) are translated too.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ALGORITHMS } from "../../src/control/algorithms/index.ts";
import { CFG_FLAGS, FLOW_KEY, ipv4ToU32 } from "../../src/dataplane/xdp/layout.ts";
import { BACKENDS, CLIENT, LB_ADDR, VIP, XDP_PASS, XDP_TX, beMac, client, fromBackend, handshake, members, rstFor, runRow, setupProgram, toBackend } from "./fixture.ts";
import {
  CLIENT_MAC,
  ICMP,
  LB_MAC,
  TCP,
  completeTcpChecksum,
  ethernet,
  ETH_P_IP,
  hex,
  icmpChecksumOk,
  icmpPacket,
  inetChecksum,
  ipChecksumOk,
  ipv4,
  linuxSynOptions,
  mac,
  parseTcp,
  pseudoSum,
  tcpChecksumOk,
  tcpPacket,
  timestamps,
  type IcmpSpec,
  type TcpSpec,
} from "./packets.ts";
import { loadTestProgram, type TestProgram } from "./program-test.ts";
import { bpfSuiteEnabled } from "./require.ts";

const ROUTER = "10.0.0.254";
const ROUTER_MAC = "02:00:00:00:00:fe";
/** What Linux quotes: as much of the packet as fits in 576 bytes with the IP and ICMP headers. */
const LINUX_QUOTE = 576 - 20 - 8;
/** The IPv4 packet of a frame (without the Ethernet header), cut to `n` bytes. */
const quoteOf = (frame: Uint8Array, n = LINUX_QUOTE) => frame.slice(14, 14 + n);

if (bpfSuiteEnabled("xdp packet table: ICMP errors, partial checksums")) {
  let p: TestProgram;

  beforeAll(async () => {
    p = await loadTestProgram({ flowTableSize: 65536 });
    setupProgram(p);
    p.writePlan(0, ALGORITHMS.round_robin.plan(members([1]), { maglevTableSize: 65537 })); // backend 0 only
  });
  afterAll(() => p?.close());

  const row = (input: Uint8Array, action: number, expected?: Uint8Array) => runRow(p, input, action, expected);

  /** Count of one reason across a call. */
  function counted(reason: string, f: () => void): number {
    const before = p.reasons()[reason as keyof ReturnType<TestProgram["reasons"]>];
    f();
    return p.reasons()[reason as keyof ReturnType<TestProgram["reasons"]>] - before;
  }

  /** Open a flow from CLIENT:port (to backend 0) with a whole handshake: its SNAT port. Client data
   * then starts at 1001 and acknowledges 5001, the backend's at 5001. */
  function open(port: number): number {
    return handshake(p, port, { syn: { tcpOptions: Uint8Array.of(2, 4, 0x05, 0xb4) } }).snat;
  }
  /** End the flow (or handshake) of CLIENT:port with an RST at the client's next sequence number. */
  const close = (port: number, seq = 1001) => expect(p.run(tcpPacket(client(port, TCP.RST, { seq }))).retval).toBe(XDP_TX);

  /** Every checksum of a translated error, each recomputed from scratch, and the quoted TCP checksum against `sent` (the packet as its sender sent it). */
  function checksumsOk(out: Uint8Array, sent: Uint8Array) {
    const sentTcpCheck = new DataView(sent.buffer, sent.byteOffset).getUint16(14 + 20 + 16);
    const quotedTcpCheck = out.length >= 14 + 20 + 8 + 20 + 18 ? new DataView(out.buffer, out.byteOffset).getUint16(14 + 20 + 8 + 20 + 16) : undefined;
    expect({ outerIp: ipChecksumOk(out), icmp: icmpChecksumOk(out), quotedIp: ipChecksumOk(out, 14 + 20 + 8), sentTcpOk: tcpChecksumOk(sent), quotedTcpCheck }).toEqual({
      outerIp: true,
      icmp: true,
      quotedIp: true,
      sentTcpOk: true,
      quotedTcpCheck: quotedTcpCheck === undefined ? undefined : sentTcpCheck,
    });
  }

  describe("ICMP errors about a flow are rewritten and sent to the other side", () => {
    test("from the backend side: fragmentation needed (MTU 1280) quoting a full-size segment to the backend → to the client, quoting the segment it sent", () => {
      const port = 5000;
      const snat = open(port);
      const sent = tcpPacket(client(port, TCP.ACK | TCP.PSH, { seq: 1001, ack: 5001, payload: crypto.getRandomValues(new Uint8Array(1460)) }));
      const fwd = p.run(sent);
      expect(fwd.retval).toBe(XDP_TX);
      expect(parseTcp(fwd.data).sport).toBe(snat);
      const err: IcmpSpec = { srcMac: ROUTER_MAC, src: ROUTER, dst: LB_ADDR, type: ICMP.DEST_UNREACH, code: ICMP.FRAG_NEEDED, rest: 1280, quote: quoteOf(fwd.data), ttl: 63, id: 0x4242 };
      const want = icmpPacket({ ...err, srcMac: LB_MAC, dstMac: CLIENT_MAC, src: VIP, dst: CLIENT, quote: quoteOf(sent) });
      expect(counted("icmp_b2c", () => checksumsOk(row(icmpPacket(err), XDP_TX, want).data, sent))).toBe(1);
      close(port);
    });

    test("from the client side: fragmentation needed quoting a segment to the client → to the backend, quoting the segment it sent", () => {
      const port = 5001;
      const snat = open(port);
      const reply = fromBackend(0, snat, port, TCP.ACK | TCP.PSH, { seq: 5001, ack: 1001, payload: crypto.getRandomValues(new Uint8Array(1460)) });
      const toClient = row(reply.input, XDP_TX, reply.expected).data;
      const err: IcmpSpec = { srcMac: ROUTER_MAC, src: ROUTER, dst: VIP, type: ICMP.DEST_UNREACH, code: ICMP.FRAG_NEEDED, rest: 1280, quote: quoteOf(toClient), ttl: 64, id: 7 };
      const want = icmpPacket({ ...err, srcMac: LB_MAC, dstMac: beMac(0), src: LB_ADDR, dst: BACKENDS[0]!, quote: quoteOf(reply.input) });
      expect(counted("icmp_c2b", () => checksumsOk(row(icmpPacket(err), XDP_TX, want).data, reply.input))).toBe(1);
      close(port);
    });

    test("time exceeded quoting only the 8 bytes of TCP RFC 792 promises (no TCP checksum in the quote)", () => {
      const port = 5002;
      open(port);
      const sent = tcpPacket(client(port, TCP.ACK, { seq: 1001, ack: 5001 }));
      const fwd = p.run(sent).data;
      const err: IcmpSpec = { src: ROUTER, dst: LB_ADDR, type: ICMP.TIME_EXCEEDED, code: 0, quote: quoteOf(fwd, 28) };
      const out = row(icmpPacket(err), XDP_TX, icmpPacket({ ...err, srcMac: LB_MAC, dstMac: CLIENT_MAC, src: VIP, dst: CLIENT, quote: quoteOf(sent, 28) })).data;
      checksumsOk(out, sent);
      close(port);
    });

    test("host unreachable about the SYN toward the backend (a handshake) → to the client, quoting its SYN", () => {
      const port = 5003;
      const syn = tcpPacket(client(port, TCP.SYN, { seq: 77 }));
      const fwd = p.run(syn).data;
      expect(p.flowCounts()).toMatchObject({ synFwd: 1, synRev: 1 });
      const err: IcmpSpec = { src: ROUTER, dst: LB_ADDR, type: ICMP.DEST_UNREACH, code: 1, quote: quoteOf(fwd) };
      const want = icmpPacket({ ...err, srcMac: LB_MAC, dstMac: CLIENT_MAC, src: VIP, dst: CLIENT, quote: quoteOf(syn) });
      expect(counted("icmp_b2c", () => checksumsOk(row(icmpPacket(err), XDP_TX, want).data, syn))).toBe(1);
      // The handshake stays one (an ICMP error is advice): the client's RST at ISN + 1 still ends it.
      close(port, 78);
      expect(p.flowCounts()).toMatchObject({ synFwd: 0, synRev: 0 });
    });

    test("port unreachable about the SYN-ACK toward the client (a handshake) → to the backend, quoting its SYN-ACK", () => {
      const port = 5006;
      const syn = tcpPacket(client(port, TCP.SYN, { seq: 300 }));
      const snat = parseTcp(p.run(syn).data).sport;
      const synack = fromBackend(0, snat, port, TCP.SYN | TCP.ACK, { seq: 9000, ack: 301 });
      const toClient = row(synack.input, XDP_TX, synack.expected).data;
      const err: IcmpSpec = { srcMac: ROUTER_MAC, src: CLIENT, dst: VIP, type: ICMP.DEST_UNREACH, code: ICMP.PORT_UNREACH, quote: quoteOf(toClient) };
      const want = icmpPacket({ ...err, srcMac: LB_MAC, dstMac: beMac(0), src: LB_ADDR, dst: BACKENDS[0]!, quote: quoteOf(synack.input) });
      expect(counted("icmp_c2b", () => checksumsOk(row(icmpPacket(err), XDP_TX, want).data, synack.input))).toBe(1);
      close(port, 301);
    });

    test("a flow whose forward and reverse entries disagree (the reverse one taken by another flow): passed, both ways, as icmp_no_flow", () => {
      const port = 5007;
      const snat = open(port);
      const toBackendFrame = p.run(tcpPacket(client(port, TCP.ACK, { seq: 1001, ack: 5001 }))).data;
      const reply = fromBackend(0, snat, port, TCP.ACK, { seq: 5001, ack: 1001 });
      const toClientFrame = p.run(reply.input).data;
      const rk = { saddr: ipv4ToU32(BACKENDS[0]!), daddr: ipv4ToU32(LB_ADDR), sport: 8080, dport: snat };
      const r = p.maps.rev.lookup(rk)!;
      p.maps.rev.update(rk, { ...r, id: r.id + 1n }); // another flow's id now
      for (const [dst, quote] of [[LB_ADDR, quoteOf(toBackendFrame)], [VIP, quoteOf(toClientFrame)]] as const) {
        const err = icmpPacket({ src: ROUTER, dst, type: ICMP.DEST_UNREACH, code: ICMP.FRAG_NEEDED, rest: 1280, quote });
        expect(counted("icmp_no_flow", () => row(err, XDP_PASS))).toBe(1);
      }
      p.maps.rev.update(rk, r);
      close(port);
      expect(p.lookupFlow(FLOW_KEY.encode({ saddr: ipv4ToU32(CLIENT), daddr: ipv4ToU32(VIP), sport: port, dport: 80 }))).toBeUndefined();
    });

    test("an error that arrives with a wrong ICMP checksum leaves with a wrong one (updated, never recomputed)", () => {
      const port = 5004;
      open(port);
      const fwd = p.run(tcpPacket(client(port, TCP.ACK, { seq: 1001, ack: 5001 }))).data;
      const input = icmpPacket({ src: ROUTER, dst: LB_ADDR, type: ICMP.DEST_UNREACH, code: ICMP.FRAG_NEEDED, rest: 1280, quote: quoteOf(fwd) });
      input[14 + 20 + 2]! ^= 0x10;
      const r = p.run(input);
      expect(r.retval).toBe(XDP_TX);
      expect({ outerIp: ipChecksumOk(r.data), icmp: icmpChecksumOk(r.data) }).toEqual({ outerIp: true, icmp: false });
      close(port);
    });

    test("an error quoting a packet from the VIP (not the SNAT address) on a live flow's SNAT port is no flow's: passed", () => {
      const port = 5008;
      const snat = open(port);
      const quote = quoteOf(tcpPacket({ src: VIP, dst: BACKENDS[0]!, sport: snat, dport: 8080, flags: TCP.ACK, seq: 1001, ack: 5001 }));
      expect(counted("icmp_no_flow", () => row(icmpPacket({ src: ROUTER, dst: VIP, type: ICMP.DEST_UNREACH, code: ICMP.FRAG_NEEDED, rest: 1280, quote }), XDP_PASS))).toBe(1);
      close(port);
    });

    test("the flow is not touched: entries, counters and state as before", () => {
      const port = 5005;
      const snat = open(port);
      const before = { flows: p.flowCounts(), svc: p.serviceCounters(0) };
      const reply = fromBackend(0, snat, port, TCP.ACK, { seq: 5001, ack: 1001 });
      const toClient = p.run(reply.input).data;
      const svc = p.serviceCounters(0);
      expect(p.run(icmpPacket({ src: ROUTER, dst: VIP, type: ICMP.DEST_UNREACH, code: ICMP.FRAG_NEEDED, rest: 1280, quote: quoteOf(toClient) })).retval).toBe(XDP_TX);
      expect({ flows: p.flowCounts(), svc: p.serviceCounters(0) }).toEqual({ flows: before.flows, svc });
      close(port);
    });
  });

  describe("ICMP that is not about a live flow is passed untouched, counted", () => {
    const quoteOfPacket = (s: TcpSpec) => quoteOf(tcpPacket(s));
    const cases: [string, () => Uint8Array, string][] = [
      ["an error quoting VIP:80 → a client with no flow", () => icmpPacket({ src: ROUTER, dst: VIP, type: 3, code: 4, rest: 1280, quote: quoteOfPacket({ src: VIP, dst: CLIENT, sport: 80, dport: 6000, flags: TCP.ACK }) }), "icmp_no_flow"],
      ["an error quoting a SNAT port with no flow", () => icmpPacket({ src: ROUTER, dst: LB_ADDR, type: 3, code: 4, rest: 1280, quote: quoteOfPacket({ src: LB_ADDR, dst: BACKENDS[0]!, sport: 40123, dport: 8080, flags: TCP.ACK }) }), "icmp_no_flow"],
      ["echo request to the service address", () => icmpPacket({ src: CLIENT, dst: VIP, type: ICMP.ECHO, code: 0, quote: new Uint8Array(8) }), "not_tcp"],
      ["an error quoting UDP", () => icmpPacket({ src: ROUTER, dst: VIP, type: 3, code: ICMP.PORT_UNREACH, quote: ipv4(VIP, CLIENT, 17, Uint8Array.of(0, 80, 0x17, 0x70, 0, 8, 0, 0)) }), "not_tcp"],
      ["an error quoting the LB's own TCP (a port outside services and SNAT range)", () => icmpPacket({ src: ROUTER, dst: LB_ADDR, type: 3, code: 4, rest: 1280, quote: quoteOfPacket({ src: LB_ADDR, dst: BACKENDS[0]!, sport: 35000, dport: 8080, flags: TCP.SYN }) }), "not_ours"],
      ["an error sent to the service address about a packet from another address", () => icmpPacket({ src: ROUTER, dst: VIP, type: 3, code: 4, rest: 1280, quote: quoteOfPacket({ src: "10.0.0.3", dst: CLIENT, sport: 80, dport: 6000, flags: TCP.ACK }) }), "not_ours"],
      ["a quote cut inside the TCP ports", () => icmpPacket({ src: ROUTER, dst: VIP, type: 3, code: 4, rest: 1280, quote: quoteOfPacket({ src: VIP, dst: CLIENT, sport: 80, dport: 6000, flags: TCP.ACK }).slice(0, 24) }), "truncated"],
      ["a quote with IP options", () => icmpPacket({ src: ROUTER, dst: VIP, type: 3, code: 4, rest: 1280, quote: quoteOfPacket({ src: VIP, dst: CLIENT, sport: 80, dport: 6000, flags: TCP.ACK, ipOptions: Uint8Array.of(1, 1, 1, 0) }) }), "ip_options"],
      ["an ICMP header cut short", () => ethernet(LB_MAC, ROUTER_MAC, ETH_P_IP, ipv4(ROUTER, VIP, 1, Uint8Array.of(3, 4, 0, 0))), "truncated"],
    ];
    for (const [desc, input, reason] of cases) {
      test(desc, () => {
        const flows = p.flowCounts();
        expect(counted(reason, () => row(input(), XDP_PASS))).toBe(1);
        expect(p.flowCounts()).toEqual(flows);
      });
    }
  });

  describe("partial TCP checksums (the field holds the pseudo-header sum, CHECKSUM_PARTIAL)", () => {
    const setFlags = (flags: number) => p.writeConfig({ ...p.readConfig(), flags: CFG_FLAGS.STATIC_NEIGH | flags, smac: mac(LB_MAC) });
    afterAll(() => setFlags(0));
    const checkOf = (frame: Uint8Array) => new DataView(frame.buffer, frame.byteOffset).getUint16(14 + 20 + 16);

    test("generic mode: partial in, partial out — the pseudo-header sum of the new addresses, both ways; completed, the checksum is exact", () => {
      setFlags(0);
      const port = 5100;
      const syn = client(port, TCP.SYN, { seq: 9, partialCsum: true });
      const r = p.run(tcpPacket(syn));
      expect(r.retval).toBe(XDP_TX);
      const snat = parseTcp(r.data).sport;
      expect(hex(r.data)).toBe(hex(toBackend(syn, 0, snat)));
      expect(checkOf(r.data)).toBe(pseudoSum(LB_ADDR, BACKENDS[0]!, 20));
      expect(hex(completeTcpChecksum(r.data))).toBe(hex(toBackend({ ...syn, partialCsum: false }, 0, snat)));
      // The rest of the handshake, partial both ways too.
      const synack = fromBackend(0, snat, port, TCP.SYN | TCP.ACK, { seq: 5000, ack: 10, partialCsum: true });
      expect(tcpChecksumOk(completeTcpChecksum(row(synack.input, XDP_TX, synack.expected).data))).toBe(true);
      const ack = client(port, TCP.ACK, { seq: 10, ack: 5001, partialCsum: true });
      row(tcpPacket(ack), XDP_TX, toBackend(ack, 0, snat));
      // Odd payload length, both directions.
      const data = client(port, TCP.ACK | TCP.PSH, { seq: 10, ack: 5001, payload: crypto.getRandomValues(new Uint8Array(1001)), partialCsum: true });
      expect(tcpChecksumOk(completeTcpChecksum(row(tcpPacket(data), XDP_TX, toBackend(data, 0, snat)).data))).toBe(true);
      const back = fromBackend(0, snat, port, TCP.ACK, { seq: 5001, ack: 1011, payload: crypto.getRandomValues(new Uint8Array(333)), partialCsum: true });
      expect(tcpChecksumOk(completeTcpChecksum(row(back.input, XDP_TX, back.expected).data))).toBe(true);
      close(port, 1011);
    });

    test("generic mode: a timestamp rewrite leaves a partial checksum alone (the completer sums the option)", () => {
      setFlags(0);
      const syn = client(5101, TCP.SYN, { tcpOptions: linuxSynOptions(1234), partialCsum: true });
      const r = p.run(tcpPacket(syn));
      expect(r.retval).toBe(XDP_TX);
      const tsval = timestamps(r.data)!.tsval;
      expect(tsval).not.toBe(1234);
      expect(hex(r.data)).toBe(hex(toBackend({ ...syn, tcpOptions: linuxSynOptions(tsval) }, 0, parseTcp(r.data).sport)));
      expect(tcpChecksumOk(completeTcpChecksum(r.data))).toBe(true);
      close(5101);
    });

    test("native mode (CFG_NATIVE): a partial checksum is completed on arrival, so what leaves is exact", () => {
      setFlags(CFG_FLAGS.NATIVE);
      const port = 5102;
      const syn = client(port, TCP.SYN, { seq: 9, tcpOptions: linuxSynOptions(99), partialCsum: true });
      const r = p.run(tcpPacket(syn));
      expect(r.retval).toBe(XDP_TX);
      const snat = parseTcp(r.data).sport;
      expect(hex(r.data)).toBe(hex(toBackend({ ...syn, tcpOptions: linuxSynOptions(timestamps(r.data)!.tsval), partialCsum: false }, 0, snat)));
      const synack = fromBackend(0, snat, port, TCP.SYN | TCP.ACK, { seq: 5000, ack: 10, partialCsum: true });
      expect(hex(p.run(synack.input).data)).toBe(hex(fromBackend(0, snat, port, TCP.SYN | TCP.ACK, { seq: 5000, ack: 10 }).expected));
      expect(p.run(tcpPacket(client(port, TCP.ACK, { seq: 10, ack: 5001 }))).retval).toBe(XDP_TX);
      // Sizes that take every path of the segment sum: all head (word loop), head + chunks, no head, odd heads.
      for (const size of [0, 1, 2, 3, 491, 492, 777, 1460, 1461, 3000]) {
        const data = client(port, TCP.ACK, { seq: 10, ack: 5001, payload: crypto.getRandomValues(new Uint8Array(size)), partialCsum: true });
        expect({ size, out: hex(p.run(tcpPacket(data)).data) }).toEqual({ size, out: hex(toBackend({ ...data, partialCsum: false }, 0, snat)) });
      }
      // A full checksum in native mode is updated as before.
      const full = client(port, TCP.ACK, { seq: 787, ack: 5001, payload: Uint8Array.of(1, 2, 3) });
      expect(tcpChecksumOk(p.run(tcpPacket(full)).data)).toBe(true);
      setFlags(0);
      close(port, 10);
    });

    test("the RST a SYN is answered with (draining): partial for a partial SYN in generic mode (the completer sums its 20 bytes), full in native mode", () => {
      const syn = client(5104, TCP.SYN, { seq: 4000, tcpOptions: linuxSynOptions(5), partialCsum: true });
      const rst = rstFor({ ...syn, partialCsum: false });
      setFlags(CFG_FLAGS.DRAINING);
      const r = p.run(tcpPacket(syn));
      expect(r.retval).toBe(XDP_TX);
      expect(checkOf(r.data)).toBe(pseudoSum(VIP, CLIENT, 20));
      expect(hex(completeTcpChecksum(r.data))).toBe(hex(rst));
      setFlags(CFG_FLAGS.DRAINING | CFG_FLAGS.NATIVE);
      row(tcpPacket(syn), XDP_TX, rst);
      setFlags(CFG_FLAGS.DRAINING);
      row(tcpPacket({ ...syn, partialCsum: false }), XDP_TX, rst);
      setFlags(0);
    });

    test("a full checksum that happens to equal the pseudo-header sum (1 in 65,536) is recognised by its segment sum and updated as full", () => {
      setFlags(0);
      const port = 5103;
      const snat = open(port);
      // Two payload bytes w chosen so that the full checksum equals the pseudo-header sum P: with w = 0
      // the checksum is C0 = ~(P + D0); we want ~(P + D0 + w) = P, so w = ~P − ~C0 = ~P + C0 (one's complement).
      const base = client(port, TCP.ACK, { seq: 1001, ack: 5001, payload: new Uint8Array(64) });
      const P = pseudoSum(CLIENT, VIP, 20 + 64);
      const C0 = checkOf(tcpPacket(base));
      let w = (~P & 0xffff) + C0;
      w = (w & 0xffff) + (w >>> 16);
      const payload = new Uint8Array(64);
      payload[0] = w >> 8;
      payload[1] = w & 0xff;
      const spec: TcpSpec = { ...base, payload };
      const input = tcpPacket(spec);
      expect({ full: tcpChecksumOk(input), equalsPseudo: checkOf(input) === P }).toEqual({ full: true, equalsPseudo: true });
      const out = row(input, XDP_TX, toBackend(spec, 0, snat)).data;
      expect(tcpChecksumOk(out)).toBe(true);
      close(port);
    });

    test("completing the partial checksum Linux builds gives what the from-scratch builder gives (the test's own model)", () => {
      const s = client(5199, TCP.ACK, { payload: Uint8Array.of(1, 2, 3, 4, 5), partialCsum: true });
      expect(hex(completeTcpChecksum(tcpPacket(s)))).toBe(hex(tcpPacket({ ...s, partialCsum: false })));
      expect(inetChecksum(Uint8Array.of(0xff, 0xff))).toBe(0);
    });
  });
}
