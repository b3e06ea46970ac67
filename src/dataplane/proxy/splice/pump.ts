/**
 * The relay thread's loop: it moves the bytes of the connections a proxy thread handed over, each
 * direction through a pipe with splice(2) — socket → pipe → socket, the payload never copied into user
 * space (pages move by reference where the socket allows it) and never seen by JavaScript.
 *
 * Per direction the pipe holds at most `pipeSize` bytes: a source is read only when its pipe is empty,
 * and a pipe is emptied only as fast as the destination socket takes it. So a slow reader stops the
 * source being read, its receive buffer fills and TCP closes the window — the same backpressure as the
 * JavaScript relay, with the pipe in place of its one pending chunk.
 *
 * Readiness is edge-triggered (EPOLLET): both sockets of a pair are registered once, for reading and
 * writing, with the slot as the event's data, and any event on either runs both directions until each
 * has to wait (EAGAIN) or has ended. A direction that is never told EAGAIN must be run again without a
 * new edge, so one turn moves at most TURN_BYTES per direction and a pair that used its turn goes on
 * the `again` list, run before the next wait (which then does not block): one fast stream cannot starve
 * the others.
 *
 * Half-close: a source's end of stream (splice returns 0) is forwarded with shutdown(SHUT_WR) once its
 * pipe is empty; the other direction keeps flowing. The pair is done when both directions have carried
 * their FIN; a failed splice (a reset, EPIPE toward a peer that has gone) aborts it: both sockets are
 * set to reset on close, like the JavaScript relay's abort.
 */
import * as libc from "./libc.ts";
import { Cmd, Flag, Phase, type SpliceTable } from "./table.ts";

/** The eventfd's epoll data: beyond any slot. */
const WAKE = 0xffffffff;
const EVENTS = libc.EPOLLIN | libc.EPOLLOUT | libc.EPOLLRDHUP | libc.EPOLLET;
/** Bytes one direction may move per turn before the pair yields to the others. */
const TURN_BYTES = 4 << 20;
const MAX_EVENTS = 256;

interface Direction {
  src: number;
  dst: number;
  /** The pipe's read and write ends. */
  r: number;
  w: number;
  /** Bytes in the pipe. */
  inPipe: number;
  /** The source sent FIN. */
  ended: boolean;
  /** We forwarded it (shutdown of the destination's write half). */
  shut: boolean;
  /** Index of this direction's counter in the table's `bytes`; its bit in `flags`. */
  counter: number;
  flag: number;
}

interface Pair {
  slot: number;
  up: Direction;
  down: Direction;
}

type Outcome = "wait" | "more" | "error";

export class Pump {
  private readonly ep: number;
  private readonly pairs = new Map<number, Pair>();
  private again = new Set<Pair>();
  /** The set `again` was in the previous turn, emptied: the two swap instead of a new set a turn. */
  private spare = new Set<Pair>();
  /** Slots finished in this turn and whether they were aborted, posted to the owner in one message. */
  private finished: [slot: number, abort: boolean][] = [];

  constructor(
    private readonly table: SpliceTable,
    private readonly pipeSize: number,
    private readonly post: (finished: [number, boolean][]) => void,
  ) {
    this.ep = libc.epollCreate();
    if (this.ep < 0) throw new Error(`epoll_create1 failed (errno ${libc.errno()})`);
    if (libc.epollAdd(this.ep, table.init.wake, libc.EPOLLIN, WAKE) !== 0) throw new Error(`epoll_ctl(eventfd) failed (errno ${libc.errno()})`);
  }

  /** Serve until the owner says stop. Blocks the calling thread (a thread of its own: thread.ts). */
  run(): void {
    const events = new Uint8Array(MAX_EVENTS * libc.EPOLL_EVENT_SIZE);
    const view = new DataView(events.buffer);
    while (!this.table.stopped) {
      const n = libc.epollWait(this.ep, events, MAX_EVENTS, this.again.size > 0 ? 0 : 1000);
      if (n < 0 && libc.errno() !== libc.EINTR) throw new Error(`epoll_wait failed (errno ${libc.errno()})`);
      const turn = this.again;
      this.again = this.spare;
      for (let i = 0; i < n; i++) {
        const data = view.getUint32(i * libc.EPOLL_EVENT_SIZE + libc.EPOLL_DATA_OFFSET, true);
        if (data === WAKE) {
          libc.consume(this.table.init.wake);
          this.commands();
          continue;
        }
        const pair = this.pairs.get(data);
        if (pair) turn.add(pair);
      }
      for (const pair of turn) if (this.pairs.has(pair.slot)) this.pump(pair);
      turn.clear();
      this.spare = turn;
      this.report();
    }
    // Told to stop: what is still held is reset (the owner ended its connections before stopping us,
    // but their commands may be in the ring still).
    this.commands();
    for (const pair of [...this.pairs.values()]) this.finish(pair, true);
    this.report();
    libc.close(this.ep);
  }

  private report(): void {
    if (this.finished.length === 0) return;
    this.post(this.finished);
    this.finished = [];
  }

  /** Slots the owner pushed: new connections, and ends it asks for. */
  private commands(): void {
    for (const slot of this.table.take()) {
      if (this.table.phase(slot) === Phase.queued) this.add(slot);
      const pair = this.pairs.get(slot);
      if (!pair) continue;
      const cmd = this.table.cmd(slot);
      if (cmd === Cmd.abort) this.finish(pair, true);
      else if (cmd === Cmd.finish) {
        // Ended like a finished pair (the half-close timeout): FIN both ways, bytes in the pipes dropped.
        libc.shutdownWrite(pair.up.dst);
        libc.shutdownWrite(pair.down.dst);
        this.finish(pair, false);
      }
    }
  }

  private add(slot: number): void {
    const [client, backend] = this.table.sockets(slot);
    const up = libc.pipe(this.pipeSize);
    const down = up && libc.pipe(this.pipeSize);
    this.table.setPipes(slot, [...(up ?? []), ...(down ?? [])]);
    this.table.setPhase(slot, Phase.live);
    const pair: Pair = {
      slot,
      up: { src: client, dst: backend, r: up?.[0] ?? -1, w: up?.[1] ?? -1, inPipe: 0, ended: false, shut: false, counter: 2 * slot, flag: Flag.upEnded },
      down: { src: backend, dst: client, r: down?.[0] ?? -1, w: down?.[1] ?? -1, inPipe: 0, ended: false, shut: false, counter: 2 * slot + 1, flag: Flag.downEnded },
    };
    this.pairs.set(slot, pair);
    // Out of descriptors or memory for the pipes, or the sockets cannot be polled: reset, as the
    // JavaScript relay's abort (the owner counted the descriptors before handing over, so rarely).
    if (!down || libc.epollAdd(this.ep, client, EVENTS, slot) !== 0 || libc.epollAdd(this.ep, backend, EVENTS, slot) !== 0) {
      return this.finish(pair, true);
    }
    this.pump(pair);
  }

  private pump(pair: Pair): void {
    const up = this.move(pair.slot, pair.up);
    if (up === "error") return this.finish(pair, true);
    const down = this.move(pair.slot, pair.down);
    if (down === "error") return this.finish(pair, true);
    if (pair.up.shut && pair.down.shut) return this.finish(pair, false);
    if (up === "more" || down === "more") this.again.add(pair);
  }

  /**
   * Run one direction until it must wait (its source has nothing, its destination takes nothing) or
   * has ended; "more" when it used its turn with bytes still coming.
   */
  private move(slot: number, d: Direction): Outcome {
    let moved = 0;
    while (moved < TURN_BYTES) {
      if (d.inPipe > 0) {
        const n = libc.splice(d.r, d.dst, d.inPipe);
        if (n > 0) {
          d.inPipe -= n;
          continue;
        }
        // EAGAIN: the destination's send buffer is full; its EPOLLOUT edge brings us back.
        return n < 0 && libc.errno() === libc.EAGAIN ? "wait" : "error";
      }
      if (d.ended) {
        if (!d.shut) {
          d.shut = true;
          // A destination already reset fails here; its own direction reports the error.
          libc.shutdownWrite(d.dst);
        }
        return "wait";
      }
      // The pipe is empty, so EAGAIN can only mean the source has nothing to read.
      const n = libc.splice(d.src, d.w, this.pipeSize);
      if (n > 0) {
        d.inPipe += n;
        moved += n;
        // Written by this thread alone; the owner reads differences (table.ts).
        this.table.bytes[d.counter]! += n;
        continue;
      }
      if (n === 0) {
        d.ended = true;
        this.table.setFlag(slot, d.flag);
        continue;
      }
      return libc.errno() === libc.EAGAIN ? "wait" : "error";
    }
    return "more";
  }

  /**
   * Give the pair back: out of epoll, every descriptor closed, the owner told. An aborted pair's
   * sockets reset when their last descriptor closes (the owner's, when it finishes the connection).
   * The phase turns DONE before the descriptors close: whoever cleans up after a thread that died
   * skips a DONE slot, so a descriptor is never closed twice (at worst one leaks).
   */
  private finish(pair: Pair, abort: boolean): void {
    const { slot, up, down } = pair;
    this.pairs.delete(slot);
    this.again.delete(pair);
    for (const fd of [up.src, down.src]) {
      libc.epollDel(this.ep, fd); // fails harmlessly for one never added
      if (abort) libc.resetOnClose(fd);
    }
    this.table.setPhase(slot, Phase.done);
    for (const fd of [up.src, down.src, up.r, up.w, down.r, down.w]) libc.close(fd);
    this.finished.push([slot, abort]);
  }
}
