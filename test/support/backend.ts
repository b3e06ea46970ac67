/**
 * The one test backend: a TCP server on real sockets that knows its name. Every suite uses it — the
 * integration tests and the demo in process, the netns suites as a process in a backend namespace
 * (test/xdp/netns/backend.ts), the e2e run as a FROM-scratch container (test/e2e/backend/main.ts), so
 * this file imports nothing but the e2e protocol. What it says depends on `behaviour`:
 *
 *   "echo"         "<name>\n" on accept, then every byte echoed; FIN answered with FIN.
 *   "echo-on-end"  no greeting; everything echoed only after the client's FIN (tests half-close).
 *   "close-first"  "<name>\n", then it closes (its side of every connection goes to TIME_WAIT).
 *   "source"       `sourceBytes` random bytes (drawn once; their SHA-256 is `sourceSha`) on accept, then
 *                  FIN (a download); with 0 bytes an upload sink: what the client sends is hashed for
 *                  onConnClosed, its FIN answered with FIN (Bun's end() closes both ways, so a sink must
 *                  not end first). Bulk data one way only: the netns ICMP suite.
 *   "e2e"          test/e2e/protocol.ts: HELLO <name> <instance>, ECHO <length> <hold-ms>, the echo,
 *                  the hold, OK <sha256> <length>, close.
 *
 *
 * With `proxy: true` every connection must start with a PROXY protocol header (v1 or v2), parsed by
 * test/support/proxyproto.ts — not by featherlb's code — before any of the above begins; the parsed
 * header is kept in `headers`, and "e2e" adds the client address it names to its HELLO. A connection
 * without a valid header is counted as malformed and closed.
 *
 * Writes follow Bun's rule (socket.write takes what the kernel takes): the rest is queued and reading
 * pauses until `drain`, so a slow reader stalls its peer instead of growing this process.
 */
import type { Socket, TCPSocketListener } from "bun";
import { formatHello, formatTrailer, LineReader, parseRequest, type EchoRequest } from "../e2e/protocol.ts";
import { parseProxyHeader, type ProxyHeader } from "./proxyproto.ts";

export type Behaviour = "echo" | "echo-on-end" | "close-first" | "source" | "e2e";

export interface BackendOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 (default) = a free port. */
  port?: number;
  /** Default "echo". */
  behaviour?: Behaviour;
  /**
   * "echo" and "close-first": greet with "<name>@<client IP>" (who connected: with featherlb in front,
   * the instance that carried the connection, since it connects from its own address).
   */
  showPeer?: boolean;
  /** Called as each connection closes with what it received ("echo", "source"): the client → backend leg. */
  onConnClosed?: (c: { bytes: number; sha256: string }) => void;
  /** "source": how many bytes each connection is sent. */
  sourceBytes?: number;
  /** Expect a PROXY protocol header at the start of every connection (see above). */
  proxy?: boolean;
  /** The instance token (default: drawn at start); one process serving two ports shares it. */
  instance?: string;
}

export interface BackendStats {
  accepted: number;
  active: number;
  /** "e2e": requests answered with a trailer. */
  completed: number;
  /** "e2e": connections that ended before their trailer (client or LB closed early). */
  aborted: number;
  /** "e2e": requests that were not a valid ECHO header. */
  malformed: number;
}

export interface TestBackend {
  name: string;
  /** A random token drawn at start ("e2e" sends it in HELLO): a restarted backend differs. */
  instance: string;
  port: number;
  /** "host:port", as a featherlb config names it. */
  address: string;
  stats: BackendStats;
  /** The connections open right now. */
  open: Set<Socket<Conn>>;
  /** "source": SHA-256 (hex) of the bytes each connection is sent. */
  sourceSha?: string;
  /** `proxy: true`: every header received, in order, with the peer address the connection itself had. */
  headers: Array<ProxyHeader & { from: string }>;
  stop(): void;
}

export interface Conn {
  /** Bytes the kernel did not take yet; reading is paused while this is non-empty. */
  pending: Uint8Array[];
  /** End the connection once `pending` is empty. */
  endWhenFlushed: boolean;
  received: number;
  hasher?: Bun.CryptoHasher;
  /** "echo-on-end": everything received, echoed at the FIN. */
  kept: Uint8Array[];
  /** "e2e" */
  reader: LineReader;
  request: EchoRequest | null;
  remaining: number;
  echoed: boolean;
  hold: ReturnType<typeof setTimeout> | null;
  done: boolean;
  /** `proxy: true`: bytes of a PROXY header not complete yet; null once it is read. */
  header: Uint8Array | null;
  /** `proxy: true`: the client address and port the header named ("ip:port"). */
  client?: string;
}

/** Write now what the kernel takes; queue (a copy of) the rest and stop reading until `drain`. */
function send(s: Socket<Conn>, bytes: Uint8Array): void {
  const c = s.data;
  if (c.pending.length) {
    c.pending.push(new Uint8Array(bytes));
    return;
  }
  const n = s.write(bytes);
  if (n < bytes.length) {
    c.pending.push(new Uint8Array(bytes.subarray(Math.max(0, n))));
    s.pause();
  }
}

/** End after everything queued has gone out. */
function endAfterFlush(s: Socket<Conn>): void {
  if (s.data.pending.length) s.data.endWhenFlushed = true;
  else s.end();
}

/** From `drain`: send what is queued; resume reading once it is all out. True when it is. */
function flush(s: Socket<Conn>): boolean {
  const c = s.data;
  while (c.pending.length) {
    const head = c.pending[0]!;
    const n = s.write(head);
    if (n < head.length) {
      c.pending[0] = head.subarray(Math.max(0, n));
      return false;
    }
    c.pending.shift();
  }
  s.resume();
  if (c.endWhenFlushed) s.end();
  return true;
}

export function startBackend(name: string, options: BackendOptions = {}): TestBackend {
  const host = options.host ?? "127.0.0.1";
  const behaviour = options.behaviour ?? "echo";
  const instance = options.instance ?? crypto.randomUUID().slice(0, 8);
  const stats: BackendStats = { accepted: 0, active: 0, completed: 0, aborted: 0, malformed: 0 };
  const open = new Set<Socket<Conn>>();
  const source = behaviour === "source" ? new Uint8Array(crypto.getRandomValues(new Uint8Array(options.sourceBytes ?? 0))) : undefined;
  const headers: TestBackend["headers"] = [];

  // ------------------------------------------------------------------ "e2e" (test/e2e/protocol.ts)
  const hello = (c: Conn) => formatHello({ backend: name, instance, client: c.client });

  /** Every payload byte echoed and flushed: hold, then the trailer and the close. */
  function finish(s: Socket<Conn>): void {
    const c = s.data;
    if (c.done || c.hold || c.pending.length) return;
    c.hold = setTimeout(() => {
      c.done = true;
      stats.completed++;
      s.end(formatTrailer({ sha256: c.hasher!.digest("hex"), length: c.request!.length }));
    }, c.request!.holdMs);
  }

  function payload(s: Socket<Conn>, bytes: Uint8Array): void {
    const c = s.data;
    if (bytes.length > c.remaining) {
      // More than the header announced: a broken client. Close rather than guess.
      stats.malformed++;
      s.terminate();
      return;
    }
    if (bytes.length) {
      c.hasher!.update(bytes);
      c.remaining -= bytes.length;
      send(s, bytes);
    }
    if (c.remaining === 0 && !c.echoed) {
      c.echoed = true;
      finish(s);
    }
  }

  function e2eData(s: Socket<Conn>, chunk: Uint8Array): void {
    const c = s.data;
    if (c.request) return payload(s, chunk);
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
      s.end("ERR expected: ECHO <length> <hold-ms>\n");
      return;
    }
    c.request = request;
    c.remaining = request.length;
    payload(s, line.rest);
  }

  /** What a connection gets first, once any PROXY header is read. */
  function greet(s: Socket<Conn>): void {
    const greeting = options.showPeer ? `${name}@${s.remoteAddress}\n` : `${name}\n`;
    if (behaviour === "e2e") s.write(hello(s.data));
    else if (behaviour === "close-first") s.end(greeting);
    else if (behaviour === "echo") send(s, Buffer.from(greeting));
    else if (behaviour === "source" && source!.length) {
      send(s, source!);
      endAfterFlush(s);
    }
  }

  // ------------------------------------------------------------------ the listener
  const listener: TCPSocketListener<Conn> = Bun.listen<Conn>({
    hostname: host,
    port: options.port ?? 0,
    allowHalfOpen: behaviour !== "e2e",
    socket: {
      open(s) {
        stats.accepted++;
        stats.active++;
        open.add(s);
        s.data = {
          pending: [],
          endWhenFlushed: false,
          received: 0,
          hasher: behaviour === "e2e" || options.onConnClosed ? new Bun.CryptoHasher("sha256") : undefined,
          kept: [],
          reader: new LineReader(),
          request: null,
          remaining: 0,
          echoed: false,
          hold: null,
          done: false,
          header: options.proxy ? new Uint8Array(0) : null,
        };
        s.setNoDelay(true);
        if (!options.proxy) greet(s);
      },
      data(s, chunk) {
        if (s.data.header) {
          const bytes = Buffer.concat([s.data.header, chunk]);
          let h: ProxyHeader | "more";
          try {
            h = parseProxyHeader(bytes);
          } catch {
            stats.malformed++;
            s.data.done = true; // not an aborted e2e request: a refused connection
            s.terminate();
            return;
          }
          if (h === "more") {
            s.data.header = bytes;
            return;
          }
          s.data.header = null;
          headers.push({ ...h, from: `${s.remoteAddress}:${s.remotePort}` });
          if (h.srcAddress !== undefined) s.data.client = `${h.srcAddress}:${h.srcPort}`;
          greet(s);
          chunk = bytes.subarray(h.length) as typeof chunk;
          if (chunk.length === 0) return;
        }
        if (behaviour === "e2e") return e2eData(s, chunk);
        s.data.received += chunk.length;
        if (behaviour === "echo-on-end") s.data.kept.push(Buffer.from(chunk));
        else if (behaviour === "echo") {
          s.data.hasher?.update(chunk);
          send(s, chunk);
        } else if (behaviour === "source") s.data.hasher?.update(chunk);
      },
      end(s) {
        if (s.data.header) return void s.end(); // closed before its PROXY header: nothing to answer
        if (behaviour === "echo-on-end") send(s, Buffer.concat(s.data.kept));
        if (behaviour === "echo" || behaviour === "echo-on-end" || behaviour === "source") endAfterFlush(s);
      },
      drain(s) {
        if (flush(s) && behaviour === "e2e" && s.data.echoed) finish(s);
      },
      close(s) {
        stats.active--;
        open.delete(s);
        const c = s.data;
        if (!c) return;
        if (c.hold) clearTimeout(c.hold);
        if (behaviour === "e2e" && !c.done) stats.aborted++;
        if ((behaviour === "echo" || behaviour === "source") && options.onConnClosed && c.received > 0) options.onConnClosed({ bytes: c.received, sha256: c.hasher!.digest("hex") });
      },
      error(s) {
        s.terminate();
      },
    },
  });

  return {
    name,
    instance,
    port: listener.port,
    address: `${host}:${listener.port}`,
    stats,
    open,
    sourceSha: source && new Bun.CryptoHasher("sha256").update(source).digest("hex"),
    headers,
    stop: () => listener.stop(true),
  };
}
