/** Host facts and changes the XDP plane needs: which interface to attach to, interface indexes,
 * reserved ports, neighbour entries. What it changes is recorded by hoststate.ts. */
import { readFileSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import type { Config } from "../../config/types.ts";
import { UserError } from "../../errors.ts";
import { XdpError } from "./errors.ts";
import type { Neighbour, Sysctl } from "./hoststate.ts";

/** The interface that has `ip` configured, or undefined. */
export function interfaceOwning(ip: string): string | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (addrs?.some((a) => a.family === "IPv4" && a.address === ip)) return name;
  }
  return undefined;
}

/** The interface to attach to: xdp.interface, else the one owning the services' listen addresses. */
export function chooseInterface(config: Config): string {
  if (config.xdp.interface) return config.xdp.interface;
  const owners = new Set<string>();
  for (const s of config.services) {
    const ip = s.listen.host;
    const owner = interfaceOwning(ip);
    if (!owner) {
      throw new UserError("interface", `service ${s.name} listens on ${ip}, which no network interface has; add the address to an interface or set xdp.interface.`);
    }
    owners.add(owner);
  }
  if (owners.size === 0) throw new UserError("interface", "mode: xdp needs at least one service to find its interface; add a service or set xdp.interface.");
  if (owners.size > 1) {
    throw new UserError("interface", `the services listen on addresses of several interfaces (${[...owners].join(", ")}); mode: xdp attaches to one, so set xdp.interface.`);
  }
  return [...owners][0]!;
}

/** Is `ifname` a veth (no device behind it, and `ip -d link` says veth)? False when unsure. */
export async function isVeth(ifname: string): Promise<boolean> {
  try {
    const uevent = await Bun.file(`/sys/class/net/${ifname}/device/uevent`).exists();
    if (uevent) return false;
    const link = Bun.spawnSync(["ip", "-d", "link", "show", ifname]);
    return link.stdout.toString().includes("veth");
  } catch {
    return false;
  }
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
 * net.ipv4.ip_local_reserved_ports of this network namespace. featherlb adds its SNAT range so the LB's
 * own sockets (health checks) never pick a port the XDP program hands out; HostState (hoststate.ts)
 * records the change and undoes it.
 */
export const reservedPorts: Sysctl = {
  read: () => readFileSync(RESERVED, "utf8").trim(),
  write: (value) => writeFileSync(RESERVED, value),
};

/**
 * The `protocol` (NDA_PROTOCOL) featherlb tags its neighbour entries with, so that a later start, or an
 * operator, can tell them from anyone else's even after a crash. The kernel stores values from 4
 * (RTPROT_STATIC) up without interpreting them; 241 is assigned by neither linux/rtnetlink.h nor
 * iproute2's rt_protos. An operator may name it: echo "241 featherlb" >/etc/iproute2/rt_protos.d/featherlb.conf
 */
export const NEIGH_PROTOCOL = 241;

/** An entry as `ip -N -j neigh` prints it (-N: the protocol as a number even if rt_protos names it). */
interface NeighEntry {
  dst: string;
  dev?: string;
  state?: string[];
  /** Present (value null) when the entry is managed. */
  managed?: null;
  protocol?: string;
}

/** The entries `ip neigh show <args>` lists; none when `ip` fails or is missing. */
function neighShow(args: string[]): NeighEntry[] {
  try {
    const r = Bun.spawnSync(["ip", "-N", "-j", "neigh", "show", ...args], { stdout: "pipe", stderr: "pipe" });
    return r.exitCode === 0 ? (JSON.parse(r.stdout.toString() || "[]") as NeighEntry[]) : [];
  } catch {
    return [];
  }
}

const pinned = (e: NeighEntry) => !!e.state?.some((s) => s === "PERMANENT" || s === "NOARP");
/** Ours: managed and tagged. An operator who turns our entry into a permanent one makes it theirs (the
 * kernel keeps the tag but drops the managed flag). */
const isOurs = (e: NeighEntry) => e.protocol === String(NEIGH_PROTOCOL) && "managed" in e && !pinned(e);
/** Someone else's, left as it is: managed without our tag, permanent or NOARP. */
const isTheirs = (e: NeighEntry) => !isOurs(e) && ("managed" in e || pinned(e));

/** Every neighbour entry in this network namespace that carries our tag: ours, whoever created it. */
export function taggedNeighbours(): Neighbour[] {
  return neighShow(["proto", String(NEIGH_PROTOCOL)])
    .filter(isOurs)
    .flatMap((e) => (e.dev ? [{ dev: e.dev, dst: e.dst }] : []));
}

/**
 * Ask the kernel to keep the next hop toward `ip` resolved (a "managed" neighbour entry, Linux ≥ 5.16):
 * the XDP program reads MACs with bpf_fib_lookup and passes a backend's SYN to the kernel while the
 * MAC is unknown, and nothing else would make the kernel resolve it. Returns the next hop and whether
 * the entry is ours (`ours`: made by this call, or tagged by an earlier featherlb; false when it was
 * already managed, permanent or NOARP without our tag — then it is someone else's and
 * releaseNeighbour must leave it). Throws XdpError("neighbour") saying why it could not. Uses
 * iproute2 (`ip`), present on every host that runs XDP.
 */
export function manageNeighbour(ifname: string, ip: string): { nexthop: string; ours: boolean } {
  const cannot = (why: string) => new XdpError("neighbour", why);
  const route = Bun.spawnSync(["ip", "-j", "route", "get", ip], { stdout: "pipe", stderr: "pipe" });
  if (route.exitCode !== 0) throw cannot(route.stderr.toString().trim() || "ip route get failed");
  const r = (JSON.parse(route.stdout.toString()) as { dev?: string; gateway?: string; type?: string }[])[0];
  if (!r || r.type === "local") throw cannot("the address is local");
  if (r.dev !== ifname) throw cannot(`it is routed via ${r.dev}, not ${ifname}`);
  const nexthop = r.gateway ?? ip;
  const existing = neighShow([nexthop, "dev", ifname])[0];
  if (existing && isOurs(existing)) return { nexthop, ours: true };
  if (existing && isTheirs(existing)) return { nexthop, ours: false };
  const set = Bun.spawnSync(["ip", "neigh", "replace", nexthop, "dev", ifname, "managed", "protocol", String(NEIGH_PROTOCOL)], { stdout: "pipe", stderr: "pipe" });
  if (set.exitCode !== 0) throw cannot(set.stderr.toString().trim() || "ip neigh replace failed");
  return { nexthop, ours: true };
}

/**
 * Undo a neighbour entry of ours (at exit, best effort): the entry is deleted, and the kernel resolves
 * the address again the next time something sends to it. A managed entry would otherwise stay, and
 * keep the kernel probing the backend, after featherlb is gone. An entry someone made theirs since
 * (no longer managed, or no longer tagged) is left.
 */
export function releaseNeighbour(ifname: string, nexthop: string): void {
  const existing = neighShow([nexthop, "dev", ifname])[0];
  if (!existing || !isOurs(existing)) return;
  try {
    Bun.spawnSync(["ip", "neigh", "del", nexthop, "dev", ifname], { stdout: "ignore", stderr: "ignore" });
  } catch {
    // Best effort at exit.
  }
}
