/**
 * The scale-out topology (ecmp.test.ts): a client with 16 addresses behind a router that reaches two
 * featherlb instances and three backends on one bridged subnet. The router runs BIRD and learns the
 * VIP from both instances by BGP; it holds the VIP as one ECMP route. Every name starts with
 * "flbe" + FLB_NS_TAG. Built in the style of test/xdp/netns/topology.ts, whose helpers it uses.
 *
 *   <p>-c  c0: 10.81.2.10-25 ── c0: 10.81.2.1  <p>-r  f0: 10.81.1.1 ─┐
 *                                                                   ├─ <p>-br (br0)
 *   <p>-l1 f0: 10.81.1.2, lo: VIP 10.81.9.1 ────────────────────────┤
 *   <p>-l2 f0: 10.81.1.3, lo: VIP 10.81.9.1 ────────────────────────┤
 *   <p>-b1…b3 f0: 10.81.1.21-23 ────────────────────────────────────┘
 *
 * Sysctls are set in every namespace, never read from the host (whose IPv4 forwarding is off): the
 * router forwards, hashes multipath routes on L4 (fib_multipath_hash_policy=1) and does no reverse-path
 * filtering; the instances forward nothing and answer ARP only for addresses of the asking interface
 * (arp_ignore=1, arp_announce=2), so the VIP on their loopback is never claimed on the wire: the router
 * reaches it only through the routes BGP gave it.
 */
import { addBridge, addNamespace, deleteNamespaces, run, sh, sysctl, tagged } from "../xdp/netns/topology.ts";

export const VIP = "10.81.9.1";
export const ROUTER_IP = "10.81.1.1";
export const ROUTER_CLIENT_SIDE = "10.81.2.1";
export const INSTANCE_IPS = ["10.81.1.2", "10.81.1.3"] as const;
export const BACKEND_IPS = ["10.81.1.21", "10.81.1.22", "10.81.1.23"] as const;
export const CLIENT_IPS = Array.from({ length: 16 }, (_, i) => `10.81.2.${10 + i}`);

const p = tagged("flbe");
export const NS = {
  br: `${p}-br`,
  router: `${p}-r`,
  client: `${p}-c`,
  instances: [`${p}-l1`, `${p}-l2`] as const,
  backends: [`${p}-b1`, `${p}-b2`, `${p}-b3`] as const,
};
const ALL = [NS.br, NS.router, NS.client, ...NS.instances, ...NS.backends];

export function teardown(): void {
  deleteNamespaces(ALL);
}

export function setup(): void {
  teardown();
  for (const n of ALL) addNamespace(n);
  addBridge(NS.br);
  const onFabric = (n: string, port: string, ip: string) => {
    sh(["ip", "-n", NS.br, "link", "add", port, "type", "veth", "peer", "name", "f0", "netns", n]);
    run(NS.br, "ip", "link", "set", port, "master", "br0", "up");
    run(n, "ip", "addr", "add", `${ip}/24`, "dev", "f0");
    run(n, "ip", "link", "set", "f0", "up");
  };
  onFabric(NS.router, "p-r", ROUTER_IP);
  NS.instances.forEach((n, i) => onFabric(n, `p-l${i + 1}`, INSTANCE_IPS[i]!));
  NS.backends.forEach((n, i) => onFabric(n, `p-b${i + 1}`, BACKEND_IPS[i]!));

  // Client ↔ router: a point-to-point veth; the client owns 16 addresses and routes through the router.
  sh(["ip", "-n", NS.router, "link", "add", "c0", "type", "veth", "peer", "name", "c0", "netns", NS.client]);
  run(NS.router, "ip", "addr", "add", `${ROUTER_CLIENT_SIDE}/24`, "dev", "c0");
  run(NS.router, "ip", "link", "set", "c0", "up");
  for (const ip of CLIENT_IPS) run(NS.client, "ip", "addr", "add", `${ip}/24`, "dev", "c0");
  run(NS.client, "ip", "link", "set", "c0", "up");
  run(NS.client, "ip", "route", "add", "default", "via", ROUTER_CLIENT_SIDE);

  for (const key of ["all", "default", "f0", "c0"]) {
    sysctl(NS.router, `net.ipv4.conf.${key}.forwarding`, "1");
    sysctl(NS.router, `net.ipv4.conf.${key}.rp_filter`, "0");
  }
  sysctl(NS.router, "net.ipv4.fib_multipath_hash_policy", "1");
  for (const n of NS.instances) {
    // The VIP on loopback (the proxy binds it); replies to clients go back through the router.
    run(n, "ip", "addr", "add", `${VIP}/32`, "dev", "lo");
    run(n, "ip", "route", "add", "default", "via", ROUTER_IP);
    sysctl(n, "net.ipv4.conf.all.arp_ignore", "1");
    sysctl(n, "net.ipv4.conf.all.arp_announce", "2");
    for (const key of ["all", "default", "f0"]) sysctl(n, `net.ipv4.conf.${key}.rp_filter`, "0");
  }
}

/** The router's next hops for the VIP right now (empty: no route). */
export async function vipNextHops(): Promise<string[]> {
  const proc = Bun.spawn(["ip", "-n", NS.router, "-j", "route", "show", VIP], { stdout: "pipe", stderr: "ignore" });
  const routes = JSON.parse((await new Response(proc.stdout).text()) || "[]") as Array<{ gateway?: string; nexthops?: { gateway: string }[] }>;
  const route = routes[0];
  if (!route) return [];
  return route.nexthops ? route.nexthops.map((h) => h.gateway).sort() : route.gateway ? [route.gateway] : [];
}
