/**
 * The namespace topology the XDP integration test builds (and tears down): one bridge namespace, the
 * LB, a client with several addresses, three backends, all on 10.77.0.0/24. Every name starts with
 * "flbx" (other suites use other prefixes) so leftovers from a crashed run are found and removed.
 *
 *   flbx-c  (c0: 10.77.0.10-17) ─┐
 *   flbx-lb (lb0: 10.77.0.1)    ─┼─ flbx-br (bridge br0)
 *   flbx-b1..b3 (b0: 10.77.0.21-23) ─┘
 *
 * Client and backend interfaces have TX checksum offload off, so a packet with a wrong checksum is
 * dropped by the receiver and the transfer fails instead of passing by luck.
 *
 * Host state never leaks in: a new namespace inherits the host's IPv4 forwarding (and dockerd turns
 * that on), so every namespace sets it explicitly — off, as on a fresh host; setLbForwarding() turns it
 * on in the LB namespace for the cases that want it. The bridge namespace also turns off
 * bridge-netfilter when the br_netfilter module is loaded (dockerd loads it), so bridged frames never
 * depend on whatever iptables holds.
 */

export const NS = { br: "flbx-br", lb: "flbx-lb", client: "flbx-c", backends: ["flbx-b1", "flbx-b2", "flbx-b3"] } as const;
export const LB_IP = "10.77.0.1";
export const LB_IF = "lb0";
export const CLIENT_IPS = Array.from({ length: 8 }, (_, i) => `10.77.0.${10 + i}`);
export const BACKEND_IPS = ["10.77.0.21", "10.77.0.22", "10.77.0.23"];
const ALL = [NS.br, NS.lb, NS.client, ...NS.backends];

function sh(cmd: string[], allowFail = false): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0 && !allowFail) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

export const inNs = (ns: string, ...cmd: string[]) => ["ip", "netns", "exec", ns, ...cmd];
export const run = (ns: string, ...cmd: string[]) => sh(inNs(ns, ...cmd));

/** Remove every flbx namespace (and with them their veths and bridge). Idempotent. */
export function teardown(): void {
  const existing = sh(["ip", "netns", "list"], true);
  for (const ns of ALL) if (new RegExp(`^${ns}\\b`, "m").test(existing)) sh(["ip", "netns", "del", ns], true);
}

/** Build the topology from scratch (removing leftovers first). */
export function setup(): void {
  teardown();
  for (const ns of ALL) sh(["ip", "netns", "add", ns]);
  for (const ns of ALL) {
    run(ns, "ip", "link", "set", "lo", "up");
    sysctl(ns, "net.ipv4.conf.all.forwarding", "0");
    sysctl(ns, "net.ipv4.conf.default.forwarding", "0");
  }
  for (const key of ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-arptables"]) {
    if (run(NS.br, "sh", "-c", `test -e /proc/sys/${key.replaceAll(".", "/")} && echo yes || true`).trim() === "yes") sysctl(NS.br, key, "0");
  }
  run(NS.br, "ip", "link", "add", "br0", "type", "bridge");
  run(NS.br, "ip", "link", "set", "br0", "up");

  const attach = (ns: string, inner: string, port: string, addrs: string[], txOff: boolean) => {
    sh(["ip", "-n", NS.br, "link", "add", port, "type", "veth", "peer", "name", inner, "netns", ns]);
    run(NS.br, "ip", "link", "set", port, "master", "br0");
    run(NS.br, "ip", "link", "set", port, "up");
    for (const a of addrs) run(ns, "ip", "addr", "add", `${a}/24`, "dev", inner);
    run(ns, "ip", "link", "set", inner, "up");
    if (txOff) run(ns, "ethtool", "-K", inner, "tx", "off");
  };
  attach(NS.lb, LB_IF, "p-lb", [LB_IP], false);
  attach(NS.client, "c0", "p-c", CLIENT_IPS, true);
  NS.backends.forEach((ns, i) => attach(ns, "b0", `p-b${i + 1}`, [BACKEND_IPS[i]!], true));
}

/** Set a sysctl inside a namespace (and fail loudly if it does not take). */
export function sysctl(ns: string, key: string, value: string): void {
  run(ns, "sysctl", "-q", "-w", `${key}=${value}`);
  const now = run(ns, "sysctl", "-n", key).trim();
  if (now !== value) throw new Error(`${ns}: ${key} is ${now}, wanted ${value}`);
}

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
