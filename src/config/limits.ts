/**
 * Bounds of every config value, in one place: the schema, the docs (docs/config.md) and tests read them
 * from here; the defaults are in defaults.ts. Durations are in milliseconds.
 *
 * This is the config contract: the control plane and the data planes import their bounds from here,
 * never the other way round (config imports nothing outside src/config; src/layers.test.ts).
 */

/**
 * Backends per service, in both modes (Katran's default MAX_REALS). In mode: xdp it is the largest
 * stride of the per-backend maps (sized from the config at load time) and the bound of the verifier's
 * loop over a plan's members (bpf/consts.h MAX_BACKENDS; test/xdp/layout.test.ts).
 */
export const MAX_BACKENDS = 4096;

/** Reading the config file more often than this buys nothing: a reload takes longer. */
export const MIN_CONFIG_WATCH_MS = 100;

/** Linux routing table ids are 32-bit; 0 is "unspecified". */
export const ROUTE_TABLE_MAX = 4_294_967_295;
/** Tables the kernel itself uses (rt_tables): announcing into one of them would route real traffic. */
export const RESERVED_ROUTE_TABLES: Readonly<Record<number, string>> = { 253: "default", 254: "main", 255: "local" };

/** Re-resolving more often than this would hammer the resolver for no benefit. */
export const MIN_DNS_REFRESH_MS = 1000;

/** SNAT ports stay clear of the well-known range. */
export const SNAT_PORT_MIN = 1024;
/** Each SNAT port carries one flow per backend, so fewer ports than this cap concurrency too hard. */
export const SNAT_PORTS_MIN_COUNT = 1024;
/** flow_table_size must be a power of two in [MIN, MAX]; both bounds are powers of two. */
export const FLOW_TABLE_SIZE_MIN = 1024;
export const FLOW_TABLE_SIZE_MAX = 1_048_576;
/** Every allowed flow_table_size, smallest first (1024, 2048, … 1048576). */
export const FLOW_TABLE_SIZES: readonly number[] = Array.from(
  { length: Math.log2(FLOW_TABLE_SIZE_MAX / FLOW_TABLE_SIZE_MIN) + 1 },
  (_, i) => FLOW_TABLE_SIZE_MIN * 2 ** i,
);

export const SERVICE_NAME_MAX = 63;
export const SERVICE_NAME_PATTERN = /^[A-Za-z0-9_.-]+$/;

export const WEIGHT_MIN = 1;
export const WEIGHT_MAX = 1000;

/**
 * Upper bound on `workers`: proxy threads beyond one per CPU only share cores. Each worker takes a
 * column in every per-source table entry (dataplane/proxy/sources.ts), so the bound also caps that.
 */
export const WORKERS_MAX = 256;

/**
 * kernel_relay.pipe_bytes: a pipe holds at least one page, and an unprivileged process may grow one
 * to fs.pipe-max-size (1 MiB by default); root may go further, but more only holds more in flight.
 */
export const PIPE_BYTES_MIN = 4096;
export const PIPE_BYTES_MAX = 16 << 20;

/** Upper bound on max_connections (0 = unlimited is always allowed). */
export const MAX_CONNECTIONS_MAX = 10_000_000;
export const CONNECT_RETRIES_MAX = MAX_BACKENDS - 1;

/** rise and fall are counts of consecutive checks: 1..RISE_FALL_MAX. */
export const RISE_FALL_MAX = 100;

/** Maglev's paper keeps M ≥ 100 × N so every backend's share is within ~1% of fair. */
export const MAGLEV_SLOTS_PER_BACKEND = 100;
/** The default table size fits this many backends; larger services default to the next prime ≥ 100 × N. */
export const MAGLEV_DEFAULT_FITS = 655;
/** Largest prime below 2^20: caps the table (4 MiB of slots) the data planes must hold per service. */
export const MAGLEV_TABLE_SIZE_MAX = 1_048_573;

/** Slots in the random and source_hash tables (control/algorithms/random.ts, source_hash.ts). */
export const RANDOM_TABLE_SIZE = 4096;
export const SOURCE_HASH_TABLE_SIZE = 4096;

// mode: xdp — the sizes of the BPF maps (bpf/consts.h), which bound what one config may ask of them.
// src/dataplane/xdp/layout.ts re-exports them and test/xdp/layout.test.ts checks them against the
// compiled program's BTF.

/** Services the XDP program holds at once (bpf/consts.h MAX_SERVICES); the maps are sized to the config's. */
export const MAX_SERVICES = 1024;
/** Plan tables per service: one live, one being written (bpf/consts.h PLAN_BUFFERS). */
export const PLAN_BUFFERS = 2;
/**
 * The most slots the pool every service's plans are cut from may have (bpf/consts.h SLOT_POOL_MAX):
 * 64 Mi slots, 256 MiB. The pool is sized from the config's plans at load time; this caps it.
 */
export const SLOT_POOL_MAX = 1 << 26;
