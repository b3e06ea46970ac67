/**
 * The loaded BPF object and typed writers/readers for its maps, as the data plane (plane.ts) uses them.
 * Nothing here knows about Services or Config. loader.ts creates it; test/xdp/program-test.ts adds what
 * only the tests need (running packets, reading flows). Failures are XdpError (errors.ts).
 */
import type { Plan } from "../../control/algorithms/types.ts";
import { XdpError } from "./errors.ts";
import {
  BACKEND_FLAGS,
  COUNTERS,
  FLOW_KEY,
  FLOW_STATE,
  MAPS,
  REASON_KINDS,
  SVC_FLAGS,
  TIMING,
  MAX_BACKENDS,
  MAX_SERVICES,
  PLAN_BUFFERS,
  PLAN_HDR,
  PLAN_KIND,
  PLAN_MEMBER,
  PROGRAM_NAME,
  REASONS,
  SLOT_POOL_SIZE,
  backendKey,
  memberKey,
  planKey,
  reasonKey,
  type MapSpec,
  type Maps,
  type Reason,
} from "./layout.ts";
import { BpfObject, monotonicSeconds, possibleCpus } from "./libbpf.ts";
import { BpfMap, PerCpuMap } from "./map.ts";
import { SlotPool } from "./pool.ts";
import type { FieldsOf } from "./struct.ts";

export interface RuntimeConfig {
  snatFirst: number;
  snatLast: number;
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
  /** Counted open flows per backend slot (backendKey), of the slot's current generation: the gauge's truth. */
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

/** A u64 map value as a Number: counters stay far below 2^53; signed, so a gauge below zero reads negative. */
const toNumber = (v: bigint) => Number(BigInt.asIntN(64, v));

/** A flow entry as read from flb_fwd or flb_syn_fwd. */
type Flow = NonNullable<ReturnType<MapHandles["fwd"]["lookup"]>>;

/** How a sweep walks: keys between yields to the event loop; a hook between the walk and the deletes (tests). */
export interface WalkOptions {
  chunk?: number;
  afterWalk?: () => Promise<void>;
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
}

export class XdpProgram {
  readonly progFd: number;
  readonly cpus = possibleCpus();
  readonly maps: MapHandles;
  private readonly pool = new SlotPool();
  private readonly plans = new Map<number, PlanState>();
  /** Service rows of flb_reasons ever used (row reads per scrape stay proportional to services). */
  private readonly reasonRows = new Set<number>();
  /** What rows of services whose index was reused had counted, so the totals never go down. */
  private readonly retiredReasons = zeroReasons();

  /** `obj` is loaded (loader.ts loadProgram); the program owns it from here and closes it. */
  constructor(private readonly obj: BpfObject) {
    this.progFd = obj.progFd(PROGRAM_NAME);
    const maps: Record<string, BpfMap<never, never> | PerCpuMap<never, never>> = {};
    for (const [key, spec] of Object.entries(MAPS) as [string, MapSpec<never, never>][]) {
      const fd = obj.mapFd(spec.name);
      maps[key] = spec.perCpu ? new PerCpuMap(spec, fd, this.cpus) : new BpfMap(spec, fd);
    }
    this.maps = maps as unknown as MapHandles;
  }

  close(): void {
    this.obj.close();
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
    });
  }

  readConfig(): RuntimeConfig {
    const d = this.maps.config.lookup(0);
    if (!d) throw new XdpError("bpf", "flb_config has no entry 0", 2);
    return { snatFirst: d.snat_first, snatLast: d.snat_last, flags: d.flags, smac: d.smac, prevFirst: d.prev_first, prevLast: d.prev_last };
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
    if (index < 0 || index >= MAX_SERVICES) throw new XdpError("invalid_argument", `service index ${index} (the maps hold ${MAX_SERVICES})`);
    this.maps.svc.update({ addr, port }, { index });
    this.reasonRows.add(index);
  }

  /**
   * A reload removed the service at index `index`: its listen address keeps translating the flows that
   * are open (they name their service), but SYNs to it are no longer its (SVC_RETIRED). A service the
   * new config put on the address has already replaced the entry: then nothing is done.
   */
  retireService(index: number, addr: number, port: number): void {
    const cur = this.maps.svc.lookup({ addr, port });
    if (cur?.index === index) this.maps.svc.update({ addr, port }, { index, flags: SVC_FLAGS.RETIRED });
  }

  /** Stop matching a retired listen address, unless another service took it meanwhile. */
  deleteService(index: number, addr: number, port: number): void {
    const cur = this.maps.svc.lookup({ addr, port });
    if (cur?.index === index && cur.flags & SVC_FLAGS.RETIRED) this.maps.svc.delete({ addr, port });
  }

  /** The generation of a backend slot (struct backend.gen): flows remember it (bpf/counters.h). */
  backendGen(svc: number, id: number): number {
    return this.maps.backends.lookup(backendKey(svc, id))?.gen ?? 0;
  }

  setBackend(svc: number, id: number, addr: number, port: number): void {
    this.maps.backends.update(backendKey(svc, id), { addr, port, flags: BACKEND_FLAGS.PRESENT, gen: this.backendGen(svc, id) });
  }

  /** No backend in the slot (no new flows); its generation stays, so its open flows still count. */
  clearBackend(svc: number, id: number): void {
    this.maps.backends.update(backendKey(svc, id), { gen: this.backendGen(svc, id) });
  }

  /**
   * Another backend takes the slot: zero its counters and active gauge and start a new generation, so
   * that flows of the previous occupant, still open, neither add to nor subtract from the new gauge
   * (bpf/counters.h count_flow_open).
   */
  resetBackendCounters(svc: number, id: number): void {
    const k = backendKey(svc, id);
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
   */
  writePlan(svc: number, plan: Plan): void {
    const state = this.plans.get(svc) ?? { active: 0, ranges: [undefined, undefined] };
    const buf = 1 - state.active;
    const old = state.ranges[buf];
    if (old) this.pool.release(old.start, old.len);
    state.ranges[buf] = undefined;

    const n = plan.slots.length;
    const start = n ? this.pool.alloc(n) : 0;
    if (start < 0) throw new XdpError("plan_too_large", `no room for a ${n}-slot plan in the ${SLOT_POOL_SIZE}-slot pool`);
    if (n) state.ranges[buf] = { start, len: n };
    const planIdx = planKey(svc, buf);

    if (n) {
      const keys = new Uint32Array(n);
      for (let i = 0; i < n; i++) keys[i] = start + i;
      // flb_slots values are __u32 in host order: a Uint32Array's bytes, without encoding a million values one by one.
      const values = new Uint32Array(plan.slots);
      this.maps.slots.updateBatch(keys, new Uint8Array(values.buffer));
    }
    const m = plan.members.length;
    if (m > MAX_BACKENDS) throw new XdpError("invalid_argument", `plan has ${m} members (at most ${MAX_BACKENDS})`);
    if (m) {
      const keys = new Uint32Array(m);
      const values = new Uint8Array(m * PLAN_MEMBER.size);
      for (let i = 0; i < m; i++) {
        keys[i] = memberKey(planIdx, i);
        PLAN_MEMBER.encode({ id: plan.members[i]!, weight: plan.weights[i]! }, values, i * PLAN_MEMBER.size);
      }
      this.maps.members.updateBatch(keys, values);
    }
    this.maps.plans.update(planIdx, { kind: PLAN_KIND[plan.kind], slot_base: start, slot_count: n, member_count: m, cursor: 0 });
    this.maps.svcAct.update(svc, buf);
    state.active = buf;
    this.plans.set(svc, state);
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
    return this.sumCounters(this.maps.beStats, backendKey(svc, id));
  }

  /** The active flows least-connection picks see: the atomic gauge minus the sweeper's correction. */
  backendActive(svc: number, id: number): number {
    const k = backendKey(svc, id);
    return Math.max(0, toNumber(this.maps.beActive.lookup(k) ?? 0n) - toNumber(this.maps.beAdj.lookup(k) ?? 0n));
  }

  /** The raw atomic gauge (flows opened − flows closed by FIN/RST). */
  backendActiveRaw(svc: number, id: number): number {
    return toNumber(this.maps.beActive.lookup(backendKey(svc, id)) ?? 0n);
  }

  /** Set the correction for flows that left the table without FIN/RST (user space is its only writer). */
  setBackendAdjust(svc: number, id: number, n: number): void {
    this.maps.beAdj.update(backendKey(svc, id), Math.max(0, n));
  }

  /**
   * Walk the established tables (in chunks, yielding to the event loop):
   * - flows idle longer than idleSeconds(svc) that never closed (abandoned connections), and closed
   *   flows older than `closedLinger` seconds (their last ACK was never seen), are deleted;
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
      const k = backendKey(svc, id);
      let g = gens.get(k);
      if (g === undefined) gens.set(k, (g = this.backendGen(svc, id)));
      return g;
    };
    const expiredFlow = (f: Flow) => {
      const closed = (f.state & FLOW_STATE.CLOSED) !== 0;
      return closed ? now - f.last_seen > closedLinger : now - f.last_seen > idleSeconds(f.svc);
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
        const slot = backendKey(f.svc, f.backend);
        open.set(slot, (open.get(slot) ?? 0) + 1);
      }
    });
    await o.afterWalk?.();
    const freed = new Set<number>();
    let deleted = 0;
    for (const d of doomed) {
      const f = unchanged(fwd.lookup(d.key), d.seen);
      if (!f) continue; // gone, replaced, or a packet came since the walk
      this.deletePair(rev, fwd, d.key, f);
      freed.add(backendKey(f.svc, f.backend));
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
    });
    const freed = new Set<number>();
    let deleted = 0;
    for (const d of doomed) {
      const f = unchanged(synFwd.lookup(d.key), d.seen);
      if (!f || !abandoned(f)) continue;
      this.deletePair(synRev, synFwd, d.key, f);
      freed.add(backendKey(f.svc, f.backend));
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
    });
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
    const rk = { saddr: f.be_addr, daddr: fk.daddr, sport: f.be_port, dport: f.snat_port };
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
async function walk(map: { nextKey(prev: Uint8Array | null, out: Uint8Array): boolean }, chunk: number, visit: (key: Uint8Array) => void): Promise<number> {
  let key: Uint8Array | null = null;
  const next = new Uint8Array(FLOW_KEY.size);
  let walked = 0;
  while (map.nextKey(key, next)) {
    key = Uint8Array.from(next);
    if (++walked % chunk === 0) await Bun.sleep(0);
    visit(key);
  }
  return walked;
}
