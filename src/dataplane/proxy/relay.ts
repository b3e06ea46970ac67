/**
 * One proxied connection: a client socket, a backend socket, and the bytes in flight between them.
 *
 * Backpressure: Bun's socket.write() takes what the kernel accepts and returns the count; it buffers
 * nothing. When a write is short, the rest is kept (one chunk, at most what one read returned) and the
 * *source* socket is paused until the destination's `drain` fires. So each direction holds at most one
 * read's worth of memory, however slow the reader. Before the backend is connected, client bytes are
 * held up to EARLY_DATA_LIMIT before the client is paused: most clients send one request, and not
 * pausing saves two epoll_ctl calls per connection.
 *
 * Half-close: both sockets are opened with allowHalfOpen. A FIN from one side is forwarded (shutdown of
 * the write half toward the other side) once its pending bytes are flushed; the other direction keeps
 * flowing. The pair is finished when both directions have carried their FIN, or when either side
 * closes abruptly (then the other side is reset too, like HAProxy's abort). A half-closed pair whose
 * other direction stays silent is ended by the data plane's sweeper after half_close_timeout.
 *
 * Kernel relay: once a pair has moved `offload.after` bytes here in bulk reads (BULK_READ), with nothing
 * pending either way, both sockets are paused and, one turn of the event loop later (so Bun has
 * delivered everything it read), handed to the relay thread (splice/), which moves their bytes from
 * then on. The pair stays here for everything else: `sync` counts what the relay thread moved and the FINs it saw (the sweeper calls it),
 * timeouts and closes end it through `offload.end`, and `relayDone` finishes it when the relay thread
 * is done. Bun may close its paused sockets on a hang-up meanwhile; that is ignored, the relay thread
 * decides.
 *
 * PROXY protocol: with accept_proxy the client's header is read by the data plane before the relay
 * starts (`peer` holds what it said); with send_proxy a header is the first thing the backend gets,
 * ahead of any client byte (it is put in front of what the client sent while we connected).
 */
import type { Socket } from "bun";
import { B, S, ServiceShared } from "../../control/shared.ts";
import { encodeV1, encodeV2, type Endpoints } from "./proxyproto.ts";
import type { SourceKey } from "./sources.ts";
import { Flag } from "./splice/table.ts";
import type { ProxiedBackend, ProxiedService } from "./view.ts";

/** A coarse clock for idle tracking, advanced by the sweeper: no clock read on the hot path. */
export const clock = { now: Date.now() };

/** Client bytes held while the backend connects before the client is paused. */
export const EARLY_DATA_LIMIT = 64 * 1024;

/**
 * Kernel relay: only reads at least this large count toward `after_bytes`. A read that large means the
 * socket had that much queued — a transfer outrunning us, where splice pays. Request/response traffic
 * in small messages never produces one, and stays here, where each message costs one read and one write
 * instead of four splices and an epoll wakeup (keep-alive lost ~20 % of its req/s when it was counted).
 */
export const BULK_READ = 16 * 1024;

/** The kernel relay as a pair sees it (the data plane implements it over splice/index.ts). */
export interface Offload {
  /** Bytes a pair moves here before it is handed over. */
  readonly after: number;
  /** Take the pair (its sockets paused, nothing pending): the relay thread's slot, or −1 (it stays here). */
  take(relay: Relay): number;
  /** What `take` reserved is free again (the relay thread is done with the pair). */
  release(): void;
  /** Bytes the relay thread moved for a slot: from the client, from the backend. */
  bytes(slot: number): [up: number, down: number];
  /** FIN bits of a slot (splice/table.ts Flag). */
  flags(slot: number): number;
  /** Ask the relay thread to end a slot: reset both sides, or FIN both ways. */
  end(slot: number, abort: boolean): void;
}

/** One direction of the relay. */
class Direction {
  /** We paused the source (its destination is full, or not connected yet). */
  paused = false;
  /** Bytes read from the source that the destination has not accepted yet. */
  pending: Buffer | null = null;
  /** The source sent FIN. */
  ended = false;
  /** We forwarded that FIN to the destination. */
  shut = false;
  /** The destination socket is closed: nothing more can be delivered. */
  gone = false;
}

export class Relay {
  backendSocket: Socket<Relay> | null = null;
  backend: ProxiedBackend | null = null;
  /** Where the backend's counters start in `row` (ServiceShared.backendBase), once attached; else -1. */
  private at = -1;
  /** Client → backend and backend → client. */
  readonly up = new Direction();
  readonly down = new Direction();
  lastActive = clock.now;
  finished = false;
  /** Backends that failed to connect for this client (connect retries skip them). */
  failed: Set<number> | null = null;
  /** accept_proxy: what the client's PROXY header said (null: the connection's own endpoints). */
  peer: Endpoints | null = null;
  /** accept_proxy: the header read so far, and when it must be complete (epoch ms); null once read. */
  awaiting: { buf: Buffer | null; deadline: number } | null = null;
  /** max_connections_per_source: the client IP this connection is counted under, once counted. */
  source: SourceKey | null = null;
  /** Kernel relay: the relay thread's slot once handed over; −1 while the bytes go through here. */
  slot = -1;
  /** Bytes relayed here in bulk reads (BULK_READ) since the last handover attempt, both directions. */
  private moved = 0;
  /** Paused for a handover that runs on the next turn of the event loop. */
  private handing = false;
  /** Bytes of the relay thread already counted: from the client, from the backend. */
  private readonly counted = [0, 0];

  constructor(
    readonly client: Socket<Relay>,
    readonly service: ProxiedService,
    /** This thread's counter row of the service (control/shared.ts): written here alone, summed by the main thread. */
    readonly row: Float64Array,
    readonly onFinish: (relay: Relay) => void,
    /** Kernel relay, when enabled. */
    private readonly offload: Offload | null = null,
  ) {}

  /** The client's IP: the one its PROXY header gave (accept_proxy), else the connection's. */
  get clientIp(): string {
    return this.peer?.src.address ?? this.client.remoteAddress;
  }

  /** Client and destination for a PROXY header toward the backend: as received, else the connection's. */
  endpoints(): Endpoints {
    const c = this.client;
    return this.peer ?? { src: { address: c.remoteAddress, port: c.remotePort }, dst: { address: c.localAddress, port: c.localPort } };
  }

  /** Called once the backend socket is open: flush what the client sent meanwhile, start reading. */
  attach(socket: Socket<Relay>, backend: ProxiedBackend): void {
    this.backendSocket = socket;
    this.backend = backend;
    this.at = ServiceShared.backendBase(backend.id);
    this.row[this.at + B.total]!++;
    // Bytes the client sent while we connected were counted for the service only.
    if (this.up.pending) this.row[this.at + B.bytesIn]! += this.up.pending.length;
    const proxy = this.service.config.send_proxy;
    if (proxy !== "off") {
      // Not counted as relayed bytes: the header is ours, not the client's.
      const header = proxy === "v1" ? encodeV1(this.endpoints()) : encodeV2(this.endpoints());
      this.up.pending = this.up.pending ? Buffer.concat([header, this.up.pending]) : header;
    }
    this.flush(this.up, socket);
    if (!this.up.pending) this.resume(this.up, this.client);
    this.offerIfDue();
  }

  /** One side has sent FIN (forwarded or about to be): the half_close_timeout applies. */
  get halfClosed(): boolean {
    return this.up.ended || this.down.ended;
  }

  /** Bytes from the client. Before the backend is connected they wait (see EARLY_DATA_LIMIT). */
  fromClient(data: Buffer): void {
    // A read after the handover would be out of order with what the relay thread moves: never relay it.
    if (this.slot >= 0) return this.finish(true);
    this.lastActive = clock.now;
    if (data.length >= BULK_READ) this.moved += data.length;
    this.row[S.bytesIn]! += data.length;
    if (this.at >= 0) this.row[this.at + B.bytesIn]! += data.length;
    this.forward(this.up, data, this.backendSocket, this.client);
  }

  fromBackend(data: Buffer): void {
    if (this.slot >= 0) return this.finish(true);
    this.lastActive = clock.now;
    if (data.length >= BULK_READ) this.moved += data.length;
    this.row[S.bytesOut]! += data.length;
    this.row[this.at + B.bytesOut]! += data.length;
    this.forward(this.down, data, this.client, this.backendSocket!);
  }

  private forward(dir: Direction, data: Buffer, dst: Socket<Relay> | null, src: Socket<Relay>): void {
    if (dir.gone) return this.finish(true);
    if (dir.pending || !dst) {
      // Before the backend connects, or a chunk that was in flight when we paused.
      dir.pending = dir.pending ? Buffer.concat([dir.pending, data]) : Buffer.from(data);
      if (dst || dir.pending.length > EARLY_DATA_LIMIT) this.pause(dir, src);
      return;
    }
    const n = dst.write(data);
    if (n < data.length) {
      // Copy: the rest must outlive this callback. Rare path, only under backpressure.
      dir.pending = Buffer.from(data.subarray(n < 0 ? 0 : n));
      this.pause(dir, src);
    } else this.offerIfDue();
  }

  private offerIfDue(): void {
    if (this.offload && this.moved >= this.offload.after) this.offer();
  }

  /** Nothing held here for either side and neither has ended: the pair may be handed over. */
  private get quiet(): boolean {
    return !this.up.pending && !this.down.pending && !this.halfClosed;
  }

  /** Kernel relay: pause both sides now, hand them over on the next turn (see the top of this file). */
  private offer(): void {
    if (this.handing || this.slot >= 0 || this.finished || !this.backendSocket || !this.quiet) return;
    this.handing = true;
    this.client.pause();
    this.backendSocket.pause();
    setImmediate(() => this.handOver());
  }

  private handOver(): void {
    this.handing = false;
    if (this.finished) return;
    // Re-checked: bytes Bun had read already may have arrived meanwhile.
    this.slot = this.quiet ? this.offload!.take(this) : -1;
    if (this.slot >= 0) {
      this.row[S.kernelRelayed]!++;
      return;
    }
    // Stays here (no room, or bytes arrived meanwhile): try again after as many bytes.
    this.moved = 0;
    if (!this.up.paused) this.client.resume();
    if (!this.down.paused) this.backendSocket!.resume();
  }

  /** Kernel relay: count what the relay thread moved since the last call, and the FINs it saw. */
  sync(): void {
    if (this.slot < 0) return;
    const [up, down] = this.offload!.bytes(this.slot);
    const dUp = up - this.counted[0]!;
    const dDown = down - this.counted[1]!;
    this.counted[0] = up;
    this.counted[1] = down;
    if (dUp > 0 || dDown > 0) this.lastActive = clock.now;
    this.row[S.bytesIn]! += dUp;
    this.row[S.bytesOut]! += dDown;
    this.row[this.at + B.bytesIn]! += dUp;
    this.row[this.at + B.bytesOut]! += dDown;
    const flags = this.offload!.flags(this.slot);
    if (flags & Flag.upEnded) this.up.ended = true;
    if (flags & Flag.downEnded) this.down.ended = true;
  }

  /** Kernel relay: the relay thread is done with this pair (both FINs crossed, or `abort`). */
  relayDone(abort: boolean): void {
    this.sync();
    this.offload!.release();
    this.slot = -1;
    this.finish(abort);
  }

  private pause(dir: Direction, src: Socket<Relay>): void {
    if (dir.paused) return;
    dir.paused = true;
    src.pause();
  }

  private resume(dir: Direction, src: Socket<Relay>): void {
    if (!dir.paused || dir.ended || this.finished) return;
    dir.paused = false;
    src.resume();
  }

  /** The destination of `dir` can take more: write what is pending, then resume its source. */
  drained(dir: Direction, dst: Socket<Relay>, src: Socket<Relay>): void {
    if (this.slot >= 0) return;
    this.flush(dir, dst);
    if (!dir.pending) this.resume(dir, src);
    this.offerIfDue();
  }

  private flush(dir: Direction, dst: Socket<Relay>): void {
    if (dir.pending) {
      const n = dst.write(dir.pending);
      dir.pending = n >= dir.pending.length ? null : dir.pending.subarray(n < 0 ? 0 : n);
    }
    if (!dir.pending && dir.ended && !dir.shut) this.shut(dir, dst);
  }

  /** The source of `dir` sent FIN: forward it once pending bytes are out. */
  ended(dir: Direction, dst: Socket<Relay> | null): void {
    if (this.slot >= 0) return;
    this.lastActive = clock.now;
    dir.ended = true;
    if (dst && !dir.pending) this.shut(dir, dst);
  }

  private shut(dir: Direction, dst: Socket<Relay>): void {
    dir.shut = true;
    // The last FIN: end() sends it as it closes both sockets; a shutdown() first would be a wasted syscall.
    if (this.up.shut && this.down.shut) return this.finish(false);
    dst.shutdown();
  }

  /**
   * One socket closed. With an error (reset, timeout) the pair is aborted: the other side is reset too.
   * A clean close means the peer's FIN arrived — Bun closes a half-open socket outright, without an
   * `end` event, when the peer's FIN comes after our own shutdown — so it is handled as that FIN: bytes
   * it sent that are still pending keep flowing, then the FIN is forwarded. Data that arrives later for
   * the closed socket aborts the pair (its peer is gone; HAProxy resets too).
   */
  closed(socket: Socket<Relay>, error?: Error): void {
    if (this.finished || this.slot >= 0) return;
    if (error) return this.finish(true);
    const toClosed = socket === this.client ? this.down : this.up;
    const fromClosed = socket === this.client ? this.up : this.down;
    const other = socket === this.client ? this.backendSocket : this.client;
    toClosed.gone = true;
    if (toClosed.pending) return this.finish(true);
    if (!toClosed.shut && toClosed.ended) toClosed.shut = true;
    if (!fromClosed.ended) this.ended(fromClosed, other);
    else if (toClosed.shut && fromClosed.shut) this.finish(false);
  }

  /** End the pair: gracefully once both FINs crossed, abruptly (reset) otherwise. */
  finish(abort: boolean): void {
    if (this.finished) return;
    this.finished = true;
    // Handed over: the relay thread ends its side; relayDone follows (and finds the pair finished).
    if (this.slot >= 0) this.offload!.end(this.slot, abort);
    for (const socket of [this.client, this.backendSocket]) {
      if (!socket) continue;
      if (abort) socket.terminate();
      else socket.end();
    }
    this.onFinish(this);
  }
}
