/**
 * featherlb's neighbour table: the next-hop MAC of every backend, written into flb_nbr for the XDP
 * program to use when bpf_fib_lookup refuses because IPv4 forwarding is off on the interface (the
 * kernel checks forwarding before any lookup; see bpf/neigh.h resolve_l2). It also keeps working when
 * forwarding is on, so an operator or a daemon flipping net.ipv4.ip_forward at run time changes nothing.
 *
 * Sources, read from procfs (per network namespace, no process spawned, no privileges needed):
 * - /proc/net/route: the main IPv4 routing table. A backend's next hop is its gateway, or itself when
 *   on-link, by longest prefix then lowest metric. Policy routing (ip rule) is not consulted: with
 *   forwarding on, bpf_fib_lookup sees it; with forwarding off, the main table decides.
 * - /proc/net/arp: the kernel's IPv4 neighbour cache (complete entries only). The loader asks the
 *   kernel to keep each next hop resolved (managed neighbour entries, netif.ts), so an entry appears
 *   within milliseconds of the first apply and stays fresh.
 *
 * Only next hops on the attached interface are written: the program transmits table hops out of the
 * interface the packet came in on (one-arm NAT).
 */
import { readFileSync } from "node:fs";
import { endianness } from "node:os";
import { ipv4ToU32, u32ToIpv4 } from "./layout.ts";

export interface Route {
  ifname: string;
  /** Host-order u32s. */
  dest: number;
  mask: number;
  gateway: number;
  metric: number;
}

const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;
const RTF_REJECT = 0x200;
/** /proc/net/arp flags: ATF_COM, the hardware address is known. */
const ATF_COM = 0x2;

/**
 * /proc/net/route prints each address as the %08X of its in-memory (network-order) 32-bit value, so on
 * a little-endian host "0100000A" is 10.0.0.1. Convert to a host-order u32 (10.0.0.1 → 0x0a000001).
 */
export function procHexToU32(hex: string, little = endianness() === "LE"): number {
  const n = Number.parseInt(hex, 16) >>> 0;
  if (!little) return n;
  return (((n & 0xff) << 24) | (((n >>> 8) & 0xff) << 16) | (((n >>> 16) & 0xff) << 8) | (n >>> 24)) >>> 0;
}

/** The usable (up, not reject) routes of /proc/net/route. */
export function parseRoutes(text: string, little = endianness() === "LE"): Route[] {
  const routes: Route[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const flags = Number.parseInt(f[3]!, 16);
    if (!(flags & RTF_UP) || flags & RTF_REJECT) continue;
    routes.push({
      ifname: f[0]!,
      dest: procHexToU32(f[1]!, little),
      gateway: flags & RTF_GATEWAY ? procHexToU32(f[2]!, little) : 0,
      metric: Number(f[6]),
      mask: procHexToU32(f[7]!, little),
    });
  }
  return routes;
}

/** Complete entries of /proc/net/arp on `ifname`: IPv4 (dotted) → MAC ("aa:bb:…"). */
export function parseArp(text: string, ifname: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[5] !== ifname) continue;
    if (!(Number.parseInt(f[2]!, 16) & ATF_COM)) continue;
    if (f[3] === "00:00:00:00:00:00") continue;
    out.set(f[0]!, f[3]!.toLowerCase());
  }
  return out;
}

const popcount = (n: number) => {
  let c = 0;
  for (let x = n >>> 0; x; x &= x - 1) c++;
  return c;
};

/** The route the main table picks for `ip` (host-order u32): longest prefix, then lowest metric. */
export function bestRoute(routes: readonly Route[], ip: number): Route | undefined {
  let best: Route | undefined;
  for (const r of routes) {
    if (((ip & r.mask) >>> 0) !== r.dest) continue;
    if (!best) best = r;
    else {
      const a = popcount(r.mask);
      const b = popcount(best.mask);
      if (a > b || (a === b && r.metric < best.metric)) best = r;
    }
  }
  return best;
}

/** The next hop toward `ip` on `ifname`: the gateway or `ip` itself; undefined when routed elsewhere or not at all. */
export function nextHopOn(routes: readonly Route[], ip: string, ifname: string): string | undefined {
  const r = bestRoute(routes, ipv4ToU32(ip));
  if (!r || r.ifname !== ifname) return undefined;
  return r.gateway ? u32ToIpv4(r.gateway) : ip;
}

export const macBytes = (mac: string) => Uint8Array.from(mac.split(":").map((h) => Number.parseInt(h, 16)));

export interface TableWriter {
  set(ip: number, mac: Uint8Array): void;
  delete(ip: number): void;
}

export interface ProcReader {
  routes(): string;
  arp(): string;
}

const PROC: ProcReader = {
  routes: () => readFileSync("/proc/net/route", "utf8"),
  arp: () => readFileSync("/proc/net/arp", "utf8"),
};

/**
 * Keeps flb_nbr equal to {backend IP → MAC of its next hop on `ifname`} for the backends it is given.
 * `refresh` writes only what changed, so calling it once a second costs two small procfs reads. An
 * entry leaves the map when its backend does or its route leaves the interface, not when the kernel is
 * merely re-resolving it.
 */
export class NeighbourTable {
  private wanted = new Set<string>();
  /** What flb_nbr holds now: backend IP → MAC. */
  private readonly written = new Map<string, string>();

  constructor(
    private readonly ifname: string,
    private readonly map: TableWriter,
    private readonly proc: ProcReader = PROC,
  ) {}

  /** The backend IPv4 addresses to keep resolved (the rest are removed at the next refresh). */
  setBackends(ips: Iterable<string>): void {
    this.wanted = new Set(ips);
  }

  /** Re-read routes and neighbours and update the map. Returns the backends with no MAC yet. */
  refresh(): string[] {
    const routes = parseRoutes(this.proc.routes());
    const arp = parseArp(this.proc.arp(), this.ifname);
    const missing: string[] = [];
    for (const ip of this.wanted) {
      const hop = nextHopOn(routes, ip, this.ifname);
      if (hop === undefined) {
        missing.push(ip);
        this.remove(ip);
        continue;
      }
      const mac = arp.get(hop);
      if (mac === undefined) {
        // Being re-resolved (or the backend is gone: health checks deal with that). The last known
        // MAC stays: established flows re-read their hop every second and would otherwise be passed
        // to the kernel, which resets them.
        missing.push(ip);
        continue;
      }
      if (this.written.get(ip) === mac) continue;
      this.map.set(ipv4ToU32(ip), macBytes(mac));
      this.written.set(ip, mac);
    }
    for (const ip of [...this.written.keys()]) if (!this.wanted.has(ip)) this.remove(ip);
    return missing;
  }

  private remove(ip: string): void {
    if (!this.written.has(ip)) return;
    this.map.delete(ipv4ToU32(ip));
    this.written.delete(ip);
  }
}

/** net.ipv4.conf.<ifname>.forwarding, or undefined when unreadable. */
export function forwardingOn(ifname: string): boolean | undefined {
  try {
    return readFileSync(`/proc/sys/net/ipv4/conf/${ifname}/forwarding`, "utf8").trim() === "1";
  } catch {
    return undefined;
  }
}

/** The interface's MAC address as bytes (from sysfs). */
export function interfaceMac(ifname: string): Uint8Array | undefined {
  try {
    return macBytes(readFileSync(`/sys/class/net/${ifname}/address`, "utf8").trim());
  } catch {
    return undefined;
  }
}
