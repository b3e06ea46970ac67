/**
 * Real-socket helpers for the integration tests: free ports, polling, Bun's partial writes, and a
 * client connection that records what it receives. The backend is backend.ts; connections that read a
 * greeting or run a load are conn.ts and load.ts. No mocks: everything here opens kernel sockets.
 */
import type { Socket } from "bun";
import { createHash } from "node:crypto";
import * as net from "node:net";

/**
 * A port that was free on `host` a moment ago, for configs that need a fixed number. Reuse guard: never
 * the same number twice in one test process, since the kernel may hand a just-closed port out again
 * (to the next caller, or as another test's ephemeral port). Synchronous: callers may `await` it.
 */
const handedOut = new Set<number>();
export function freePort(host = "127.0.0.1"): number {
  for (let tries = 0; tries < 1000; tries++) {
    const l = Bun.listen({ hostname: host, port: 0, socket: { data() {} } });
    const port = l.port;
    l.stop(true);
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`freePort: no port on ${host} that was not handed out before`);
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await Bun.sleep(25);
  }
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
}

export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Write with Bun's no-buffering semantics: keep the rest and send it from `drain`. */
const pendingWrites = new WeakMap<Socket<any>, { buf: Buffer; then?: () => void }>();
export function writeAll(s: Socket<any>, data: Uint8Array, then?: () => void): void {
  const prev = pendingWrites.get(s);
  if (prev) {
    prev.buf = Buffer.concat([prev.buf, data]);
    prev.then = then ?? prev.then;
    return;
  }
  const n = s.write(data);
  if (n < data.length) pendingWrites.set(s, { buf: Buffer.from(data.subarray(Math.max(n, 0))), then });
  else then?.();
}
export function flushPending(s: Socket<any>): void {
  const p = pendingWrites.get(s);
  if (!p) return;
  const n = s.write(p.buf);
  if (n >= p.buf.length) {
    pendingWrites.delete(s);
    p.then?.();
  } else p.buf = p.buf.subarray(Math.max(n, 0));
}

/** A client connection that records everything it receives and whether/when the peer closed. */
export interface Client {
  socket: Socket<unknown>;
  received(): Buffer;
  text(): string;
  ended: Promise<void>;
  closed: Promise<void>;
  isClosed(): boolean;
}

/** What a Client records, fed by whichever socket API carries it (Bun.connect, node:net). */
function recorder() {
  const chunks: Buffer[] = [];
  let closedFlag = false;
  let onEnd!: () => void;
  let onClose!: () => void;
  const ended = new Promise<void>((r) => (onEnd = r));
  const closed = new Promise<void>((r) => (onClose = r));
  return {
    data: (d: Uint8Array) => void chunks.push(Buffer.from(d)),
    end: () => onEnd(),
    close: () => {
      closedFlag = true;
      onEnd();
      onClose();
    },
    client: (socket: Socket<unknown>): Client => ({
      socket,
      received: () => Buffer.concat(chunks),
      text: () => Buffer.concat(chunks).toString(),
      ended,
      closed,
      isClosed: () => closedFlag,
    }),
  };
}

export async function connect(host: string, port: number, opts: { allowHalfOpen?: boolean } = {}): Promise<Client> {
  const r = recorder();
  const socket = await Bun.connect({
    hostname: host,
    port,
    allowHalfOpen: opts.allowHalfOpen ?? true,
    socket: {
      data: (_s, d) => r.data(d),
      drain: (s) => flushPending(s),
      end: r.end,
      close: r.close,
      error: () => {},
    },
  });
  return r.client(socket);
}

/**
 * A Client bound to the local address `source` (any 127.0.0.0/8 address is this host's), for tests of
 * per-source behaviour. node:net, since Bun.connect cannot choose its local address. Only `end` and
 * `write` of `socket` are there.
 */
export function connectFrom(host: string, port: number, source: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const r = recorder();
    const s = net.connect({ host, port, localAddress: source, allowHalfOpen: true }, () =>
      resolve(r.client({ end: () => void s.end(), write: (d: string | Uint8Array) => (s.write(d), d.length) } as unknown as Socket<unknown>)),
    );
    s.on("data", r.data);
    s.on("end", r.end);
    s.on("close", r.close);
    s.on("error", reject);
  });
}
