/**
 * The loaded BPF object and typed writers/readers for its maps, as the data plane (plane.ts) uses them.
 * Nothing here knows about Services or Config. loader.ts creates it; test/xdp/program-test.ts adds what
 * only the tests need (running packets, reading flows). Failures are XdpError (errors.ts).
 */
import { readFileSync } from "node:fs";
import type { Plan } from "../../control/algorithms/types.ts";
import type { Capacity } from "./capacity.ts";
import { XdpError } from "./errors.ts";
import {
  BACKEND_FLAGS,
  COUNTERS,
  FLOW_KEY,
  FLOW_STATE,
  Keys,
  MAPS,
  PLAN_BUFFERS,
  PLAN_HDR,
  PLAN_KIND,
  PLAN_MEMBER,
  PROGRAM_NAME,
  REASONS,
  planKey,
  type MapSpec,
  type Maps,
  type Reason,
} from "./layout.ts";
import { BpfObject, mapMmap, monotonicSeconds, possibleCpus, type MappedMap } from "./libbpf.ts";
import { BpfMap, PerCpuMap } from "./map.ts";
import { SlotPool } from "./pool.ts";
import type { FieldsOf } from "./struct.ts";

export interface RuntimeConfig {
  snatFirst: number;
  snatLast: number;
  flags: number;
  /** The attached interface's MAC: the source MAC of next hops taken from the neighbour table (flb_nbr). */
  smac?: Uint8Array;
}

export type CounterSums = Record<keyof FieldsOf<typeof COUNTERS>, number>;

/** A typed handle per map of layout.ts MAPS: per-CPU maps read one value per CPU. */
export type MapHandles = {
  readonly [M in keyof Maps]: Maps[M] extends MapSpec<infer K, infer V, true> ? PerCpuMap<K, V> : Maps[M] extends MapSpec<infer K, infer V, false> ? BpfMap<K, V> : never;
};

/** Entries per batch lookup of a backendSnapshot. */
const SNAPSHOT_CHUNK = 2048;

/** A u64 map value as a Number: counters stay far below 2^53; signed, so a gauge below zero reads negative. */
const toNumber = (v: bigint) => Number(BigInt.asIntN(64, v));

interface PlanState {
  /** The live buffer (0/1), as written to flb_svc_act. */
  active: number;
  /** Slot range of each buffer. */
  ranges: ({ start: number; len: number } | undefined)[];
  /** The plan each buffer holds, as far as we know (undefined: unknown, write it whole). */
  held: (Plan | undefined)[];
}

/** One map's size as the kernel accounts it (/proc/self/fdinfo of its fd). */
export interface MapMemory {
  name: string;
  maxEntries: number;
  /** Bytes charged for the map (fdinfo "memlock"; since Linux 6.4 the map's real footprint). */
  bytes: number;
}

export class XdpProgram {
  readonly progFd: number;
  readonly cpus = possibleCpus();
  readonly maps: MapHandles;
  /** The keys of the per-service arrays, with the stride these maps were sized with. */
  readonly keys: Keys;
  private readonly pool: SlotPool;
  private readonly plans = new Map<number, PlanState>();
  /**
   * flb_slots, mapped (BPF_F_MMAPABLE): plans are written here directly, no syscall per slot. An array
   * map keeps each value in round_up(value_size, 8) bytes, so slot i is u32 number 2·i of the mapping.
   */
  private readonly slotMap: MappedMap;
  private readonly slots: Uint32Array;

  /**
   * `obj` is loaded (loader.ts loadProgram) with its maps sized for `capacity`; the program owns it from
   * here and closes it.
   */
  constructor(
    private readonly obj: BpfObject,
    readonly capacity: Capacity,
  ) {
    this.keys = new Keys(capacity.backends);
    this.pool = new SlotPool(capacity.slots);
    this.progFd = obj.progFd(PROGRAM_NAME);
    const maps: Record<string, BpfMap<never, never> | PerCpuMap<never, never>> = {};
    for (const [key, spec] of Object.entries(MAPS) as [string, MapSpec<never, never>][]) {
      const fd = obj.mapFd(spec.name);
      maps[key] = spec.perCpu ? new PerCpuMap(spec, fd, this.cpus) : new BpfMap(spec, fd);
    }
    this.maps = maps as unknown as MapHandles;
    this.slotMap = mapMmap(this.maps.slots, capacity.slots * 8);
    this.slots = new Uint32Array(this.slotMap.bytes.buffer, 0, capacity.slots * 2);
  }

  close(): void {
    this.slotMap.close();
    this.obj.close();
  }

  // ---- configuration ----

  writeConfig(c: RuntimeConfig): void {
    this.maps.config.update(0, { snat_first: c.snatFirst, snat_last: c.snatLast, flags: c.flags, smac: c.smac ?? new Uint8Array(6) });
  }

  readConfig(): RuntimeConfig {
    const d = this.maps.config.lookup(0);
    if (!d) throw new XdpError("bpf", "flb_config has no entry 0", 2);
    return { snatFirst: d.snat_first, snatLast: d.snat_last, flags: d.flags, smac: d.smac };
  }

  /** featherlb's neighbour table (flb_nbr): the next-hop MAC toward an IPv4 address (neigh.h resolve_l2). */
  setNeighbour(ip: number, mac: Uint8Array): void {
    this.maps.nbr.update(ip, { mac });
  }

  /** Remove a next hop; one that is absent already is fine. */
  deleteNeighbour(ip: number): void {
    this.maps.nbr.delete(ip);
  }

  // ---- services, backends, plans ----

  setService(index: number, addr: number, port: number): void {
    const max = this.capacity.services;
    if (index < 0 || index >= max) throw new XdpError("invalid_argument", `service index ${index} (the maps hold ${max})`);
    this.maps.svc.update({ addr, port }, { index });
  }

  /** Stop matching a listen address; one that is absent already is fine. */
  deleteService(addr: number, port: number): void {
    this.maps.svc.delete({ addr, port });
  }

  setBackend(svc: number, id: number, addr: number, port: number): void {
    this.maps.backends.update(this.backendKey(svc, id), { addr, port, flags: BACKEND_FLAGS.PRESENT });
  }

  clearBackend(svc: number, id: number): void {
    this.maps.backends.update(this.backendKey(svc, id), {});
  }

  /** The key of backend `id` of service `svc` in the per-backend arrays; throws for an id the maps cannot hold. */
  backendKey(svc: number, id: number): number {
    if (id < 0 || id >= this.capacity.backends) throw new XdpError("invalid_argument", `backend id ${id} (the maps hold ${this.capacity.backends} per service)`);
    return this.keys.backend(svc, id);
  }

  /** Zero a backend slot's counters and active gauge (a new backend took over the id). */
  resetBackendCounters(svc: number, id: number): void {
    const k = this.backendKey(svc, id);
    this.maps.beStats.zero(k);
    this.maps.beActive.update(k, 0n);
    this.maps.beAdj.update(k, 0n);
  }

  resetServiceCounters(svc: number): void {
    this.maps.svcStats.zero(svc);
  }

  /**
   * Publish a plan for service `svc` without disturbing readers: write slots, members and header into
   * the inactive buffer, then flip flb_svc_act[svc] (one 4-byte store). The inactive buffer was last live
   * one flip ago, so no program run can still be reading it (runs take microseconds; flips happen on
   * health or config events). Throws XdpError "plan_too_large" when the slot pool is full.
   *
   * Only what differs from what the buffer already holds is written (Katran writes only the changed
   * ring positions): a Maglev table that lost one of N backends differs in about 1/N of its slots, so a
   * health flip writes a few hundred slots of a 65,537-slot table, not all of them. The same plan
   * object as the live one writes nothing. Returns the number of slots written.
   */
  writePlan(svc: number, plan: Plan): number {
    const state = this.plans.get(svc) ?? { active: 0, ranges: [undefined, undefined], held: [undefined, undefined] };
    this.plans.set(svc, state);
    if (state.held[state.active] === plan) return 0;
    const buf = 1 - state.active;
    const old = state.ranges[buf];
    const n = plan.slots.length;
    // Whatever goes wrong from here leaves this buffer's contents unknown: written whole next time.
    const before = old?.len === n ? state.held[buf] : undefined;
    state.held[buf] = undefined;

    let start = old?.start ?? 0;
    if (old?.len !== n) {
      if (old) this.pool.release(old.start, old.len);
      state.ranges[buf] = undefined;
      start = n ? this.pool.alloc(n) : 0;
      if (start < 0) throw new XdpError("plan_too_large", `no room for a ${n}-slot plan in the ${this.capacity.slots}-slot pool`);
      if (n) state.ranges[buf] = { start, len: n };
    }
    const planIdx = planKey(svc, buf);
    const written = this.writeSlots(start, plan.slots, before?.slots);

    const m = plan.members.length;
    if (m > this.capacity.backends) throw new XdpError("invalid_argument", `plan has ${m} members (the maps hold ${this.capacity.backends})`);
    const sameMembers = before !== undefined && equal(before.members, plan.members) && equal(before.weights, plan.weights);
    if (m && !sameMembers) {
      const keys = new Uint32Array(m);
      const values = new Uint8Array(m * PLAN_MEMBER.size);
      for (let i = 0; i < m; i++) {
        keys[i] = this.keys.member(planIdx, i);
        PLAN_MEMBER.encode({ id: plan.members[i]!, weight: plan.weights[i]! }, values, i * PLAN_MEMBER.size);
      }
      this.maps.members.updateBatch(keys, values);
    }
    this.maps.plans.update(planIdx, { kind: PLAN_KIND[plan.kind], slot_base: start, slot_count: n, member_count: m, cursor: 0 });
    this.maps.svcAct.update(svc, buf);
    state.held[buf] = plan;
    state.active = buf;
    return written;
  }

  /**
   * Write `slots` at pool index `start` of the mapped flb_slots, only where they differ from `before`
   * (what is there now, if known). The program reads this buffer only once flb_svc_act points at it,
   * and that flip is a map update (a syscall: every store here is visible to the kernel before it).
   */
  private writeSlots(start: number, slots: Uint32Array, before: Uint32Array | undefined): number {
    const n = slots.length;
    const out = this.slots;
    let count = 0;
    for (let i = 0, at = 2 * start; i < n; i++, at += 2) {
      if (before && slots[i] === before[i]) continue;
      out[at] = slots[i]!;
      count++;
    }
    return count;
  }

  /** Forget a removed service's plans (its index may be reused). */
  dropPlans(svc: number): void {
    const state = this.plans.get(svc);
    if (!state) return;
    for (const r of state.ranges) if (r) this.pool.release(r.start, r.len);
    this.plans.delete(svc);
    for (let b = 0; b < PLAN_BUFFERS; b++) this.maps.plans.update(planKey(svc, b), {});
  }

  // ---- reading ----

  /** Sum one per-CPU flb_counters entry over all CPUs. */
  private sumCounters(map: MapHandles["svcStats"], index: number): CounterSums {
    const sums = {} as CounterSums;
    for (const f of COUNTERS.fields) sums[f.name as keyof CounterSums] = 0;
    for (const cpu of map.lookup(index) ?? []) {
      for (const [name, v] of Object.entries(cpu)) sums[name as keyof CounterSums] += toNumber(v);
    }
    return sums;
  }

  serviceCounters(svc: number): CounterSums {
    return this.sumCounters(this.maps.svcStats, svc);
  }

  backendCounters(svc: number, id: number): CounterSums {
    return this.sumCounters(this.maps.beStats, this.backendKey(svc, id));
  }

  /** The active flows least-connection picks see: the atomic gauge minus the sweeper's correction. */
  backendActive(svc: number, id: number): number {
    const k = this.backendKey(svc, id);
    return Math.max(0, toNumber(this.maps.beActive.lookup(k) ?? 0n) - toNumber(this.maps.beAdj.lookup(k) ?? 0n));
  }

  /**
   * Every backend slot's counters, gauge and correction, read with batch lookups: /metrics and the
   * sweeper need them all, and one lookup per backend was 30,000 syscalls for 10,000 backends. The
   * reads go SNAPSHOT_CHUNK entries at a time with `pause()` between (the per-CPU counters of 22,500
   * slots take ~20 ms to read).
   */
  async backendSnapshot(pause: () => Promise<void> = async () => {}): Promise<BackendSnapshot> {
    const n = this.capacity.services * this.capacity.backends;
    const read = async (map: MapHandles["beActive"] | MapHandles["beStats"]) => {
      const out = new Uint8Array(n * map.valueBytes);
      for (let from = 0; from < n; from += SNAPSHOT_CHUNK) {
        const count = Math.min(SNAPSHOT_CHUNK, n - from);
        map.lookupRange(out.subarray(from * map.valueBytes, (from + count) * map.valueBytes), count, from);
        await pause();
      }
      return out;
    };
    return new BackendSnapshot(this.keys, this.cpus, await read(this.maps.beStats), await read(this.maps.beActive), await read(this.maps.beAdj));
  }

  /** Set many corrections at once (backend key → flows), as setBackendAdjust does one by one. */
  setBackendAdjusts(adjust: ReadonlyMap<number, number>): void {
    if (adjust.size === 0) return;
    const keys = Uint32Array.from(adjust.keys());
    const values = new BigUint64Array(keys.length);
    let i = 0;
    for (const n of adjust.values()) values[i++] = BigInt(Math.max(0, n));
    this.maps.beAdj.updateBatch(keys, new Uint8Array(values.buffer));
  }

  /** The raw atomic gauge (flows opened − flows closed by FIN/RST). */
  backendActiveRaw(svc: number, id: number): number {
    return toNumber(this.maps.beActive.lookup(this.backendKey(svc, id)) ?? 0n);
  }

  /** Set the correction for flows that left the table without FIN/RST (user space is its only writer). */
  setBackendAdjust(svc: number, id: number, n: number): void {
    this.maps.beAdj.update(this.backendKey(svc, id), Math.max(0, n));
  }

  /**
   * Walk the forward table (in chunks, yielding to the event loop) and
   * - delete flows idle longer than idleSeconds(svc) that never closed (abandoned connections),
   * - delete closed flows older than `closedLinger` seconds (their last ACK was never seen),
   * - count the open flows left per backend slot (keys.backend(svc, id)).
   * Deletions happen after the walk: deleting the cursor key would restart get_next_key.
   */
  async sweepFlows(idleSeconds: (svc: number) => number, closedLinger: number, now = monotonicSeconds(), chunk = 4096) {
    const { fwd, rev } = this.maps;
    const open = new Map<number, number>();
    const doomed: Uint8Array[] = [];
    let expired = 0;
    let key: Uint8Array | null = null;
    const next = new Uint8Array(FLOW_KEY.size);
    let walked = 0;
    while (fwd.nextKey(key, next)) {
      key = Uint8Array.from(next);
      if (++walked % chunk === 0) await Bun.sleep(0);
      const f = fwd.lookup(key);
      if (!f) continue; // deleted by the program since the walk reached it
      const idle = now - f.last_seen;
      const closed = (f.state & FLOW_STATE.CLOSED) !== 0;
      if (closed ? idle > closedLinger : idle > idleSeconds(f.svc)) {
        doomed.push(key);
        if (!closed) expired++;
        continue;
      }
      if (!closed) {
        const slot = this.keys.backend(f.svc, f.backend);
        open.set(slot, (open.get(slot) ?? 0) + 1);
      }
    }
    for (const k of doomed) {
      const f = fwd.lookup(k);
      if (!f) continue;
      const fk = FLOW_KEY.decode(k);
      // Either entry may have gone meanwhile (the program closed the flow, LRU eviction): absent is fine.
      rev.delete({ saddr: f.be_addr, daddr: fk.daddr, sport: f.be_port, dport: f.snat_port });
      fwd.delete(k);
    }
    return { walked, open, expired, deleted: doomed.length };
  }

  /** Every map's size and memory as the kernel accounts them. */
  mapMemory(): MapMemory[] {
    return Object.values(this.maps).map((m) => {
      let info = "";
      try {
        info = readFileSync(`/proc/self/fdinfo/${m.fd}`, "utf8");
      } catch {
        // Not Linux procfs: sizes unknown.
      }
      const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(info)?.[1] ?? 0);
      return { name: m.name, maxEntries: field("max_entries"), bytes: field("memlock") };
    });
  }

  /** Packets by outcome (flb_reasons), summed over the CPUs. */
  reasons(): Record<Reason, number> {
    const r = {} as Record<Reason, number>;
    REASONS.forEach((name, i) => {
      r[name] = (this.maps.reasons.lookup(i) ?? []).reduce((n, v) => n + toNumber(v), 0);
    });
    return r;
  }
}

function equal(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** An unsigned u64 at `at` (little-endian) as a Number: exact below 2^53, which counters stay under. */
const u64At = (v: DataView, at: number) => v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x1_0000_0000;

/** The per-backend maps as read at one moment (XdpProgram.backendSnapshot). */
export class BackendSnapshot {
  private readonly stats: DataView;
  private readonly activeV: DataView;
  private readonly adjV: DataView;
  /** Bytes per key in flb_be_stats: every CPU's flb_counters, each padded to 8. */
  private readonly statsStride: number;

  constructor(
    private readonly keys: Keys,
    private readonly cpus: number,
    stats: Uint8Array,
    active: Uint8Array,
    adj: Uint8Array,
  ) {
    this.stats = new DataView(stats.buffer, stats.byteOffset, stats.byteLength);
    this.activeV = new DataView(active.buffer, active.byteOffset, active.byteLength);
    this.adjV = new DataView(adj.buffer, adj.byteOffset, adj.byteLength);
    this.statsStride = Math.ceil(COUNTERS.size / 8) * 8 * cpus;
  }

  /** Backend `id` of service `svc`: its counters summed over the CPUs. */
  counters(svc: number, id: number): CounterSums {
    const base = this.keys.backend(svc, id) * this.statsStride;
    const sums = {} as CounterSums;
    const per = this.statsStride / this.cpus;
    for (const f of COUNTERS.fields) {
      let n = 0;
      for (let cpu = 0; cpu < this.cpus; cpu++) n += u64At(this.stats, base + cpu * per + f.offset);
      sums[f.name as keyof CounterSums] = n;
    }
    return sums;
  }

  /** The raw atomic gauge (flb_be_active; signed, as XdpProgram.backendActiveRaw). */
  activeRaw(svc: number, id: number): number {
    return Number(this.activeV.getBigInt64(this.keys.backend(svc, id) * 8, true));
  }

  /** The active flows least-connection picks see (XdpProgram.backendActive). */
  active(svc: number, id: number): number {
    return Math.max(0, this.activeRaw(svc, id) - Number(this.adjV.getBigInt64(this.keys.backend(svc, id) * 8, true)));
  }
}
