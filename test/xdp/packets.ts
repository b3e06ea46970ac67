/**
 * Packet builder for the packet-table tests. Every checksum is computed from scratch (RFC 1071 over
 * the whole header/segment), never incrementally, so comparing the BPF program's output byte-for-byte
 * against a freshly built packet catches any incremental-update mistake.
 */
import { ipv4ToU32 } from "../../src/dataplane/xdp/layout.ts";

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_ARP = 0x0806;

export const TCP = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

export function mac(s: string): Uint8Array {
  return Uint8Array.from(s.split(":").map((h) => parseInt(h, 16)));
}

/** RFC 1071 Internet checksum of `bytes` plus an initial 32-bit sum. */
export function inetChecksum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface TcpSpec {
  srcMac?: string;
  dstMac?: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  flags: number;
  seq?: number;
  ack?: number;
  payload?: Uint8Array;
  /** TCP options (padded to 4 bytes by the caller). */
  tcpOptions?: Uint8Array;
  /** IP options: makes IHL > 5. */
  ipOptions?: Uint8Array;
  ttl?: number;
  id?: number;
  /** Raw frag_off field (flags + offset). Default: DF. */
  fragOff?: number;
  /** IP protocol number (default TCP). With another protocol the "TCP" bytes are just payload. */
  protocol?: number;
  window?: number;
}

export const CLIENT_MAC = "02:00:00:00:00:0c";
export const LB_MAC = "02:00:00:00:00:01";

export function ethernet(dst: string, src: string, type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(14 + body.length);
  out.set(mac(dst), 0);
  out.set(mac(src), 6);
  new DataView(out.buffer).setUint16(12, type);
  out.set(body, 14);
  return out;
}

/** An IPv4 header (checksum from scratch) followed by `l4`. */
export function ipv4(src: string, dst: string, protocol: number, l4: Uint8Array, o: Partial<TcpSpec> = {}): Uint8Array {
  const opts = o.ipOptions ?? new Uint8Array(0);
  const hlen = 20 + opts.length;
  const out = new Uint8Array(hlen + l4.length);
  const v = new DataView(out.buffer);
  v.setUint8(0, 0x40 | (hlen / 4));
  v.setUint8(1, 0);
  v.setUint16(2, out.length);
  v.setUint16(4, o.id ?? 0x1234);
  v.setUint16(6, o.fragOff ?? 0x4000);
  v.setUint8(8, o.ttl ?? 64);
  v.setUint8(9, protocol);
  v.setUint32(12, ipv4ToU32(src));
  v.setUint32(16, ipv4ToU32(dst));
  out.set(opts, 20);
  v.setUint16(10, inetChecksum(out.subarray(0, hlen)));
  out.set(l4, hlen);
  return out;
}

/** A TCP segment with its checksum over the IPv4 pseudo-header, from scratch. */
export function tcpSegment(s: TcpSpec): Uint8Array {
  const opts = s.tcpOptions ?? new Uint8Array(0);
  const payload = s.payload ?? new Uint8Array(0);
  const hlen = 20 + opts.length;
  const seg = new Uint8Array(hlen + payload.length);
  const v = new DataView(seg.buffer);
  v.setUint16(0, s.sport);
  v.setUint16(2, s.dport);
  v.setUint32(4, s.seq ?? 1000);
  v.setUint32(8, s.ack ?? 0);
  v.setUint8(12, (hlen / 4) << 4);
  v.setUint8(13, s.flags);
  v.setUint16(14, s.window ?? 64240);
  seg.set(opts, 20);
  seg.set(payload, hlen);
  const pseudo = new Uint8Array(12);
  const pv = new DataView(pseudo.buffer);
  pv.setUint32(0, ipv4ToU32(s.src));
  pv.setUint32(4, ipv4ToU32(s.dst));
  pv.setUint8(9, 6);
  pv.setUint16(10, seg.length);
  let sum = 0;
  for (let i = 0; i < 12; i += 2) sum += (pseudo[i]! << 8) | pseudo[i + 1]!;
  v.setUint16(16, inetChecksum(seg, sum));
  return seg;
}

/** A full Ethernet/IPv4/TCP frame. */
export function tcpPacket(s: TcpSpec): Uint8Array {
  return ethernet(s.dstMac ?? LB_MAC, s.srcMac ?? CLIENT_MAC, ETH_P_IP, ipv4(s.src, s.dst, s.protocol ?? 6, tcpSegment(s), s));
}

/** Read back the interesting fields of a frame (for ports the program chose). */
export function parseTcp(frame: Uint8Array): { src: number; dst: number; sport: number; dport: number; flags: number } {
  const v = new DataView(frame.buffer, frame.byteOffset);
  const ihl = (v.getUint8(14) & 0xf) * 4;
  return {
    src: v.getUint32(26),
    dst: v.getUint32(30),
    sport: v.getUint16(14 + ihl),
    dport: v.getUint16(14 + ihl + 2),
    flags: v.getUint8(14 + ihl + 13),
  };
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
