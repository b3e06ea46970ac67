/**
 * Real-socket helpers for the integration tests: test backends on 127.0.0.x, a client that collects
 * what it receives, free ports, and polling. No mocks: everything here opens kernel sockets.
 */
import type { Socket, TCPSocketListener } from "bun";
import { createHash } from "node:crypto";

/**
 * A port that was free a moment ago, for configs that need a fixed number. Never the same twice in one
 * test process (the kernel may hand a just-closed port out again).
 */
const handedOut = new Set<number>();
export async function freePort(host = "127.0.0.1"): Promise<number> {
  for (;;) {
    const l = Bun.listen({ hostname: host, port: 0, socket: { data() {} } });
    const port = l.port;
    l.stop(true);
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
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

/**
 * A backend that greets every connection with `<name>\n` and then echoes. Counts connections.
 * With `greet: false` it only echoes; with `echoOnEnd` it echoes everything only after the client's FIN
 * (to test half-close).
 */
export interface TestBackend {
  name: string;
  port: number;
  address: string;
  connections: number;
  open: Set<Socket<unknown>>;
  stop(): void;
}

export function startBackend(name: string, opts: { host?: string; port?: number; greet?: boolean; echoOnEnd?: boolean } = {}): TestBackend {
  const host = opts.host ?? "127.0.0.1";
  const backend: TestBackend = {
    name,
    port: 0,
    address: "",
    connections: 0,
    open: new Set(),
    stop: () => listener.stop(true),
  };
  const listener: TCPSocketListener<{ chunks: Buffer[] }> = Bun.listen<{ chunks: Buffer[] }>({
    hostname: host,
    port: opts.port ?? 0,
    allowHalfOpen: true,
    socket: {
      open(s) {
        s.data = { chunks: [] };
        backend.connections++;
        backend.open.add(s);
        if (opts.greet !== false) s.write(`${name}\n`);
      },
      data(s, d) {
        if (opts.echoOnEnd) s.data.chunks.push(Buffer.from(d));
        else writeAll(s, d);
      },
      end(s) {
        if (opts.echoOnEnd) writeAll(s, Buffer.concat(s.data.chunks), () => s.end());
        else s.end();
      },
      drain(s) {
        flushPending(s);
      },
      close(s) {
        backend.open.delete(s);
      },
    },
  });
  backend.port = listener.port;
  backend.address = `${host}:${listener.port}`;
  return backend;
}

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

export async function connect(host: string, port: number, opts: { allowHalfOpen?: boolean } = {}): Promise<Client> {
  const chunks: Buffer[] = [];
  let closedFlag = false;
  let onEnd!: () => void;
  let onClose!: () => void;
  const ended = new Promise<void>((r) => (onEnd = r));
  const closed = new Promise<void>((r) => (onClose = r));
  const socket = await Bun.connect({
    hostname: host,
    port,
    allowHalfOpen: opts.allowHalfOpen ?? true,
    socket: {
      data: (_s, d) => void chunks.push(Buffer.from(d)),
      drain: (s) => flushPending(s),
      end: () => onEnd(),
      close: () => {
        closedFlag = true;
        onEnd();
        onClose();
      },
      error: () => {},
    },
  });
  return {
    socket,
    received: () => Buffer.concat(chunks),
    text: () => Buffer.concat(chunks).toString(),
    ended,
    closed,
    isClosed: () => closedFlag,
  };
}

/** Connect, read the backend's greeting line, close. Returns the backend name (or "" if closed first). */
export async function whoServes(host: string, port: number): Promise<string> {
  const c = await connect(host, port);
  await Promise.race([waitFor("greeting", () => c.text().includes("\n") || c.isClosed(), 5000), c.closed]);
  c.socket.end();
  const line = c.text().split("\n")[0] ?? "";
  return line;
}
