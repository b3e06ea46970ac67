/**
 * Addresses, in one place for the whole program: "host:port" parsing with precise complaints, IPv4 and
 * IPv6 literals (text ↔ numbers), and the comparisons the validator needs (same backend? listeners
 * that cannot both bind?). The control plane and both data planes parse addresses only through here.
 *
 * IPv6 literals are written in brackets ("[::1]:80") and stored without them, as HostPort says.
 */
import type { HostPort } from "./types.ts";
import { SNAT_PORT_MIN, SNAT_PORTS_MIN_COUNT } from "./limits.ts";
import { fail, ok, type Parsed } from "./result.ts";

export type HostKind =
  /** A listener: the host must be an IP literal (0.0.0.0 and :: mean "every address"). */
  | "listen"
  /** A backend: an IP literal or a DNS name. */
  | "backend";

export function parseHostPort(text: string, kind: HostKind): Parsed<HostPort> {
  const example = kind === "listen" ? "0.0.0.0:8080" : "10.0.0.11:8080";
  if (text === "") return fail(`expected host:port like "${example}", got an empty string`);
  const quoted = JSON.stringify(text);

  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) return fail(`missing "]" after the IPv6 address in ${quoted}; write it as "[::1]:80"`);
    host = text.slice(1, close);
    if (parseIPv6(host) === null) {
      return fail(
        parseIPv4(host) !== null
          ? `brackets are only for IPv6 addresses, got ${quoted}; write "${host}${text.slice(close + 1)}"`
          : `invalid IPv6 address "${host}" in ${quoted}`,
      );
    }
    const rest = text.slice(close + 1);
    if (rest === "" || rest === ":") return fail(`missing port in ${quoted}; expected "[${host}]:PORT"`);
    if (!rest.startsWith(":")) return fail(`expected ":PORT" after "]" in ${quoted}, got "${rest}"`);
    portText = rest.slice(1);
  } else {
    const colons = text.split(":").length - 1;
    if (colons === 0) return fail(`missing port in ${quoted}; expected host:port like "${example}"`);
    if (colons > 1) {
      return fail(`IPv6 addresses must be in brackets with the port after them, like "[::1]:80"; got ${quoted}`);
    }
    const colon = text.indexOf(":");
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host === "") {
      return fail(
        kind === "listen"
          ? `missing host in ${quoted}; write "0.0.0.0${text}" to listen on every IPv4 address`
          : `missing host in ${quoted}; expected host:port like "${example}"`,
      );
    }
    if (portText === "") return fail(`missing port in ${quoted}; expected host:port like "${example}"`);
    const hostError = checkHost(host, kind);
    if (hostError !== null) return fail(hostError);
  }

  if (!/^\d+$/.test(portText)) return fail(`port must be a number 1-65535, got "${portText}"`);
  const port = Number(portText);
  if (port < 1 || port > 65535) return fail(`port must be 1-65535, got ${port}`);
  return ok({ host, port });
}

/** null when `host` (not bracketed) is acceptable for `kind`, else why not. */
function checkHost(host: string, kind: HostKind): string | null {
  if (parseIPv4(host) !== null) return null;
  if (/^[\d.]+$/.test(host)) return `invalid IPv4 address "${host}"`;
  if (kind === "listen") {
    return `the listen host must be an IP address (use 0.0.0.0 or [::] for every address), got "${host}"`;
  }
  if (!isHostname(host)) return `invalid hostname "${host}"`;
  return null;
}

/** RFC 1123 names (plus "_", which container runtimes use), optionally fully qualified with a final dot. */
function isHostname(host: string): boolean {
  const name = host.endsWith(".") ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((label) => /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(label));
}

/** Dotted-quad IPv4 without leading zeros (which some resolvers read as octal). */
export function parseIPv4(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes: number[] = [];
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    bytes.push(n);
  }
  return bytes;
}

/** Whether `host` is an IP literal (IPv4 or IPv6) rather than a name to resolve. */
export function isIpLiteral(host: string): boolean {
  return parseIPv4(host) !== null || parseIPv6(host) !== null;
}

export function isIPv4(host: string): boolean {
  return parseIPv4(host) !== null;
}

/** "10.0.0.1" → 0x0a000001, a host-order u32 (what the BPF maps store big-endian). Throws on anything else. */
export function ipv4ToU32(ip: string): number {
  const b = parseIPv4(ip);
  if (b === null) throw new Error(`not an IPv4 address: ${ip}`);
  return bytesToU32(b);
}

export function u32ToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/**
 * The IPv4 address of a dotted quad, or of the IPv4-mapped spelling a dual-stack socket reports
 * ("::ffff:10.0.0.1"), as a host-order u32; null for anything else (IPv6 proper, names).
 */
export function ipv4OfPeer(ip: string): number | null {
  const b = parseIPv4(ip.startsWith("::ffff:") ? ip.slice(7) : ip);
  return b === null ? null : bytesToU32(b);
}

function bytesToU32(b: readonly number[]): number {
  return (((b[0] ?? 0) << 24) | ((b[1] ?? 0) << 16) | ((b[2] ?? 0) << 8) | (b[3] ?? 0)) >>> 0;
}

/** An IPv6 address as its eight 16-bit groups, plus the zone ("%eth0") if any. */
export interface IPv6 {
  groups: number[];
  zone: string;
}

/** RFC 4291 text form: hex groups, at most one "::", optionally a dotted IPv4 tail and a "%zone". */
export function parseIPv6(text: string): IPv6 | null {
  const percent = text.indexOf("%");
  const zone = percent < 0 ? "" : text.slice(percent + 1);
  const addr = percent < 0 ? text : text.slice(0, percent);
  if (percent >= 0 && !/^[A-Za-z0-9_.-]+$/.test(zone)) return null;

  const halves = addr.split("::");
  if (halves.length > 2) return null;
  const parseSide = (side: string): number[] | null => {
    if (side === "") return [];
    const out: number[] = [];
    const pieces = side.split(":");
    for (const [i, piece] of pieces.entries()) {
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIPv4(piece);
        if (v4 === null) return null;
        out.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(piece)) {
        out.push(parseInt(piece, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = parseSide(halves[0] ?? "");
  const tail = halves.length === 2 ? parseSide(halves[1] ?? "") : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1) return head.length === 8 ? { groups: head, zone } : null;
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return null;
  return { groups: [...head, ...new Array<number>(missing).fill(0), ...tail], zone };
}

/** Where a listener binds, normalised so different spellings of one address compare equal. */
interface Bind {
  family: 4 | 6;
  /** Canonical address text ("10.0.0.1", "0:0:0:0:0:0:0:1%eth0"). */
  addr: string;
  /** 0.0.0.0 or ::, which claim the port on every address of their family. */
  wildcard: boolean;
}

function bindOf(host: string): Bind {
  const v4 = parseIPv4(host);
  if (v4 !== null) return { family: 4, addr: v4.join("."), wildcard: v4.every((b) => b === 0) };
  const v6 = parseIPv6(host);
  if (v6 === null) return { family: 4, addr: host.toLowerCase(), wildcard: false };
  const g = v6.groups;
  // An IPv4-mapped address (::ffff:a.b.c.d) binds the IPv4 address.
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    const hi = g[6] ?? 0;
    const lo = g[7] ?? 0;
    const addr = [hi >> 8, hi & 255, lo >> 8, lo & 255].join(".");
    return { family: 4, addr, wildcard: addr === "0.0.0.0" };
  }
  const addr = g.map((x) => x.toString(16)).join(":") + (v6.zone ? `%${v6.zone}` : "");
  return { family: 6, addr, wildcard: g.every((x) => x === 0) && v6.zone === "" };
}

/**
 * Whether two listeners cannot both bind. Same port and: the same address, or a wildcard that covers the
 * other. "::" is dual-stack on Linux (net.ipv6.bindv6only=0, Bun's default), so it covers IPv4 too.
 */
export function listenersConflict(a: HostPort, b: HostPort): boolean {
  if (a.port !== b.port) return false;
  const x = bindOf(a.host);
  const y = bindOf(b.host);
  if (x.family === y.family && x.addr === y.addr) return true;
  if ((x.wildcard && x.family === 6) || (y.wildcard && y.family === 6)) return true;
  return (x.wildcard && y.family === 4 && x.family === 4) || (y.wildcard && x.family === 4 && y.family === 4);
}

/**
 * Whether connecting to `backend` reaches the listener `listen` on this host, as far as the text tells:
 * the same IP (any spelling) and port, or a loopback address (127.0.0.0/8, ::1) on the port of a
 * wildcard listener — 0.0.0.0 takes IPv4 only, [::] both (dual-stack). A hostname: unknown, false.
 */
export function reachesListener(backend: HostPort, listen: HostPort): boolean {
  if (backend.port !== listen.port) return false;
  if (parseIPv4(backend.host) === null && parseIPv6(backend.host) === null) return false;
  const to = bindOf(backend.host);
  const at = bindOf(listen.host);
  if (to.family === at.family && to.addr === at.addr) return true;
  if (!at.wildcard || !isLoopback(to)) return false;
  return at.family === 6 || to.family === 4;
}

function isLoopback(bind: Bind): boolean {
  return bind.family === 4 ? bind.addr.startsWith("127.") : bind.addr === "0:0:0:0:0:0:0:1";
}

/** A backend's identity for duplicate detection: case-insensitive names, canonical IPs, numeric port. */
export function backendKey(hp: HostPort): string {
  const v6 = parseIPv6(hp.host);
  const host = v6 !== null ? bindOf(hp.host).addr : hp.host.toLowerCase().replace(/\.$/, "");
  return `${host}|${hp.port}`;
}

/** "host:port" as the user would write it, bracketing IPv6. */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** "first-last": an inclusive range of source ports for the XDP plane's SNAT (xdp.snat_ports). */
export function parsePortRange(text: string): Parsed<{ first: number; last: number }> {
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  if (!m) return fail(`expected a port range like "40000-59999", got ${JSON.stringify(text)}`);
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (first < SNAT_PORT_MIN) return fail(`first port must be at least ${SNAT_PORT_MIN}, got ${first}`);
  if (last > 65535) return fail(`last port must be at most 65535, got ${last}`);
  if (first > last) return fail(`first port ${first} is above last port ${last}`);
  const count = last - first + 1;
  if (count < SNAT_PORTS_MIN_COUNT) {
    return fail(`must span at least ${SNAT_PORTS_MIN_COUNT} ports, got ${count} (${first}-${last})`);
  }
  return ok({ first, last });
}
