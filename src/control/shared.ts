/**
 * The part of a service's state that every proxy worker thread reads and writes at once, in one
 * SharedArrayBuffer per service (the main thread creates it; each worker wraps the same buffer). It is
 * what lets the algorithms keep their one-worker guarantees across workers:
 *
 * - the sequence cursor (round_robin, weighted_round_robin): one shared position, advanced with a
 *   compare-and-swap, so sequential connections get the exact sequence whichever worker accepts them;
 * - active connections per backend (least_connections, power_of_two) and per service (max_connections):
 *   one shared count each, changed with Atomics.add/sub;
 * - a pick lock: least_connections and power_of_two read the counts and count their pick under it, so
 *   a burst accepted by two workers at once cannot send both connections to the same backend;
 * - "suspect" flags: backends with a failed connect not yet followed by a success, so a worker reports
 *   successes (passive health) only when one can change something.
 *
 * Cumulative counters (connections, bytes, failures, rejections) have one row per worker, written by
 * that worker alone with plain stores, and are summed by the main thread before a scrape (`collect`).
 * Float64 counters are exact to 2^53 and an aligned 8-byte store is one instruction on the 64-bit hosts
 * featherlb runs on, so a reader never sees half a value. Each worker also keeps its own share of the
 * active counts, so when a worker dies its connections are taken out of the shared counts (`retire`).
 *
 * Backend ids index the arrays (they are < MAX_BACKENDS). An id freed by a drained backend and taken
 * by a new one starts from zero (`resetBackend`). A worker that still holds the previous plan for a
 * moment may count one more pick against the id: it is undone when that connection ends.
 */
import { MAX_BACKENDS } from "../config/limits.ts";

/** Service counters in each worker's row, by index. */
export const S = { total: 0, bytesIn: 1, bytesOut: 2, connectFailures: 3, rejectedMaxConn: 4, rejectedNoBackend: 5, rejectedPerSource: 6, rejectedLocal: 7, rejectedProxyHeader: 8, kernelRelayed: 9 } as const;
/** Backend counters in each worker's row, by index. */
export const B = { total: 0, bytesIn: 1, bytesOut: 2, connectFailures: 3 } as const;
const S_FIELDS = Object.keys(S).length;
const B_FIELDS = Object.keys(B).length;
/** Float64 words per worker: the service's counters, then each backend id's. */
const ROW_FLOATS = S_FIELDS + MAX_BACKENDS * B_FIELDS;

// Int32 words: a header, the shared counts and flags, then one row of active counts per worker.
const CURSOR = 0;
const LOCK = 1;
const ACTIVE = 2;
const UID = 3;
const HEADER = 4;
const BACKEND_ACTIVE = HEADER;
const SUSPECT = BACKEND_ACTIVE + MAX_BACKENDS;
const ROWS = SUSPECT + MAX_BACKENDS;
/** Per worker: the service's active connections it holds, then each backend id's. */
const ROW_INTS = 1 + MAX_BACKENDS;

/** What a Picker asks of a sequence cursor: the slot to use now, advancing it. */
export interface Cursor {
  next(length: number): number;
}

/**
 * A lock word in an Int32Array (Drepper's futex mutex, "Futexes Are Tricky"): 0 free, 1 held, 2 held with
 * waiters. The holders keep it for a few hundred nanoseconds, so a contender spins a little before it
 * sleeps; unlocking wakes a sleeper only when one may exist (no notify on the fast path).
 */
export function lockWord(a: Int32Array, at: number): void {
  let c = Atomics.compareExchange(a, at, 0, 1);
  for (let spin = 0; c !== 0 && spin < 200; spin++) c = Atomics.compareExchange(a, at, 0, 1);
  if (c === 0) return;
  do {
    // The 1 ms bound only matters if a holder died holding it (a worker thread killed mid-pick).
    if (c === 2 || Atomics.compareExchange(a, at, 1, 2) !== 0) Atomics.wait(a, at, 2, 1);
  } while ((c = Atomics.compareExchange(a, at, 0, 2)) !== 0);
}

export function unlockWord(a: Int32Array, at: number): void {
  if (Atomics.exchange(a, at, 0) === 2) Atomics.notify(a, at, 1);
}

/** Services get uids in creation order (main thread): the name a worker and the per-source table know them by. */
let nextUid = 1;

export class ServiceShared implements Cursor {
  private readonly ints: Int32Array;
  private readonly floats: Float64Array;

  private constructor(
    readonly buffer: SharedArrayBuffer,
    /** Worker rows in the buffer: the number of proxy workers. */
    readonly workers: number,
  ) {
    const intBytes = (ROWS + workers * ROW_INTS) * 4;
    const floatOffset = Math.ceil(intBytes / 8) * 8;
    this.ints = new Int32Array(buffer, 0, intBytes / 4);
    this.floats = new Float64Array(buffer, floatOffset, workers * ROW_FLOATS);
  }

  /** A zeroed block for `workers` rows. Untouched pages are never resident, so unused ids cost nothing. */
  static create(workers: number): ServiceShared {
    const intBytes = (ROWS + workers * ROW_INTS) * 4;
    const shared = new ServiceShared(new SharedArrayBuffer(Math.ceil(intBytes / 8) * 8 + workers * ROW_FLOATS * 8), workers);
    shared.ints[UID] = nextUid++;
    return shared;
  }

  /** The same block in another thread. */
  static attach(buffer: SharedArrayBuffer, workers: number): ServiceShared {
    return new ServiceShared(buffer, workers);
  }

  /** This service's uid, unique in the process for its lifetime (never reused). */
  get uid(): number {
    return this.ints[UID]!;
  }

  // ---- picking ------------------------------------------------------------------------------------

  /** The cursor's slot, advanced by one (mod `length`) in one compare-and-swap: never skipped, never repeated. */
  next(length: number): number {
    for (;;) {
      const at = Atomics.load(this.ints, CURSOR);
      // A plan of another length may have come in since the cursor was last written.
      const slot = at % length;
      if (Atomics.compareExchange(this.ints, CURSOR, at, (slot + 1) % length) === at) return slot;
    }
  }

  /** A new plan starts its sequence from the first slot, as with one worker. */
  resetCursor(): void {
    Atomics.store(this.ints, CURSOR, 0);
  }

  /** Connections open to backend `id`, across all workers. */
  backendActive(id: number): number {
    return Atomics.load(this.ints, BACKEND_ACTIVE + id);
  }

  /** Held while a pick reads the active counts and counts its choice (least_connections, power_of_two). */
  lock(): void {
    lockWord(this.ints, LOCK);
  }

  unlock(): void {
    unlockWord(this.ints, LOCK);
  }

  // ---- counting, from a worker --------------------------------------------------------------------

  /**
   * One more client for the service, unless `max` (0 = none) are open already across all workers. The
   * add comes first, so two workers cannot both take the last place.
   */
  admit(worker: number, max: number): boolean {
    const before = Atomics.add(this.ints, ACTIVE, 1);
    if (max > 0 && before >= max) {
      Atomics.sub(this.ints, ACTIVE, 1);
      return false;
    }
    this.ints[ROWS + worker * ROW_INTS]!++;
    return true;
  }

  leave(worker: number): void {
    Atomics.sub(this.ints, ACTIVE, 1);
    this.ints[ROWS + worker * ROW_INTS]!--;
  }

  /** A connection to backend `id` begins (counted from the pick: a burst must already see it). */
  backendOpened(worker: number, id: number): void {
    Atomics.add(this.ints, BACKEND_ACTIVE + id, 1);
    this.ints[ROWS + worker * ROW_INTS + 1 + id]!++;
  }

  backendClosed(worker: number, id: number): void {
    Atomics.sub(this.ints, BACKEND_ACTIVE + id, 1);
    this.ints[ROWS + worker * ROW_INTS + 1 + id]!--;
  }

  /** Worker `worker`'s cumulative counters: service fields at S.*, backend `id` at backendBase + id·B_FIELDS + B.*. */
  row(worker: number): Float64Array {
    return this.floats.subarray(worker * ROW_FLOATS, (worker + 1) * ROW_FLOATS);
  }

  /** Where backend `id`'s counters start in a row. */
  static backendBase(id: number): number {
    return S_FIELDS + id * B_FIELDS;
  }

  isSuspect(id: number): boolean {
    return Atomics.load(this.ints, SUSPECT + id) !== 0;
  }

  // ---- from the main thread -----------------------------------------------------------------------

  /** Set by the failure of a connect to `id`, cleared by a success (passive health). */
  setSuspect(id: number, suspect: boolean): void {
    Atomics.store(this.ints, SUSPECT + id, suspect ? 1 : 0);
  }

  /** Clients open across all workers. */
  get active(): number {
    return Atomics.load(this.ints, ACTIVE);
  }

  /** The sum over all workers of service counter `field` (an S index). */
  serviceSum(field: number): number {
    let n = 0;
    for (let w = 0; w < this.workers; w++) n += this.floats[w * ROW_FLOATS + field]!;
    return n;
  }

  /** The sum over all workers of backend `id`'s counter `field` (a B index). */
  backendSum(id: number, field: number): number {
    let n = 0;
    const at = ServiceShared.backendBase(id) + field;
    for (let w = 0; w < this.workers; w++) n += this.floats[w * ROW_FLOATS + at]!;
    return n;
  }

  /**
   * A worker is gone, and so are its connections (its thread's sockets closed with it): take its share
   * out of the shared active counts. Its cumulative counters stay (they never go backwards).
   */
  retire(worker: number): void {
    const row = ROWS + worker * ROW_INTS;
    Atomics.sub(this.ints, ACTIVE, this.ints[row]!);
    this.ints[row] = 0;
    for (let id = 0; id < MAX_BACKENDS; id++) {
      const held = this.ints[row + 1 + id]!;
      if (held === 0) continue;
      Atomics.sub(this.ints, BACKEND_ACTIVE + id, held);
      this.ints[row + 1 + id] = 0;
    }
  }

  /** A new backend takes `id`: its counters start from zero. */
  resetBackend(id: number): void {
    const at = ServiceShared.backendBase(id);
    for (let w = 0; w < this.workers; w++) this.floats.fill(0, w * ROW_FLOATS + at, w * ROW_FLOATS + at + B_FIELDS);
    Atomics.store(this.ints, SUSPECT + id, 0);
  }
}
