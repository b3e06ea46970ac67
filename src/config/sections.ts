/**
 * One schema per section of the config file, composed from combinators.ts. They validate and convert
 * (durations → ms, "host:port" → HostPort) but apply no defaults: a key the file leaves out stays
 * undefined here, and defaults.ts fills it in, so the checks can tell what the file wrote.
 */
import * as v from "valibot";
import { parseHostPort, parseIPv4, parsePortRange } from "./address.ts";
import { choice, duration, expected, expectedHostPort, hostPort, integer, mapping, parsedBy, wholeNumber } from "./combinators.ts";
import {
  CONNECT_RETRIES_MAX,
  FLOW_TABLE_SIZE_MAX,
  FLOW_TABLE_SIZE_MIN,
  MAX_BACKENDS,
  MAX_CONNECTIONS_MAX,
  MIN_CONFIG_WATCH_MS,
  MIN_DNS_REFRESH_MS,
  PIPE_BYTES_MAX,
  PIPE_BYTES_MIN,
  RESERVED_ROUTE_TABLES,
  RISE_FALL_MAX,
  ROUTE_TABLE_MAX,
  SERVICE_NAME_MAX,
  SERVICE_NAME_PATTERN,
  WEIGHT_MAX,
  WEIGHT_MIN,
  WORKERS_MAX,
} from "./limits.ts";
import { parseDuration } from "./duration.ts";
import { describe, type Parsed } from "./result.ts";
import { ALGORITHM_NAMES, ATTACH_MODES, FORWARDING, LOG_LEVELS, MODES, PLANES, SEND_PROXY, type HostPort, type Workers } from "./types.ts";

// ---- workers: --------------------------------------------------------------------------------------

/** `workers`: "auto" or a count of threads. */
const Workers = v.pipe(
  v.unknown(),
  parsedBy((input: unknown): Parsed<Workers> => {
    if (input === "auto") return { ok: true, value: "auto" };
    if (typeof input === "number" && Number.isInteger(input) && input >= 1 && input <= WORKERS_MAX) return { ok: true, value: input };
    return { ok: false, error: `expected auto or a whole number of workers from 1 to ${WORKERS_MAX}, got ${describe(input)}` };
  }),
);

// ---- kernel_relay: ---------------------------------------------------------------------------------

const KernelRelay = mapping({
  enabled: v.optional(v.boolean(expected("true or false"))),
  after_bytes: v.optional(integer(0, 2 ** 40)),
  pipe_bytes: v.optional(integer(PIPE_BYTES_MIN, PIPE_BYTES_MAX, " (a power of two is what the kernel allocates)")),
});

// ---- log: -------------------------------------------------------------------------------------------

const Log = mapping({ level: v.optional(choice(LOG_LEVELS, "log level")) });

// ---- admin: -----------------------------------------------------------------------------------------

/** `admin.listen`: "host:port", or "off" (→ null, so it stays distinct from "not written"). */
const AdminListen = v.pipe(
  v.string(expectedHostPort("listen", ' or "off"')),
  parsedBy((text: string): Parsed<HostPort | null> =>
    text === "off" ? { ok: true, value: null } : parseHostPort(text, "listen"),
  ),
);

const Admin = mapping({ listen: v.optional(AdminListen) });

// ---- xdp: -------------------------------------------------------------------------------------------

/** Linux interface names: 1-15 bytes (IFNAMSIZ − 1), no "/", ":" or whitespace (dev_valid_name()). */
const InterfaceName = v.pipe(
  v.string(expected("an interface name", true)),
  v.check(
    (name) => /^[^\s/:]{1,15}$/.test(name) && name !== "." && name !== "..",
    (issue) => `expected a network interface name (1-15 characters, no "/", ":" or spaces), got "${issue.input}"`,
  ),
);

/** An absolute directory, or "off" (→ null: nothing pinned). */
const PinPath = v.pipe(
  v.string(expected('an absolute path or "off"', true)),
  v.check(
    (p) => p === "off" || (p.startsWith("/") && !p.split("/").includes("..") && !/[\s:]/.test(p)),
    (issue) => `expected an absolute directory (no "..", ":" or spaces) or "off", got "${issue.input}"`,
  ),
);

const SnatPorts = v.pipe(v.string(expected('a port range like "40000-59999"')), parsedBy(parsePortRange));

/** xdp.snat_address: one IPv4 literal of this host (checked against the interface at start). */
const SnatAddress = v.pipe(
  v.string(expected("an IPv4 address", true)),
  v.check(
    (text) => parseIPv4(text)?.some((b) => b !== 0) === true,
    (issue) => `expected an IPv4 address of the XDP interface like "10.0.1.12", got "${issue.input}"`,
  ),
);

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

const FlowTableSize = v.pipe(
  v.number(expected("a number")),
  v.check(
    (n) => Number.isInteger(n) && n >= FLOW_TABLE_SIZE_MIN && n <= FLOW_TABLE_SIZE_MAX && isPowerOfTwo(n),
    (issue) => {
      const n = issue.input;
      const range = `must be a power of two from ${FLOW_TABLE_SIZE_MIN} to ${FLOW_TABLE_SIZE_MAX}, got ${n}`;
      if (!(n > FLOW_TABLE_SIZE_MIN && n < FLOW_TABLE_SIZE_MAX)) return range;
      const below = 2 ** Math.floor(Math.log2(n));
      return `${range}; try ${below} or ${below * 2}`;
    },
  ),
);

const Xdp = mapping({
  interface: v.optional(InterfaceName),
  attach: v.optional(choice(ATTACH_MODES, "attach mode")),
  snat_ports: v.optional(SnatPorts),
  snat_address: v.optional(SnatAddress),
  flow_table_size: v.optional(FlowTableSize),
  pin_path: v.optional(PinPath),
});

// ---- config_watch: ----------------------------------------------------------------------------------

/** A duration, or "off" (→ 0: only SIGHUP reloads). */
const ConfigWatch = v.pipe(
  v.unknown(),
  parsedBy((input: unknown): Parsed<number> =>
    input === "off" ? { ok: true, value: 0 } : parseDuration(input, { min: MIN_CONFIG_WATCH_MS }),
  ),
);

// ---- announce: --------------------------------------------------------------------------------------

const RouteTable = v.pipe(
  integer(1, ROUTE_TABLE_MAX),
  v.check(
    (table) => RESERVED_ROUTE_TABLES[table] === undefined,
    (issue) => `table ${issue.input} is the kernel's ${RESERVED_ROUTE_TABLES[issue.input as number]} table; use a table of featherlb's own, e.g. 100`,
  ),
);

const Announce = mapping({
  table: RouteTable,
  withdraw_grace: v.optional(duration()),
});

// ---- defaults: (and the same keys on each service) --------------------------------------------------

const HealthCheck = mapping({
  enabled: v.optional(v.boolean(expected("true or false"))),
  interval: v.optional(duration({ min: 1 })),
  timeout: v.optional(duration({ min: 1 })),
  rise: v.optional(integer(1, RISE_FALL_MAX)),
  fall: v.optional(integer(1, RISE_FALL_MAX)),
});

/** Settings a service may set itself or inherit from the top-level `defaults:` section. */
const ServiceSettings = {
  max_connections: v.optional(integer(0, MAX_CONNECTIONS_MAX, " (0 = unlimited)")),
  connect_timeout: v.optional(duration({ min: 1 })),
  connect_retries: v.optional(integer(0, CONNECT_RETRIES_MAX)),
  idle_timeout: v.optional(duration()),
  half_close_timeout: v.optional(duration()),
  max_connections_per_source: v.optional(integer(0, MAX_CONNECTIONS_MAX, " (0 = unlimited)")),
  send_proxy: v.optional(choice(SEND_PROXY, "PROXY protocol version")),
  accept_proxy: v.optional(v.boolean(expected("true or false"))),
  forwarding: v.optional(choice(FORWARDING, "forwarding")),
  health_check: v.optional(HealthCheck),
};

const Defaults = mapping(ServiceSettings);

// ---- services: --------------------------------------------------------------------------------------

const ServiceName = v.pipe(
  v.string(expected("a string", true)),
  v.minLength(1, "must not be empty"),
  v.maxLength(SERVICE_NAME_MAX, (issue) => `must be at most ${SERVICE_NAME_MAX} characters, got ${issue.input.length}`),
  v.regex(
    SERVICE_NAME_PATTERN,
    (issue) => `may only contain letters, digits, "_", "." and "-" (it is a metric label), got "${issue.input}"`,
  ),
);

const Backend = v.pipe(
  mapping(
    {
      address: v.pipe(
        v.string(expectedHostPort("backend")),
        parsedBy((text: string) => {
          const hp = parseHostPort(text, "backend");
          return hp.ok ? { ok: true as const, value: { address: text, ...hp.value } } : hp;
        }),
      ),
      weight: v.optional(integer(WEIGHT_MIN, WEIGHT_MAX)),
    },
    'a mapping like {address: "10.0.0.11:8080"}',
  ),
  v.transform((b) => ({ address: b.address.address, host: b.address.host, port: b.address.port, weight: b.weight })),
);

const Service = mapping({
  name: ServiceName,
  // The top-level mode is the default; a service picks a plane, not auto (that is a top-level policy).
  mode: v.optional(choice(PLANES, "data plane")),
  listen: hostPort("listen"),
  algorithm: v.optional(choice(ALGORITHM_NAMES, "algorithm")),
  backends: v.pipe(
    v.array(Backend, expected("a list of backends")),
    v.minLength(1, "must list at least one backend"),
    v.maxLength(MAX_BACKENDS, (issue) => `at most ${MAX_BACKENDS} backends per service, got ${issue.input.length}`),
  ),
  // Primality and the size relative to the backend count are checked once backends are known (checks.ts).
  maglev: v.optional(mapping({ table_size: v.optional(wholeNumber()) })),
  ...ServiceSettings,
});

// ---- the whole file ---------------------------------------------------------------------------------

export const File = mapping(
  {
    mode: v.optional(choice(MODES, "mode")),
    workers: v.optional(Workers),
    kernel_relay: v.optional(KernelRelay),
    log: v.optional(Log),
    admin: v.optional(Admin),
    drain_timeout: v.optional(duration()),
    dns_refresh: v.optional(duration({ min: MIN_DNS_REFRESH_MS })),
    config_watch: v.optional(ConfigWatch),
    xdp: v.optional(Xdp),
    announce: v.optional(Announce),
    defaults: v.optional(Defaults),
    services: v.pipe(
      v.array(Service, expected("a list of services")),
      v.minLength(1, "must list at least one service"),
    ),
  },
  "a mapping at the top level",
);

/** What the file says, validated and converted; every key it left out is undefined. */
export type FileOutput = v.InferOutput<typeof File>;
export type SettingsOutput = NonNullable<FileOutput["defaults"]>;
export type HealthCheckOutput = NonNullable<SettingsOutput["health_check"]>;
