/**
 * The loaded BPF object and typed writers/readers for its maps. Both the DataPlane (index.ts) and the
 * tests use this class; nothing here knows about Services or Config.
 */
import objectPath from "../../../build/bpf/featherlb.bpf.o" with { type: "file" };
import type { Plan } from "../../control/algorithms/types.ts";
import {
  BACKEND,
  BACKEND_PRESENT,
  CONFIG,
  COUNTERS,
  FLOW_FWD,
  FLOW_KEY,
  FLOW_STATE,
  MAPS,
  MAX_BACKENDS_BPF,
  MAX_SERVICES,
  NBR_MAC,
  PLAN_BUFFERS,
  PLAN_HDR,
  PLAN_KIND,
  PLAN_MEMBER,
  PROGRAM_NAME,
  REASONS,
  SLOT_POOL_SIZE,
  SVC_KEY,
  SVC_VAL,
  type MapKey,
  type Reason,
} from "./layout.ts";
import { PlanTooLargeError, SlotPool } from "./pool.ts";
import {
  BpfError,
  BpfObject,
  mapCount,
  mapDelete,
  mapLookup,
  mapUpdate,
  mapNextKey,
  mapUpdateBatch,
  monotonicSeconds,
  possibleCpus,
  testRun,
  type TestRunResult,
} from "./libbpf.ts";

export interface LoadOptions {
  /** Entries per flow table (xdp.flow_table_size). */
  flowTableSize: number;
}

export interface RuntimeConfig {
  snatFirst: number;
  snatLast: number;
  flags: number;
  /** The attached interface's MAC: the source MAC of next hops taken from the neighbour table (flb_nbr). */
  smac?: Uint8Array;
}

export type CounterSums = Record<keyof ReturnType<typeof COUNTERS.decode>, number>;

const u32key = (n: number) => new Uint8Array(new Uint32Array([n]).buffer);
const be32key = (ip: number) => {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, ip, false);
  return key;
};
const roundUp8 = (n: number) => Math.ceil(n / 8) * 8;

interface PlanState {
  /** The live buffer (0/1), as written to flb_svc_act. */
  active: number;
  /** Slot range of each buffer. */
  ranges: ({ start: number; len: number } | undefined)[];
}

export class XdpProgram {
  readonly progFd: number;
  readonly fds: Readonly<Record<MapKey, number>>;
  readonly cpus = possibleCpus();
  private readonly pool = new SlotPool();
  private readonly plans = new Map<number, PlanState>();

  private constructor(private readonly obj: BpfObject) {
    this.progFd = obj.progFd(PROGRAM_NAME);
    const fds = {} as Record<MapKey, number>;
    for (const [key, name] of Object.entries(MAPS)) fds[key as MapKey] = obj.mapFd(name);
    this.fds = fds;
  }

  /** Open the embedded object, size the flow tables, load (verify). Throws BpfError (with the log). */
  static async load(options: LoadOptions): Promise<XdpProgram> {
    const image = new Uint8Array(await Bun.file(objectPath).arrayBuffer());
    const obj = BpfObject.open(image);
    try {
      obj.setMaxEntries(MAPS.fwd, options.flowTableSize);
      obj.setMaxEntries(MAPS.rev, options.flowTableSize);
      obj.load();
      return new XdpProgram(obj);
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  close(): void {
    this.obj.close();
  }

  // ---- configuration ----

  writeConfig(c: RuntimeConfig): void {
    const value = CONFIG.encode({
      snat_first: c.snatFirst,
      snat_last: c.snatLast,
      flags: c.flags,
      smac: c.smac ?? new Uint8Array(6),
    });
    this.check(mapUpdate(this.fds.config, u32key(0), value), "flb_config");
  }

  readConfig(): RuntimeConfig {
    const out = new Uint8Array(CONFIG.size);
    mapLookup(this.fds.config, u32key(0), out);
    const d = CONFIG.decode(out);
    return { snatFirst: d.snat_first as number, snatLast: d.snat_last as number, flags: d.flags as number, smac: d.smac as Uint8Array };
  }

  /** featherlb's neighbour table (flb_nbr): the next-hop MAC toward an IPv4 address (nat.h resolve_l2). */
  setNeighbour(ip: number, mac: Uint8Array): void {
    this.check(mapUpdate(this.fds.nbr, be32key(ip), NBR_MAC.encode({ mac })), "flb_nbr");
  }

  deleteNeighbour(ip: number): void {
    mapDelete(this.fds.nbr, be32key(ip));
  }

  // ---- services, backends, plans ----

  setService(index: number, addr: number, port: number): void {
    if (index < 0 || index >= MAX_SERVICES) throw new RangeError(`service index ${index}`);
    this.check(mapUpdate(this.fds.svc, SVC_KEY.encode({ addr, port }), SVC_VAL.encode({ index })), "flb_svc");
  }

  deleteService(addr: number, port: number): void {
    mapDelete(this.fds.svc, SVC_KEY.encode({ addr, port }));
  }

  setBackend(svc: number, id: number, addr: number, port: number): void {
    const value = BACKEND.encode({ addr, port, flags: BACKEND_PRESENT });
    this.check(mapUpdate(this.fds.backends, u32key(svc * MAX_BACKENDS_BPF + id), value), "flb_backends");
  }

  clearBackend(svc: number, id: number): void {
    this.check(mapUpdate(this.fds.backends, u32key(svc * MAX_BACKENDS_BPF + id), new Uint8Array(BACKEND.size)), "flb_backends");
  }

  /** Zero a backend slot's counters and active gauge (a new backend took over the id). */
  resetBackendCounters(svc: number, id: number): void {
    const k = u32key(svc * MAX_BACKENDS_BPF + id);
    this.check(mapUpdate(this.fds.beStats, k, new Uint8Array(roundUp8(COUNTERS.size) * this.cpus)), "flb_be_stats");
    this.check(mapUpdate(this.fds.beActive, k, new Uint8Array(8)), "flb_be_active");
    this.check(mapUpdate(this.fds.beAdj, k, new Uint8Array(8)), "flb_be_adj");
  }

  resetServiceCounters(svc: number): void {
    this.check(mapUpdate(this.fds.svcStats, u32key(svc), new Uint8Array(roundUp8(COUNTERS.size) * this.cpus)), "flb_svc_stats");
  }

  /**
   * Publish a plan for service `svc` without disturbing readers: write slots, members and header into
   * the inactive buffer, then flip flb_svc_act[svc] (one 4-byte store). The inactive buffer was last live
   * one flip ago, so no program run can still be reading it (runs take microseconds; flips happen on
   * health or config events). Throws PlanTooLargeError when the slot pool is full.
   */
  writePlan(svc: number, plan: Plan): void {
    const state = this.plans.get(svc) ?? { active: 0, ranges: [undefined, undefined] };
    const buf = 1 - state.active;
    const old = state.ranges[buf];
    if (old) this.pool.release(old.start, old.len);
    state.ranges[buf] = undefined;

    const n = plan.slots.length;
    const start = n ? this.pool.alloc(n) : 0;
    if (start < 0) throw new PlanTooLargeError(`no room for a ${n}-slot plan in the ${SLOT_POOL_SIZE}-slot pool`);
    if (n) state.ranges[buf] = { start, len: n };
    const planIdx = svc * PLAN_BUFFERS + buf;

    if (n) {
      const keys = new Uint32Array(n);
      for (let i = 0; i < n; i++) keys[i] = start + i;
      this.batch(this.fds.slots, keys, new Uint32Array(plan.slots), "flb_slots");
    }
    const m = plan.members.length;
    if (m > MAX_BACKENDS_BPF) throw new RangeError(`plan has ${m} members`);
    if (m) {
      const keys = new Uint32Array(m);
      const values = new Uint32Array(m * 2);
      for (let i = 0; i < m; i++) {
        keys[i] = planIdx * MAX_BACKENDS_BPF + i;
        values[2 * i] = plan.members[i]!;
        values[2 * i + 1] = plan.weights[i]!;
      }
      this.batch(this.fds.members, keys, values, "flb_members");
    }
    const hdr = PLAN_HDR.encode({ kind: PLAN_KIND[plan.kind], slot_base: start, slot_count: n, member_count: m, cursor: 0 });
    this.check(mapUpdate(this.fds.plans, u32key(planIdx), hdr), "flb_plans");
    this.check(mapUpdate(this.fds.svcAct, u32key(svc), u32key(buf)), "flb_svc_act");
    state.active = buf;
    this.plans.set(svc, state);
  }

  /** Forget a removed service's plans (its index may be reused). */
  dropPlans(svc: number): void {
    const state = this.plans.get(svc);
    if (!state) return;
    for (const r of state.ranges) if (r) this.pool.release(r.start, r.len);
    this.plans.delete(svc);
    const empty = PLAN_HDR.encode({});
    for (let b = 0; b < PLAN_BUFFERS; b++) mapUpdate(this.fds.plans, u32key(svc * PLAN_BUFFERS + b), empty);
  }

  // ---- reading ----

  /** Sum one per-CPU flb_counters entry over all CPUs. */
  private sumCounters(fd: number, index: number): CounterSums {
    const stride = roundUp8(COUNTERS.size);
    const out = new Uint8Array(stride * this.cpus);
    const sums = {} as CounterSums;
    for (const f of COUNTERS.order) sums[f.name as keyof CounterSums] = 0;
    if (!mapLookup(fd, u32key(index), out)) return sums;
    for (let cpu = 0; cpu < this.cpus; cpu++) {
      for (const f of COUNTERS.order) sums[f.name as keyof CounterSums] += COUNTERS.num(out, f.name as never, cpu * stride);
    }
    return sums;
  }

  serviceCounters(svc: number): CounterSums {
    return this.sumCounters(this.fds.svcStats, svc);
  }

  backendCounters(svc: number, id: number): CounterSums {
    return this.sumCounters(this.fds.beStats, svc * MAX_BACKENDS_BPF + id);
  }

  private readU64(fd: number, index: number): number {
    const out = new Uint8Array(8);
    if (!mapLookup(fd, u32key(index), out)) return 0;
    return Number(new DataView(out.buffer).getBigInt64(0, true));
  }

  /** The active flows least-connection picks see: the atomic gauge minus the sweeper's correction. */
  backendActive(svc: number, id: number): number {
    const k = svc * MAX_BACKENDS_BPF + id;
    return Math.max(0, this.readU64(this.fds.beActive, k) - this.readU64(this.fds.beAdj, k));
  }

  /** The raw atomic gauge (flows opened − flows closed by FIN/RST). */
  backendActiveRaw(svc: number, id: number): number {
    return this.readU64(this.fds.beActive, svc * MAX_BACKENDS_BPF + id);
  }

  /** Set the correction for flows that left the table without FIN/RST (user space is its only writer). */
  setBackendAdjust(svc: number, id: number, n: number): void {
    const v = new Uint8Array(8);
    new DataView(v.buffer).setBigUint64(0, BigInt(Math.max(0, n)), true);
    this.check(mapUpdate(this.fds.beAdj, u32key(svc * MAX_BACKENDS_BPF + id), v), "flb_be_adj");
  }

  /**
   * Walk the forward table (in chunks, yielding to the event loop) and
   * - delete flows idle longer than idleSeconds(svc) that never closed (abandoned connections),
   * - delete closed flows older than `closedLinger` seconds (their last ACK was never seen),
   * - count the open flows left per backend slot (svc * MAX_BACKENDS + id).
   * Deletions happen after the walk: deleting the cursor key would restart get_next_key.
   */
  async sweepFlows(idleSeconds: (svc: number) => number, closedLinger: number, now = monotonicSeconds(), chunk = 4096) {
    const open = new Map<number, number>();
    const doomed: Uint8Array[] = [];
    let expired = 0;
    let key: Uint8Array | null = null;
    const next = new Uint8Array(FLOW_KEY.size);
    const value = new Uint8Array(FLOW_FWD.size);
    let walked = 0;
    while (mapNextKey(this.fds.fwd, key, next)) {
      key = Uint8Array.from(next);
      if (++walked % chunk === 0) await Bun.sleep(0);
      if (!mapLookup(this.fds.fwd, key, value)) continue;
      const f = FLOW_FWD.decode(value);
      const idle = now - (f.last_seen as number);
      const closed = ((f.state as number) & FLOW_STATE.CLOSED) !== 0;
      if (closed ? idle > closedLinger : idle > idleSeconds(f.svc as number)) {
        doomed.push(key);
        if (!closed) expired++;
        continue;
      }
      if (!closed) {
        const slot = (f.svc as number) * MAX_BACKENDS_BPF + (f.backend as number);
        open.set(slot, (open.get(slot) ?? 0) + 1);
      }
    }
    for (const k of doomed) {
      if (!mapLookup(this.fds.fwd, k, value)) continue;
      const f = FLOW_FWD.decode(value);
      const fk = FLOW_KEY.decode(k);
      mapDelete(this.fds.rev, FLOW_KEY.encode({ saddr: f.be_addr, daddr: fk.daddr, sport: f.be_port, dport: f.snat_port }));
      mapDelete(this.fds.fwd, k);
    }
    return { walked, open, expired, deleted: doomed.length };
  }

  /** Set the gauge (tests: emulate load for least/two_choices). */
  setBackendActive(svc: number, id: number, n: number): void {
    const v = new Uint8Array(8);
    new DataView(v.buffer).setBigInt64(0, BigInt(n), true);
    this.check(mapUpdate(this.fds.beActive, u32key(svc * MAX_BACKENDS_BPF + id), v), "flb_be_active");
  }

  reasons(): Record<Reason, number> {
    const out = new Uint8Array(8 * this.cpus);
    const r = {} as Record<Reason, number>;
    REASONS.forEach((name, i) => {
      r[name] = 0;
      if (!mapLookup(this.fds.reasons, u32key(i), out)) return;
      const v = new DataView(out.buffer);
      for (let cpu = 0; cpu < this.cpus; cpu++) r[name] += Number(v.getBigUint64(cpu * 8, true));
    });
    return r;
  }

  /** Entries in the forward and reverse flow tables (walks the keys: O(n)). */
  flowCounts(): { fwd: number; rev: number } {
    return { fwd: mapCount(this.fds.fwd, FLOW_KEY.size), rev: mapCount(this.fds.rev, FLOW_KEY.size) };
  }

  lookupFlow(key: Uint8Array): ReturnType<typeof FLOW_FWD.decode> | undefined {
    const out = new Uint8Array(FLOW_FWD.size);
    return mapLookup(this.fds.fwd, key, out) ? FLOW_FWD.decode(out) : undefined;
  }

  /** BPF_PROG_TEST_RUN on one packet. */
  run(packet: Uint8Array): TestRunResult {
    return testRun(this.progFd, packet);
  }

  private batch(fd: number, keys: Uint32Array, values: Uint32Array, what: string): void {
    const kb = new Uint8Array(keys.buffer, keys.byteOffset, keys.byteLength);
    const vb = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    if (mapUpdateBatch(fd, kb, vb, keys.length) === 0) return;
    // Older kernels without batch ops on arrays: one element at a time.
    const vsize = values.byteLength / keys.length;
    for (let i = 0; i < keys.length; i++) {
      this.check(mapUpdate(fd, kb.subarray(i * 4, i * 4 + 4), vb.subarray(i * vsize, (i + 1) * vsize)), what);
    }
  }

  private check(rc: number, what: string): void {
    if (rc < 0) throw new BpfError(`updating ${what} failed (errno ${-rc})`, -rc);
  }
}
