/**
 * A PROXY protocol reader and writer for the test side, written from the specification
 * (haproxy.org, doc/proxy-protocol.txt) and deliberately independent of featherlb's own
 * (src/dataplane/proxy/proxyproto.ts): a test backend parses what featherlb sends with this, and a test
 * client sends headers built with this, so an encoder bug cannot hide behind the same decoder.
 *
 * v2 layout (section 2.2): bytes 0-11 the signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A; byte 12
 * version (high nibble, 2) and command (low nibble: 0 LOCAL, 1 PROXY); byte 13 family (high nibble:
 * 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) and protocol (low nibble: 0 UNSPEC, 1 STREAM, 2 DGRAM); bytes 14-15
 * the length of the rest, big endian; then src address, dst address, src port, dst port.
 */
import { isIPv4, isIPv6 } from "node:net";

export interface ProxyHeader {
  version: 1 | 2;
  /** v1: "TCP4" | "TCP6" | "UNKNOWN"; v2: "LOCAL" or "PROXY". */
  command: string;
  /** 4 or 6 for TCP headers; 0 when there are no addresses (UNKNOWN, LOCAL, UNSPEC). */
  family: 0 | 4 | 6;
  srcAddress?: string;
  dstAddress?: string;
  srcPort?: number;
  dstPort?: number;
  /** The header's size in bytes (what the receiver skips). */
  length: number;
}

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** "more" until a whole header is there; throws on anything that is not one. */
export function parseProxyHeader(b: Uint8Array): ProxyHeader | "more" {
  const have = Math.min(b.length, 12);
  if (SIG.slice(0, have).every((x, i) => b[i] === x)) return b.length < 16 ? "more" : parseV2(b);
  const text = Buffer.from(b.subarray(0, 108)).toString("latin1");
  if (!"PROXY ".startsWith(text.slice(0, 6))) throw new Error(`not a PROXY header: ${JSON.stringify(text.slice(0, 16))}`);
  const end = text.indexOf("\r\n");
  if (end < 0) {
    if (b.length >= 107) throw new Error("v1: no CRLF within 107 bytes");
    return "more";
  }
  const parts = text.slice(0, end).split(" ");
  const length = end + 2;
  if (parts[0] !== "PROXY") throw new Error(`v1: bad prefix ${parts[0]}`);
  if (parts[1] === "UNKNOWN") return { version: 1, command: "UNKNOWN", family: 0, length };
  if (parts.length !== 6) throw new Error(`v1: ${parts.length} fields`);
  const family = parts[1] === "TCP4" ? 4 : parts[1] === "TCP6" ? 6 : 0;
  const ok = family === 4 ? isIPv4 : isIPv6;
  if (family === 0 || !ok(parts[2]!) || !ok(parts[3]!)) throw new Error(`v1: bad protocol or address in ${JSON.stringify(parts)}`);
  const port = (p: string) => {
    if (!/^(0|[1-9][0-9]*)$/.test(p) || Number(p) > 65535) throw new Error(`v1: bad port ${p}`);
    return Number(p);
  };
  return { version: 1, command: parts[1]!, family, srcAddress: parts[2], dstAddress: parts[3], srcPort: port(parts[4]!), dstPort: port(parts[5]!), length };
}

function parseV2(b: Uint8Array): ProxyHeader | "more" {
  if (b[12]! >> 4 !== 2) throw new Error(`v2: version ${b[12]! >> 4}`);
  const cmd = b[12]! & 15;
  if (cmd > 1) throw new Error(`v2: command ${cmd}`);
  const rest = (b[14]! << 8) | b[15]!;
  const length = 16 + rest;
  if (b.length < length) return "more";
  if (cmd === 0) return { version: 2, command: "LOCAL", family: 0, length };
  const fam = b[13]!;
  if (fam === 0x11) {
    if (rest < 12) throw new Error("v2: short IPv4 block");
    const ip = (at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
    return { version: 2, command: "PROXY", family: 4, srcAddress: ip(16), dstAddress: ip(20), srcPort: (b[24]! << 8) | b[25]!, dstPort: (b[26]! << 8) | b[27]!, length };
  }
  if (fam === 0x21) {
    if (rest < 36) throw new Error("v2: short IPv6 block");
    // Eight hex groups, not compressed: compare with sameIp(), which canonicalises both sides.
    const ip = (at: number) => Array.from({ length: 8 }, (_, i) => ((b[at + 2 * i]! << 8) | b[at + 2 * i + 1]!).toString(16)).join(":");
    return { version: 2, command: "PROXY", family: 6, srcAddress: ip(16), dstAddress: ip(32), srcPort: (b[48]! << 8) | b[49]!, dstPort: (b[50]! << 8) | b[51]!, length };
  }
  return { version: 2, command: "PROXY", family: 0, length };
}

/** One spelling per IPv6 address (eight full groups), so "::1" and "0:0:0:0:0:0:0:1" compare equal. */
export function sameIp(a: string, b: string): boolean {
  const norm = (x: string) => {
    if (!isIPv6(x)) return x;
    const [head, tail] = x.split("::") as [string, string | undefined];
    const h = head ? head.split(":") : [];
    const t = tail ? tail.split(":") : [];
    const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
    return groups.map((g) => parseInt(g, 16).toString(16)).join(":");
  };
  return norm(a) === norm(b);
}

/** A v1 line, as a balancer in front of featherlb would send it. */
export function v1Header(family: 4 | 6, src: string, dst: string, srcPort: number, dstPort: number): Buffer {
  return Buffer.from(`PROXY TCP${family} ${src} ${dst} ${srcPort} ${dstPort}\r\n`, "latin1");
}

/** A v2 header for TCP over IPv4 (IPv4 literals only), optionally with TLV bytes after the addresses. */
export function v2Header(src: string, dst: string, srcPort: number, dstPort: number, tlvs = Buffer.alloc(0), command: "PROXY" | "LOCAL" = "PROXY"): Buffer {
  const addr = Buffer.alloc(12);
  src.split(".").forEach((x, i) => (addr[i] = Number(x)));
  dst.split(".").forEach((x, i) => (addr[4 + i] = Number(x)));
  addr.writeUInt16BE(srcPort, 8);
  addr.writeUInt16BE(dstPort, 10);
  const body = command === "LOCAL" ? tlvs : Buffer.concat([addr, tlvs]);
  const head = Buffer.from([...SIG, command === "LOCAL" ? 0x20 : 0x21, command === "LOCAL" ? 0x00 : 0x11, body.length >> 8, body.length & 255]);
  return Buffer.concat([head, body]);
}
