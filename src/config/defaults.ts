/**
 * Every default of the config, in one place: the values (docs/config.md lists them) and how they are
 * applied, in three layers — built in, then the file's `defaults:` section, then the service's own keys.
 * Durations are in milliseconds. The bounds a value must stay within are in limits.ts.
 */
import { MAGLEV_SLOTS_PER_BACKEND } from "./limits.ts";
import { nextPrime } from "./primes.ts";
import type { FileOutput, HealthCheckOutput } from "./sections.ts";
import type { AttachMode, Config, HealthCheckConfig, HostPort, KernelRelayConfig, LogLevel, Mode, Workers } from "./types.ts";

export const DEFAULT_MODE: Mode = "proxy";
export const DEFAULT_WORKERS: Workers = "auto";
/** kernel_relay: on; a connection is handed over once it has moved 64 KiB (short ones never are); 1 MiB pipes. */
export const DEFAULT_KERNEL_RELAY: KernelRelayConfig = { enabled: true, after_bytes: 65536, pipe_bytes: 1 << 20 };
export const DEFAULT_LOG_LEVEL: LogLevel = "info";
export const DEFAULT_ADMIN_LISTEN: Readonly<HostPort> = { host: "127.0.0.1", port: 9090 };
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
export const DEFAULT_DNS_REFRESH_MS = 30_000;
export const DEFAULT_CONFIG_WATCH_MS = 1000;
export const DEFAULT_WITHDRAW_GRACE_MS = 2000;

export const DEFAULT_XDP_ATTACH: AttachMode = "auto";
export const DEFAULT_SNAT_PORTS = { first: 40_000, last: 59_999 } as const;
export const DEFAULT_FLOW_TABLE_SIZE = 65_536;
/** Where mode: xdp pins its maps (a directory per network namespace and interface under it: xdp/pins.ts). */
export const DEFAULT_PIN_PATH = "/sys/fs/bpf/featherlb";

export const DEFAULT_WEIGHT = 1;
export const DEFAULT_ALGORITHM = "round_robin" as const;
export const DEFAULT_MAX_CONNECTIONS = 10_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 2000;
export const DEFAULT_CONNECT_RETRIES = 2;
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** As Linux's tcp_fin_timeout: long enough for a reply after a request's FIN, short enough to free a stuck one. */
export const DEFAULT_HALF_CLOSE_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_CONNECTIONS_PER_SOURCE = 0;
export const DEFAULT_SEND_PROXY = "off" as const;
export const DEFAULT_ACCEPT_PROXY = false;
export const DEFAULT_FORWARDING = "nat" as const;
export const DEFAULT_HEALTH_CHECK: Readonly<HealthCheckConfig> = {
  enabled: true,
  interval_ms: 2000,
  timeout_ms: 1000,
  rise: 2,
  fall: 3,
};
/**
 * Maglev's table size when a service does not set maglev.table_size: 65537 (Katran's default ring size,
 * a prime ≥ 100 × 655 backends), or for a larger service the smallest prime ≥ 100 × its backends (so
 * every share stays within ~1% of fair). See docs/config.md for the trade-off.
 */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65_537;
export function defaultMaglevTableSize(backends: number): number {
  return Math.max(DEFAULT_MAGLEV_TABLE_SIZE, nextPrime(MAGLEV_SLOTS_PER_BACKEND * backends));
}

/** Each health-check field from the service, else from `defaults:`, else built in. */
function mergeHealthCheck(own: HealthCheckOutput = {}, inherited: HealthCheckOutput = {}): HealthCheckConfig {
  return {
    enabled: own.enabled ?? inherited.enabled ?? DEFAULT_HEALTH_CHECK.enabled,
    interval_ms: own.interval ?? inherited.interval ?? DEFAULT_HEALTH_CHECK.interval_ms,
    timeout_ms: own.timeout ?? inherited.timeout ?? DEFAULT_HEALTH_CHECK.timeout_ms,
    rise: own.rise ?? inherited.rise ?? DEFAULT_HEALTH_CHECK.rise,
    fall: own.fall ?? inherited.fall ?? DEFAULT_HEALTH_CHECK.fall,
  };
}

/** The file with every key it left out filled in: exactly `Config` (without `source`, which load.ts adds). */
export function applyDefaults(file: FileOutput): Omit<Config, "source"> {
  const inherited = file.defaults ?? {};
  const xdp = file.xdp ?? {};
  const admin = file.admin?.listen;
  return {
    mode: file.mode ?? DEFAULT_MODE,
    workers: file.workers ?? DEFAULT_WORKERS,
    kernel_relay: {
      enabled: file.kernel_relay?.enabled ?? DEFAULT_KERNEL_RELAY.enabled,
      after_bytes: file.kernel_relay?.after_bytes ?? DEFAULT_KERNEL_RELAY.after_bytes,
      pipe_bytes: file.kernel_relay?.pipe_bytes ?? DEFAULT_KERNEL_RELAY.pipe_bytes,
    },
    log: { level: file.log?.level ?? DEFAULT_LOG_LEVEL },
    // "off" is null: no admin listener.
    admin: { listen: admin === undefined ? { ...DEFAULT_ADMIN_LISTEN } : (admin ?? undefined) },
    drain_timeout_ms: file.drain_timeout ?? DEFAULT_DRAIN_TIMEOUT_MS,
    dns_refresh_ms: file.dns_refresh ?? DEFAULT_DNS_REFRESH_MS,
    // "off" is 0: only SIGHUP reloads.
    config_watch_ms: file.config_watch ?? DEFAULT_CONFIG_WATCH_MS,
    xdp: {
      interface: xdp.interface,
      attach: xdp.attach ?? DEFAULT_XDP_ATTACH,
      snat_ports: xdp.snat_ports ?? { ...DEFAULT_SNAT_PORTS },
      snat_address: xdp.snat_address,
      flow_table_size: xdp.flow_table_size ?? DEFAULT_FLOW_TABLE_SIZE,
      pin_path: xdp.pin_path === "off" ? null : (xdp.pin_path ?? DEFAULT_PIN_PATH),
      pin_required: xdp.pin_path !== undefined && xdp.pin_path !== "off",
    },
    announce:
      file.announce === undefined
        ? undefined
        : { table: file.announce.table, withdraw_grace_ms: file.announce.withdraw_grace ?? DEFAULT_WITHDRAW_GRACE_MS },
    services: file.services.map((s) => ({
      name: s.name,
      mode: s.mode ?? file.mode ?? DEFAULT_MODE,
      listen: s.listen,
      algorithm: s.algorithm ?? DEFAULT_ALGORITHM,
      backends: s.backends.map((b) => ({ address: b.address, host: b.host, port: b.port, weight: b.weight ?? DEFAULT_WEIGHT })),
      max_connections: s.max_connections ?? inherited.max_connections ?? DEFAULT_MAX_CONNECTIONS,
      connect_timeout_ms: s.connect_timeout ?? inherited.connect_timeout ?? DEFAULT_CONNECT_TIMEOUT_MS,
      connect_retries: s.connect_retries ?? inherited.connect_retries ?? DEFAULT_CONNECT_RETRIES,
      idle_timeout_ms: s.idle_timeout ?? inherited.idle_timeout ?? DEFAULT_IDLE_TIMEOUT_MS,
      half_close_timeout_ms: s.half_close_timeout ?? inherited.half_close_timeout ?? DEFAULT_HALF_CLOSE_TIMEOUT_MS,
      max_connections_per_source: s.max_connections_per_source ?? inherited.max_connections_per_source ?? DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
      send_proxy: s.send_proxy ?? inherited.send_proxy ?? DEFAULT_SEND_PROXY,
      accept_proxy: s.accept_proxy ?? inherited.accept_proxy ?? DEFAULT_ACCEPT_PROXY,
      forwarding: s.forwarding ?? inherited.forwarding ?? DEFAULT_FORWARDING,
      health_check: mergeHealthCheck(s.health_check, inherited.health_check),
      maglev_table_size: s.maglev?.table_size ?? defaultMaglevTableSize(s.backends.length),
    })),
  };
}
