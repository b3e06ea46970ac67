/**
 * What every proxy worker thread shares besides its services' state (control/shared.ts): the count of
 * proxied connections against the descriptor capacity — descriptors are the process's, not a
 * thread's — and the per-source table (sources.ts). The main thread creates it; workers attach to it.
 */
import { SourceTable } from "./sources.ts";

/** What a worker gets to attach to the same memory. */
export interface PlaneSharedInit {
  workers: number;
  capacity: number;
  relays: SharedArrayBuffer;
  sources: SharedArrayBuffer;
}

export class PlaneShared {
  /** [0]: connections open in all workers; [1 + w]: worker w's share; [1 + workers + w]: accepted by w. */
  private readonly relays: Int32Array;
  readonly sources: SourceTable;

  private constructor(readonly init: PlaneSharedInit) {
    this.relays = new Int32Array(init.relays);
    this.sources = SourceTable.attach(init.sources, init.workers);
  }

  /** `capacity`: proxied connections the descriptor limit leaves room for (descriptors.ts), all workers together. */
  static create(workers: number, capacity: number): PlaneShared {
    const sources = SourceTable.create(Number.isFinite(capacity) ? capacity : 1 << 20, workers);
    return new PlaneShared({ workers, capacity, relays: new SharedArrayBuffer(4 * (1 + 2 * workers)), sources: sources.buffer });
  }

  static attach(init: PlaneSharedInit): PlaneShared {
    return new PlaneShared(init);
  }

  get capacity(): number {
    return this.init.capacity;
  }

  /** Room for one more connection in the process: counted for `worker`, or false when full. */
  open(worker: number): boolean {
    if (Atomics.add(this.relays, 0, 1) >= this.init.capacity) {
      Atomics.sub(this.relays, 0, 1);
      return false;
    }
    this.relays[1 + worker]!++;
    this.relays[1 + this.init.workers + worker]!++;
    return true;
  }

  close(worker: number): void {
    Atomics.sub(this.relays, 0, 1);
    this.relays[1 + worker]!--;
  }

  /** Connections open in all workers. */
  get total(): number {
    return Atomics.load(this.relays, 0);
  }

  /** Connections open in worker `worker`. */
  openIn(worker: number): number {
    return Atomics.load(this.relays, 1 + worker);
  }

  /** Connections worker `worker` has accepted (wraps at 2^31; for tests and /status). */
  acceptedBy(worker: number): number {
    return Atomics.load(this.relays, 1 + this.init.workers + worker);
  }

  /** A dead worker's connections are gone: its share leaves the count and the per-source table. */
  retire(worker: number): void {
    Atomics.sub(this.relays, 0, this.relays[1 + worker]!);
    this.relays[1 + worker] = 0;
    this.sources.retire(worker);
  }
}
