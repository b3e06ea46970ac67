/** Host facts and changes the XDP plane needs: which interface to attach to, interface indexes,
 * reserved ports, neighbour entries (over netlink, rtnetlink.ts). What it changes is recorded by
 * hoststate.ts. */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import type { Config } from "../../config/types.ts";
import { UserError } from "../../errors.ts";
import { XdpError } from "./errors.ts";
import type { Neighbour, Sysctl } from "./hoststate.ts";
import { NUD, RtNetlink, type NeighbourEntry } from "./rtnetlink.ts";

/** The interface that has `ip` configured, or undefined. */
export function interfaceOwning(ip: string): string | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (addrs?.some((a) => a.family === "IPv4" && a.address === ip)) return name;
  }
  return undefined;
}

/**
 * The source address toward backends: xdp.snat_address, which must be an address of `ifname` (the
 * backends' replies come back to it there), else `ifname`'s primary IPv4 address (the first the kernel
 * lists), so one config file gives each instance behind ECMP an address of its own (docs/scale-out.md).
 */
export function snatAddress(config: Config, ifname: string): string {
  const own = (networkInterfaces()[ifname] ?? []).filter((a) => a.family === "IPv4").map((a) => a.address);
  const chosen = config.xdp.snat_address;
  if (chosen !== undefined) {
    if (own.includes(chosen)) return chosen;
    throw new UserError("interface", `xdp.snat_address ${chosen} is not an address of ${ifname}, where backends' replies to it must arrive; add it to ${ifname} or leave xdp.snat_address out to use ${own[0] ?? "the interface's address"}.`);
  }
  if (own[0] === undefined) {
    throw new UserError("interface", `${ifname} has no IPv4 address for mode: xdp to send from toward backends; add one to it or set xdp.snat_address to an address of it.`);
  }
  return own[0];
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

/** Is `ifname` a veth (its link kind, asked over netlink)? False when unsure. */
export async function isVeth(ifname: string): Promise<boolean> {
  try {
    const index = ifindexOf(ifname);
    return withNetlink((nl) => nl.linkKind(index)) === "veth";
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

/** Interface names by index, from sysfs (for entries read from netlink, which names interfaces by index). */
function interfaceNames(): Map<number, string> {
  const names = new Map<number, string>();
  try {
    for (const name of readdirSync("/sys/class/net")) {
      const index = Number(readFileSync(`/sys/class/net/${name}/ifindex`, "utf8").trim());
      if (Number.isInteger(index)) names.set(index, name);
    }
  } catch {
    // No sysfs: no names, so no entries are recognised.
  }
  return names;
}

const pinned = (e: NeighbourEntry) => (e.state & (NUD.PERMANENT | NUD.NOARP)) !== 0;
/** Ours: managed and tagged. An operator who turns our entry into a permanent one makes it theirs (the
 * kernel keeps the tag but drops the managed flag). */
const isOurs = (e: NeighbourEntry) => e.protocol === NEIGH_PROTOCOL && e.managed && !pinned(e);
/** Someone else's, left as it is: managed without our tag, permanent or NOARP. */
const isTheirs = (e: NeighbourEntry) => !isOurs(e) && (e.managed || pinned(e));

/** `fn` with a netlink socket, closed afterwards. */
function withNetlink<T>(fn: (nl: RtNetlink) => T): T {
  const nl = RtNetlink.open();
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}

/** Every neighbour entry in this network namespace that carries our tag: ours, whoever created it. None when netlink fails. */
export function taggedNeighbours(): Neighbour[] {
  let entries: NeighbourEntry[];
  try {
    entries = withNetlink((nl) => nl.neighbours());
  } catch {
    return [];
  }
  const names = interfaceNames();
  return entries.filter(isOurs).flatMap((e) => {
    const dev = names.get(e.ifindex);
    return dev ? [{ dev, dst: e.dst }] : [];
  });
}

/** What manageNeighbours did for one backend address. */
export type Managed = { ip: string; nexthop: string; ours: boolean } | { ip: string; error: XdpError };

/**
 * Ask the kernel to keep the next hop toward each of `ips` resolved (a "managed" neighbour entry, Linux
 * ≥ 5.16): the XDP program reads MACs with bpf_fib_lookup and passes a backend's SYN to the kernel while
 * the MAC is unknown, and nothing else would make the kernel resolve it. Per address: its next hop and
 * whether the entry is ours (`ours`: made now, or tagged by an earlier featherlb; false when it was
 * already managed, permanent or NOARP without our tag — then it is someone else's and releaseNeighbours
 * must leave it), or why not (XdpError "neighbour": no route, a local address, routed via another
 * interface, refused). Over netlink in batches (rtnetlink.ts): one route lookup per address, one dump of
 * the neighbour table, one RTM_NEWNEIGH per next hop that needs it — no process spawned. Throws
 * XdpError("netlink") when the socket itself fails.
 */
export function manageNeighbours(ifname: string, ips: readonly string[]): Managed[] {
  if (ips.length === 0) return [];
  let ifindex: number;
  try {
    ifindex = ifindexOf(ifname);
  } catch {
    throw new XdpError("neighbour", `interface ${ifname} is gone`);
  }
  const cannot = (ip: string, why: string, errno = 0): Managed => ({ ip, error: new XdpError("neighbour", why, errno) });
  return withNetlink((nl) => {
    const routes = nl.routes(ips);
    const existing = new Map(nl.neighbours().filter((e) => e.ifindex === ifindex).map((e) => [e.dst, e]));
    const out: Managed[] = [];
    const create = new Map<string, string[]>(); // next hop → the backend addresses behind it
    for (const ip of ips) {
      const r = routes.get(ip)!;
      if ("errno" in r) out.push(cannot(ip, `no route (errno ${r.errno})`, r.errno));
      else if (r.local) out.push(cannot(ip, "the address is local"));
      else if (r.ifindex !== ifindex) out.push(cannot(ip, `it is routed via ${interfaceNames().get(r.ifindex) ?? `ifindex ${r.ifindex}`}, not ${ifname}`));
      else {
        const nexthop = r.gateway ?? ip;
        const e = existing.get(nexthop);
        if (e && isOurs(e)) out.push({ ip, nexthop, ours: true });
        else if (e && isTheirs(e)) out.push({ ip, nexthop, ours: false });
        else create.set(nexthop, [...(create.get(nexthop) ?? []), ip]);
      }
    }
    const hops = [...create.keys()];
    const errnos = nl.replaceManaged(hops.map((dst) => ({ ifindex, dst })), NEIGH_PROTOCOL);
    hops.forEach((nexthop, i) => {
      for (const ip of create.get(nexthop)!) out.push(errnos[i] ? cannot(ip, `RTM_NEWNEIGH ${nexthop} refused (errno ${errnos[i]})`, errnos[i]) : { ip, nexthop, ours: true });
    });
    return out;
  });
}

/**
 * Undo neighbour entries of ours (at exit, best effort): each is deleted, and the kernel resolves the
 * address again the next time something sends to it. A managed entry would otherwise stay, and keep the
 * kernel probing the backend, after featherlb is gone. An entry someone made theirs since (no longer
 * managed, or no longer tagged), or whose interface is gone, is left. One dump and one batch of
 * RTM_DELNEIGH over netlink.
 */
export function releaseNeighbours(entries: readonly Neighbour[]): void {
  if (entries.length === 0) return;
  try {
    withNetlink((nl) => {
      const names = interfaceNames();
      const ours = new Set(nl.neighbours().filter(isOurs).map((e) => `${names.get(e.ifindex)} ${e.dst}`));
      const doomed = entries.filter((n) => ours.has(`${n.dev} ${n.dst}`));
      const index = new Map([...names].map(([i, n]) => [n, i]));
      nl.remove(doomed.map((n) => ({ ifindex: index.get(n.dev)!, dst: n.dst })));
    });
  } catch {
    // Best effort at exit.
  }
}
