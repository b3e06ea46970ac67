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
    throw new UserError("interface", `network interface ${name} does not exist; set xdp.interface to an existing interface (see "ip link").`);
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

/**
 * Ask the kernel to keep the next hop toward `ip` resolved (a "managed" neighbour entry, Linux ≥ 5.16):
 * the XDP program reads MACs with bpf_fib_lookup and passes a backend's SYN to the kernel while the
 * MAC is unknown, and nothing else would make the kernel resolve it. Returns the next hop and whether
 * this call made it managed (`created`: false when it was already managed, permanent or NOARP — then
 * it is someone else's and releaseNeighbour must leave it), or an error message. Uses iproute2 (`ip`),
 * present on every host that runs XDP.
 */
export function manageNeighbour(ifname: string, ip: string): { nexthop: string; created: boolean } | { error: string } {
  const route = Bun.spawnSync(["ip", "-j", "route", "get", ip], { stdout: "pipe", stderr: "pipe" });
  if (route.exitCode !== 0) return { error: route.stderr.toString().trim() || "ip route get failed" };
  const r = (JSON.parse(route.stdout.toString()) as { dev?: string; gateway?: string; type?: string }[])[0];
  if (!r || r.type === "local") return { error: "the address is local" };
  if (r.dev !== ifname) return { error: `it is routed via ${r.dev}, not ${ifname}` };
  const nexthop = r.gateway ?? ip;
  const shown = Bun.spawnSync(["ip", "-j", "neigh", "show", nexthop, "dev", ifname], { stdout: "pipe", stderr: "pipe" });
  // `ip -j` marks a managed entry with a "managed" key (value null).
  const existing = shown.exitCode === 0 ? (JSON.parse(shown.stdout.toString() || "[]") as { state?: string[]; managed?: null }[])[0] : undefined;
  if (existing && ("managed" in existing || existing.state?.some((s) => s === "PERMANENT" || s === "NOARP"))) return { nexthop, created: false };
  const set = Bun.spawnSync(["ip", "neigh", "replace", nexthop, "dev", ifname, "managed"], { stdout: "pipe", stderr: "pipe" });
  if (set.exitCode !== 0) return { error: set.stderr.toString().trim() || "ip neigh replace failed" };
  return { nexthop, created: true };
}

/**
 * Undo a neighbour entry manageNeighbour created (at exit, best effort): the entry is deleted, and the
 * kernel resolves the address again the next time something sends to it. A managed entry would
 * otherwise stay, and keep the kernel probing the backend, after featherlb is gone.
 */
export function releaseNeighbour(ifname: string, nexthop: string): void {
  Bun.spawnSync(["ip", "neigh", "del", nexthop, "dev", ifname], { stdout: "ignore", stderr: "ignore" });
}
