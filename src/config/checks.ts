/**
 * Checks that span several values (and so cannot live on one field of the schema): health-check timing,
 * unique service names, listeners that cannot both bind, duplicate backends, backends that loop back
 * into featherlb, Maglev table sizes, and what the services in mode: xdp cannot have (xdp.ts). Each returns the problems it
 * finds as a path into the YAML document plus a message; schema.ts turns them into issues.
 */
import { backendKey, formatHostPort, listenersConflict, reachesListener } from "./address.ts";
import { formatDuration } from "./duration.ts";
import { MAGLEV_SLOTS_PER_BACKEND, MAGLEV_TABLE_SIZE_MAX } from "./limits.ts";
import { isPrime, nextPrime } from "./primes.ts";
import type { FileOutput, HealthCheckOutput } from "./sections.ts";
import type { Config, HealthCheckConfig, HostPort, ServiceConfig } from "./types.ts";
import { checkDsr } from "./dsr.ts";
import { checkXdp, isSpecificIPv4 } from "./xdp.ts";

export type PathKey = string | number;
export interface Problem {
  path: PathKey[];
  message: string;
}

/**
 * Everything wrong with a resolved config, in service order (load.ts reports the first in the file).
 * `file` is what the file itself wrote (before defaults): a problem is reported at the value the user
 * chose, not at one they left to a default.
 */
export function checkConfig(config: Config, file: FileOutput): Problem[] {
  const problems: Problem[] = [];
  config.services.forEach((service, i) => {
    const timing = checkHealthTiming(service.health_check, file.services[i]?.health_check, i);
    if (timing) problems.push(timing);
  });
  const written = { admin: file.admin?.listen !== undefined, snatPorts: file.xdp?.snat_ports !== undefined };
  // Only the services that run in xdp (their own mode, or the top-level one): the proxy can serve any.
  problems.push(...checkXdp(config, { snatPorts: written.snatPorts, ownKey: (i, key) => file.services[i]?.[key] !== undefined }));
  problems.push(...checkDsr(config, file));
  if (config.announce !== undefined) problems.push(...checkAnnounce(config.services));
  config.services.forEach((service, i) => {
    problems.push(...checkBackends(service, i), ...checkLoops(service, i, config.services), ...checkMaglev(service, i));
    const twin = config.services.findIndex((other) => other.name === service.name);
    if (twin < i) {
      problems.push({
        path: ["services", i, "name"],
        message: `duplicate service name "${service.name}" (services[${twin}] has it too); names must be unique`,
      });
    }
    const clash = config.services.findIndex((other) => listenersConflict(other.listen, service.listen));
    if (clash < i) {
      problems.push({ path: ["services", i, "listen"], message: listenClash(service.listen, config.services, clash) });
    }
    const admin = config.admin.listen;
    if (admin !== undefined && listenersConflict(admin, service.listen)) {
      problems.push(
        written.admin
          ? {
              path: ["admin", "listen"],
              message: `${formatHostPort(admin)} overlaps services[${i}] ("${service.name}") on ${formatHostPort(service.listen)}; they cannot both bind port ${admin.port}`,
            }
          : {
              path: ["services", i, "listen"],
              message: `${formatHostPort(service.listen)} overlaps the admin listener (${formatHostPort(admin)} by default); move the service or set admin.listen`,
            },
      );
    }
  });
  return problems;
}

/** announce: routes one /32 per listen address, so each must be one IPv4 address (not a wildcard, not IPv6). */
function checkAnnounce(services: readonly ServiceConfig[]): Problem[] {
  return services.flatMap((service, i) =>
    isSpecificIPv4(service.listen.host)
      ? []
      : [
          {
            path: ["services", i, "listen"],
            message: `announce needs one specific IPv4 address to route as a /32, got ${service.listen.host}; listen on the VIP itself or remove announce:`,
          },
        ],
  );
}

/**
 * A check timeout longer than the interval would let checks of one backend overlap. The problem is
 * reported where the user wrote the value: the service's own key if it has one, else `defaults:`.
 */
function checkHealthTiming(hc: HealthCheckConfig, own: HealthCheckOutput | undefined, i: number): Problem | undefined {
  if (hc.timeout_ms <= hc.interval_ms) return undefined;
  const where: PathKey[] =
    own?.timeout !== undefined
      ? ["services", i, "health_check", "timeout"]
      : own?.interval !== undefined
        ? ["services", i, "health_check", "interval"]
        : ["defaults", "health_check", "timeout"];
  const message = `health_check.timeout (${formatDuration(hc.timeout_ms)}) must not be longer than health_check.interval (${formatDuration(hc.interval_ms)})`;
  return { path: where, message };
}

function listenClash(listen: HostPort, services: readonly ServiceConfig[], j: number): string {
  const other = services[j];
  if (other === undefined) return "";
  const mine = formatHostPort(listen);
  const theirs = formatHostPort(other.listen);
  return mine === theirs
    ? `${mine} is already used by services[${j}] ("${other.name}")`
    : `${mine} overlaps services[${j}] ("${other.name}") on ${theirs}; they cannot both bind port ${listen.port}`;
}

function checkBackends(service: ServiceConfig, i: number): Problem[] {
  const seen = new Map<string, number>();
  const problems: Problem[] = [];
  service.backends.forEach((backend, b) => {
    const key = backendKey(backend);
    const first = seen.get(key);
    if (first === undefined) seen.set(key, b);
    else {
      problems.push({
        path: ["services", i, "backends", b, "address"],
        message: `duplicate backend ${backend.address} (also backends[${first}]); use weight to give it a bigger share`,
      });
    }
  });
  return problems;
}

/**
 * A backend that is one of featherlb's own listeners sends every connection back into featherlb, in
 * every mode. The file tells when it is the same address (any spelling of the IP) and port, or a
 * loopback address on the port of a wildcard listener. A hostname may resolve to this host too, but
 * only DNS knows that.
 */
function checkLoops(service: ServiceConfig, i: number, services: readonly ServiceConfig[]): Problem[] {
  const problems: Problem[] = [];
  service.backends.forEach((backend, b) => {
    const k = services.findIndex((other) => reachesListener(backend, other.listen));
    const target = services[k];
    if (target === undefined) return;
    const who = k === i ? "this service" : `services[${k}] ("${target.name}")`;
    problems.push({
      path: ["services", i, "backends", b, "address"],
      message: `${backend.address} reaches featherlb itself, where ${who} listens on ${formatHostPort(target.listen)}; connections would loop back into it, so point the backend at the real server`,
    });
  });
  return problems;
}

/**
 * Maglev needs a prime table size (so each backend's permutation visits every slot) and about 100 slots
 * per backend (so shares stay within ~1% of fair). The fix suggested is the next prime that satisfies both.
 */
export function checkMaglev(service: ServiceConfig, i: number): Problem[] {
  const size = service.maglev_table_size;
  const minimum = MAGLEV_SLOTS_PER_BACKEND * service.backends.length;
  const path = ["services", i, "maglev", "table_size"];
  const fit = nextPrime(Math.max(size, minimum));
  if (size > MAGLEV_TABLE_SIZE_MAX) {
    return [{ path, message: `must be at most ${MAGLEV_TABLE_SIZE_MAX}, got ${size}` }];
  }
  if (size < minimum) {
    return [
      {
        path,
        message: `must be at least ${MAGLEV_SLOTS_PER_BACKEND} × ${service.backends.length} backends = ${minimum} so each backend's share stays even, got ${size}; try ${fit}`,
      },
    ];
  }
  if (!isPrime(size)) {
    return [
      {
        path,
        message: `must be a prime number so every backend's Maglev permutation covers the whole table, got ${size}; try ${fit}`,
      },
    ];
  }
  return [];
}
