/**
 * The network-namespace topologies the XDP suites build (and tear down): one bridge namespace, the LB,
 * optionally a client with several addresses, and backends, all on one /24. Every name starts with the
 * suite's prefix ("flbx" for netns.test.ts and bench.ts, "flbh" for hoststate.test.ts, …) so leftovers
 * from a crashed run are found and removed, and two suites never share a namespace.
 *
 *   <p>-c  (c0: <net>.10-…)   ─┐
 *   <p>-lb (lb0: <net>.1)     ─┼─ <p>-br (bridge br0)
 *   <p>-b1… (b0: <net>.21-…)  ─┘   (backends after the clients when there are more than eleven)
 *
 * With `txOff`, client and backend interfaces have TX checksum offload off, so a packet with a wrong
 * checksum is dropped by the receiver and the transfer fails instead of passing by luck.
 *
 * Host state never leaks in: a new namespace inherits the host's IPv4 forwarding (and dockerd turns
 * that on), so every namespace sets it explicitly — off, as on a fresh host; setLbForwarding() turns it
 * on in the LB namespace for the cases that want it. The bridge namespace also turns off
 * bridge-netfilter when the br_netfilter module is loaded (dockerd loads it), so bridged frames never
 * depend on whatever iptables holds.
 */

export const inNs = (ns: string, ...cmd: string[]) => ["ip", "netns", "exec", ns, ...cmd];

/** Run a command; its stdout, or an error with its stderr (unless `allowFail`). Bounded in time. */
export function sh(cmd: string[], allowFail = false): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  if (r.exitCode !== 0 && !allowFail) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}
export const run = (ns: string, ...cmd: string[]) => sh(inNs(ns, ...cmd));

/** Set a sysctl inside a namespace (and fail loudly if it does not take). */
export function sysctl(ns: string, key: string, value: string): void {
  run(ns, "sysctl", "-q", "-w", `${key}=${value}`);
  const now = run(ns, "sysctl", "-n", key).trim();
  if (now !== value) throw new Error(`${ns}: ${key} is ${now}, wanted ${value}`);
}

export const LB_IF = "lb0";

export interface Topology {
  ns: { br: string; lb: string; client?: string; backends: string[] };
  lbIp: string;
  clientIps: string[];
  backendIps: string[];
  /** Build it from scratch (removing leftovers first). */
  setup(): void;
  /** Remove its namespaces (and with them their veths and bridge). Idempotent. */
  teardown(): void;
}

/**
 * FLB_NS_TAG (letters/digits) is appended to every prefix, so two checkouts can run the same suite on
 * one host at once (flbx → flbxA…); empty by default.
 */
const TAG = (() => {
  const tag = process.env.FLB_NS_TAG ?? "";
  if (!/^[A-Za-z0-9]{0,4}$/.test(tag)) throw new Error(`FLB_NS_TAG must be up to 4 letters or digits, got "${tag}"`);
  return tag;
})();

/** A suite's namespace prefix with FLB_NS_TAG appended (every builder names its namespaces from it). */
export const tagged = (prefix: string): string => `${prefix}${TAG}`;

/** Delete those of `names` that exist (and with them their veths and bridges). */
export function deleteNamespaces(names: readonly string[]): void {
  const existing = sh(["ip", "netns", "list"], true);
  for (const n of names) if (new RegExp(`^${n}\\b`, "m").test(existing)) sh(["ip", "netns", "del", n], true);
}

/** A new namespace with loopback up and IPv4 forwarding off, whatever the host has (see above). */
export function addNamespace(n: string): void {
  sh(["ip", "netns", "add", n]);
  run(n, "ip", "link", "set", "lo", "up");
  sysctl(n, "net.ipv4.conf.all.forwarding", "0");
  sysctl(n, "net.ipv4.conf.default.forwarding", "0");
}

/** Bridge br0 in namespace `n`, with bridge-netfilter off there when the module is loaded. */
export function addBridge(n: string): void {
  for (const key of ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-arptables"]) {
    if (run(n, "sh", "-c", `test -e /proc/sys/${key.replaceAll(".", "/")} && echo yes || true`).trim() === "yes") sysctl(n, key, "0");
  }
  run(n, "ip", "link", "add", "br0", "type", "bridge");
  run(n, "ip", "link", "set", "br0", "up");
}

export function topology(o: { prefix: string; net: string; clients: number; backends: number; txOff: boolean }): Topology {
  const p = tagged(o.prefix);
  const ns = {
    br: `${p}-br`,
    lb: `${p}-lb`,
    client: o.clients ? `${p}-c` : undefined,
    backends: Array.from({ length: o.backends }, (_, i) => `${p}-b${i + 1}`),
  };
  const lbIp = `${o.net}.1`;
  const clientIps = Array.from({ length: o.clients }, (_, i) => `${o.net}.${10 + i}`);
  // Backends from .21, or right after the clients when there are more than eleven of them.
  const backendBase = Math.max(21, 10 + o.clients);
  const backendIps = Array.from({ length: o.backends }, (_, i) => `${o.net}.${backendBase + i}`);
  const all = [ns.br, ns.lb, ...(ns.client ? [ns.client] : []), ...ns.backends];

  function teardown(): void {
    deleteNamespaces(all);
  }

  function setup(): void {
    teardown();
    for (const n of all) addNamespace(n);
    addBridge(ns.br);

    const attach = (n: string, inner: string, port: string, addrs: string[], txOff: boolean) => {
      sh(["ip", "-n", ns.br, "link", "add", port, "type", "veth", "peer", "name", inner, "netns", n]);
      run(ns.br, "ip", "link", "set", port, "master", "br0");
      run(ns.br, "ip", "link", "set", port, "up");
      for (const a of addrs) run(n, "ip", "addr", "add", `${a}/24`, "dev", inner);
      run(n, "ip", "link", "set", inner, "up");
      if (txOff) run(n, "ethtool", "-K", inner, "tx", "off");
    };
    attach(ns.lb, LB_IF, "p-lb", [lbIp], false);
    if (ns.client) attach(ns.client, "c0", "p-c", clientIps, o.txOff);
    ns.backends.forEach((n, i) => attach(n, "b0", `p-b${i + 1}`, [backendIps[i]!], o.txOff));
  }

  return { ns, lbIp, clientIps, backendIps, setup, teardown };
}

// ------------------------------------------------------------------ the XDP suite's (netns.test.ts, bench.ts)

const XDP = topology({ prefix: "flbx", net: "10.77.0", clients: 8, backends: 3, txOff: true });
export const NS = { br: XDP.ns.br, lb: XDP.ns.lb, client: XDP.ns.client!, backends: XDP.ns.backends };
export const LB_IP = XDP.lbIp;
export const CLIENT_IPS = XDP.clientIps;
export const BACKEND_IPS = XDP.backendIps;
export const setup = XDP.setup;
export const teardown = XDP.teardown;

/** IPv4 forwarding in the LB namespace, host-wide and on the LB interface (off after setup()). */
export function setLbForwarding(on: boolean): void {
  sysctl(NS.lb, "net.ipv4.conf.all.forwarding", on ? "1" : "0");
  sysctl(NS.lb, `net.ipv4.conf.${LB_IF}.forwarding`, on ? "1" : "0");
}

/** The XDP programs attached to the LB interface (empty when none). */
export function xdpAttached(): string {
  const out = run(NS.lb, "ip", "-d", "-j", "link", "show", LB_IF);
  const link = JSON.parse(out)[0];
  return link?.xdp ? JSON.stringify(link.xdp) : "";
}
