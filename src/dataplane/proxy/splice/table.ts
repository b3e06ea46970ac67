/**
 * The memory a proxy thread shares with its relay thread (kernel relay, docs/config.md#kernel_relay):
 * one slot per relayed connection, a ring of commands, and per-slot byte counters.
 *
 * Ownership of a slot passes back and forth through `phase`, so a field is only ever written by one
 * side at a time:
 *
 *   FREE   ─ owner: dup the two sockets, write their fds, phase = QUEUED, push the slot ─▶
 *   QUEUED ─ relay thread: make the pipes, epoll the sockets, phase = LIVE ─▶
 *   LIVE   ─ relay thread: both directions ended (or an error, or the owner's ABORT/FINISH): close
 *            every descriptor, phase = DONE, post {slot} to the owner ─▶
 *   DONE   ─ owner: account the last bytes, finish the connection, phase = FREE.
 *
 * The owner may set `cmd` (ABORT, FINISH) on a QUEUED or LIVE slot and push it again; the relay thread
 * acts on it when it reads the slot from the ring. The counters are written by the relay thread alone
 * and read by the owner, which may see a value one splice old: it only takes differences.
 *
 * Commands travel through a single-producer single-consumer ring of slot numbers: the owner writes
 * an entry, then publishes it by storing `head` (Atomics, a release); the relay thread reads `head`
 * (an acquire) before the entries up to it. Head and tail count modulo twice the ring's length, so
 * equal means empty and the index is the count modulo the length. An eventfd wakes the relay thread
 * from epoll_wait.
 */

export const Phase = { free: 0, queued: 1, live: 2, done: 3 } as const;
export const Cmd = { none: 0, abort: 1, finish: 2 } as const;
/** Bits of `flags`: which sources have sent their FIN (the relay thread sets them). */
export const Flag = { upEnded: 1, downEnded: 2 } as const;

/** Int32 fields of one slot. */
const F = {
  phase: 0,
  cmd: 1,
  clientFd: 2,
  backendFd: 3,
  flags: 4,
  /** The pipes' four descriptors (up read, up write, down read, down write): −1 until made. */
  pipes: 5,
  size: 10,
} as const;

/** Header Int32s: the ring's head (owner) and tail (relay thread), and a stop flag. */
const H = { head: 0, tail: 1, stop: 2, size: 3 } as const;

export interface TableInit {
  slots: number;
  ints: SharedArrayBuffer;
  bytes: SharedArrayBuffer;
  /** The eventfd that wakes the relay thread. */
  wake: number;
}

export class SpliceTable {
  readonly slots: number;
  private readonly ints: Int32Array;
  /** Per slot: [2s] bytes received from the client (and passed on), [2s + 1] from the backend. */
  readonly bytes: Float64Array;
  private readonly ring: number;
  private readonly slotBase: number;

  private constructor(readonly init: TableInit) {
    this.slots = init.slots;
    this.ints = new Int32Array(init.ints);
    this.bytes = new Float64Array(init.bytes);
    this.ring = 2 * init.slots; // each slot has at most two commands outstanding (its add, then abort or finish)
    this.slotBase = H.size + this.ring;
  }

  static create(slots: number, wake: number): SpliceTable {
    const ints = new SharedArrayBuffer(4 * (H.size + 2 * slots + F.size * slots));
    return new SpliceTable({ slots, ints, bytes: new SharedArrayBuffer(16 * slots), wake });
  }

  static attach(init: TableInit): SpliceTable {
    return new SpliceTable(init);
  }

  private at(slot: number, field: number): number {
    return this.slotBase + slot * F.size + field;
  }

  phase(slot: number): number {
    return Atomics.load(this.ints, this.at(slot, F.phase));
  }

  setPhase(slot: number, phase: number): void {
    Atomics.store(this.ints, this.at(slot, F.phase), phase);
  }

  cmd(slot: number): number {
    return Atomics.load(this.ints, this.at(slot, F.cmd));
  }

  flags(slot: number): number {
    return Atomics.load(this.ints, this.at(slot, F.flags));
  }

  setFlag(slot: number, flag: number): void {
    Atomics.or(this.ints, this.at(slot, F.flags), flag);
  }

  /** The two sockets' descriptors (the owner's duplicates, closed by the relay thread). */
  sockets(slot: number): [client: number, backend: number] {
    return [this.ints[this.at(slot, F.clientFd)]!, this.ints[this.at(slot, F.backendFd)]!];
  }

  /** The relay thread records the pipes it made, so whoever cleans up after it knows them. */
  setPipes(slot: number, fds: readonly number[]): void {
    for (let i = 0; i < 4; i++) this.ints[this.at(slot, F.pipes + i)] = fds[i] ?? -1;
  }

  /** Every descriptor a slot holds (sockets, then pipes; −1 for none). */
  descriptors(slot: number): number[] {
    return Array.from({ length: 6 }, (_, i) => this.ints[this.at(slot, F.clientFd + (i < 2 ? i : i + 1))]!);
  }

  // ---- the owner's side ----

  /** Hand a connection (its duplicated sockets) to the relay thread. */
  queue(slot: number, clientFd: number, backendFd: number): void {
    this.ints[this.at(slot, F.clientFd)] = clientFd;
    this.ints[this.at(slot, F.backendFd)] = backendFd;
    this.ints[this.at(slot, F.flags)] = 0;
    this.ints[this.at(slot, F.cmd)] = Cmd.none;
    this.setPipes(slot, []);
    this.bytes[2 * slot] = 0;
    this.bytes[2 * slot + 1] = 0;
    this.setPhase(slot, Phase.queued);
    this.push(slot);
  }

  /** Ask the relay thread to end a queued or live connection. */
  command(slot: number, cmd: number): void {
    Atomics.store(this.ints, this.at(slot, F.cmd), cmd);
    this.push(slot);
  }

  private push(slot: number): void {
    const head = this.ints[H.head]!;
    this.ints[H.size + (head % this.ring)] = slot;
    Atomics.store(this.ints, H.head, (head + 1) % (2 * this.ring));
  }

  /** Tell the relay thread to stop (it leaves what it holds to `release`). */
  stop(): void {
    Atomics.store(this.ints, H.stop, 1);
  }

  // ---- the relay thread's side ----

  /** The slots pushed since the last call, in order. */
  take(): number[] {
    const head = Atomics.load(this.ints, H.head);
    let tail = this.ints[H.tail]!;
    const out: number[] = [];
    while (tail !== head) {
      out.push(this.ints[H.size + (tail % this.ring)]!);
      tail = (tail + 1) % (2 * this.ring);
    }
    this.ints[H.tail] = tail;
    return out;
  }

  get stopped(): boolean {
    return Atomics.load(this.ints, H.stop) === 1;
  }
}
