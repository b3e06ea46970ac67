/**
 * The TypeScript side of every struct and constant shared with the BPF program (bpf/structs.h,
 * bpf/consts.h). Each struct is declared ONCE here as an ordered field list; offsets follow C's
 * natural-alignment rules and test/xdp/layout.test.ts checks size and every offset against the
 * compiled object's BTF (Cilium's alignchecker idea), so a drift fails CI instead of corrupting maps.
 */

import { MAX_BACKENDS } from "../../config/limits.ts";

/** `hop` is a nested struct next_hop (opaque bytes here: only the BPF program reads it). */
export type FieldType = "u8" | "u16" | "u32" | "u64" | "be16" | "be32" | "mac" | "hop";

const SIZE: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, be16: 2, be32: 4, mac: 6, hop: 20 };
const ALIGN: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, be16: 2, be32: 4, mac: 1, hop: 4 };

export interface Field {
  readonly name: string;
  readonly type: FieldType;
  readonly offset: number;
  readonly size: number;
}

/** Field values: numbers (IPv4 addresses as host-order u32, ports as plain numbers), bigint for u64, bytes for mac. */
export type Value = number | bigint | Uint8Array;

export class Struct<F extends string> {
  readonly size: number;
  readonly fields: Readonly<Record<F, Field>>;
  readonly order: readonly Field[];

  constructor(
    /** The C struct's name (the BTF type the layout test looks up). */
    readonly cName: string,
    spec: readonly (readonly [F, FieldType])[],
  ) {
    let offset = 0;
    let align = 1;
    const fields = {} as Record<F, Field>;
    const order: Field[] = [];
    for (const [name, type] of spec) {
      const a = ALIGN[type];
      offset = Math.ceil(offset / a) * a;
      const field = { name, type, offset, size: SIZE[type] };
      fields[name] = field;
      order.push(field);
      offset += SIZE[type];
      align = Math.max(align, a);
    }
    this.size = Math.ceil(offset / align) * align;
    this.fields = fields;
    this.order = order;
  }

  /** Encode into `out` (default: a fresh zeroed buffer); unspecified fields stay 0. */
  encode(values: Partial<Record<F, Value>>, out = new Uint8Array(this.size), at = 0): Uint8Array {
    const view = new DataView(out.buffer, out.byteOffset + at, this.size);
    for (const key of Object.keys(values) as F[]) {
      const f = this.fields[key];
      const v = values[key];
      if (!f || v === undefined) continue;
      writeField(view, f, v);
    }
    return out;
  }

  decode(bytes: Uint8Array, at = 0): Record<F, number | bigint | Uint8Array> {
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, this.size);
    const out = {} as Record<F, number | bigint | Uint8Array>;
    for (const f of this.order) out[f.name as F] = readField(view, f);
    return out;
  }

  /** Read one numeric field (u64 as a Number: counters stay far below 2^53). */
  num(bytes: Uint8Array, name: F, at = 0): number {
    const v = readField(new DataView(bytes.buffer, bytes.byteOffset + at, this.size), this.fields[name]);
    return typeof v === "bigint" ? Number(BigInt.asIntN(64, v)) : (v as number);
  }
}

function writeField(view: DataView, f: Field, v: Value): void {
  switch (f.type) {
    case "u8":
      return view.setUint8(f.offset, Number(v));
    case "u16":
      return view.setUint16(f.offset, Number(v), true);
    case "u32":
      return view.setUint32(f.offset, Number(v) >>> 0, true);
    case "u64":
      return view.setBigUint64(f.offset, BigInt.asUintN(64, BigInt(v as number | bigint)), true);
    case "be16":
      return view.setUint16(f.offset, Number(v), false);
    case "be32":
      return view.setUint32(f.offset, Number(v) >>> 0, false);
    case "mac":
    case "hop":
      new Uint8Array(view.buffer, view.byteOffset + f.offset, f.size).set((v as Uint8Array).subarray(0, f.size));
  }
}

function readField(view: DataView, f: Field): number | bigint | Uint8Array {
  switch (f.type) {
    case "u8":
      return view.getUint8(f.offset);
    case "u16":
      return view.getUint16(f.offset, true);
    case "u32":
      return view.getUint32(f.offset, true);
    case "u64":
      return view.getBigUint64(f.offset, true);
    case "be16":
      return view.getUint16(f.offset, false);
    case "be32":
      return view.getUint32(f.offset, false);
    case "mac":
    case "hop":
      return new Uint8Array(view.buffer.slice(view.byteOffset + f.offset, view.byteOffset + f.offset + f.size));
  }
}

// ---- structs (bpf/structs.h) ----

export const FLOW_KEY = new Struct("flow_key", [
  ["saddr", "be32"],
  ["daddr", "be32"],
  ["sport", "be16"],
  ["dport", "be16"],
]);

export const FLOW_FWD = new Struct("flow_fwd", [
  ["be_addr", "be32"],
  ["be_port", "be16"],
  ["snat_port", "be16"],
  ["svc", "u16"],
  ["backend", "u16"],
  ["state", "u32"],
  ["client_mac", "mac"],
  ["pad", "u16"],
  ["last_seen", "u32"],
  ["ts_off", "u32"],
  ["to_backend", "hop"],
  ["to_client", "hop"],
]);

export const NEXT_HOP = new Struct("next_hop", [
  ["dmac", "mac"],
  ["smac", "mac"],
  ["ifindex", "u32"],
  ["at", "u32"],
]);

export const SVC_KEY = new Struct("svc_key", [
  ["addr", "be32"],
  ["port", "be16"],
  ["pad", "u16"],
]);

export const SVC_VAL = new Struct("svc_val", [
  ["index", "u32"],
  ["flags", "u32"],
]);

export const PLAN_HDR = new Struct("plan_hdr", [
  ["kind", "u32"],
  ["slot_base", "u32"],
  ["slot_count", "u32"],
  ["member_count", "u32"],
  ["cursor", "u32"],
  ["pad", "u32"],
]);

export const PLAN_MEMBER = new Struct("plan_member", [
  ["id", "u32"],
  ["weight", "u32"],
]);

export const BACKEND = new Struct("backend", [
  ["addr", "be32"],
  ["port", "be16"],
  ["flags", "u16"],
]);

export const COUNTERS = new Struct("flb_counters", [
  ["packets_in", "u64"],
  ["bytes_in", "u64"],
  ["packets_out", "u64"],
  ["bytes_out", "u64"],
  ["flows_new", "u64"],
  ["flows_closed", "u64"],
  ["no_backend", "u64"],
  ["snat_fail", "u64"],
]);

export const CONFIG = new Struct("flb_config", [
  ["snat_first", "u16"],
  ["snat_last", "u16"],
  ["flags", "u32"],
  ["smac", "mac"],
  ["pad", "u16"],
]);

export const NBR_MAC = new Struct("nbr_mac", [
  ["mac", "mac"],
  ["pad", "u16"],
]);

/** Every shared struct, for the layout test. */
export const STRUCTS = [FLOW_KEY, FLOW_FWD, NEXT_HOP, SVC_KEY, SVC_VAL, PLAN_HDR, PLAN_MEMBER, BACKEND, COUNTERS, CONFIG, NBR_MAC];

// ---- constants (bpf/consts.h) ----

// The map sizes are part of the config contract (a config that asks for more is refused when it is
// loaded), so src/config/limits.ts defines them; they are re-exported here with the rest of the C mirror.
export { MAX_SERVICES, PLAN_BUFFERS, SLOT_POOL_SIZE } from "../../config/limits.ts";
/** bpf/consts.h MAX_BACKENDS: the config's per-service backend bound (the maps have a slot per id). */
export const MAX_BACKENDS_BPF = MAX_BACKENDS;

/** PlanKind → PLAN_* (bpf/consts.h). */
export const PLAN_KIND = { sequence: 0, random: 1, hash: 2, least: 3, two_choices: 4 } as const;

export const FLOW_STATE = { FIN_C2B: 1, FIN_B2C: 2, LAST_FIN_B2C: 4, CLOSED: 8, TS_MOD: 16 } as const;
export const CFG_FLAGS = { STATIC_NEIGH: 1, DRAINING: 2 } as const;
export const BACKEND_PRESENT = 1;

/** REASON_* in bpf/consts.h order: index in the flb_reasons map. */
export const REASONS = [
  "not_ipv4",
  "truncated",
  "ip_options",
  "fragment",
  "not_tcp",
  "not_ours",
  "no_flow",
  "no_backend",
  "no_neigh",
  "fib_fail",
  "snat_exhausted",
  "draining",
  "tx_c2b",
  "tx_b2c",
  "neigh_learned",
  "neigh_table",
  "syn_race",
] as const;
export type Reason = (typeof REASONS)[number];

/** Map names (bpf/maps.h), each ≤ 15 characters. */
export const MAPS = {
  config: "flb_config",
  svc: "flb_svc",
  svcAct: "flb_svc_act",
  plans: "flb_plans",
  members: "flb_members",
  slots: "flb_slots",
  backends: "flb_backends",
  beActive: "flb_be_active",
  beAdj: "flb_be_adj",
  beStats: "flb_be_stats",
  svcStats: "flb_svc_stats",
  reasons: "flb_reasons",
  fwd: "flb_fwd",
  rev: "flb_rev",
  portCur: "flb_port_cur",
  nbr: "flb_nbr",
} as const;
export type MapKey = keyof typeof MAPS;

export const PROGRAM_NAME = "featherlb";

/** Flow-table capacities the config allows (powers of two 1024 … 1048576): src/config/limits.ts owns them. */
export { FLOW_TABLE_SIZES } from "../../config/limits.ts";

// ---- address helpers ----

/** IPv4 text ↔ the host-order u32 the maps store big-endian: src/config/address.ts owns address parsing. */
export { ipv4ToU32, u32ToIpv4 } from "../../config/address.ts";
