/**
 * Packet builder for the packet-table tests. Every checksum is computed from scratch (RFC 1071 over
 * the whole header/segment), never incrementally, so comparing the BPF program's output byte-for-byte
 * against a freshly built packet catches any incremental-update mistake.
 */
import { readFileSync } from "node:fs";
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
  /** A partial checksum (CHECKSUM_PARTIAL): the field holds the pseudo-header sum only (bpf/l4csum.h). */
  partialCsum?: boolean;
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
  const sum = pseudoSum(s.src, s.dst, seg.length);
  v.setUint16(16, s.partialCsum ? sum : inetChecksum(seg, sum));
  return seg;
}

/** The TCP pseudo-header (addresses, protocol 6, TCP length), summed and folded (RFC 1071). */
export function pseudoSum(src: string, dst: string, tcpLength: number): number {
  const pseudo = new Uint8Array(12);
  const pv = new DataView(pseudo.buffer);
  pv.setUint32(0, ipv4ToU32(src));
  pv.setUint32(4, ipv4ToU32(dst));
  pv.setUint8(9, 6);
  pv.setUint16(10, tcpLength);
  return ~inetChecksum(pseudo) & 0xffff;
}

/**
 * What completing a partial checksum does (skb_checksum_help, or a NIC): the field becomes the
 * complement of the sum of the segment from the TCP header on, the field (the pseudo-header sum)
 * included. A copy of the frame.
 */
export function completeTcpChecksum(frame: Uint8Array): Uint8Array {
  const out = frame.slice();
  const v = new DataView(out.buffer);
  const ihl = (out[14]! & 0xf) * 4;
  const seg = out.subarray(14 + ihl, 14 + v.getUint16(16));
  new DataView(seg.buffer, seg.byteOffset).setUint16(16, inetChecksum(seg));
  return out;
}

/** Does the IPv4 header at `offset` of `bytes` verify (its IHL bytes sum to 0xffff)? */
export function ipChecksumOk(bytes: Uint8Array, offset = 14): boolean {
  const ihl = (bytes[offset]! & 0xf) * 4;
  return inetChecksum(bytes.subarray(offset, offset + ihl)) === 0;
}

export const ICMP = { DEST_UNREACH: 3, FRAG_NEEDED: 4, PORT_UNREACH: 3, TIME_EXCEEDED: 11, ECHO: 8 } as const;

export interface IcmpSpec {
  srcMac?: string;
  dstMac?: string;
  src: string;
  dst: string;
  type: number;
  code: number;
  /** The 4 bytes after the checksum: unused, or (fragmentation needed) the next hop's MTU in the low 16 bits. */
  rest?: number;
  /** The quoted packet: an IPv4 header and the start of what followed it. */
  quote: Uint8Array;
  ttl?: number;
  id?: number;
}

/** An ICMP message (header + quote) with its checksum over the whole message, from scratch. */
export function icmpMessage(type: number, code: number, rest: number, quote: Uint8Array): Uint8Array {
  const m = new Uint8Array(8 + quote.length);
  const v = new DataView(m.buffer);
  v.setUint8(0, type);
  v.setUint8(1, code);
  v.setUint32(4, rest >>> 0);
  m.set(quote, 8);
  v.setUint16(2, inetChecksum(m));
  return m;
}

/** A full Ethernet/IPv4/ICMP frame. */
export function icmpPacket(s: IcmpSpec): Uint8Array {
  return ethernet(s.dstMac ?? LB_MAC, s.srcMac ?? CLIENT_MAC, ETH_P_IP, ipv4(s.src, s.dst, 1, icmpMessage(s.type, s.code, s.rest ?? 0, s.quote), { ttl: s.ttl, id: s.id, fragOff: 0 }));
}

/** Does the ICMP message of a frame (after a 20-byte IPv4 header) verify over its whole length? */
export function icmpChecksumOk(frame: Uint8Array): boolean {
  const tot = new DataView(frame.buffer, frame.byteOffset).getUint16(16);
  return inetChecksum(frame.subarray(34, 14 + tot)) === 0;
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

// ---- TCP options (RFC 9293 §3.2, RFC 7323) ----

export const TCPOPT = { EOL: 0, NOP: 1, MSS: 2, WSCALE: 3, SACK_PERM: 4, TIMESTAMP: 8 } as const;

const be32 = (n: number) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];

/** The timestamp option: kind 8, length 10, TSval, TSecr (RFC 7323 §3). */
export function tsOption(tsval: number, tsecr: number): number[] {
  return [TCPOPT.TIMESTAMP, 10, ...be32(tsval >>> 0), ...be32(tsecr >>> 0)];
}

/** Options as Linux sends them on a SYN: MSS 1460, SACK permitted, timestamps, NOP, window scale 7 (20 bytes). */
export function linuxSynOptions(tsval: number, tsecr = 0): Uint8Array {
  return Uint8Array.of(TCPOPT.MSS, 4, 0x05, 0xb4, TCPOPT.SACK_PERM, 2, ...tsOption(tsval, tsecr), TCPOPT.NOP, TCPOPT.WSCALE, 3, 7);
}

/** Options on Linux data/ACK segments: NOP, NOP, timestamps (12 bytes). */
export function linuxDataOptions(tsval: number, tsecr: number): Uint8Array {
  return Uint8Array.of(TCPOPT.NOP, TCPOPT.NOP, ...tsOption(tsval, tsecr));
}

/** The TCP header's options of a frame (IPv4 header length from IHL, TCP header length from doff). */
export function tcpOptionsOf(frame: Uint8Array): Uint8Array {
  const ihl = (frame[14]! & 0xf) * 4;
  const tcp = 14 + ihl;
  const doff = (frame[tcp + 12]! >> 4) * 4;
  return frame.slice(tcp + 20, tcp + doff);
}

/** TSval/TSecr of a frame's timestamp option (walked here independently of the BPF parser), or undefined. */
export function timestamps(frame: Uint8Array): { tsval: number; tsecr: number } | undefined {
  const o = tcpOptionsOf(frame);
  for (let i = 0; i < o.length; ) {
    const kind = o[i]!;
    if (kind === TCPOPT.EOL) return undefined;
    if (kind === TCPOPT.NOP) {
      i += 1;
      continue;
    }
    const len = o[i + 1] ?? 0;
    if (len < 2 || i + len > o.length) return undefined;
    if (kind === TCPOPT.TIMESTAMP && len === 10) {
      const v = new DataView(o.buffer, o.byteOffset + i + 2, 8);
      return { tsval: v.getUint32(0), tsecr: v.getUint32(4) };
    }
    i += len;
  }
  return undefined;
}

/** Does the frame's TCP checksum verify when recomputed from scratch over pseudo-header + segment? */
export function tcpChecksumOk(frame: Uint8Array): boolean {
  const v = new DataView(frame.buffer, frame.byteOffset);
  const ihl = (frame[14]! & 0xf) * 4;
  const seg = frame.subarray(14 + ihl, 14 + v.getUint16(16));
  let sum = 0;
  for (const i of [26, 28, 30, 32]) sum += v.getUint16(i);
  sum += 6 + seg.length;
  return inetChecksum(seg, sum) === 0;
}

/** CLOCK_MONOTONIC in ms, truncated to u32: the clock bpf_ktime_get_ns() reads (needs root: /proc/timer_list). */
export function monotonicMs(): number {
  const text = readFileSync("/proc/timer_list", "utf8");
  const m = /now at (\d+) nsecs/.exec(text);
  if (!m) throw new Error("/proc/timer_list has no 'now at' line");
  return Number((BigInt(m[1]!) / 1_000_000n) & 0xffffffffn);
}
