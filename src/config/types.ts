/**
 * The validated, defaults-applied configuration every other module consumes.
 *
 * The valibot schema in schema.ts produces exactly this shape (a compile-time check there fails on
 * drift). All durations are milliseconds; all addresses are already split into host and port.
 */

export const MODES = ["proxy", "xdp", "auto"] as const;
export type Mode = (typeof MODES)[number];

/** The data planes a service can run in (`services[].mode`); the top-level `mode` may also be auto. */
export const PLANES = ["proxy", "xdp"] as const;
export type Plane = (typeof PLANES)[number];

/** PROXY protocol header sent to backends (`send_proxy`): none, the text v1 or the binary v2. */
export const SEND_PROXY = ["off", "v1", "v2"] as const;
export type SendProxy = (typeof SEND_PROXY)[number];

/** How an xdp service reaches its backends (`forwarding`): full NAT both ways, or direct server return. */
export const FORWARDING = ["nat", "dsr"] as const;
export type Forwarding = (typeof FORWARDING)[number];

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const ATTACH_MODES = ["auto", "native", "generic"] as const;
export type AttachMode = (typeof ATTACH_MODES)[number];

export interface HostPort {
  /** IPv4/IPv6 literal or a DNS name. IPv6 literals are written [::1]:80 in YAML and stored without brackets. */
  host: string;
  port: number;
}

export interface BackendConfig {
  /** The address exactly as written in the file ("host:port"): the backend's identity across reloads. */
  address: string;
  host: string;
  port: number;
  /** Relative share of new connections, integer 1..1000 (default 1). */
  weight: number;
}

export interface HealthCheckConfig {
  enabled: boolean;
  /** Time between two checks of one backend. */
  interval_ms: number;
  /** A TCP connect that takes longer than this counts as a failure. */
  timeout_ms: number;
  /** Consecutive successes that bring a down backend up. */
  rise: number;
  /** Consecutive failures that take an up backend down. */
  fall: number;
}

export interface ServiceConfig {
  name: string;
  /**
   * The data plane this service asks for: its own `mode`, else the top-level one. "auto" runs it in
   * xdp when XDP can serve it, else in the proxy (the runtime decides and logs why).
   */
  mode: Mode;
  listen: HostPort;
  algorithm: AlgorithmName;
  backends: BackendConfig[];
  /** Concurrent client connections allowed; the excess is closed at once and counted. 0 = unlimited. */
  max_connections: number;
  connect_timeout_ms: number;
  /** How many other healthy backends to try after a failed connect (0 = no retry). */
  connect_retries: number;
  /** A proxied connection with no bytes in either direction for this long is closed. 0 = never. */
  idle_timeout_ms: number;
  /**
   * A connection one side has half-closed (its FIN was forwarded) is closed once no byte has moved for
   * this long (HAProxy's timeout client-fin / server-fin). 0 = only idle_timeout applies.
   */
  half_close_timeout_ms: number;
  /** Concurrent connections from one client IP (the PROXY address with accept_proxy); 0 = unlimited. */
  max_connections_per_source: number;
  /** PROXY protocol header written to the backend before any client byte. */
  send_proxy: SendProxy;
  /** Read a PROXY protocol header (v1 or v2) from each client before anything else. */
  accept_proxy: boolean;
  /**
   * nat: the XDP program rewrites addresses and ports both ways (replies come back through it). dsr:
   * client packets get only the backend's MAC, backends answer the client directly from the service
   * address (bpf/dsr.h; xdp only, backends on the LB interface's subnet, port = listen port).
   */
  forwarding: Forwarding;
  health_check: HealthCheckConfig;
  /** Maglev lookup table size: a prime ≥ 100 × backends (default 65537). */
  maglev_table_size: number;
}

export interface XdpConfig {
  /** Interface to attach to; undefined = the interface that owns the services' listen IP. */
  interface: string | undefined;
  attach: AttachMode;
  /** Source ports the LB uses toward backends, inclusive. Reserved from the kernel's ephemeral range. */
  snat_ports: { first: number; last: number };
  /** Source address toward backends; undefined = the interface's primary IPv4 address (read at start). */
  snat_address: string | undefined;
  /** Capacity of the flow tables (LRU hash, entries per direction). */
  flow_table_size: number;
  /** Where the maps are pinned (bpffs) so restarts and SIGUSR2 handovers keep flows; null: "off". */
  pin_path: string | null;
  /** pin_path was written in the file: a pin path that cannot be used is then an error, not a warning. */
  pin_required: boolean;
}

/**
 * Announcing the services' addresses to routers (docs/scale-out.md): featherlb keeps one /32 route per
 * servable listen address in a kernel routing table of its own, which a routing daemon (BIRD) exports.
 */
export interface AnnounceConfig {
  /** The kernel routing table the routes live in (never main, local or default). */
  table: number;
  /** On SIGTERM: how long new connections are still accepted after the routes are withdrawn. */
  withdraw_grace_ms: number;
}

export interface AdminConfig {
  /** undefined = admin listener disabled. */
  listen: HostPort | undefined;
}

/** `workers`: proxy worker threads, or "auto" (one per CPU the process may use). */
export type Workers = number | "auto";

/** `kernel_relay`: established proxied connections moved with splice(2) by a relay thread (proxy mode). */
export interface KernelRelayConfig {
  enabled: boolean;
  /** Bytes a connection moves (both directions) through JavaScript before it is handed over. */
  after_bytes: number;
  /** Each direction's pipe in the relay thread. */
  pipe_bytes: number;
}

export interface Config {
  mode: Mode;
  /** Proxy worker threads (each accepts on every proxy listener); "auto" is resolved at start. */
  workers: Workers;
  kernel_relay: KernelRelayConfig;
  log: { level: LogLevel };
  admin: AdminConfig;
  /** How long SIGTERM waits for established connections before closing them. */
  drain_timeout_ms: number;
  /** How often backend hostnames are re-resolved. */
  dns_refresh_ms: number;
  /** How often the config file is checked for changes (a change reloads it); 0 = only on SIGHUP. */
  config_watch_ms: number;
  xdp: XdpConfig;
  /** undefined = nothing is announced. */
  announce: AnnounceConfig | undefined;
  services: ServiceConfig[];
  /** The file it was read from (set by loadConfig), for run-time messages that cannot point at a line. */
  source?: string;
}

/** Algorithm names, in the order README lists them. The registry in control/algorithms keys on these. */
export const ALGORITHM_NAMES = [
  "round_robin",
  "weighted_round_robin",
  "least_connections",
  "random",
  "power_of_two",
  "source_hash",
  "maglev",
] as const;
export type AlgorithmName = (typeof ALGORITHM_NAMES)[number];
