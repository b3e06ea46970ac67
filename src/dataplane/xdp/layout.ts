/**
 * The contract between the BPF program and TypeScript, declared once: every struct of bpf/structs.h,
 * every shared enum of bpf/consts.h (`enum flb_*`), every map of bpf/maps.h with its key and value
 * types, and the keys of the per-service arrays. test/xdp/layout.test.ts checks all of it against the
 * compiled object's BTF (Cilium's alignchecker idea, extended to enums, byte order and map types): a
 * struct, field, enumerator or map on one side without the other, or any value, offset, size or type
 * that differs, fails `make test` instead of corrupting maps.
 */

import { MAX_BACKENDS, MAX_SERVICES, PLAN_BUFFERS, SLOT_POOL_MAX } from "../../config/limits.ts";
import type { PlanKind } from "../../control/algorithms/types.ts";
import { XdpError } from "./errors.ts";
import { Struct, be16, be32, bytes, cEnum, u16, u32, u64, u8, type AnyCType } from "./struct.ts";

const mac = bytes(6);

// ---- structs (bpf/structs.h) ----

export const FLOW_KEY = new Struct("flow_key", { saddr: be32, daddr: be32, sport: be16, dport: be16 });

export const NEXT_HOP = new Struct("next_hop", { dmac: mac, smac: mac, ifindex: u32, at: u32 });

export const TCP_DIR = new Struct("tcp_dir", { end: u32, ack: u32, edge: u32, wscale: u8, pad: bytes(3) });

export const FLOW_FWD = new Struct("flow_fwd", {
  id: u64,
  be_addr: be32,
  be_port: be16,
  snat_port: be16,
  svc: u16,
  backend: u16,
  state: u32,
  gen: u32,
  last_seen: u32,
  ts_off: u32,
  client_mac: mac,
  pad: u16,
  c2b: TCP_DIR,
  b2c: TCP_DIR,
  to_backend: NEXT_HOP,
  to_client: NEXT_HOP,
  snat_addr: be32,
});

export const FLOW_REV = new Struct("flow_rev", { fwd: FLOW_KEY, since: u32, id: u64 });

export const SVC_KEY = new Struct("svc_key", { addr: be32, port: be16, pad: u16 });

export const SVC_VAL = new Struct("svc_val", { index: u32, flags: u32 });

export const PLAN_HDR = new Struct("plan_hdr", { kind: u32, slot_base: u32, slot_count: u32, member_count: u32, cursor: u32, pad: u32 });

export const PLAN_MEMBER = new Struct("plan_member", { id: u32, weight: u32 });

export const BACKEND = new Struct("backend", { addr: be32, port: be16, flags: u16, gen: u32 });

export const COUNTERS = new Struct("flb_counters", {
  packets_in: u64,
  bytes_in: u64,
  packets_out: u64,
  bytes_out: u64,
  flows_new: u64,
  flows_closed: u64,
});

export const CONFIG = new Struct("flb_config", {
  snat_first: u16,
  snat_last: u16,
  flags: u32,
  smac: mac,
  pad: u16,
  prev_first: u16,
  prev_last: u16,
  snat_addr: be32,
});

export const CPU_STATE = new Struct("cpu_state", { port_cursor: u32, pad: u32, next_id: u64 });

export const NBR_MAC = new Struct("nbr_mac", { mac, pad: u16 });

/** The load-time sizes in .rodata (maps.h flb_sizes), written by the loader at RODATA_SIZES_OFFSET. */
export const SIZES = new Struct("flb_sizes", { backends: u32, pad: u32 });
/** Where flb_sizes is in the object's .rodata: the only variable there (layout.test.ts checks). */
export const RODATA_SIZES_OFFSET = 0;

/** Every struct of bpf/structs.h, for the layout test (it also fails on a struct BTF has and this lacks). */
export const STRUCTS = [FLOW_KEY, NEXT_HOP, TCP_DIR, FLOW_FWD, FLOW_REV, SVC_KEY, SVC_VAL, PLAN_HDR, PLAN_MEMBER, BACKEND, COUNTERS, CONFIG, CPU_STATE, NBR_MAC, SIZES];

// ---- enums (bpf/consts.h enum flb_*) ----

// The largest map sizes are part of the config contract (a config that asks for more is refused when
// it is loaded), so src/config/limits.ts defines them; enum flb_limit must hold the same values.
export { FLOW_TABLE_SIZES, MAX_BACKENDS, MAX_SERVICES, PLAN_BUFFERS, SLOT_POOL_MAX } from "../../config/limits.ts";
export const LIMITS = { MAX_SERVICES, MAX_BACKENDS, PLAN_BUFFERS, SLOT_POOL_MAX } as const;

/** PlanKind → enum flb_plan_kind (PLAN_*). */
export const PLAN_KIND: Readonly<Record<PlanKind, number>> = { sequence: 0, random: 1, hash: 2, least: 3, two_choices: 4 };

/** enum flb_layout: the version of the flow tables' layout (a process adopting pinned maps compares it). */
export const LAYOUT = { FLB_LAYOUT_VERSION: 3 } as const;
/** enum flb_timing: limits the sweeper shares with the program. */
export const TIMING = { SYN_TIMEOUT_S: 5, SNAT_FULL_BACKOFF_MS: 100, REV_CLAIM_GRACE_S: 1 } as const;

/** enum flb_flow_state: struct flow_fwd.state bits (FLOW_*). */
export const FLOW_STATE = {
  FIN_C2B: 1 << 0,
  FIN_B2C: 1 << 1,
  FIN_C2B_ACKED: 1 << 2,
  FIN_B2C_ACKED: 1 << 3,
  CLOSED: 1 << 4,
  TS_MOD: 1 << 5,
  SYNACK: 1 << 6,
  PROMOTING: 1 << 7,
  DEAD: 1 << 8,
  COUNTED: 1 << 9,
} as const;
/** enum flb_cfg_flag: struct flb_config.flags bits (CFG_*). */
export const CFG_FLAGS = { STATIC_NEIGH: 1, DRAINING: 2, NATIVE: 4 } as const;
/** enum flb_svc_flag: struct svc_val.flags bits (SVC_*). */
export const SVC_FLAGS = { RETIRED: 1 } as const;
/** enum flb_backend_flag: struct backend.flags bits (BACKEND_*). */
export const BACKEND_FLAGS = { PRESENT: 1, ELIGIBLE: 2 } as const;

/**
 * enum flb_reason in order (REASON_*): the index in a row of flb_reasons, and what it is. Every packet
 * is counted under exactly one outcome (pass: to the kernel, drop, tx: transmitted); events are
 * counted in addition.
 */
export const REASON_KINDS = {
  not_ipv4: "pass",
  truncated: "pass",
  ip_options: "pass",
  fragment: "pass",
  not_tcp: "pass",
  not_ours: "pass",
  no_flow: "pass",
  no_flow_backend: "pass",
  pair_mismatch: "pass",
  icmp_no_flow: "pass",
  tx_c2b: "tx",
  tx_b2c: "tx",
  icmp_c2b: "tx",
  icmp_b2c: "tx",
  draining: "tx",
  no_backend: "tx",
  fib_fail: "tx",
  no_neigh: "drop",
  snat_exhausted: "drop",
  rst_out_of_window: "drop",
  bad_handshake: "drop",
  syn_busy: "drop",
  neigh_learned: "event",
  neigh_table: "event",
  syn_race: "event",
  rst_in_window: "event",
  established: "event",
  port_reclaimed: "event",
  syn_moved: "event",
  stale_reset: "tx",
} as const;
export type Reason = keyof typeof REASON_KINDS;
export type ReasonKind = (typeof REASON_KINDS)[Reason];
export const REASONS = Object.keys(REASON_KINDS) as Reason[];
/** flb_reasons: rows of REASONS.length counters, row 0 for packets of no known service, row s + 1 for service s. */
export const reasonKey = (svc: number | undefined, reason: number): number => (svc === undefined ? 0 : svc + 1) * REASONS.length + reason;

/** Every shared enum, for the layout test (it also fails on an `enum flb_*` BTF has and this lacks). */
export const ENUMS = [
  cEnum("flb_layout", "", LAYOUT),
  cEnum("flb_timing", "", TIMING),
  cEnum("flb_limit", "", LIMITS),
  cEnum("flb_plan_kind", "PLAN_", PLAN_KIND),
  cEnum("flb_flow_state", "FLOW_", FLOW_STATE),
  cEnum("flb_cfg_flag", "CFG_", CFG_FLAGS),
  cEnum("flb_svc_flag", "SVC_", SVC_FLAGS),
  cEnum("flb_backend_flag", "BACKEND_", BACKEND_FLAGS),
  cEnum("flb_reason", "REASON_", { ...Object.fromEntries(REASONS.map((r, i) => [r, i])), max: REASONS.length }),
];

// ---- maps (bpf/maps.h) ----

export interface MapSpec<K extends AnyCType = AnyCType, V extends AnyCType = AnyCType, P extends boolean = boolean> {
  /** ≤ 15 characters (the kernel truncates longer names). */
  readonly name: string;
  readonly key: K;
  readonly value: V;
  /** A per-CPU map: a lookup returns one value per possible CPU, each padded to 8 bytes. */
  readonly perCpu: P;
}

const map = <K extends AnyCType, V extends AnyCType>(name: string, key: K, value: V): MapSpec<K, V, false> => ({ name, key, value, perCpu: false });
const perCpu = <K extends AnyCType, V extends AnyCType>(name: string, key: K, value: V): MapSpec<K, V, true> => ({ name, key, value, perCpu: true });

/** Every map of bpf/maps.h: name, key and value types, per-CPU or not (all checked against BTF). */
export const MAPS = {
  config: map("flb_config", u32, CONFIG),
  svc: map("flb_svc", SVC_KEY, SVC_VAL),
  svcAct: map("flb_svc_act", u32, u32),
  plans: map("flb_plans", u32, PLAN_HDR),
  members: map("flb_members", u32, PLAN_MEMBER),
  slots: map("flb_slots", u32, u32),
  backends: map("flb_backends", u32, BACKEND),
  beActive: map("flb_be_active", u32, u64),
  beAdj: map("flb_be_adj", u32, u64),
  beStats: perCpu("flb_be_stats", u32, COUNTERS),
  svcStats: perCpu("flb_svc_stats", u32, COUNTERS),
  reasons: perCpu("flb_reasons", u32, u64),
  fwd: map("flb_fwd", FLOW_KEY, FLOW_FWD),
  rev: map("flb_rev", FLOW_KEY, FLOW_REV),
  synFwd: map("flb_syn_fwd", FLOW_KEY, FLOW_FWD),
  synRev: map("flb_syn_rev", FLOW_KEY, FLOW_REV),
  cpu: perCpu("flb_cpu", u32, CPU_STATE),
  snatFull: map("flb_snat_full", u32, u64),
  nbr: map("flb_nbr", be32, NBR_MAC),
} as const;
export type Maps = typeof MAPS;
export type MapKey = keyof Maps;

// The keys of the per-service arrays: bpf/maps.h backend_key, plan_key and member_key are their C twins.
// `backends` is the stride the maps were sized with (flb_sizes.backends, capacity.ts).

/** The keys of one loaded program, whose per-backend arrays have `backends` ids per service. */
export class Keys {
  constructor(readonly backends: number) {}
  /** flb_backends, flb_be_active, flb_be_adj, flb_be_stats, flb_snat_full: backend `id` of service `svc`. */
  backend(svc: number, id: number): number {
    return svc * this.backends + id;
  }
  /** flb_members: member `i` of plan table `plan` (a planKey). */
  member(plan: number, i: number): number {
    return plan * this.backends + i;
  }
}
/** flb_plans: plan table `buffer` (0 … PLAN_BUFFERS-1) of service `svc`. */
export const planKey = (svc: number, buffer: number): number => svc * PLAN_BUFFERS + buffer;

/** The XDP program's function name in bpf/featherlb.bpf.c. */
export const PROGRAM_NAME = "featherlb";

// ---- address helpers ----

/** IPv4 text ↔ the host-order u32 the maps store big-endian: src/config/address.ts owns address parsing. */
export { ipv4ToU32, u32ToIpv4 } from "../../config/address.ts";
