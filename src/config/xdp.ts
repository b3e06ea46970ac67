/**
 * What the XDP data plane refuses from the file alone, for the services that would run in it. The XDP
 * program matches packets on one specific IPv4 address and port per service, holds at most
 * MAX_SERVICES services, cuts every service's two plan buffers from one pool of at most SLOT_POOL_MAX
 * slots, owns the source ports xdp.snat_ports, and forwards packets without reading them (no PROXY
 * protocol). A config that breaks one of these for a service in `mode: xdp` (its own or the top-level
 * one) is refused when it is loaded — by `check`, at start and on reload — with its place in the file,
 * instead of after the program is attached. Services in the proxy are not looked at. (The maps are
 * sized from the config at load time, src/dataplane/xdp/capacity.ts; these are the limits that stay.)
 *
 * What needs the host (an interface with the address, privileges, the kernel) stays in
 * src/dataplane/xdp. `mode: auto` is not refused here: `splitPlanes` sends each auto service XDP cannot
 * serve to the proxy with the reason, and the data plane runs `xdpRefusal` over the services it is
 * given before it attaches and on every apply.
 */
import { formatHostPort, parseIPv4, parseIPv6 } from "./address.ts";
import type { PathKey, Problem } from "./checks.ts";
import { DEFAULT_SNAT_PORTS } from "./defaults.ts";
import {
  MAX_SERVICES,
  PLAN_BUFFERS,
  RANDOM_TABLE_SIZE,
  SLOT_POOL_MAX,
  SOURCE_HASH_TABLE_SIZE,
} from "./limits.ts";
import { formatPath } from "./locate.ts";
import type { AlgorithmName, Config, Plane, ServiceConfig } from "./types.ts";

/** Where the file wrote what checkXdp reports, so it points at the value the user chose. */
export interface Written {
  /** xdp.snat_ports is in the file: a clash with a service port is reported there. */
  snatPorts: boolean;
  /** services[i] sets `key` itself (else it was inherited from `defaults:`). Default: yes. */
  ownKey?: (i: number, key: "send_proxy" | "accept_proxy") => boolean;
}

/**
 * Everything in `config` the XDP program cannot do for the services in `serving` (default: those whose
 * mode is xdp), in service order. Paths index config.services, whichever services are looked at.
 */
export function checkXdp(config: Config, written: Written, serving: (s: ServiceConfig) => boolean = (s) => s.mode === "xdp"): Problem[] {
  const problems: Problem[] = [];
  const count = config.services.filter(serving).length;
  let slots = 0;
  let seen = 0;
  config.services.forEach((service, i) => {
    if (!serving(service)) return;
    problems.push(...ownProblems(config, service, i, written));
    if (seen++ === MAX_SERVICES) problems.push(tooManyServices(i, count));
    const before = slots;
    slots += PLAN_BUFFERS * largestPlan(service);
    if (slots > SLOT_POOL_MAX && before <= SLOT_POOL_MAX) problems.push(planTooLarge(service, i, slots));
  });
  return problems;
}

/** What XDP cannot do for one service whatever the others are: its listen address, PROXY protocol, its port. */
function ownProblems(config: Config, service: ServiceConfig, i: number, written: Written): Problem[] {
  const problems: Problem[] = [];
  const { host } = service.listen;
  if (!isSpecificIPv4(host)) {
    problems.push({
      path: ["services", i, "listen"],
      message: `mode: xdp needs a specific IPv4 address of this host, got ${describeHost(host)}; set listen to that address or use ${proxyHint(config, i)}`,
    });
  }
  problems.push(...proxyOnly(config, service, i, written));
  const snat = checkSnatPort(config, service, i, written.snatPorts);
  if (snat) problems.push(snat);
  if (host === config.xdp.snat_address) {
    problems.push({
      path: ["xdp", "snat_address"],
      message: `${host} is where services[${i}] ("${service.name}") listens; the SNAT address must be the instance's own, since backends answer it and every instance behind ECMP holds the service address, so choose another address of the interface or leave xdp.snat_address out`,
    });
  }
  return problems;
}

function tooManyServices(i: number, count: number): Problem {
  const extra = count - MAX_SERVICES;
  return {
    path: ["services", i],
    message: `mode: xdp holds at most ${MAX_SERVICES} services and the file has ${count}; remove ${extra}, set services[].mode: proxy on ${extra === 1 ? "one" : extra}, or use mode: proxy`,
  };
}

/**
 * "services[i].mode: proxy" when the service inherits the top-level mode, "mode: proxy" when that is the
 * only service: the smallest change that moves this one service out of XDP.
 */
function proxyHint(config: Config, i: number): string {
  return config.services.length === 1 ? "mode: proxy" : `services[${i}].mode: proxy`;
}

/** PROXY protocol needs the bytes of the stream, which the XDP program never reads: proxy only. */
function proxyOnly(config: Config, service: ServiceConfig, i: number, written: Written): Problem[] {
  const problems: Problem[] = [];
  const features = [
    ["send_proxy", service.send_proxy !== "off", `send_proxy: ${service.send_proxy} writes a PROXY protocol header into the stream`],
    ["accept_proxy", service.accept_proxy, "accept_proxy reads a PROXY protocol header from the stream"],
  ] as const;
  for (const [key, on, what] of features) {
    if (!on) continue;
    const own = written.ownKey?.(i, key) ?? true;
    const path: PathKey[] = own ? ["services", i, key] : ["defaults", key];
    const whose = own ? "" : ` (services[${i}] ("${service.name}") inherits it)`;
    problems.push({
      path,
      message: `${what}, which only the proxy can do, and services[${i}] ("${service.name}") runs in xdp${whose}; set services[${i}].mode: proxy to run this service in the proxy`,
    });
  }
  return problems;
}

/**
 * The first refusal for `serving` (default: every service) as one line without a file position
 * ("services[0].listen: mode: xdp needs …"), or undefined. For the data plane, which gets a Config,
 * not the file; it cannot tell whether snat_ports was written, and takes the default range as not
 * written.
 */
export function xdpRefusal(config: Config, serving: readonly ServiceConfig[] = config.services): string | undefined {
  const first = checkXdp(config, { snatPorts: snatWritten(config) }, (s) => serving.includes(s))[0];
  return first && `${formatPath(first.path)}: ${first.message}`;
}

function snatWritten(config: Config): boolean {
  const snat = config.xdp.snat_ports;
  return snat.first !== DEFAULT_SNAT_PORTS.first || snat.last !== DEFAULT_SNAT_PORTS.last;
}

/** Which plane each service runs in, and why an auto service XDP cannot serve runs in the proxy. */
export interface PlaneSplit {
  plane: Map<ServiceConfig, Plane>;
  /** Auto services sent to the proxy: the first refusal XDP had for them ("services[0].listen: …"). */
  fallbacks: { service: ServiceConfig; reason: string }[];
}

/**
 * Services with mode proxy or xdp run there (the loader has refused what xdp cannot serve). Services
 * with mode auto are taken into xdp one by one, in file order, as long as XDP can serve them next to the
 * ones taken before (the service and plan-slot limits are shared); the others run in the proxy, with
 * the reason. With `xdpUnavailable` (the program could not be loaded or attached, or was not started)
 * the auto services XDP could serve run in the proxy too, with that reason.
 */
export function splitPlanes(config: Config, xdpUnavailable?: string): PlaneSplit {
  const plane = new Map<ServiceConfig, Plane>();
  const fallbacks: PlaneSplit["fallbacks"] = [];
  // What the services taken so far use of the shared limits (explicit ones first: the loader has
  // checked them, and they run in xdp whatever the auto ones do).
  let count = 0;
  let slots = 0;
  for (const s of config.services) {
    if (s.mode === "auto") continue;
    plane.set(s, s.mode);
    if (s.mode === "xdp") {
      count++;
      slots += PLAN_BUFFERS * largestPlan(s);
    }
  }
  const written = { snatPorts: snatWritten(config) };
  config.services.forEach((s, i) => {
    if (s.mode !== "auto") return;
    const need = PLAN_BUFFERS * largestPlan(s);
    const problem =
      ownProblems(config, s, i, written)[0] ??
      (count === MAX_SERVICES ? tooManyServices(i, count + 1) : slots + need > SLOT_POOL_MAX ? planTooLarge(s, i, slots + need) : undefined);
    let reason = xdpUnavailable;
    if (problem) reason = `${formatPath(problem.path)}: ${problem.message}`;
    else {
      count++;
      slots += need;
    }
    plane.set(s, reason === undefined ? "xdp" : "proxy");
    if (reason !== undefined) fallbacks.push({ service: s, reason });
  });
  return { plane, fallbacks };
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
