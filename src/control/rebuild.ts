/**
 * When plans are rebuilt: coalesced per service, and in slices that never hold the event loop long.
 *
 * A health storm (a rack outage: every backend fails its checks within one interval) flips thousands of
 * backends within a second. Rebuilding a service's plan on every flip — a Maglev table of 65,537 slots
 * or more each time, one after another — held the one event loop for seconds, during which nothing was
 * relayed, accepted or answered. So a change only marks its Service dirty (Service.changed) and this
 * queue decides when to rebuild:
 *
 * - coalesced: a dirty service is rebuilt on the next turn of the event loop, so every event of that
 *   turn is in one rebuild; after a rebuild, the next waits COST_FACTOR times as long as that one took,
 *   at most REBUILD_INTERVAL_MS. A plan that costs microseconds (round robin over a few backends) is
 *   rebuilt at once, as before; a 65,537-slot Maglev table (~3 ms) at most every ~75 ms, so a storm of
 *   N flips costs a few rebuilds per service, not N, and rebuilds take at most ~4% of a core per
 *   service. A service whose live plan picks nothing does not wait (a rebuild can only bring it back:
 *   the first backend up after an outage, a name DNS just resolved). The Service itself skips a rebuild
 *   whose pick set (members, weights, addresses) and algorithm are what the live plan was built from.
 * - sliced: the queue works for at most SLICE_MS, then yields to the event loop (setImmediate: I/O,
 *   timers and admin requests run in between) and resumes. A Maglev build stops and resumes inside
 *   one table (maglev.ts MaglevBuild), so even a million-slot table is spread over many slices.
 * - fair: services are served in the order they became dirty; a service dirtied again while its build
 *   runs finishes that build (a newer plan than the live one), then queues again.
 *
 * One queue serves every Service of the process (Bun has one event loop); Services use REBUILDS unless
 * given another.
 */

import { SLICE_MS } from "../slice.ts";

/** The longest a service waits after its last rebuild before the next (when that one was expensive). */
export const REBUILD_INTERVAL_MS = 100;
/** A service waits this many times its last rebuild's duration before the next (capped by the interval). */
export const COST_FACTOR = 25;

/** What the queue rebuilds: a Service (service.ts). */
export interface Rebuildable {
  /** Work on this service's rebuild until `until` (performance.now() ms); true once it is done. */
  rebuildStep(until: number): boolean;
  /** The live plan picks nothing: rebuild without waiting for the interval. */
  readonly starved: boolean;
}

interface Entry {
  /** Not before this performance.now() time (the interval after the previous rebuild). */
  notBefore: number;
  /** A rebuild has started (its build may be half done). */
  started: boolean;
  /** ms spent in it so far, over all its slices. */
  spent: number;
}

export class RebuildQueue {
  /** Dirty services in the order they became dirty (Map keeps insertion order). */
  private readonly dirty = new Map<Rebuildable, Entry>();
  /** When each service last finished a rebuild, and how many ms of work that rebuild was. */
  private readonly last = new WeakMap<Rebuildable, { at: number; cost: number }>();
  /** Services dirtied again while their build ran: queued again once it is done. */
  private readonly again = new Set<Rebuildable>();
  /** Who waits for a service's requested rebuild (settled): the running or next one, and the one after. */
  private readonly waiting = new Map<Rebuildable, (() => void)[]>();
  private readonly waitingAgain = new Map<Rebuildable, (() => void)[]>();
  private immediate: ReturnType<typeof setImmediate> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When `timer` fires (performance.now() ms). */
  private timerDue = Number.POSITIVE_INFINITY;

  constructor(
    private readonly intervalMs = REBUILD_INTERVAL_MS,
    private readonly sliceMs = SLICE_MS,
    private readonly costFactor = COST_FACTOR,
  ) {}

  /** `service` changed: rebuild it soon (at most once per interval). */
  request(service: Rebuildable): void {
    const entry = this.dirty.get(service);
    if (entry?.started) this.again.add(service);
    else if (!entry) this.dirty.set(service, { notBefore: this.notBefore(service), started: false, spent: 0 });
    this.arm();
  }

  /** Forget `service`'s request (it was rebuilt synchronously, or is gone). */
  cancel(service: Rebuildable): void {
    this.dirty.delete(service);
    this.again.delete(service);
    this.resolve(this.waiting, service);
    this.resolve(this.waitingAgain, service);
  }

  /** Whether `service` waits for a rebuild. */
  pending(service: Rebuildable): boolean {
    return this.dirty.has(service);
  }

  /**
   * Resolves once the rebuild requested for `service` so far is done (at once if none is). Changes
   * requested later do not delay it, so a caller waits one rebuild even in a storm.
   */
  settled(service: Rebuildable): Promise<void> {
    if (!this.dirty.has(service)) return Promise.resolve();
    // Requested while a build ran: that build predates the request, so wait for the next one.
    const waiters = this.again.has(service) ? this.waitingAgain : this.waiting;
    return new Promise((resolve) => {
      const list = waiters.get(service);
      if (list) list.push(resolve);
      else waiters.set(service, [resolve]);
    });
  }

  /** Run until every requested rebuild is done, synchronously, ignoring intervals and slices (tests). */
  flush(): void {
    for (;;) {
      const next = this.dirty.keys().next();
      if (next.done) break;
      this.step(next.value, Number.POSITIVE_INFINITY);
    }
  }

  /**
   * When a request for `service` may be served: COST_FACTOR × its last rebuild's cost after that rebuild
   * (at most the interval), or at once when it is starved.
   */
  private notBefore(service: Rebuildable): number {
    const last = this.last.get(service);
    if (service.starved || !last) return Number.NEGATIVE_INFINITY;
    return last.at + Math.min(this.intervalMs, this.costFactor * last.cost);
  }

  private arm(): void {
    if (this.immediate !== undefined || this.dirty.size === 0) return;
    const now = performance.now();
    let soonest = Number.POSITIVE_INFINITY;
    for (const e of this.dirty.values()) soonest = Math.min(soonest, e.started ? now : e.notBefore);
    if (soonest <= now) {
      this.clearTimer();
      this.immediate = setImmediate(() => this.run());
    } else if (soonest < this.timerDue) {
      this.clearTimer();
      this.timerDue = soonest;
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.timerDue = Number.POSITIVE_INFINITY;
        this.arm();
      }, soonest - now);
    }
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = Number.POSITIVE_INFINITY;
  }

  /** One slice: rebuild ready services until SLICE_MS has passed, then yield. */
  private run(): void {
    this.immediate = undefined;
    const until = performance.now() + this.sliceMs;
    for (const [service, entry] of this.dirty) {
      if (!entry.started && entry.notBefore > performance.now()) continue;
      if (!this.step(service, until)) break; // out of time inside this build: resume it first
      if (performance.now() >= until) break;
    }
    this.arm();
  }

  /** Work on one service until `until`; true when its rebuild is done. */
  private step(service: Rebuildable, until: number): boolean {
    const entry = this.dirty.get(service)!;
    entry.started = true;
    const t = performance.now();
    const done = service.rebuildStep(until);
    const now = performance.now();
    entry.spent += now - t;
    if (!done) return false;
    this.dirty.delete(service);
    this.last.set(service, { at: now, cost: entry.spent });
    this.resolve(this.waiting, service);
    if (this.again.delete(service)) {
      this.dirty.set(service, { notBefore: this.notBefore(service), started: false, spent: 0 });
      const later = this.waitingAgain.get(service);
      this.waitingAgain.delete(service);
      if (later) this.waiting.set(service, later);
    }
    return true;
  }

  private resolve(waiters: Map<Rebuildable, (() => void)[]>, service: Rebuildable): void {
    const list = waiters.get(service);
    waiters.delete(service);
    for (const resolve of list ?? []) resolve();
  }
}

/** The process's queue (one event loop, one queue). */
export const REBUILDS = new RebuildQueue();
