/**
 * What every proxy worker thread shares besides its services' state (control/shared.ts): the count of
 * proxied connections against the descriptor capacity — descriptors are the process's, not a
 * thread's — and the per-source table (sources.ts). The main thread creates it; workers attach to it.
 */
import { DEFAULT_KERNEL_RELAY } from "../../config/defaults.ts";
import { SourceTable } from "./sources.ts";
import { DEFAULT_RELAY_THREAD, type KernelRelaySettings } from "./splice/index.ts";

/** kernel_relay when no config says otherwise (tests that build a plane directly). */
const DEFAULT_RELAY: KernelRelaySettings = { ...DEFAULT_KERNEL_RELAY, thread: DEFAULT_RELAY_THREAD };

/** What a worker gets to attach to the same memory. */
export interface PlaneSharedInit {
  workers: number;
  capacity: number;
  relays: SharedArrayBuffer;
  sources: SharedArrayBuffer;
  /** kernel_relay, set at start for every worker. */
  relay: KernelRelaySettings;
}

export class PlaneShared {
  /**
   * [0]: descriptor shares taken in all workers (a connection takes one; a kernel-relayed one takes
   * EXTRA_SHARES more, splice/index.ts); [1 + w]: connections open in worker w; [1 + workers + w]:
   * accepted by w; [1 + 2 × workers + w]: the extra shares w holds.
   */
  private readonly relays: Int32Array;
  readonly sources: SourceTable;

  private constructor(readonly init: PlaneSharedInit) {
    this.relays = new Int32Array(init.relays);
    this.sources = SourceTable.attach(init.sources, init.workers);
  }

  /** `capacity`: proxied connections the descriptor limit leaves room for (descriptors.ts), all workers together. */
  static create(workers: number, capacity: number, relay: KernelRelaySettings = DEFAULT_RELAY): PlaneShared {
    const sources = SourceTable.create(Number.isFinite(capacity) ? capacity : 1 << 20, workers);
    return new PlaneShared({ workers, capacity, relays: new SharedArrayBuffer(4 * (1 + 3 * workers)), sources: sources.buffer, relay });
  }

  static attach(init: PlaneSharedInit): PlaneShared {
    return new PlaneShared(init);
  }

  get capacity(): number {
    return this.init.capacity;
  }

  // Where worker w's counts sit in `relays` (see its layout above).
  private openAt(w: number): number {
    return 1 + w;
  }
  private acceptedAt(w: number): number {
    return 1 + this.init.workers + w;
  }
  private extraAt(w: number): number {
    return 1 + 2 * this.init.workers + w;
  }

  /** Take `n` descriptor shares of the process's capacity; false, and nothing taken, when they are not there. */
  private take(n: number): boolean {
    if (Atomics.add(this.relays, 0, n) + n > this.init.capacity) {
      Atomics.sub(this.relays, 0, n);
      return false;
    }
    return true;
  }

  /** Room for one more connection in the process: counted for `worker`, or false when full. */
  open(worker: number): boolean {
    if (!this.take(1)) return false;
    this.relays[this.openAt(worker)]!++;
    this.relays[this.acceptedAt(worker)]!++;
    return true;
  }

  close(worker: number): void {
    Atomics.sub(this.relays, 0, 1);
    this.relays[this.openAt(worker)]!--;
  }

  /**
   * Room for `n` more connections' worth of descriptors, counted for `worker` but not as accepted
   * connections (a kernel-relayed connection's duplicates and pipes); false, and nothing taken, when full.
   */
  reserve(worker: number, n: number): boolean {
    if (!this.take(n)) return false;
    this.relays[this.extraAt(worker)]! += n;
    return true;
  }

  unreserve(worker: number, n: number): void {
    Atomics.sub(this.relays, 0, n);
    this.relays[this.extraAt(worker)]! -= n;
  }

  /** Connections open in all workers. */
  get total(): number {
    let n = 0;
    for (let w = 0; w < this.init.workers; w++) n += this.openIn(w);
    return n;
  }

  /** Connections open in worker `worker`. */
  openIn(worker: number): number {
    return Atomics.load(this.relays, this.openAt(worker));
  }

  /** Extra descriptor shares worker `worker` holds (EXTRA_SHARES per kernel-relayed connection). */
  extraIn(worker: number): number {
    return Atomics.load(this.relays, this.extraAt(worker));
  }

  /** Connections worker `worker` has accepted (wraps at 2^31; for tests and /status). */
  acceptedBy(worker: number): number {
    return Atomics.load(this.relays, this.acceptedAt(worker));
  }

  /** A dead worker's connections are gone: its share leaves the count and the per-source table. */
  retire(worker: number): void {
    const [open, extra] = [this.openAt(worker), this.extraAt(worker)];
    Atomics.sub(this.relays, 0, this.relays[open]! + this.relays[extra]!);
    this.relays[open] = 0;
    this.relays[extra] = 0;
    this.sources.retire(worker);
  }
}
