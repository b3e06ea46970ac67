/**
 * A topology with a router between the LB and some hosts (netns/topology.ts plus three namespaces): for
 * path-MTU discovery through the LB (ICMP errors, bpf/icmp.h) and for checksums that a router
 * completes in software (partial checksums, bpf/README.md). Names start with the suite's prefix and
 * FLB_NS_TAG, as in topology.ts.
 *
 *   <p>-c  (c0: <net>.0.10)   ─┐
 *   <p>-lb (lb0: <net>.0.1)   ─┼─ <p>-br ─┬─ <p>-r (r0: <net>.0.254, forwarding on)
 *   <p>-b1 (b0: <net>.0.21)   ─┘           │    rc: <net>.1.1, MTU `linkMtu` ── <p>-rc (c0: <net>.1.10, MTU 1500)
 *                                          │    rb: <net>.2.1, MTU `linkMtu` ── <p>-rb (b0: <net>.2.21, MTU 1500)
 *
 * The router's legs toward <p>-rc and <p>-rb have a smaller MTU than the hosts behind them, so those
 * hosts advertise an MSS the path cannot carry: a full-size segment toward them makes the router send
 * "fragmentation needed" (type 3 code 4) to its source, which is the LB's service address. (The other
 * way, a host behind the router must not send more than `linkMtu`: a veth drops frames above its
 * receiver's MTU without an ICMP error, so the tests send bulk data only toward these hosts.)
 *
 * Checksums: the router's legs have TX checksum offload off and the hosts behind them RX checksum
 * offload off, so every TCP segment reaching <p>-rc or <p>-rb carries a checksum computed in software
 * and verified by the receiver (a wrong one counts as TcpInCsumErrors and the segment is dropped). A veth
 * receiver trusts a CHECKSUM_PARTIAL skb, so without the router's software completion a wrong partial
 * checksum would go unnoticed. Whether the hosts behind the router send partial checksums is theirs to
 * choose (setTxCsum). The LB has forwarding off, as on a fresh host, and reaches both networks through
 * the router by routes in its main table (featherlb's neighbour table reads them: nexthops.ts).
 */
import { LB_IF, inNs, run, sh, sysctl, topology, type Topology } from "./topology.ts";

export interface RoutedTopology {
  base: Topology;
  ns: { router: string; rc: string; rb: string };
  routerIp: string;
  /** The client behind the router and the backend behind the router. */
  rcIp: string;
  rbIp: string;
  setup(): void;
  teardown(): void;
  /** TX checksum offload (and with it TSO) of a host's interface: on = its packets leave with partial checksums. */
  setTxCsum(ns: string, ifname: string, on: boolean): void;
  /** A `netstat -s` counter of a namespace's stack, e.g. ("Tcp", "InCsumErrors"). */
  counter(ns: string, group: "Tcp" | "TcpExt" | "Icmp" | "Ip", name: string): number;
}

export function routedTopology(o: { prefix: string; net: string; linkMtu: number }): RoutedTopology {
  const base = topology({ prefix: o.prefix, net: `${o.net}.0`, clients: 1, backends: 1, txOff: true });
  const p = base.ns.lb.replace(/-lb$/, "");
  const ns = { router: `${p}-r`, rc: `${p}-rc`, rb: `${p}-rb` };
  const routerIp = `${o.net}.0.254`;
  const legs = [
    { ns: ns.rc, dev: "rc", inner: "c0", net: `${o.net}.1`, host: `${o.net}.1.10` },
    { ns: ns.rb, dev: "rb", inner: "b0", net: `${o.net}.2`, host: `${o.net}.2.21` },
  ];
  const extra = [ns.router, ns.rc, ns.rb];

  function teardown(): void {
    const existing = sh(["ip", "netns", "list"], true);
    for (const n of extra) if (new RegExp(`^${n}\\b`, "m").test(existing)) sh(["ip", "netns", "del", n], true);
    base.teardown();
  }

  function setup(): void {
    teardown();
    base.setup();
    for (const n of extra) {
      sh(["ip", "netns", "add", n]);
      run(n, "ip", "link", "set", "lo", "up");
      sysctl(n, "net.ipv4.conf.all.forwarding", n === ns.router ? "1" : "0");
    }
    sh(["ip", "-n", base.ns.br, "link", "add", "p-r", "type", "veth", "peer", "name", "r0", "netns", ns.router]);
    run(base.ns.br, "ip", "link", "set", "p-r", "master", "br0");
    run(base.ns.br, "ip", "link", "set", "p-r", "up");
    run(ns.router, "ip", "addr", "add", `${routerIp}/24`, "dev", "r0");
    run(ns.router, "ip", "link", "set", "r0", "up");
    for (const leg of legs) {
      sh(["ip", "-n", ns.router, "link", "add", leg.dev, "type", "veth", "peer", "name", leg.inner, "netns", leg.ns]);
      run(ns.router, "ip", "link", "set", leg.dev, "mtu", String(o.linkMtu));
      run(ns.router, "ip", "addr", "add", `${leg.net}.1/24`, "dev", leg.dev);
      run(ns.router, "ip", "link", "set", leg.dev, "up");
      run(ns.router, "ethtool", "-K", leg.dev, "tx", "off");
      run(leg.ns, "ip", "addr", "add", `${leg.host}/24`, "dev", leg.inner);
      run(leg.ns, "ip", "link", "set", leg.inner, "up");
      run(leg.ns, "ethtool", "-K", leg.inner, "rx", "off", "tx", "off");
      run(leg.ns, "ip", "route", "add", "default", "via", `${leg.net}.1`);
      run(base.ns.lb, "ip", "route", "add", `${leg.net}.0/24`, "via", routerIp, "dev", LB_IF);
    }
    // The direct client and backend reach the routed networks through the router too.
    for (const n of [base.ns.client!, ...base.ns.backends]) for (const leg of legs) run(n, "ip", "route", "add", `${leg.net}.0/24`, "via", routerIp);
  }

  function setTxCsum(n: string, ifname: string, on: boolean): void {
    run(n, "ethtool", "-K", ifname, "tx", on ? "on" : "off");
  }

  function counter(n: string, group: string, name: string): number {
    const lines = run(n, "cat", group === "TcpExt" ? "/proc/net/netstat" : "/proc/net/snmp").split("\n").filter((l) => l.startsWith(`${group}:`));
    const names = lines[0]!.split(/\s+/);
    const i = names.indexOf(name);
    if (i < 0) throw new Error(`${group} ${name}: no such counter`);
    return Number(lines[1]!.split(/\s+/)[i]);
  }

  return { base, ns, routerIp, rcIp: legs[0]!.host, rbIp: legs[1]!.host, setup, teardown, setTxCsum, counter };
}

export { inNs };
