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
  REASON_KINDS,
  SVC_FLAGS,
  TIMING,
  PLAN_BUFFERS,
  PLAN_HDR,
  PLAN_KIND,
  PLAN_MEMBER,
  PROGRAM_NAME,
  REASONS,
  planKey,
  reasonKey,
  type MapKey,
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
  /** Source address toward backends (host-order IPv4): xdp.snat_address or the interface's own. */
  snatAddr: number;
  flags: number;
  /** The attached interface's MAC: the source MAC of next hops taken from the neighbour table (flb_nbr). */
  smac?: Uint8Array;
  /** The SNAT range a reload replaced, while flows still use it (0-0: none). */
  prevFirst?: number;
  prevLast?: number;
}

/** A port range, inclusive. */
export interface PortRange {
  first: number;
  last: number;
}

/** What a walk of the established tables saw and did (XdpProgram.sweepFlows). */
export interface SweepResult {
  /** Established entries walked. */
  walked: number;
  /** Counted open flows per backend slot (keys.backend), of the slot's current generation: the gauge's truth. */
  open: Map<number, number>;
  /** Flows deleted because they were idle too long (the rest of `deleted` had closed). */
  expired: number;
  deleted: number;
  /** Flows whose SNAT port lies in the watched range (a range a reload replaced). */
  inWatched: number;
  /** Service indexes that have flows. */
  services: Set<number>;
}

/** What a walk of the handshake tables saw and did (XdpProgram.sweepHandshakes). */
export interface HandshakeSweep {
  /** Handshakes walked (what is left of them is walked − deleted). */
  walked: number;
  /** Handshakes deleted (abandoned for SYN_TIMEOUT_S, or whose port was taken back) and stale reverse entries. */
  deleted: number;
  inWatched: number;
  services: Set<number>;
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

/** A flow entry as read from flb_fwd or flb_syn_fwd. */
type Flow = NonNullable<ReturnType<MapHandles["fwd"]["lookup"]>>;

/** How a sweep walks: keys between yields to the event loop; a hook between the walk and the deletes (tests). */
export interface WalkOptions {
  chunk?: number;
  afterWalk?: () => Promise<void>;
  /**
   * Seconds without a client packet after which a closed DSR flow (the client's FIN or RST seen,
   * bpf/dsr.h) is deleted, per service (its half_close_timeout); undefined: `closedLinger`.
   */
  dsrClosed?: (svc: number) => number | undefined;
}

/** An entry a walk found to delete, and what it held then. */
interface Doomed {
  key: Uint8Array;
  seen: Flow;
}

/** `now` if it is the flow `seen` was, untouched since (same id, last packet, state), else undefined. */
const unchanged = (now: Flow | undefined, seen: Flow): Flow | undefined =>
  now && now.id === seen.id && now.last_seen === seen.last_seen && now.state === seen.state ? now : undefined;

const zeroReasons = (): Record<Reason, number> => Object.fromEntries(REASONS.map((r) => [r, 0])) as Record<Reason, number>;
const inRange = (port: number, r: PortRange | undefined) => r !== undefined && port >= r.first && port <= r.last;

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
  /** close() was called: a sweep yielding to the event loop stops at its next turn (walk). */
  private closed = false;
  private readonly live = () => !this.closed;
  private readonly slots: Uint32Array;
  /** Service rows of flb_reasons ever used (row reads per scrape stay proportional to services). */
  private readonly reasonRows = new Set<number>();
  /** What rows of services whose index was reused had counted, so the totals never go down. */
  private readonly retiredReasons = zeroReasons();

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
    this.closed = true;
    this.slotMap.close();
    this.obj.close();
  }

  /** Every map's fd by its key in layout.ts MAPS (to pin them: pins.ts). */
  mapFds(): [MapKey, number][] {
    return Object.entries(this.maps).map(([key, m]) => [key as MapKey, m.fd]);
  }

  // ---- configuration ----

  writeConfig(c: RuntimeConfig): void {
    this.maps.config.update(0, {
      snat_first: c.snatFirst,
      snat_last: c.snatLast,
      flags: c.flags,
      smac: c.smac ?? new Uint8Array(6),
      prev_first: c.prevFirst ?? 0,
      prev_last: c.prevLast ?? 0,
      snat_addr: c.snatAddr,
    });
  }

  readConfig(): RuntimeConfig {
    const d = this.maps.config.lookup(0);
    if (!d) throw new XdpError("bpf", "flb_config has no entry 0", 2);
    return { snatFirst: d.snat_first, snatLast: d.snat_last, snatAddr: d.snat_addr, flags: d.flags, smac: d.smac, prevFirst: d.prev_first, prevLast: d.prev_last };
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

  /** Match `addr:port` as service `index`; `flags`: SVC_* (SVC_DSR: forwarding: dsr, bpf/dsr.h; SVC_RETIRED). */
  setService(index: number, addr: number, port: number, flags = 0): void {
    const max = this.capacity.services;
    if (index < 0 || index >= max) throw new XdpError("invalid_argument", `service index ${index} (the maps hold ${max})`);
    this.maps.svc.update({ addr, port }, { index, flags });
    this.reasonRows.add(index);
  }

  /**
   * A reload removed the service at index `index`: its listen address keeps translating the flows that
   * are open (they name their service), but SYNs to it are no longer its (SVC_RETIRED). A service the
   * new config put on the address has already replaced the entry: then nothing is done.
   */
  retireService(index: number, addr: number, port: number): void {
    const cur = this.maps.svc.lookup({ addr, port });
    // A DSR service stays one: its open flows have no reverse entry and are carried by bpf/dsr.h.
    if (cur?.index === index) this.maps.svc.update({ addr, port }, { index, flags: SVC_FLAGS.RETIRED | (cur.flags & SVC_FLAGS.DSR) });
  }

  /** Stop matching a retired listen address, unless another service took it meanwhile. */
  deleteService(index: number, addr: number, port: number): void {
    const cur = this.maps.svc.lookup({ addr, port });
    if (cur?.index === index && cur.flags & SVC_FLAGS.RETIRED) this.maps.svc.delete({ addr, port });
  }

  /** The generation of a backend slot (struct backend.gen): flows remember it (bpf/counters.h). */
  backendGen(svc: number, id: number): number {
    return this.maps.backends.lookup(this.keys.backend(svc, id))?.gen ?? 0;
  }

  /** Backend `id` of service `svc` at addr:port; `eligible`: in the current pick set (BACKEND_ELIGIBLE). */
  setBackend(svc: number, id: number, addr: number, port: number, eligible = true): void {
    const flags = BACKEND_FLAGS.PRESENT | (eligible ? BACKEND_FLAGS.ELIGIBLE : 0);
    this.maps.backends.update(this.backendKey(svc, id), { addr, port, flags, gen: this.backendGen(svc, id) });
  }

  /** No backend in the slot (no new flows); its generation stays, so its open flows still count. */
  clearBackend(svc: number, id: number): void {
    this.maps.backends.update(this.backendKey(svc, id), { gen: this.backendGen(svc, id) });
  }

  /** The key of backend `id` of service `svc` in the per-backend arrays; throws for an id the maps cannot hold. */
  backendKey(svc: number, id: number): number {
    if (id < 0 || id >= this.capacity.backends) throw new XdpError("invalid_argument", `backend id ${id} (the maps hold ${this.capacity.backends} per service)`);
    return this.keys.backend(svc, id);
  }

  /**
   * Another backend takes the slot: zero its counters and active gauge and start a new generation, so
   * that flows of the previous occupant, still open, neither add to nor subtract from the new gauge
   * (bpf/counters.h count_flow_open).
   */
  resetBackendCounters(svc: number, id: number): void {
    const k = this.backendKey(svc, id);
    const cur = this.maps.backends.lookup(k);
    this.maps.backends.update(k, { ...cur, gen: ((cur?.gen ?? 0) + 1) >>> 0 });
    this.maps.beStats.zero(k);
    this.maps.beActive.update(k, 0n);
    this.maps.beAdj.update(k, 0n);
    this.maps.snatFull.update(k, 0n);
  }

  /** A service takes index `svc`: zero its counters and its row of flb_reasons (kept in the totals). */
  resetServiceCounters(svc: number): void {
    this.maps.svcStats.zero(svc);
    if (this.reasonRows.has(svc)) {
      const row = this.reasonRow(svc);
      for (const r of REASONS) this.retiredReasons[r] += row[r];
    }
    REASONS.forEach((_, i) => this.maps.reasons.zero(reasonKey(svc, i)));
    this.reasonRows.add(svc);
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
   * Walk the established tables (in chunks, yielding to the event loop):
   * - flows idle longer than idleSeconds(svc) that never closed (abandoned connections), and closed
   *   flows older than `closedLinger` seconds (their last ACK was never seen; a DSR flow, whose last
   *   ACK the program cannot recognise, after o.dsrClosed(svc)), are deleted;
   * - the counted open flows left per backend slot are counted (`open`), only those of the slot's
   *   current generation (the flows the gauge counts).
   *
   * Deletions happen after the walk (deleting the cursor key would restart get_next_key), each after a
   * fresh read just before it: an entry that changed since the walk (a packet refreshed it, its state
   * moved, another flow took the key) stays, and a reverse entry goes only if it still names the flow
   * (by id). What is left is the window between that read and the delete, microseconds against a walk
   * of seconds.
   */
  async sweepFlows(idleSeconds: (svc: number) => number, closedLinger: number, now = monotonicSeconds(), watch?: PortRange, o: WalkOptions = {}): Promise<SweepResult> {
    const { fwd, rev } = this.maps;
    const open = new Map<number, number>();
    const gens = new Map<number, number>();
    const genOf = (svc: number, id: number) => {
      const k = this.keys.backend(svc, id);
      let g = gens.get(k);
      if (g === undefined) gens.set(k, (g = this.backendGen(svc, id)));
      return g;
    };
    const lingerOf = (f: Flow) => ((f.state & FLOW_STATE.DSR) !== 0 ? (o.dsrClosed?.(f.svc) ?? closedLinger) : closedLinger);
    const expiredFlow = (f: Flow) => {
      const closed = (f.state & FLOW_STATE.CLOSED) !== 0;
      return closed ? now - f.last_seen > lingerOf(f) : now - f.last_seen > idleSeconds(f.svc);
    };
    const services = new Set<number>();
    let inWatched = 0;
    const doomed: Doomed[] = [];
    let expired = 0;
    const walked = await walk(fwd, o.chunk ?? 4096, (key) => {
      const f = fwd.lookup(key);
      if (!f) return; // deleted by the program since the walk reached it
      services.add(f.svc);
      if (inRange(f.snat_port, watch)) inWatched++;
      if (expiredFlow(f)) {
        doomed.push({ key, seen: f });
        if ((f.state & FLOW_STATE.CLOSED) === 0) expired++;
        return;
      }
      if ((f.state & (FLOW_STATE.CLOSED | FLOW_STATE.COUNTED)) === FLOW_STATE.COUNTED && f.gen === genOf(f.svc, f.backend)) {
        const slot = this.keys.backend(f.svc, f.backend);
        open.set(slot, (open.get(slot) ?? 0) + 1);
      }
    }, this.live);
    await o.afterWalk?.();
    if (this.closed) return { walked, open, expired: 0, deleted: 0, inWatched, services };
    const freed = new Set<number>();
    let deleted = 0;
    for (const d of doomed) {
      const f = unchanged(fwd.lookup(d.key), d.seen);
      if (!f) continue; // gone, replaced, or a packet came since the walk
      this.deletePair(rev, fwd, d.key, f);
      freed.add(this.keys.backend(f.svc, f.backend));
      deleted++;
    }
    this.portsFreed(freed);
    return { walked, open, expired, deleted, inWatched, services };
  }

  /**
   * Walk the handshake tables: handshakes without a packet for SYN_TIMEOUT_S, or marked dead (their port
   * was taken back), are deleted, and so are handshake reverse entries whose handshake is gone (evicted,
   * or deleted while the entry had already changed hands). Each delete follows a fresh read, as above.
   */
  async sweepHandshakes(now = monotonicSeconds(), watch?: PortRange, chunk = 4096): Promise<HandshakeSweep> {
    const { synFwd, synRev } = this.maps;
    const abandoned = (f: Flow) =>
      (f.state & FLOW_STATE.PROMOTING) === 0 && ((f.state & FLOW_STATE.DEAD) !== 0 || now - f.last_seen > TIMING.SYN_TIMEOUT_S);
    const services = new Set<number>();
    let inWatched = 0;
    const doomed: Doomed[] = [];
    const walked = await walk(synFwd, chunk, (key) => {
      const f = synFwd.lookup(key);
      if (!f) return;
      if (abandoned(f)) return void doomed.push({ key, seen: f });
      services.add(f.svc);
      if (inRange(f.snat_port, watch)) inWatched++;
    }, this.live);
    if (this.closed) return { walked, deleted: 0, inWatched, services };
    const freed = new Set<number>();
    let deleted = 0;
    for (const d of doomed) {
      const f = unchanged(synFwd.lookup(d.key), d.seen);
      if (!f || !abandoned(f)) continue;
      this.deletePair(synRev, synFwd, d.key, f);
      freed.add(this.keys.backend(f.svc, f.backend));
      deleted++;
    }
    const orphan = (r: NonNullable<ReturnType<typeof synRev.lookup>>) => {
      const f = synFwd.lookup(r.fwd);
      return (!f || f.id !== r.id || (f.state & FLOW_STATE.DEAD) !== 0) && now - r.since > TIMING.REV_CLAIM_GRACE_S;
    };
    const orphans: Uint8Array[] = [];
    await walk(synRev, chunk, (key) => {
      const r = synRev.lookup(key);
      if (r && orphan(r)) orphans.push(key);
    }, this.live);
    if (this.closed) return { walked, deleted, inWatched, services };
    for (const k of orphans) {
      const r = synRev.lookup(k);
      if (r && orphan(r) && synRev.delete(k)) deleted++;
    }
    this.portsFreed(freed);
    return { walked, deleted, inWatched, services };
  }

  /** SYNs toward these backend slots search the SNAT range again at once (bpf/snat.h flb_snat_full). */
  private portsFreed(slots: Set<number>): void {
    for (const slot of slots) if (this.maps.snatFull.lookup(slot)) this.maps.snatFull.update(slot, 0n);
  }

  /** Delete a flow's reverse entry (only if it still names the flow) and then its forward entry. */
  private deletePair(rev: MapHandles["rev"], fwd: MapHandles["fwd"], key: Uint8Array, f: Flow): void {
    const fk = FLOW_KEY.decode(key);
    const rk = { saddr: f.be_addr, daddr: f.snat_addr, sport: f.be_port, dport: f.snat_port };
    if (rev.lookup(rk)?.id === f.id) rev.delete(rk);
    fwd.delete(key);
  }

  /** One service's row of flb_reasons, summed over the CPUs. */
  reasonRow(svc: number | undefined): Record<Reason, number> {
    const r = zeroReasons();
    REASONS.forEach((name, i) => {
      r[name] = (this.maps.reasons.lookup(reasonKey(svc, i)) ?? []).reduce((n, v) => n + toNumber(v), 0);
    });
    return r;
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

  /** Packets by outcome and events (flb_reasons): every row, the retired ones included, summed over the CPUs. */
  reasons(): Record<Reason, number> {
    const total = { ...this.retiredReasons };
    for (const row of [undefined, ...this.reasonRows]) {
      const r = this.reasonRow(row);
      for (const name of REASONS) total[name] += r[name];
    }
    return total;
  }
}

/** What each reason is (outcome kind or event), for /metrics. */
export const reasonKind = (r: Reason) => REASON_KINDS[r];

/** Walk every key of a hash map, yielding to the event loop every `chunk` keys; the number walked. */
/**
 * Visit every key of `map`, yielding to the event loop every `chunk` keys. Stops when `live()` turns
 * false across a yield: the program was closed meanwhile (a stop or handover) and its fds are gone.
 */
async function walk(
  map: { nextKey(prev: Uint8Array | null, out: Uint8Array): boolean },
  chunk: number,
  visit: (key: Uint8Array) => void,
  live: () => boolean,
): Promise<number> {
  let key: Uint8Array | null = null;
  const next = new Uint8Array(FLOW_KEY.size);
  let walked = 0;
  while (map.nextKey(key, next)) {
    key = Uint8Array.from(next);
    if (++walked % chunk === 0) {
      await Bun.sleep(0);
      if (!live()) break;
    }
    visit(key);
  }
  return walked;
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
