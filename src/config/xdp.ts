/**
 * What `mode: xdp` refuses from the file alone. The XDP program matches packets on one specific IPv4
 * address and port per service, holds at most MAX_SERVICES services, cuts every service's two plan
 * buffers from one pool of at most SLOT_POOL_MAX slots, and owns the source ports xdp.snat_ports. A
 * config that breaks one of these is refused when it is loaded — by `check`, at start and on reload —
 * with its place in the file, instead of after the program is attached. (The maps are sized from the
 * config at load time, src/dataplane/xdp/capacity.ts; these are the limits that stay.)
 *
 * What needs the host (an interface with the address, privileges, the kernel) stays in
 * src/dataplane/xdp. The data plane also runs `xdpRefusal` before it attaches and on every apply:
 * `mode: auto` is not refused here, and falls back to the proxy with that reason instead.
 */
import { formatHostPort, parseIPv4, parseIPv6 } from "./address.ts";
import type { Problem } from "./checks.ts";
import { DEFAULT_SNAT_PORTS } from "./defaults.ts";
import {
  MAX_SERVICES,
  PLAN_BUFFERS,
  RANDOM_TABLE_SIZE,
  SLOT_POOL_MAX,
  SOURCE_HASH_TABLE_SIZE,
} from "./limits.ts";
import { formatPath } from "./locate.ts";
import type { AlgorithmName, Config, ServiceConfig } from "./types.ts";

/**
 * Everything in `config` the XDP program cannot do, in service order. `snatInFile`: xdp.snat_ports was
 * written, so a clash with a service port is reported there (else at the service, whose port the user
 * chose against a default range they may not know about).
 */
export function checkXdp(config: Config, snatInFile: boolean): Problem[] {
  const problems: Problem[] = [];
  const count = config.services.length;
  let slots = 0;
  config.services.forEach((service, i) => {
    const { host, port } = service.listen;
    if (!isSpecificIPv4(host)) {
      problems.push({
        path: ["services", i, "listen"],
        message: `mode: xdp needs a specific IPv4 address of this host, got ${describeHost(host)}; set listen to that address or use mode: proxy`,
      });
    }
    if (i === MAX_SERVICES) {
      problems.push({
        path: ["services", i],
        message: `mode: xdp holds at most ${MAX_SERVICES} services and the file has ${count}; remove ${count - MAX_SERVICES} or use mode: proxy`,
      });
    }
    const snat = checkSnatPort(config, service, i, snatInFile);
    if (snat) problems.push(snat);
    const before = slots;
    slots += PLAN_BUFFERS * largestPlan(service);
    if (slots > SLOT_POOL_MAX && before <= SLOT_POOL_MAX) problems.push(planTooLarge(service, i, slots));
  });
  return problems;
}

/**
 * The first refusal as one line without a file position ("services[0].listen: mode: xdp needs …"), or
 * undefined. For the data plane, which gets a Config, not the file; it cannot tell whether snat_ports
 * was written, and takes the default range as not written.
 */
export function xdpRefusal(config: Config): string | undefined {
  const snat = config.xdp.snat_ports;
  const snatInFile = snat.first !== DEFAULT_SNAT_PORTS.first || snat.last !== DEFAULT_SNAT_PORTS.last;
  const first = checkXdp(config, snatInFile)[0];
  return first && `${formatPath(first.path)}: ${first.message}`;
}

/** An address the XDP program can match: IPv4, and not 0.0.0.0 (it sees one destination per packet). */
export function isSpecificIPv4(host: string): boolean {
  const v4 = parseIPv4(host);
  return v4 !== null && v4.some((b) => b !== 0);
}

function describeHost(host: string): string {
  if (parseIPv6(host) !== null) return `the IPv6 address ${host}`;
  return host;
}

/**
 * A service port inside xdp.snat_ports: the program would take that service's client packets for
 * backend replies to a SNAT port, or backend replies for new clients.
 */
function checkSnatPort(config: Config, service: ServiceConfig, i: number, snatInFile: boolean): Problem | undefined {
  const { first, last } = config.xdp.snat_ports;
  const { port } = service.listen;
  if (port < first || port > last) return undefined;
  if (snatInFile) {
    return {
      path: ["xdp", "snat_ports"],
      message: `${first}-${last} contains port ${port}, where services[${i}] ("${service.name}") listens on ${formatHostPort(service.listen)}; mode: xdp could not tell its clients from backend replies, so choose a range without ${port}`,
    };
  }
  return {
    path: ["services", i, "listen"],
    message: `port ${port} is inside xdp.snat_ports (${first}-${last} by default), the source ports mode: xdp uses toward backends; choose a port outside it or set xdp.snat_ports`,
  };
}

/** The cumulative total first exceeded the pool at services[i]: say which value of it to lower. */
function planTooLarge(service: ServiceConfig, i: number, total: number): Problem {
  const bound = largestPlan(service);
  const head = `with this service the XDP plan tables would need ${total} slots, more than the ${SLOT_POOL_MAX} they can hold (every service keeps ${PLAN_BUFFERS} plans;`;
  const tail = "or use mode: proxy";
  switch (service.algorithm) {
    case "maglev":
      return {
        path: ["services", i, "maglev", "table_size"],
        message: `${head} this one's Maglev table has ${bound} slots); lower maglev.table_size ${tail}`,
      };
    case "weighted_round_robin":
      return {
        path: ["services", i, "algorithm"],
        message: `${head} this one's weighted_round_robin cycle has up to ${bound} slots, the sum of its weights divided by their gcd); lower the weights ${tail}`,
      };
    default:
      return {
        path: ["services", i, "algorithm"],
        message: `${head} this one's ${service.algorithm} plan has up to ${bound} slots); lower the earlier services' maglev.table_size or weights ${tail}`,
      };
  }
}

function largestPlan(service: ServiceConfig): number {
  return planSlotsBound(
    service.algorithm,
    service.backends.map((b) => b.weight),
    service.maglev_table_size,
  );
}

/**
 * The most slots a plan of `algorithm` can have, over every healthy subset of backends with these
 * weights (an empty set has an empty plan). control/algorithms/ builds the plans; its conformance test
 * checks each algorithm against this bound, so the two cannot drift apart.
 *
 * It lives here, over plain numbers, and not on the algorithm registry: config must not import
 * control, and only the loader knows where in the file a value was written. The table sizes it needs
 * are config constants (limits.ts) that the algorithms import.
 *
 * - round_robin: one slot per member, so at most one per backend.
 * - weighted_round_robin: one smooth cycle of sum(w / gcd) slots. A subset's gcd is a multiple of the
 *   gcd g of all the weights, so its cycle sum(S) / gcd(S) ≤ sum(S) / g ≤ sum(all) / g.
 * - random, source_hash: fixed tables of RANDOM_TABLE_SIZE and SOURCE_HASH_TABLE_SIZE slots.
 * - maglev: its table, maglev.table_size slots.
 * - least_connections, power_of_two: no slots (they read the members and weights only).
 */
export function planSlotsBound(algorithm: AlgorithmName, weights: readonly number[], maglevTableSize: number): number {
  switch (algorithm) {
    case "round_robin":
      return weights.length;
    case "weighted_round_robin": {
      const g = weights.reduce(gcd, 0) || 1;
      return weights.reduce((sum, w) => sum + w, 0) / g;
    }
    case "random":
      return RANDOM_TABLE_SIZE;
    case "source_hash":
      return SOURCE_HASH_TABLE_SIZE;
    case "maglev":
      return maglevTableSize;
    case "least_connections":
    case "power_of_two":
      return 0;
  }
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
