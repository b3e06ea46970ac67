/**
 * The config file's schema (valibot). It validates the parsed YAML, converts durations and addresses,
 * applies defaults (built-in, then the file's `defaults:` section, then the service's own keys) and runs
 * the cross-field checks. Its output is exactly `Config` (checked at compile time at the bottom).
 *
 * Every message here is written for a person: it follows "file:line:col path: " (added by load.ts) and
 * says what was expected and what was found.
 */
import * as v from "valibot";
import { parseHostPort, parsePortRange, type HostKind } from "./address.ts";
import { checkConfig, type PathKey, type Problem } from "./checks.ts";
import { formatDuration, parseDuration, type DurationBounds } from "./duration.ts";
import {
  CONNECT_RETRIES_MAX,
  DEFAULT_ADMIN_LISTEN,
  DEFAULT_ALGORITHM,
  DEFAULT_CONNECT_RETRIES,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DNS_REFRESH_MS,
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_FLOW_TABLE_SIZE,
  DEFAULT_HEALTH_CHECK,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_LOG_LEVEL,
  DEFAULT_MAGLEV_TABLE_SIZE,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MODE,
  DEFAULT_SNAT_PORTS,
  DEFAULT_WEIGHT,
  DEFAULT_XDP_ATTACH,
  FLOW_TABLE_SIZE_MAX,
  FLOW_TABLE_SIZE_MIN,
  MAX_BACKENDS,
  MAX_CONNECTIONS_MAX,
  MIN_DNS_REFRESH_MS,
  RISE_FALL_MAX,
  SERVICE_NAME_MAX,
  SERVICE_NAME_PATTERN,
  WEIGHT_MAX,
  WEIGHT_MIN,
} from "./limits.ts";
import { describe, type Parsed } from "./result.ts";
import { closest } from "./suggest.ts";
import {
  ALGORITHM_NAMES,
  ATTACH_MODES,
  LOG_LEVELS,
  MODES,
  type Config,
  type HealthCheckConfig,
  type HostPort,
} from "./types.ts";

// ---------------------------------------------------------------------------------------------------
// Building blocks: each carries its own human message.

/** "expected X, got Y"; a number or boolean where text was expected gets a hint to quote it. */
function expected(what: string, textual = false) {
  return (issue: { input: unknown }): string => {
    const hint = textual && (typeof issue.input === "number" || typeof issue.input === "boolean");
    return `expected ${what}, got ${describe(issue.input)}${hint ? " (quote it to make it a string)" : ""}`;
  };
}

/**
 * A mapping that rejects unknown keys, suggesting the nearest valid one. Valibot reports a missing
 * required key, an unknown key and a non-mapping through this one message function; they differ in
 * `expected` ("never" marks the unknown key) and in whether the issue has a path.
 */
function mapping<const E extends v.ObjectEntries>(entries: E, what = "a mapping") {
  const keys = Object.keys(entries);
  // valibot's object schemas accept arrays (typeof [] === "object"); a YAML list is not a mapping.
  const notList = v.check((input: unknown) => !Array.isArray(input), expected(what));
  const object = v.strictObject(entries, (issue) => {
    const key = issue.path?.[0]?.key;
    if (typeof key !== "string") return expected(what)(issue);
    if (issue.expected !== "never") return `missing required key "${key}"`;
    const guess = closest(key, keys);
    return guess !== undefined
      ? `unknown key "${key}"; did you mean "${guess}"?`
      : `unknown key "${key}"; valid keys here: ${keys.join(", ")}`;
  });
  return v.pipe(v.unknown(), notList, object);
}

/** One of a fixed set of names (modes, algorithms…), listing them all when the input is not one. */
function choice<const T extends readonly [string, ...string[]]>(options: T, noun: string) {
  const list = options.join(", ");
  return v.picklist(options, (issue) => {
    if (typeof issue.input !== "string") return `expected one of ${list}, got ${describe(issue.input)}`;
    const guess = closest(issue.input, options);
    const hint = guess !== undefined ? ` did you mean "${guess}"?` : "";
    return `unknown ${noun} "${issue.input}";${hint} expected one of ${list}`;
  });
}

/** An integer in [min, max]; `note` explains a special value ("0 = unlimited"). */
function integer(min: number, max: number, note = "") {
  const range = `must be ${min}-${max}${note}`;
  return v.pipe(
    v.number(expected("a number")),
    v.integer((issue) => `must be a whole number, got ${issue.input}`),
    v.minValue(min, (issue) => `${range}, got ${issue.input}`),
    v.maxValue(max, (issue) => `${range}, got ${issue.input}`),
  );
}

/** Lift one of our parsers into the schema: its error becomes the issue message. */
function parsedBy<I, O>(parse: (input: I) => Parsed<O>) {
  return v.rawTransform<I, O>(({ dataset, addIssue, NEVER }) => {
    const result = parse(dataset.value);
    if (result.ok) return result.value;
    addIssue({ message: result.error });
    return NEVER;
  });
}

/** A duration ("2s", "500ms", or integer milliseconds) → milliseconds. */
function duration(bounds: DurationBounds = {}) {
  return v.pipe(
    v.unknown(),
    parsedBy((input: unknown) => parseDuration(input, bounds)),
  );
}

/** A bare number where an address was expected is most likely a port: show how to write it. */
function expectedHostPort(kind: HostKind, alternatives = "") {
  return (issue: { input: unknown }): string => {
    const base = `expected "host:port"${alternatives}, got ${describe(issue.input)}`;
    if (typeof issue.input !== "number") return base;
    return `${base}; write "${kind === "listen" ? "0.0.0.0" : "HOST"}:${issue.input}"`;
  };
}

function hostPort(kind: HostKind) {
  return v.pipe(
    v.string(expectedHostPort(kind)),
    parsedBy((text: string) => parseHostPort(text, kind)),
  );
}

/** `admin.listen`: "host:port", or "off" (→ null, so it stays distinct from "not written"). */
const AdminListen = v.pipe(
  v.string(expectedHostPort("listen", ' or "off"')),
  parsedBy((text: string): Parsed<HostPort | null> =>
    text === "off" ? { ok: true, value: null } : parseHostPort(text, "listen"),
  ),
);

const SnatPorts = v.pipe(v.string(expected('a port range like "40000-59999"')), parsedBy(parsePortRange));

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

/** Linux interface names: 1-15 bytes (IFNAMSIZ − 1), no "/", ":" or whitespace (dev_valid_name()). */
const InterfaceName = v.pipe(
  v.string(expected("an interface name", true)),
  v.check(
    (name) => /^[^\s/:]{1,15}$/.test(name) && name !== "." && name !== "..",
    (issue) => `expected a network interface name (1-15 characters, no "/", ":" or spaces), got "${issue.input}"`,
  ),
);

const ServiceName = v.pipe(
  v.string(expected("a string", true)),
  v.minLength(1, "must not be empty"),
  v.maxLength(SERVICE_NAME_MAX, (issue) => `must be at most ${SERVICE_NAME_MAX} characters, got ${issue.input.length}`),
  v.regex(
    SERVICE_NAME_PATTERN,
    (issue) => `may only contain letters, digits, "_", "." and "-" (it is a metric label), got "${issue.input}"`,
  ),
);

// ---------------------------------------------------------------------------------------------------
// Sections.

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
  health_check: v.optional(HealthCheck),
};

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
      weight: v.optional(integer(WEIGHT_MIN, WEIGHT_MAX), DEFAULT_WEIGHT),
    },
    'a mapping like {address: "10.0.0.11:8080"}',
  ),
  v.transform((b) => ({ address: b.address.address, host: b.address.host, port: b.address.port, weight: b.weight })),
);

const Service = mapping({
  name: ServiceName,
  listen: hostPort("listen"),
  algorithm: v.optional(choice(ALGORITHM_NAMES, "algorithm"), DEFAULT_ALGORITHM),
  backends: v.pipe(
    v.array(Backend, expected("a list of backends")),
    v.minLength(1, "must list at least one backend"),
    v.maxLength(MAX_BACKENDS, (issue) => `at most ${MAX_BACKENDS} backends per service, got ${issue.input.length}`),
  ),
  maglev: v.optional(
    mapping({
      // Primality and the size relative to the backend count are checked once backends are known (checks.ts).
      table_size: v.optional(
        v.pipe(
          v.number(expected("a number")),
          v.integer((issue) => `must be a whole number, got ${issue.input}`),
        ),
      ),
    }),
  ),
  ...ServiceSettings,
});

const File = mapping(
  {
    mode: v.optional(choice(MODES, "mode"), DEFAULT_MODE),
    log: v.optional(mapping({ level: v.optional(choice(LOG_LEVELS, "log level"), DEFAULT_LOG_LEVEL) }), {}),
    // No default here: load-time checks need to know whether admin.listen was written (see resolve).
    admin: v.optional(mapping({ listen: v.optional(AdminListen) }), {}),
    drain_timeout: v.optional(duration(), DEFAULT_DRAIN_TIMEOUT_MS),
    dns_refresh: v.optional(duration({ min: MIN_DNS_REFRESH_MS }), DEFAULT_DNS_REFRESH_MS),
    xdp: v.optional(
      mapping({
        interface: v.optional(InterfaceName),
        attach: v.optional(choice(ATTACH_MODES, "attach mode"), DEFAULT_XDP_ATTACH),
        // No default here either: a clash with a service port is reported where the range was chosen.
        snat_ports: v.optional(SnatPorts),
        flow_table_size: v.optional(FlowTableSize, DEFAULT_FLOW_TABLE_SIZE),
      }),
      {},
    ),
    defaults: v.optional(mapping(ServiceSettings), {}),
    services: v.pipe(
      v.array(Service, expected("a list of services")),
      v.minLength(1, "must list at least one service"),
    ),
  },
  "a mapping at the top level",
);

// ---------------------------------------------------------------------------------------------------
// Resolution: defaults applied in three layers, then the checks that span fields.

type FileOutput = v.InferOutput<typeof File>;
type Settings = FileOutput["defaults"];
type HealthCheckInput = NonNullable<Settings["health_check"]>;

const DEFAULT_ADMIN: HostPort = (() => {
  const parsed = parseHostPort(DEFAULT_ADMIN_LISTEN, "listen");
  if (!parsed.ok) throw new Error(`DEFAULT_ADMIN_LISTEN is invalid: ${parsed.error}`);
  return parsed.value;
})();

/** Each health-check field from the service, else from `defaults:`, else built in. */
function mergeHealthCheck(own: HealthCheckInput = {}, inherited: HealthCheckInput = {}): HealthCheckConfig {
  return {
    enabled: own.enabled ?? inherited.enabled ?? DEFAULT_HEALTH_CHECK.enabled,
    interval_ms: own.interval ?? inherited.interval ?? DEFAULT_HEALTH_CHECK.interval_ms,
    timeout_ms: own.timeout ?? inherited.timeout ?? DEFAULT_HEALTH_CHECK.timeout_ms,
    rise: own.rise ?? inherited.rise ?? DEFAULT_HEALTH_CHECK.rise,
    fall: own.fall ?? inherited.fall ?? DEFAULT_HEALTH_CHECK.fall,
  };
}

/**
 * A check timeout longer than the interval would let checks of one backend overlap. The problem is
 * reported where the user wrote the value: the service's own key if it has one, else `defaults:`.
 */
function checkHealthTiming(
  hc: HealthCheckConfig,
  own: HealthCheckInput | undefined,
  i: number,
): Problem | undefined {
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

function resolve(file: FileOutput): { config: ReturnType<typeof build>; problems: Problem[] } {
  const problems: Problem[] = [];
  const config = build(file, problems);
  problems.push(...checkConfig(config, { admin: file.admin.listen !== undefined, snatPorts: file.xdp.snat_ports !== undefined }));
  return { config, problems };
}

function build(file: FileOutput, problems: Problem[]) {
  const inherited = file.defaults;
  const services = file.services.map((s, i) => {
    const health_check = mergeHealthCheck(s.health_check, inherited.health_check);
    const timing = checkHealthTiming(health_check, s.health_check, i);
    if (timing) problems.push(timing);
    return {
      name: s.name,
      listen: s.listen,
      algorithm: s.algorithm,
      backends: s.backends,
      max_connections: s.max_connections ?? inherited.max_connections ?? DEFAULT_MAX_CONNECTIONS,
      connect_timeout_ms: s.connect_timeout ?? inherited.connect_timeout ?? DEFAULT_CONNECT_TIMEOUT_MS,
      connect_retries: s.connect_retries ?? inherited.connect_retries ?? DEFAULT_CONNECT_RETRIES,
      idle_timeout_ms: s.idle_timeout ?? inherited.idle_timeout ?? DEFAULT_IDLE_TIMEOUT_MS,
      health_check,
      maglev_table_size: s.maglev?.table_size ?? DEFAULT_MAGLEV_TABLE_SIZE,
    };
  });
  const adminListen = file.admin.listen === undefined ? { ...DEFAULT_ADMIN } : (file.admin.listen ?? undefined);
  return {
    mode: file.mode,
    log: { level: file.log.level },
    admin: { listen: adminListen },
    drain_timeout_ms: file.drain_timeout,
    dns_refresh_ms: file.dns_refresh,
    xdp: {
      interface: file.xdp.interface,
      attach: file.xdp.attach,
      snat_ports: file.xdp.snat_ports ?? { ...DEFAULT_SNAT_PORTS },
      flow_table_size: file.xdp.flow_table_size,
    },
    services,
  };
}

/** A valibot issue path from plain keys (only `key` is read back, by load.ts). */
function toIssuePath(keys: readonly PathKey[]): [v.IssuePathItem, ...v.IssuePathItem[]] | undefined {
  const items = keys.map(
    (key): v.IssuePathItem =>
      typeof key === "number"
        ? { type: "array", origin: "value", input: [], key, value: undefined }
        : { type: "object", origin: "value", input: {}, key, value: undefined },
  );
  const [first, ...rest] = items;
  return first === undefined ? undefined : [first, ...rest];
}

/** The whole file: parsed YAML (plain JS values) in, `Config` out. */
export const ConfigSchema = v.pipe(
  File,
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const { config, problems } = resolve(dataset.value);
    for (const p of problems) addIssue({ message: p.message, path: toIssuePath(p.path) });
    return problems.length > 0 ? NEVER : config;
  }),
);

// ---------------------------------------------------------------------------------------------------
// The schema's output must be exactly the Config contract of types.ts: this line fails `tsc` on drift.
// (`source` is not in the file: loadConfig adds it.)

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const outputIsConfig: Equal<v.InferOutput<typeof ConfigSchema>, Omit<Config, "source">> = true;
void outputIsConfig;
