/**
 * Direct server return (`forwarding: dsr`, bpf/dsr.h) needs its backends on the LB interface's link:
 * the program only swaps MACs, so a backend is reached by its own MAC and must be on a subnet of an
 * address of that interface. A next hop through a router would route the packet, still addressed to
 * the service, straight back to the LB. Checked here, where the interface is known.
 */
import { networkInterfaces } from "node:os";
import { parseIPv4 } from "../../config/address.ts";
import type { Config, ServiceConfig } from "../../config/types.ts";

/** The interface's IPv4 subnets as "a.b.c.d/n", with a test of membership. */
export function subnetsOf(ifname: string): { cidr: string; has: (ip: string) => boolean }[] {
  return (networkInterfaces()[ifname] ?? [])
    .filter((a) => a.family === "IPv4" && a.cidr)
    .map((a) => {
      const bits = Number(a.cidr!.split("/")[1]);
      const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
      const net = (ipv4ToU32Host(a.address) & mask) >>> 0;
      return { cidr: `${a.address}/${bits}`, has: (ip: string) => ((ipv4ToU32Host(ip) & mask) >>> 0) === net };
    });
}

/** Host-order u32 of an IPv4 address (layout.ts ipv4ToU32 is network order, as the maps want it); NaN if not one. */
function ipv4ToU32Host(ip: string): number {
  const b = parseIPv4(ip);
  return b ? (((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0) : Number.NaN;
}

/** Is `ip` (IPv4) on a subnet of `ifname`? */
export function onLink(ifname: string, ip: string): boolean {
  return subnetsOf(ifname).some((s) => s.has(ip));
}

/**
 * The first dsr backend of `services` (written as an IPv4 address) that is not on a subnet of
 * `ifname`, as a sentence naming it and the fix, or undefined. Backends named by DNS are checked as
 * they resolve (plane.ts write: an off-link address gets no flows and is logged).
 */
export function dsrOffLink(config: Config, ifname: string, services: readonly ServiceConfig[]): string | undefined {
  const subnets = subnetsOf(ifname);
  for (const s of services) {
    if (s.forwarding !== "dsr") continue;
    const i = config.services.indexOf(s);
    for (const [b, backend] of s.backends.entries()) {
      if (parseIPv4(backend.host) === null || subnets.some((n) => n.has(backend.host))) continue;
      const on = subnets.length ? subnets.map((n) => n.cidr).join(", ") : "no IPv4 address";
      return `services[${i}].backends[${b}].address: ${backend.host} is not on the link of ${ifname} (${on}), and forwarding: dsr reaches a backend by its own MAC address on that link; move the backend onto one of those subnets or use forwarding: nat`;
    }
  }
  return undefined;
}
