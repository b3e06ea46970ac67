/**
 * The PROXY protocol (haproxy.org, doc/proxy-protocol.txt): one header at the start of a TCP stream that
 * tells the receiver the original client and destination addresses. featherlb writes it toward backends
 * (`send_proxy: v1 | v2`) and reads it from clients (`accept_proxy: true`).
 *
 *   v1 (text):   "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n" (TCP6 likewise; "PROXY UNKNOWN…"
 *                when the sender cannot tell), at most 107 bytes including the CRLF.
 *   v2 (binary): the 12-byte signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A, a version/command byte
 *                (0x2_: version 2; _0 LOCAL, _1 PROXY), a family/protocol byte (0x11 TCP over IPv4,
 *                0x21 TCP over IPv6, 0x00 unspecified), a big-endian u16 length of what follows, then
 *                source address, destination address, source port, destination port (network order)
 *                and optional TLVs, which a receiver skips.
 */
import { parseIPv4, parseIPv6 } from "../../config/address.ts";

export interface Endpoint {
  address: string;
  port: number;
}

/** Where a connection came from and where it went, as a PROXY header carries them. */
export interface Endpoints {
  src: Endpoint;
  dst: Endpoint;
}

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from("PROXY ", "latin1");
/** The spec's longest v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses). */
export const V1_MAX = 107;
/**
 * The longest v2 header accepted: the 16 fixed bytes and up to 1024 of addresses and TLVs. Two IPv6
 * addresses take 36; the TLVs other balancers add (AWS, Azure, GCP, a TLS summary) a few hundred.
 */
export const V2_MAX = 16 + 1024;

// ---- sending --------------------------------------------------------------------------------------

/** The IPv4 address inside an IPv4-mapped IPv6 address ("::ffff:10.0.0.1" → "10.0.0.1"), else null. */
function unmapped(address: string): string | null {
  return address.startsWith("::ffff:") && parseIPv4(address.slice(7)) !== null ? address.slice(7) : null;
}

/**
 * Both ends in one family, as the header requires. A dual-stack listener reports IPv4 peers as
 * IPv4-mapped IPv6 addresses; those become plain IPv4 (TCP4), which is what the client really used.
 * An address with a zone ("fe80::1%eth0") loses it: the header has no place for one.
 */
function normalise({ src, dst }: Endpoints): { family: 4 | 6; src: Endpoint; dst: Endpoint } {
  const s = unmapped(src.address) ?? src.address.split("%")[0]!;
  const d = unmapped(dst.address) ?? dst.address.split("%")[0]!;
  if (parseIPv4(s) && parseIPv4(d)) return { family: 4, src: { address: s, port: src.port }, dst: { address: d, port: dst.port } };
  const six = (a: string) => (parseIPv4(a) ? `::ffff:${a}` : a);
  return { family: 6, src: { address: six(s), port: src.port }, dst: { address: six(d), port: dst.port } };
}

export function encodeV1(endpoints: Endpoints): Buffer {
  const { family, src, dst } = normalise(endpoints);
  return Buffer.from(`PROXY TCP${family} ${src.address} ${dst.address} ${src.port} ${dst.port}\r\n`, "latin1");
}

export function encodeV2(endpoints: Endpoints): Buffer {
  const { family, src, dst } = normalise(endpoints);
  const size = family === 4 ? 4 : 16;
  const out = Buffer.allocUnsafe(16 + 2 * size + 4);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21; // version 2, command PROXY
  out[13] = family === 4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  out.writeUInt16BE(2 * size + 4, 14);
  writeAddress(out, 16, family, src.address);
  writeAddress(out, 16 + size, family, dst.address);
  out.writeUInt16BE(src.port, 16 + 2 * size);
  out.writeUInt16BE(dst.port, 18 + 2 * size);
  return out;
}

function writeAddress(out: Buffer, at: number, family: 4 | 6, address: string): void {
  if (family === 4) {
    const b = parseIPv4(address) ?? [0, 0, 0, 0];
    for (let i = 0; i < 4; i++) out[at + i] = b[i]!;
    return;
  }
  const groups = parseIPv6(address)?.groups ?? new Array<number>(8).fill(0);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(groups[i]!, at + 2 * i);
}

// ---- receiving ------------------------------------------------------------------------------------

export type Decoded =
  /** Not a whole header yet. */
  | { kind: "more" }
  /** Not a PROXY header, or a broken one: the connection must be closed. */
  | { kind: "invalid"; reason: string }
  /**
   * A header of `length` bytes. `endpoints` null: use the connection's own addresses (v1 UNKNOWN, v2
   * LOCAL, or a v2 family featherlb has no use for such as UNIX or UDP, which the spec says to treat
   * as unspecified).
   */
  | { kind: "header"; version: 1 | 2; length: number; endpoints: Endpoints | null };

/** Does `buf` start like `prefix` (as far as it goes)? */
function startsLike(buf: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(buf.length, prefix.length);
  for (let i = 0; i < n; i++) if (buf[i] !== prefix[i]) return false;
  return true;
}

/** Read a PROXY header (either version) from the start of what a client sent so far. */
export function decodeHeader(buf: Uint8Array): Decoded {
  if (buf.length === 0) return { kind: "more" };
  if (startsLike(buf, V2_SIGNATURE)) return decodeV2(buf);
  if (startsLike(buf, V1_PREFIX)) return decodeV1(buf);
  return { kind: "invalid", reason: "the stream does not start with a PROXY protocol header" };
}

const PORT = /^(0|[1-9]\d{0,4})$/;

function decodeV1(buf: Uint8Array): Decoded {
  const lf = buf.indexOf(0x0a);
  if (lf < 0) return buf.length >= V1_MAX ? { kind: "invalid", reason: `no CRLF in the first ${V1_MAX} bytes of a v1 header` } : { kind: "more" };
  if (lf + 1 > V1_MAX) return { kind: "invalid", reason: `a v1 header longer than ${V1_MAX} bytes` };
  if (buf[lf - 1] !== 0x0d) return { kind: "invalid", reason: "a v1 header ending in a bare LF" };
  const line = Buffer.from(buf.buffer, buf.byteOffset, lf - 1).toString("latin1");
  const fields = line.split(" ");
  const length = lf + 1;
  // UNKNOWN: the receiver ignores whatever follows up to the CRLF.
  if (fields[1] === "UNKNOWN") return { kind: "header", version: 1, length, endpoints: null };
  const [, proto, srcAddr, dstAddr, srcPort, dstPort, ...rest] = fields;
  if (rest.length > 0 || dstPort === undefined) return { kind: "invalid", reason: "a v1 header with the wrong number of fields" };
  const valid = proto === "TCP4" ? (a: string) => parseIPv4(a) !== null : proto === "TCP6" ? (a: string) => !a.includes("%") && !a.includes(".") && parseIPv6(a) !== null : null;
  if (!valid) return { kind: "invalid", reason: `a v1 header for an unknown protocol "${proto}"` };
  if (!valid(srcAddr!) || !valid(dstAddr!)) return { kind: "invalid", reason: `a v1 ${proto} header with a malformed address` };
  if (!PORT.test(srcPort!) || !PORT.test(dstPort) || Number(srcPort) > 65535 || Number(dstPort) > 65535) {
    return { kind: "invalid", reason: "a v1 header with a malformed port" };
  }
  return {
    kind: "header",
    version: 1,
    length,
    endpoints: { src: { address: srcAddr!, port: Number(srcPort) }, dst: { address: dstAddr!, port: Number(dstPort) } },
  };
}

function decodeV2(buf: Uint8Array): Decoded {
  if (buf.length < 16) return { kind: "more" };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return { kind: "invalid", reason: `a v2 header with version ${verCmd >> 4}` };
  const command = verCmd & 0x0f;
  if (command > 1) return { kind: "invalid", reason: `a v2 header with the unassigned command ${command}` };
  const fam = buf[13]!;
  if (fam >> 4 > 3 || (fam & 0x0f) > 2) return { kind: "invalid", reason: `a v2 header with the unassigned family/protocol 0x${fam.toString(16)}` };
  const length = 16 + view.getUint16(14, false);
  if (length > V2_MAX) return { kind: "invalid", reason: `a v2 header of ${length} bytes, more than the ${V2_MAX} accepted` };
  if (buf.length < length) return { kind: "more" };
  // LOCAL (health checks of the balancer in front): the connection's own endpoints.
  if (command === 0) return { kind: "header", version: 2, length, endpoints: null };
  const size = fam === 0x11 ? 4 : fam === 0x21 ? 16 : 0;
  if (size === 0) return { kind: "header", version: 2, length, endpoints: null };
  if (length < 16 + 2 * size + 4) return { kind: "invalid", reason: `a v2 header too short for its addresses (${length - 16} bytes)` };
  const read = (at: number) => (size === 4 ? Array.from(buf.subarray(at, at + 4)).join(".") : formatIPv6(view, at));
  return {
    kind: "header",
    version: 2,
    length,
    endpoints: {
      src: { address: read(16), port: view.getUint16(16 + 2 * size, false) },
      dst: { address: read(16 + size), port: view.getUint16(18 + 2 * size, false) },
    },
  };
}

/** The 16 bytes at `at` as RFC 5952 text: lower case, the longest run of zero groups as "::". */
export function formatIPv6(view: DataView, at: number): string {
  const g = Array.from({ length: 8 }, (_, i) => view.getUint16(at + 2 * i, false));
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `::ffff:${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`;
  let best = -1;
  let bestLen = 1; // a single zero group is not shortened
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}
