/**
 * The proxy data plane as the runtime sees it: `workers` threads (worker.ts), each running a
 * ProxyDataPlane with its own socket on every proxy listen address (SO_REUSEPORT: the kernel spreads
 * new connections over them), driven from the main thread, where the control plane runs once.
 *
 * - Plans: the pool subscribes to each proxied Service and sends every new plan (and the backends'
 *   addresses) to every worker; the counts picks depend on are in shared memory (control/shared.ts).
 * - Listeners change in two phases across all workers: each binds the new addresses (prepare); if
 *   any fails, all abort and the reload is rejected; otherwise all switch (commit). A new address is
 *   first bound once without SO_REUSEPORT, so that a port another process holds is refused as before
 *   instead of being shared with it (the kernel admits sockets of the same user to a reuseport group).
 * - Passive health results and the workers' own faults come back by message; counters are summed from
 *   the workers' rows before a scrape (refreshStats).
 * - A worker that dies (an uncaught exception ends its thread, and its sockets close with it) is logged,
 *   its share of the shared counts is taken out, and a fresh worker takes its slot with the current
 *   services and listeners; the other workers keep serving. Quick successive deaths back off (up to 10 s).
 */
import { formatHostPort, listenersConflict } from "../../config/address.ts";
import type { Config, HostPort, LogLevel, Workers } from "../../config/types.ts";
import type { Incidents } from "../../control/incidents.ts";
import type { Logger } from "../../control/log.ts";
import type { WorkerInfo } from "../../control/metrics.ts";
import type { Service } from "../../control/service.ts";
import { B, S } from "../../control/shared.ts";
import type { Counters } from "../../control/stats.ts";
import { UserError } from "../../errors.ts";
import type { ConnectHooks, DataPlane, PlaneChange, ServicePair } from "../types.ts";
import { connectionCapacity } from "./descriptors.ts";
import { listenError } from "./index.ts";
import type { FromWorker, ListenerSpec, ToWorker } from "./protocol.ts";
import { EXTRA_SHARES, resetLeftovers, stopRelay } from "./splice/index.ts";
import type { TableInit } from "./splice/table.ts";

/** How long a dead worker's relay thread has to reset its connections itself (resetRelayed). */
const RELAY_GRACE_MS = 200;
import { PlaneShared } from "./shared.ts";
import { serviceState } from "./view.ts";

/** How long a starting worker may take to load and report ready. */
const READY_TIMEOUT_MS = 30_000;

/** A worker that dies within this long of its start is restarted after a growing delay. */
const STABLE_MS = 10_000;
const RESTART_DELAY_MAX_MS = 10_000;

type Reply = Extract<FromWorker, { t: "prepared" | "synced" | "stopped" }>;
type Prepared = Extract<FromWorker, { t: "prepared" }>;

/** One worker slot: its index is its row in the shared counters, kept across restarts. */
interface Slot {
  readonly index: number;
  worker: Worker | null;
  startedAt: number;
  restarts: number;
  /** Quick deaths in a row (for the restart delay). */
  quickDeaths: number;
  /** The last prepare this worker was sent (commit applies it; a restarted worker has none). */
  prepared: number;
  /** Awaited replies by seq; null when the worker died first. */
  replies: Map<number, (reply: Reply | null) => void>;
  drained: (() => void) | null;
  /** Settled when the worker has loaded and set up its proxy (or failed to). */
  ready: { resolve: () => void; reject: (err: Error) => void } | null;
  /** Its kernel relay thread's table, once started (splice/index.ts). */
  relay: TableInit | null;
}

export class WorkerPool implements DataPlane {
  readonly kind = "proxy";
  private readonly slots: Slot[];
  private shared: PlaneShared | null = null;
  private closing = false;
  /** Proxied services by uid, with their plan subscription. */
  private readonly tracked = new Map<number, { service: Service; off: () => void }>();
  /** Services no longer proxied whose connections may still be open (their counters are still summed). */
  private readonly leaving = new Set<Service>();
  /** The committed listeners: what a (re)started worker binds. */
  private listeners: ListenerSpec[] = [];
  private seq = 0;
  private level: LogLevel = "info";
  private countNoted: Workers;
  /** The last kernel_relay a reload asked for that the running workers do not have (noteKernelRelay). */
  private relayNoted = "";

  constructor(
    private readonly log: Logger,
    private readonly hooks: ConnectHooks,
    private readonly incidents: Incidents,
    /** `workers` as configured, and what it resolved to at start. */
    configured: Workers,
    readonly count: number,
    /** The worker's script (worker.ts; in the compiled binary, an entry point of its own: Makefile). */
    private readonly entry: URL,
    /** The kernel relay thread's script (splice/thread.ts, an entry point as well). */
    private readonly relayThread: string,
  ) {
    this.countNoted = configured;
    this.slots = Array.from({ length: count }, (_, index) => ({ index, worker: null, startedAt: 0, restarts: 0, quickDeaths: 0, prepared: -1, replies: new Map(), drained: null, ready: null, relay: null }));
  }

  async apply(config: Config, services: readonly ServicePair[]): Promise<void> {
    (await this.prepare(config, services)).commit();
  }

  /**
   * Bind what `services` need in every worker (ProxyDataPlane.prepare in each); `commit` switches all
   * of them, `abort` undoes. Workers start with the first proxied service (an xdp-only config has none).
   */
  async prepare(config: Config, services: readonly ServicePair[]): Promise<PlaneChange> {
    const wanted: ListenerSpec[] = services.map((p) => ({ uid: p.service.shared.uid, config: p.config }));
    if (services.length === 0 && !this.shared) return { commit: () => {}, abort: () => {} };
    if (config.workers !== this.countNoted) {
      this.countNoted = config.workers;
      this.log.warn("workers takes effect at the next restart; the running workers stay", { running: this.count, configured: config.workers });
    }
    this.probe(services);
    this.noteKernelRelay(config);
    await this.start(config);
    for (const { service } of services) this.track(service);
    const seq = ++this.seq;
    const replies = await Promise.all(this.live().map((slot) => this.ask(slot, seq, wanted)));
    const failed = replies.find((r) => r?.error)?.error;
    if (failed) {
      this.broadcast({ t: "abort", seq });
      throw new UserError(failed.code, failed.message);
    }
    return {
      commit: () => this.commit(seq, wanted, services, config.log.level),
      abort: () => this.broadcast({ t: "abort", seq }),
    };
  }

  private commit(seq: number, wanted: ListenerSpec[], services: readonly ServicePair[], level: LogLevel): void {
    for (const slot of this.live()) {
      // A worker restarted since the prepare has not bound these: it prepares and commits now.
      if (slot.prepared !== seq) this.bindAll(slot, wanted);
      else this.send(slot, { t: "commit", seq });
    }
    const before = new Map(this.listeners.map((l) => [formatHostPort(l.config.listen), l]));
    const after = new Map(wanted.map((l) => [formatHostPort(l.config.listen), l]));
    for (const address of before.keys()) if (!after.has(address)) this.log.info("listener closed", { address });
    for (const [address, l] of after) if (!before.has(address)) this.log.info("listening", { service: l.config.name, address, workers: this.count });
    this.listeners = wanted;
    const kept = new Set(services.map((p) => p.service));
    const gone: number[] = [];
    for (const [uid, { service, off }] of this.tracked) {
      if (kept.has(service)) continue;
      off();
      this.tracked.delete(uid);
      this.leaving.add(service);
      gone.push(uid);
    }
    if (gone.length > 0) this.broadcast({ t: "forget", uids: gone });
    if (level !== this.level) {
      this.level = level;
      this.broadcast({ t: "level", level });
    }
  }

  /** A reload that changes kernel_relay: said once per new value (the workers keep what they started with). */
  private noteKernelRelay(config: Config): void {
    if (!this.shared) return;
    const { enabled, after_bytes, pipe_bytes } = this.shared.init.relay;
    const running = { enabled, after_bytes, pipe_bytes };
    const key = JSON.stringify(config.kernel_relay);
    if (key === JSON.stringify(running) || key === this.relayNoted) return;
    this.relayNoted = key;
    this.log.warn("kernel_relay takes effect at the next restart; the running workers keep theirs", { running, configured: config.kernel_relay });
  }

  /**
   * Sum the workers' counter rows into each service's and backend's Counters (before a scrape). The
   * workers first bring their kernel-relayed connections' byte counts up to date (the relay threads
   * count on their own: splice/), so the figures are exact at the scrape, not up to a second old.
   */
  async refreshStats(): Promise<void> {
    const seq = ++this.seq;
    await Promise.all(this.live().map((slot) => this.request(slot, seq, { t: "stats", seq })));
    for (const { service } of this.tracked.values()) collect(service);
    for (const service of this.leaving) {
      collect(service);
      if (service.shared.active === 0) this.leaving.delete(service);
    }
  }

  /** Per worker: alive, connections open and accepted, restarts (for /status and /metrics). */
  workers(): WorkerInfo[] {
    if (!this.shared) return [];
    const shared = this.shared;
    return this.slots.map((s) => ({
      index: s.index,
      alive: s.worker !== null,
      connections: shared.openIn(s.index),
      accepted: shared.acceptedBy(s.index),
      restarts: s.restarts,
      kernel_relayed: shared.extraIn(s.index) / EXTRA_SHARES,
    }));
  }

  /** Test hook (FEATHERLB_TEST_HOOKS=1): make the last worker throw an uncaught exception, as a bug would. */
  crash(): void {
    this.send(this.slots[this.count - 1]!, { t: "crash" });
  }

  /**
   * Every worker stops accepting (awaited, and logged: from then on new clients are refused), then
   * resolves once each one's connections have ended or `deadline` passed.
   */
  async drain(deadline: number): Promise<void> {
    const slots = this.live();
    const drained = slots.map((slot) => new Promise<void>((resolve) => (slot.drained = resolve)));
    const seq = ++this.seq;
    await Promise.all(slots.map((slot) => this.request(slot, seq, { t: "drain", seq, deadline })));
    if (slots.length > 0) this.log.info("proxy listeners closed; waiting for open connections to end", { connections: this.shared?.total ?? 0 });
    await Promise.all(drained);
  }

  close(): void {
    this.closing = true;
    for (const { off } of this.tracked.values()) off();
    this.tracked.clear();
    for (const slot of this.live()) {
      const worker = slot.worker!;
      // The worker closes its sockets and exits; terminate() is the fallback if it cannot.
      this.send(slot, { t: "close" });
      setTimeout(() => worker.terminate(), 1000).unref();
    }
  }

  // ---- workers -------------------------------------------------------------------------------------

  /**
   * Start every worker and wait until each has set up its proxy. A worker that cannot start at all (its
   * script fails to load) fails featherlb's start, rather than being restarted forever.
   */
  private async start(config: Config): Promise<void> {
    if (this.shared) return;
    this.level = config.log.level;
    this.shared = PlaneShared.create(this.count, connectionCapacity(), { ...config.kernel_relay, thread: this.relayThread });
    const ready = this.slots.map((slot) => this.spawn(slot));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the proxy workers did not start within ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS);
    });
    try {
      await Promise.race([Promise.all(ready), late]);
    } catch (err) {
      this.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private live(): Slot[] {
    return this.slots.filter((s) => s.worker !== null);
  }

  /** Start a worker in `slot`; resolves once it is ready, rejects if it fails before. */
  private spawn(slot: Slot): Promise<void> {
    const worker = new Worker(this.entry);
    slot.worker = worker;
    slot.startedAt = Date.now();
    slot.prepared = -1;
    const ready = new Promise<void>((resolve, reject) => (slot.ready = { resolve, reject }));
    ready.catch(() => {}); // the caller handles it; a second failure while starting is not "unhandled"
    worker.onmessage = (event: MessageEvent<FromWorker>) => this.received(slot, event.data);
    worker.addEventListener("error", (event) => {
      const error = (event as ErrorEvent).message;
      if (slot.ready) slot.ready.reject(new Error(`a proxy worker could not start: ${error}`));
      else this.log.error("proxy worker failed", { worker: slot.index, error });
    });
    worker.addEventListener("close", (event) => this.exited(slot, worker, (event as CloseEvent).code));
    this.send(slot, { t: "init", index: slot.index, plane: this.shared!.init, level: this.level });
    for (const [uid, { service }] of this.tracked) this.send(slot, { t: "service", uid, state: serviceState(service) });
    if (this.listeners.length > 0) this.bindAll(slot, this.listeners);
    return ready;
  }

  /** Prepare and commit `listeners` in one worker (a started or restarted one); a failure is logged. */
  private bindAll(slot: Slot, listeners: ListenerSpec[]): void {
    const seq = ++this.seq;
    void this.ask(slot, seq, listeners).then((reply) => {
      if (reply?.error) this.log.error("a proxy worker could not bind its listeners", { worker: slot.index, error: reply.error.message });
    });
    this.send(slot, { t: "commit", seq });
  }

  private exited(slot: Slot, worker: Worker, code: number): void {
    if (slot.worker !== worker) return;
    slot.worker = null;
    slot.ready?.reject(new Error(`a proxy worker exited (code ${code}) before it was ready`));
    slot.ready = null;
    for (const resolve of slot.replies.values()) resolve(null);
    slot.replies.clear();
    slot.drained?.();
    slot.drained = null;
    if (this.closing) return;
    if (slot.relay) this.resetRelayed(slot.relay);
    slot.relay = null;
    // Its sockets closed with its thread: its share leaves the shared counts.
    const lost = this.shared!.openIn(slot.index);
    for (const { service } of this.tracked.values()) service.shared.retire(slot.index);
    for (const service of this.leaving) service.shared.retire(slot.index);
    this.shared!.retire(slot.index);
    const quick = Date.now() - slot.startedAt < STABLE_MS;
    slot.quickDeaths = quick ? slot.quickDeaths + 1 : 0;
    const delay = quick ? Math.min(RESTART_DELAY_MAX_MS, 100 * 2 ** (slot.quickDeaths - 1)) : 0;
    this.log.error("proxy worker exited; restarting it", { worker: slot.index, code, connections_lost: lost, restart_in_ms: delay });
    setTimeout(() => {
      if (this.closing || slot.worker) return;
      slot.restarts++;
      this.spawn(slot).then(
        () => this.log.info("proxy worker restarted", { worker: slot.index, restarts: slot.restarts }),
        (err: Error) => this.log.error("proxy worker failed", { worker: slot.index, error: err.message }),
      );
    }, delay);
  }

  /**
   * A dead worker's kernel relay thread held sockets of its own (duplicates): without this they would
   * stay open and those clients hang. The relay thread is told to stop first; one that is still alive
   * resets what it holds itself within RELAY_GRACE_MS, and what is left after that is reset here.
   */
  private resetRelayed(table: TableInit): void {
    stopRelay(table);
    setTimeout(() => resetLeftovers(table, true), RELAY_GRACE_MS);
  }

  private received(slot: Slot, m: FromWorker): void {
    switch (m.t) {
      case "ready":
        slot.ready?.resolve();
        slot.ready = null;
        return;
      case "prepared":
      case "synced":
      case "stopped":
        slot.replies.get(m.seq)?.(m);
        slot.replies.delete(m.seq);
        return;
      case "drained":
        slot.drained?.();
        slot.drained = null;
        return;
      case "failed":
      case "connected": {
        const service = this.tracked.get(m.uid)?.service;
        const backend = service?.backends.get(m.id);
        if (!service || !backend || backend.key !== m.key) return; // gone since (a reload)
        service.shared.setSuspect(m.id, m.t === "failed");
        if (m.t === "failed") this.hooks.onConnectFailure(backend, m.reason);
        else this.hooks.onConnectSuccess(backend);
        return;
      }
      case "local":
        this.incidents.localError(m.errno, m.fields);
        return;
      case "relay":
        slot.relay = m.table;
        return;
      case "internal":
        this.incidents.internalError(m.where, Object.assign(new Error(m.message), { name: m.name, stack: m.stack }), m.fields);
        return;
    }
  }

  private send(slot: Slot, message: ToWorker): void {
    slot.worker?.postMessage(message);
  }

  private broadcast(message: ToWorker): void {
    for (const slot of this.live()) this.send(slot, message);
  }

  /** Send a prepare; resolves with the reply, or null if the worker died first. */
  private ask(slot: Slot, seq: number, listeners: ListenerSpec[]): Promise<Prepared | null> {
    slot.prepared = seq;
    return this.request(slot, seq, { t: "prepare", seq, listeners }) as Promise<Prepared | null>;
  }

  private request(slot: Slot, seq: number, message: ToWorker): Promise<Reply | null> {
    return new Promise((resolve) => {
      slot.replies.set(seq, resolve);
      this.send(slot, message);
    });
  }

  /**
   * Resolves once every worker has handled everything sent so far — the plans of a reload included — so
   * that a connection accepted after a reload is logged as done sees the new config in every worker.
   */
  async sync(): Promise<void> {
    const seq = ++this.seq;
    await Promise.all(this.live().map((slot) => this.request(slot, seq, { t: "sync", seq })));
  }

  /** Follow `service`'s plans: every worker gets each new one. */
  private track(service: Service): void {
    const uid = service.shared.uid;
    this.leaving.delete(service);
    if (this.tracked.has(uid)) return;
    const send = () => this.broadcast({ t: "service", uid, state: serviceState(service) });
    this.tracked.set(uid, { service, off: service.onPlan(send) });
    send();
  }

  /**
   * Bind each address no worker listens on yet once, without SO_REUSEPORT, and close it: if another
   * process listens there (with or without the option), that fails as it did with one worker.
   * An address that overlaps one of ours is left to the workers (prepare handles the overlap).
   */
  private probe(services: readonly ServicePair[]): void {
    const ours = this.listeners.map((l) => l.config.listen);
    for (const { config } of services) {
      const listen: HostPort = config.listen;
      if (ours.some((o) => listenersConflict(o, listen))) continue;
      try {
        Bun.listen({ hostname: listen.host, port: listen.port, socket: { data() {} } }).stop(true);
      } catch (err) {
        throw listenError(err as { code?: string }, formatHostPort(listen), config.name);
      }
    }
  }
}

/** A service's and its backends' Counters, from the workers' rows and the shared active counts. */
function collect(service: Service): void {
  const { shared, stats } = service;
  stats.active = shared.active;
  for (const [name, field] of Object.entries(S)) (stats as unknown as Record<string, number>)[name] = shared.serviceSum(field);
  for (const backend of service.backends.values()) {
    const c: Counters = backend.stats;
    c.active = shared.backendActive(backend.id);
    for (const [name, field] of Object.entries(B)) (c as unknown as Record<string, number>)[name] = shared.backendSum(backend.id, field);
  }
}
