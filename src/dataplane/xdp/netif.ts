/** Host facts the XDP plane needs: which interface owns an address, interface indexes, reserved ports. */
import { readFileSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { UserError } from "../../errors.ts";

/** The interface that has `ip` configured, or undefined. */
export function interfaceOwning(ip: string): string | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (addrs?.some((a) => a.family === "IPv4" && a.address === ip)) return name;
  }
  return undefined;
}

export function ifindexOf(name: string): number {
  try {
    return Number(readFileSync(`/sys/class/net/${name}/ifindex`, "utf8").trim());
  } catch {
    throw new UserError("interface", `Network interface ${name} does not exist; set xdp.interface to an existing interface (see "ip link").`);
  }
}

const RESERVED = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/**
 * Reserve the SNAT range in net.ipv4.ip_local_reserved_ports so the LB's own sockets (health checks)
 * never pick a port the XDP program hands out. Returns a function restoring the previous value.
 */
export function reservePorts(first: number, last: number): () => void {
  const before = readFileSync(RESERVED, "utf8").trim();
  const range = `${first}-${last}`;
  if (before.split(",").includes(range)) return () => {};
  writeFileSync(RESERVED, before ? `${before},${range}` : range);
  return () => {
    try {
      writeFileSync(RESERVED, before || "\n");
    } catch {
      // Best effort at exit.
    }
  };
}
