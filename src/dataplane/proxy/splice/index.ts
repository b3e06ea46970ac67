/**
 * The kernel relay of one proxy thread (`kernel_relay`, docs/config.md): connections that have moved
 * `after_bytes` are handed to a relay thread of this proxy thread, which moves their bytes with
 * splice(2) (pump.ts) while this thread keeps everything else: the connection's place in the counts,
 * its timeouts, its metrics, and closing it.
 *
 * A handover duplicates the two sockets' descriptors for the relay thread: Bun keeps its own, paused
 * (it reads nothing more) but open, and may close them whenever its poller reports a hang-up; the
 * duplicates keep the sockets alive until the relay thread is done. A relayed connection holds eight
 * descriptors (Bun's two, the two duplicates, two pipes), so it takes three more connections' worth of
 * the descriptor capacity (descriptors.ts); when that is not there, the connection stays in JavaScript.
 *
 * The relay thread is started with the first handover. If it cannot start, or dies, connections stay
 * in JavaScript from then on (logged once), and those it held are reset: the descriptors it left open
 * are closed here (table.ts says why a descriptor is never closed twice).
 */
import type { Logger } from "../../../control/log.ts";
import * as libc from "./libc.ts";
import { Cmd, Phase, SpliceTable, type TableInit } from "./table.ts";
import type { RelayThreadInit } from "./thread.ts";

/** What `kernel_relay` configures, with the relay thread's script (an entry point of its own). */
export interface KernelRelaySettings {
  enabled: boolean;
  /** Bytes a connection moves in JavaScript (both directions together) before it is handed over. */
  after_bytes: number;
  /** Each direction's pipe: the most a relayed direction holds in flight. */
  pipe_bytes: number;
  /** The relay thread's script, as a URL (runtime.ts; thread.ts from source). */
  thread: string;
}

export const DEFAULT_RELAY_THREAD = new URL("./thread.ts", import.meta.url).href;

/** What a relayed connection is to this module. */
export interface Handed {
  /** The relay thread finished it (both FINs crossed, or `abort`: a reset or an error). */
  relayDone(abort: boolean): void;
}

/** Extra connections' worth of descriptors a relayed connection holds (six more than the two counted). */
export const EXTRA_SHARES = 3;

export class KernelRelay {
  private table: SpliceTable | null = null;
  private thread: Worker | null = null;
  private wake = -1;
  private readonly free: number[] = [];
  private readonly held: (Handed | null)[];
  /** The thread could not start or died: no more handovers. */
  private broken = false;

  constructor(
    readonly settings: KernelRelaySettings,
    /** Connections this thread may relay at once. */
    readonly slots: number,
    private readonly log: Logger,
    /** Told the table once the relay thread starts: whoever outlives this thread cleans up after it. */
    private readonly onTable?: (table: TableInit) => void,
  ) {
    this.held = new Array(slots).fill(null);
    for (let s = slots - 1; s >= 0; s--) this.free.push(s);
  }

  get available(): boolean {
    return !this.broken && this.free.length > 0;
  }

  /**
   * Hand the connection on `clientFd`/`backendFd` over; its sockets must be paused, with nothing of
   * theirs pending in JavaScript. Returns the slot, or −1 (the connection stays in JavaScript).
   */
  handOver(who: Handed, clientFd: number | undefined, backendFd: number | undefined): number {
    if (!this.available || clientFd === undefined || backendFd === undefined || !this.started()) return -1;
    const c = libc.dup(clientFd);
    const b = c >= 0 ? libc.dup(backendFd) : -1;
    if (b < 0) {
      libc.close(c);
      return -1;
    }
    const slot = this.free.pop()!;
    this.held[slot] = who;
    this.table!.queue(slot, c, b);
    libc.signal(this.wake);
    return slot;
  }

  /** Bytes the relay thread has moved for `slot`: from the client, from the backend. */
  bytes(slot: number): [up: number, down: number] {
    const b = this.table!.bytes;
    return [b[2 * slot]!, b[2 * slot + 1]!];
  }

  flags(slot: number): number {
    return this.table!.flags(slot);
  }

  /** End a relayed connection from this side (a timeout, drain, close): reset, or FIN both ways. */
  end(slot: number, abort: boolean): void {
    if (this.broken || this.table!.phase(slot) === Phase.done) return;
    this.table!.command(slot, abort ? Cmd.abort : Cmd.finish);
    libc.signal(this.wake);
  }

  private started(): boolean {
    if (this.thread) return true;
    const wake = libc.eventFd();
    if (wake < 0) return this.fail(`eventfd failed (errno ${libc.errno()})`);
    let thread: Worker;
    try {
      thread = new Worker(this.settings.thread);
    } catch (err) {
      libc.close(wake);
      return this.fail((err as Error).message);
    }
    this.wake = wake;
    this.table = SpliceTable.create(this.slots, wake);
    this.thread = thread;
    this.onTable?.(this.table.init);
    thread.onmessage = (event: MessageEvent<[number, boolean][]>) => {
      for (const [slot, abort] of event.data) this.done(slot, abort);
    };
    thread.addEventListener("error", (event) => this.died((event as ErrorEvent).message));
    thread.addEventListener("close", () => this.died("the relay thread exited"));
    const init: RelayThreadInit = { table: this.table.init, pipeSize: this.settings.pipe_bytes };
    thread.postMessage(init);
    return true;
  }

  private done(slot: number, abort: boolean): void {
    const who = this.held[slot];
    this.held[slot] = null;
    this.table!.setPhase(slot, Phase.free);
    this.free.push(slot);
    who?.relayDone(abort);
  }

  private fail(reason: string): false {
    this.broken = true;
    this.log.warn("kernel relay unavailable: connections are relayed in JavaScript", { reason });
    return false;
  }

  /** The relay thread is gone (an exception, or close): reset what it held. */
  private died(reason: string): void {
    if (this.broken || !this.thread) return;
    this.fail(reason);
    resetLeftovers(this.table!.init, false);
    for (let slot = 0; slot < this.slots; slot++) if (this.held[slot]) this.done(slot, true);
  }

  /** Stop the relay thread (after its connections were ended: `end`). */
  close(): void {
    if (!this.thread) return;
    const thread = this.thread;
    this.broken = true; // no handover after close
    this.table!.stop();
    libc.signal(this.wake);
    // The eventfd is closed once the thread has left its loop (it may still be polling it).
    thread.addEventListener("close", () => libc.close(this.wake));
  }
}

/** Tell a relay thread to stop (it resets what it holds) and wake it. */
export function stopRelay(init: TableInit): void {
  SpliceTable.attach(init).stop();
  libc.signal(init.wake);
}

/**
 * Reset the connections a relay thread that is gone still held: the descriptors of every slot it had
 * not finished (QUEUED or LIVE) are closed, set to reset; a DONE slot closed its own already (table.ts),
 * so none is closed twice. `wake`: close the table's eventfd too (its owner is gone as well: a proxy
 * worker that died, cleaned up by the pool in the main thread).
 */
export function resetLeftovers(init: TableInit, wake: boolean): void {
  const table = SpliceTable.attach(init);
  table.stop();
  for (let slot = 0; slot < table.slots; slot++) {
    const phase = table.phase(slot);
    if (phase !== Phase.queued && phase !== Phase.live) continue;
    for (const fd of table.descriptors(slot)) {
      if (fd < 0) continue;
      libc.resetOnClose(fd);
      libc.close(fd);
    }
    table.setPhase(slot, Phase.done);
  }
  if (wake) libc.close(init.wake);
}
