/**
 * The packet tables' world (packet_table.test.ts, packet_table_icmp.test.ts): one service VIP:80 with
 * three backends on one /24, reached from the LB's own address LB_ADDR (xdp.snat_address: not the VIP,
 * as for an instance behind ECMP, so every row checks that the two are kept apart), MACs from featherlb's neighbour table (CFG_STATIC_NEIGH: the test process
 * has no routes to these addresses), the packets a client and a backend send through it, and flows
 * opened by a whole handshake (SYN, SYN-ACK, ACK: only then is a flow established).
 */
import type { Member } from "../../src/control/algorithms/types.ts";
import { CFG_FLAGS, ipv4ToU32, u32ToIpv4 } from "../../src/dataplane/xdp/layout.ts";
import { expect } from "bun:test";
import { CLIENT_MAC, LB_MAC, TCP, hex, mac, parseTcp, tcpPacket, type TcpSpec } from "./packets.ts";
import type { TestProgram } from "./program-test.ts";

export const XDP_DROP = 1;
export const XDP_PASS = 2;
export const XDP_TX = 3;

export const VIP = "10.0.0.1";
/** The SNAT address: the source of every packet toward a backend, the destination of their replies. */
export const LB_ADDR = "10.0.0.2";
export const VPORT = 80;
export const CLIENT = "10.0.0.10";
export const BACKENDS = ["10.0.0.21", "10.0.0.22", "10.0.0.23"];
export const BE_PORT = 8080;
export const beMac = (i: number) => `02:00:00:00:00:${(0x21 + i).toString(16)}`;
export const SNAT = { first: 40000, last: 59999 };

export function setupProgram(p: TestProgram): void {
  p.writeConfig({ snatFirst: SNAT.first, snatLast: SNAT.last, snatAddr: ipv4ToU32(LB_ADDR), flags: CFG_FLAGS.STATIC_NEIGH, smac: mac(LB_MAC) });
  for (let c = 0; c < 256; c++) p.setNeighbour(ipv4ToU32(`10.0.1.${c}`), mac(CLIENT_MAC));
  p.setNeighbour(ipv4ToU32(CLIENT), mac(CLIENT_MAC));
  BACKENDS.forEach((ip, i) => p.setNeighbour(ipv4ToU32(ip), mac(beMac(i))));
  p.setService(0, ipv4ToU32(VIP), VPORT);
  BACKENDS.forEach((ip, i) => p.setBackend(0, i, ipv4ToU32(ip), BE_PORT));
}

export const members = (weights: number[]): Member[] => weights.map((weight, id) => ({ id, weight, key: `${BACKENDS[id]}:${BE_PORT}` }));

export function client(port: number, flags: number, o: Partial<TcpSpec> = {}): TcpSpec {
  return { src: CLIENT, dst: VIP, sport: port, dport: VPORT, flags, ...o };
}

/** What the LB must send to the backend for a client packet `s` (src = LB_ADDR:snat, MACs from the table). */
export function toBackend(s: TcpSpec, be: number, snat: number): Uint8Array {
  return tcpPacket({ ...s, srcMac: LB_MAC, dstMac: beMac(be), src: LB_ADDR, dst: BACKENDS[be]!, sport: snat, dport: BE_PORT });
}

/** A backend reply and what the LB must send to the client for it. */
export function fromBackend(be: number, snat: number, clientPort: number, flags: number, o: Partial<TcpSpec> = {}) {
  const spec: TcpSpec = { srcMac: beMac(be), dstMac: LB_MAC, src: BACKENDS[be]!, dst: LB_ADDR, sport: BE_PORT, dport: snat, flags, ...o };
  const out = tcpPacket({ ...spec, srcMac: LB_MAC, dstMac: CLIENT_MAC, src: VIP, dst: CLIENT, sport: VPORT, dport: clientPort });
  return { input: tcpPacket(spec), expected: out };
}

export const backendOf = (frame: Uint8Array) => BACKENDS.indexOf(u32ToIpv4(parseTcp(frame).dst));

/** Run a row whose output must be exactly `expected` (or the input itself for PASS rows). */
export function runRow(p: TestProgram, input: Uint8Array, action: number, expected: Uint8Array = input) {
  const r = p.run(input);
  expect(r.retval).toBe(action);
  expect(hex(r.data)).toBe(hex(expected));
  return r;
}

/** A flow after a full handshake: where it went, and each side's next sequence number (for in-window rows). */
export interface Opened {
  be: number;
  snat: number;
  port: number;
  src: string;
  /** The client's next sequence number (what the backend acknowledges). */
  cseq: number;
  /** The backend's next sequence number. */
  bseq: number;
}

/** Open a flow with SYN, SYN-ACK, ACK (client ISN `isn`, backend ISN `bisn`); every step must be transmitted. */
export function handshake(prog: TestProgram, port: number, o: { src?: string; isn?: number; bisn?: number; syn?: Partial<TcpSpec> } = {}): Opened {
  const src = o.src ?? CLIENT;
  const h = prog.handshake({ src, dst: VIP, sport: port, dport: VPORT, flags: TCP.SYN, seq: o.isn ?? 1000, ...o.syn }, o.bisn ?? 5000);
  return { be: BACKENDS.indexOf(h.backend), snat: h.snat, port, src, cseq: h.cseq, bseq: h.bseq };
}

/** A client packet of flow `f` (from its own address and port). */
export const clientOf = (f: Opened, flags: number, o: Partial<TcpSpec> = {}): TcpSpec => ({ src: f.src, dst: VIP, sport: f.port, dport: VPORT, flags, seq: f.cseq, ack: f.bseq, ...o });
/** A backend packet of flow `f`, and what the client must get for it. */
export function backendPkt(f: Opened, flags: number, o: Partial<TcpSpec> = {}) {
  const spec: TcpSpec = { srcMac: beMac(f.be), dstMac: LB_MAC, src: BACKENDS[f.be]!, dst: LB_ADDR, sport: BE_PORT, dport: f.snat, flags, seq: f.bseq, ack: f.cseq, ...o };
  return { input: tcpPacket(spec), expected: tcpPacket({ ...spec, srcMac: LB_MAC, dstMac: CLIENT_MAC, src: VIP, dst: f.src, sport: VPORT, dport: f.port }) };
}
/** What the LB must send to the backend for client packet `s` of flow `f`. */
export const toBackendOf = (f: Opened, s: TcpSpec) => tcpPacket({ ...s, srcMac: LB_MAC, dstMac: beMac(f.be), src: LB_ADDR, dst: BACKENDS[f.be]!, sport: f.snat, dport: BE_PORT });

/** The RST|ACK the program answers a client SYN `s` with, built from scratch (RFC 9293 §3.10.7.1). */
export function rstFor(s: TcpSpec): Uint8Array {
  const len = (s.payload?.length ?? 0) + 1;
  return tcpPacket({ srcMac: LB_MAC, dstMac: s.srcMac ?? CLIENT_MAC, src: s.dst, dst: s.src, sport: s.dport, dport: s.sport, flags: TCP.RST | TCP.ACK, seq: 0, ack: ((s.seq ?? 1000) + len) >>> 0, window: 0, id: 0, ttl: 64 });
}
