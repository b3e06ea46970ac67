/**
 * The e2e backend: a TCP server that greets with its identity and echoes (protocol.ts). One instance is
 * deployed several times by compose.yml; each learns its name from BACKEND_ID.
 */
import type { Socket, TCPSocketListener } from "bun";
import { formatHello, formatTrailer, LineReader, parseRequest, type EchoRequest } from "../protocol.ts";

export interface BackendOptions {
  /** The name the client counts by (the Compose service name in compose.yml). */
  id: string;
  hostname?: string;
  /** 0 = any free port (tests). */
  port?: number;
}

export interface BackendStats {
  accepted: number;
  completed: number;
  /** Connections that ended before their echo finished (client or LB closed early). */
  aborted: number;
  /** Requests that were not a valid ECHO header. */
  malformed: number;
  active: number;
}

interface Conn {
  reader: LineReader;
  request: EchoRequest | null;
  /** Payload bytes still expected. */
  remaining: number;
  hasher: Bun.CryptoHasher;
  /** Bytes the kernel did not take yet; reading is paused while this is non-empty (backpressure). */
  pending: Uint8Array[];
  /** All payload echoed: hold, then send the trailer once `pending` is empty. */
  echoed: boolean;
  hold: ReturnType<typeof setTimeout> | null;
  done: boolean;
}

export interface RunningBackend {
  readonly port: number;
  readonly instance: string;
  readonly stats: BackendStats;
  stop(): void;
}

export function startBackend(options: BackendOptions): RunningBackend {
  const instance = crypto.randomUUID().slice(0, 8);
  const hello = formatHello({ backend: options.id, instance });
  const stats: BackendStats = { accepted: 0, completed: 0, aborted: 0, malformed: 0, active: 0 };

  /** Write now what the kernel takes; queue the rest and stop reading until `drain`. */
  function send(socket: Socket<Conn>, bytes: Uint8Array): void {
    const c = socket.data;
    if (c.pending.length) {
      c.pending.push(bytes.slice());
      return;
    }
    const n = socket.write(bytes);
    if (n < bytes.length) {
      c.pending.push(bytes.slice(Math.max(0, n)));
      socket.pause();
    }
  }

  function flush(socket: Socket<Conn>): void {
    const c = socket.data;
    while (c.pending.length) {
      const head = c.pending[0]!;
      const n = socket.write(head);
      if (n < head.length) {
        c.pending[0] = head.subarray(Math.max(0, n));
        return;
      }
      c.pending.shift();
    }
    socket.resume();
    if (c.echoed) finish(socket);
  }

  function finish(socket: Socket<Conn>): void {
    const c = socket.data;
    if (c.done || c.hold || c.pending.length) return;
    c.hold = setTimeout(() => {
      c.done = true;
      stats.completed++;
      socket.end(formatTrailer({ sha256: c.hasher.digest("hex"), length: c.request!.length }));
    }, c.request!.holdMs);
  }

  function payload(socket: Socket<Conn>, bytes: Uint8Array): void {
    const c = socket.data;
    if (bytes.length > c.remaining) {
      // More than the header announced: a broken client. Close rather than guess.
      stats.malformed++;
      socket.terminate();
      return;
    }
    if (bytes.length) {
      c.hasher.update(bytes);
      c.remaining -= bytes.length;
      send(socket, bytes);
    }
    if (c.remaining === 0 && !c.echoed) {
      c.echoed = true;
      finish(socket);
    }
  }

  const listener: TCPSocketListener<Conn> = Bun.listen<Conn>({
    hostname: options.hostname ?? "0.0.0.0",
    port: options.port ?? 0,
    socket: {
      open(socket) {
        stats.accepted++;
        stats.active++;
        socket.data = {
          reader: new LineReader(),
          request: null,
          remaining: 0,
          hasher: new Bun.CryptoHasher("sha256"),
          pending: [],
          echoed: false,
          hold: null,
          done: false,
        };
        socket.setNoDelay(true);
        socket.write(hello);
      },
      data(socket, chunk) {
        const c = socket.data;
        if (c.request) return payload(socket, chunk);
        let line;
        try {
          line = c.reader.push(chunk);
        } catch {
          line = { line: "", rest: new Uint8Array(0) };
        }
        if (!line) return;
        const request = parseRequest(line.line);
        if (!request) {
          stats.malformed++;
          socket.end("ERR expected: ECHO <length> <hold-ms>\n");
          return;
        }
        c.request = request;
        c.remaining = request.length;
        payload(socket, line.rest);
      },
      drain(socket) {
        flush(socket);
      },
      close(socket) {
        stats.active--;
        const c = socket.data;
        if (c?.hold) clearTimeout(c.hold);
        if (c && !c.done) stats.aborted++;
      },
      error(socket) {
        socket.terminate();
      },
    },
  });

  return {
    port: listener.port,
    instance,
    stats,
    stop: () => listener.stop(true),
  };
}
