/**
 * How big the XDP program's maps are: chosen at load time from the config (the loader sets each map's
 * max_entries and the per-backend stride flb_sizes.backends before load), instead of compile-time
 * constants. A config of 40 services × 250 backends gets maps for that, with room to grow; a config of
 * one service and three backends does not pay for 1,024 × 4,096.
 *
 * Room to grow: a reload may add services, backends (and keep removed ones while they drain) or larger
 * plans, and array maps cannot be resized once loaded. So every dimension is the config's need × 1.5
 * (HEADROOM), at least a small minimum, at most the limit of enum flb_limit (src/config/limits.ts,
 * which `check` enforces). A reload that needs more than the maps were sized for is refused with a
 * sentence saying a restart resizes them (`overflow`); the old config keeps serving.
 */
import { MAX_BACKENDS, MAX_SERVICES, PLAN_BUFFERS, SLOT_POOL_MAX } from "../../config/limits.ts";
import { DEFAULT_MAGLEV_TABLE_SIZE } from "../../config/defaults.ts";
import type { ServiceConfig } from "../../config/types.ts";
import { planSlotsBound } from "../../config/xdp.ts";
import { REASONS, type MapKey } from "./layout.ts";

export interface Capacity {
  /** Service indexes 0 … services − 1. */
  services: number;
  /** Backend ids per service 0 … backends − 1: the stride of the per-backend arrays (flb_sizes.backends). */
  backends: number;
  /** Slots in the plan pool (flb_slots). */
  slots: number;
  /** Entries of featherlb's neighbour table (flb_nbr: one per backend address). */
  neighbours: number;
}

export const HEADROOM = 1.5;
/** The least of each dimension: a small config can still grow by a reload without a restart. */
export const MIN_CAPACITY: Readonly<Capacity> = {
  services: 16,
  backends: 64,
  // Two services' default Maglev tables, double-buffered: 1 MiB.
  slots: 2 * PLAN_BUFFERS * DEFAULT_MAGLEV_TABLE_SIZE,
  neighbours: 64,
};

const grow = (need: number, min: number, max: number) => Math.min(max, Math.max(min, Math.ceil(need * HEADROOM)));

/** The plan slots `services` may need at once: every service's largest plan, in each buffer. */
export function slotsNeeded(services: readonly ServiceConfig[]): number {
  return services.reduce(
    (sum, s) => sum + PLAN_BUFFERS * planSlotsBound(s.algorithm, s.backends.map((b) => b.weight), s.maglev_table_size),
    0,
  );
}

/**
 * The map sizes for `services` — the config's services that run in xdp — with HEADROOM; within the
 * limits a loaded config keeps (config/xdp.ts).
 */
export function capacityFor(services: readonly ServiceConfig[]): Capacity {
  const largest = services.reduce((n, s) => Math.max(n, s.backends.length), 0);
  const total = services.reduce((n, s) => n + s.backends.length, 0);
  return {
    services: grow(services.length, MIN_CAPACITY.services, MAX_SERVICES),
    backends: grow(largest, MIN_CAPACITY.backends, MAX_BACKENDS),
    slots: grow(slotsNeeded(services), MIN_CAPACITY.slots, SLOT_POOL_MAX),
    neighbours: grow(total, MIN_CAPACITY.neighbours, MAX_SERVICES * MAX_BACKENDS),
  };
}

/**
 * Why maps of `capacity` cannot hold `config` (a reload), as a sentence, or undefined when they can.
 * `backendsAfter(i)`: the ids services[i] needs, draining backends included (Service.backendsAfter).
 */
export function overflow(capacity: Capacity, services: readonly ServiceConfig[], backendsAfter: (i: number) => number): string | undefined {
  const restart = "restart featherlb to size them for this config (flows in progress are then reset), or reload a smaller config";
  const n = services.length;
  if (n > capacity.services) {
    return `the XDP maps were sized at start for ${capacity.services} services and this config has ${n}; ${restart}`;
  }
  for (let i = 0; i < n; i++) {
    const need = backendsAfter(i);
    if (need > capacity.backends) {
      return `the XDP maps were sized at start for ${capacity.backends} backends per service and service ${services[i]!.name} would hold ${need}, removed ones that still drain included; ${restart}`;
    }
  }
  const slots = slotsNeeded(services);
  if (slots > capacity.slots) {
    return `the XDP plan tables were sized at start for ${capacity.slots} slots and this config's plans may need ${slots}; ${restart}`;
  }
  const total = services.reduce((sum, s) => sum + s.backends.length, 0);
  if (total > capacity.neighbours) {
    return `the XDP neighbour table was sized at start for ${capacity.neighbours} backend addresses and this config has ${total} backends; ${restart}`;
  }
  return undefined;
}

/**
 * Entries per handshake table (flb_syn_fwd, flb_syn_rev): a quarter of the flow table, at least 1024.
 * Handshakes last a round trip, so few are open at once; a SYN flood churns this table only, and an
 * entry then lives about size / SYN rate (bpf/README.md "Flows").
 */
export const handshakeTableSize = (flowTableSize: number): number => Math.max(1024, flowTableSize / 4);

/** max_entries of every map the loader sizes (the others keep bpf/maps.h's: one entry). */
export function mapSizes(c: Capacity, flowTableSize: number): Partial<Record<MapKey, number>> {
  const perBackend = c.services * c.backends;
  return {
    svc: c.services,
    svcAct: c.services,
    svcStats: c.services,
    plans: c.services * PLAN_BUFFERS,
    members: c.services * PLAN_BUFFERS * c.backends,
    slots: c.slots,
    backends: perBackend,
    beActive: perBackend,
    beAdj: perBackend,
    beStats: perBackend,
    snatFull: perBackend,
    // A row per service and one for packets of no known service (maps.h reason_key).
    reasons: (c.services + 1) * REASONS.length,
    nbr: c.neighbours,
    fwd: flowTableSize,
    rev: flowTableSize,
    synFwd: handshakeTableSize(flowTableSize),
    synRev: handshakeTableSize(flowTableSize),
  };
}
