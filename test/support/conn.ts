/**
 * One client connection, as the load runner (load.ts) and the tests open them: node:net, because
 * Bun.connect cannot bind a source address, and a source address is how one client looks like many
 * hosts to featherlb's hash algorithms. Two conversations, one for each thing a backend (backend.ts)
 * can say:
 *
 *   greetConn  read the greeting line "<name>\n" (behaviours "echo", "close-first"), then end, keep
 *              the socket, destroy it, or wait for the backend to close first.
 *   runConn    the e2e protocol (../e2e/protocol.ts): read HELLO, send ECHO + payload, verify every
 *              echoed byte and the backend's SHA-256, wait for the backend to close.
 *
 * Both resolve with a ConnResult (never reject): the backend that greeted, or the kind of failure.
 */
import net from "node:net";
import { formatRequest, LineReader, parseHello, parseTrailer, type Hello } from "../e2e/protocol.ts";

export type ErrorKind =
  | "connect" // the TCP connect to the LB failed (refused, unreachable)
  | "no_hello" // the LB accepted, then closed before any backend greeted
  | "truncated" // a backend greeted, then the connection ended before the trailer
  | "corrupt" // echoed bytes, the backend's hash or a protocol line did not match
  | "reset" // ECONNRESET or another socket error after connecting
  | "timeout";

export interface ConnResult {
  ok: boolean;
  error?: ErrorKind;
  detail?: string;
  /** Who greeted: the HELLO id, or the greeting line. */
  backend?: string;
  instance?: string;
  source?: string;
  /** From connect() to the end of the conversation, in ms. */
  latencyMs: number;
  /** From connect() to the greeting, in ms (undefined without one). */
  helloMs?: number;
  /** Every byte written / read on the socket, protocol lines included. */
  bytesSent: number;
  bytesReceived: number;
  /** runConn: this connection's own address as the client sees it ("ip:port"). */
  local?: string;
  /** runConn: the client "ip:port" a PROXY header told the backend (its HELLO says), if any. */
  peerSeen?: string;
}

export interface Payload {
  /** Bytes to send. Small payloads are compared byte for byte, bulk ones by SHA-256. */
  length: number;
  /** Produce the bytes, chunk by chunk; called lazily as the socket drains. */
  chunks(): Iterable<Uint8Array>;
}

export interface ConnOptions {
  host: string;
  port: number;
  /** Source IP to bind (the e2e client container owns several: test/e2e/client/sources.ts). */
  localAddress?: string;
  payload: Payload;
  /** Hold time asked of the backend, chosen once its HELLO names it. */
  holdMs: (backend: string) => number;
  timeoutMs: number;
  /** Called when the backend is known (in-flight accounting). */
  onHello?: (backend: string) => void;
}

/** Bytes from a fixed seed-free source: crypto randomness per 64 KiB chunk. */
export function randomPayload(length: number, chunkSize = 64 * 1024): Payload {
  return {
    length,
    *chunks() {
      for (let off = 0; off < length; off += chunkSize) {
        const chunk = new Uint8Array(Math.min(chunkSize, length - off));
        for (let i = 0; i < chunk.length; i += 65536) crypto.getRandomValues(chunk.subarray(i, i + 65536));
        yield chunk;
      }
    },
  };
}

/** The e2e protocol conversation. */
export function runConn(o: ConnOptions): Promise<ConnResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    const sentHash = new Bun.CryptoHasher("sha256");
    const echoHash = new Bun.CryptoHasher("sha256");
    const hello = new LineReader();
    const trailer = new LineReader();
    /** Small payloads are kept to compare byte for byte. */
    const keep = o.payload.length <= 64 * 1024;
    const sent: Uint8Array[] = [];
    const echoed: Uint8Array[] = [];
    let who: Hello | undefined;
    let helloMs: number | undefined;
    let phase: "connecting" | "hello" | "echo" | "trailer" | "closing" | "done" = "connecting";
    let echoLeft = o.payload.length;
    let bytesSent = 0;
    let bytesReceived = 0;
    let verdict: { ok: boolean; error?: ErrorKind; detail?: string } | undefined;
    let chunks: Iterator<Uint8Array> | undefined;
    let local: string | undefined;

    const socket = net.connect({ host: o.host, port: o.port, localAddress: o.localAddress, noDelay: true });
    const timer = setTimeout(() => fail("timeout", `no completion within ${o.timeoutMs} ms (phase ${phase})`), o.timeoutMs);

    function settle(): void {
      if (phase === "done") return;
      phase = "done";
      clearTimeout(timer);
      const v = verdict ?? { ok: false, error: "truncated" as ErrorKind, detail: "closed early" };
      resolve({
        ...v,
        backend: who?.backend,
        instance: who?.instance,
        source: o.localAddress,
        latencyMs: performance.now() - started,
        helloMs,
        bytesSent,
        bytesReceived,
        local,
        peerSeen: who?.client,
      });
    }

    function fail(error: ErrorKind, detail: string): void {
      if (phase === "done") return;
      verdict ??= { ok: false, error, detail };
      socket.destroy();
      settle();
    }

    /** Write payload chunks until the socket pushes back; `drain` calls this again. */
    function pump(): void {
      if (!chunks) return;
      for (;;) {
        const next = chunks.next();
        if (next.done) {
          chunks = undefined;
          return;
        }
        const chunk = next.value;
        sentHash.update(chunk);
        if (keep) sent.push(chunk);
        bytesSent += chunk.length;
        if (!socket.write(chunk)) return;
      }
    }

    socket.on("connect", () => {
      phase = "hello";
      local = `${socket.localAddress}:${socket.localPort}`;
    });
    socket.on("drain", pump);
    socket.on("data", (buf: Buffer) => {
      bytesReceived += buf.length;
      let data: Uint8Array = buf;
      try {
        if (phase === "hello") {
          const r = hello.push(data);
          if (!r) return;
          const h = parseHello(r.line);
          if (!h) return fail("corrupt", `bad greeting ${JSON.stringify(r.line.slice(0, 80))}`);
          who = h;
          helloMs = performance.now() - started;
          o.onHello?.(h.backend);
          const request = formatRequest({ length: o.payload.length, holdMs: o.holdMs(h.backend) });
          bytesSent += request.length;
          socket.write(request);
          chunks = o.payload.chunks()[Symbol.iterator]();
          pump();
          phase = echoLeft > 0 ? "echo" : "trailer";
          data = r.rest;
        }
        if (phase === "echo" && data.length) {
          const take = data.subarray(0, echoLeft);
          echoHash.update(take);
          if (keep) echoed.push(take.slice());
          echoLeft -= take.length;
          data = data.subarray(take.length);
          if (echoLeft === 0) {
            phase = "trailer";
            // Small payloads are judged as soon as they are back, so a corrupting peer that never
            // sends a trailer is called corrupt, not timed out.
            if (keep && Buffer.compare(Buffer.concat(sent), Buffer.concat(echoed)) !== 0)
              return fail("corrupt", "echoed bytes differ from sent bytes");
          }
        }
        if (phase === "trailer" && data.length) {
          const r = trailer.push(data);
          if (!r) return;
          const t = parseTrailer(r.line);
          if (!t) return fail("corrupt", `bad trailer ${JSON.stringify(r.line.slice(0, 80))}`);
          const mine = sentHash.digest("hex");
          const back = echoHash.digest("hex");
          if (back !== mine) return fail("corrupt", `echo SHA-256 ${back.slice(0, 12)}… ≠ sent ${mine.slice(0, 12)}…`);
          if (t.sha256 !== mine || t.length !== o.payload.length)
            return fail("corrupt", `backend received SHA-256 ${t.sha256.slice(0, 12)}…/${t.length} B ≠ sent ${mine.slice(0, 12)}…/${o.payload.length} B`);
          verdict = { ok: true };
          phase = "closing";
          if (r.rest.length) return fail("corrupt", "bytes after the trailer");
        } else if (phase === "closing" && data.length) {
          return fail("corrupt", "bytes after the trailer");
        }
      } catch (err) {
        fail("corrupt", String(err));
      }
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (phase === "connecting") fail("connect", err.code ?? err.message);
      else if (phase === "closing") settle();
      else fail(who ? "reset" : "no_hello", err.code ?? err.message);
    });
    socket.on("close", () => {
      if (phase === "done") return;
      if (!verdict) {
        if (phase === "connecting") verdict = { ok: false, error: "connect", detail: "closed while connecting" };
        else if (!who) verdict = { ok: false, error: "no_hello", detail: "closed by the LB before any backend greeted" };
        else verdict = { ok: false, error: "truncated", detail: `closed in phase ${phase} (${o.payload.length - echoLeft}/${o.payload.length} B echoed)` };
      }
      settle();
    });
  });
}

export interface GreetOptions {
  host: string;
  port: number;
  localAddress?: string;
  /** A fixed source port (outside the ephemeral range, so a test can use up that range elsewhere). */
  localPort?: number;
  /** Default 5000. */
  timeoutMs?: number;
  /**
   * After the greeting: "end" (default) sends a FIN and resolves when the connection is closed;
   * "destroy" closes at once; "keep" resolves with the socket open (the caller ends it); "await-close"
   * waits for the backend to close first ("close-first"), then closes too.
   */
  then?: "end" | "destroy" | "keep" | "await-close";
  onHello?: (backend: string) => void;
}

/** The greeting conversation: who answers, and how long until the connection is done with. */
export function greetConn(o: GreetOptions): Promise<ConnResult & { socket?: net.Socket }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const then = o.then ?? "end";
    const reader = new LineReader();
    let phase: "connecting" | "hello" | "after" | "done" = "connecting";
    let backend: string | undefined;
    let helloMs: number | undefined;
    let bytesReceived = 0;
    const socket = net.connect({ host: o.host, port: o.port, localAddress: o.localAddress, localPort: o.localPort, noDelay: true });
    const timer = setTimeout(() => {
      if (phase === "after" && then !== "await-close") {
        socket.destroy(); // greeted: the answer is known, the close is not waited for any longer
        settle(true);
      } else fail("timeout", `no ${phase === "after" ? "close" : "greeting"} within ${o.timeoutMs ?? 5000} ms`);
    }, o.timeoutMs ?? 5000);

    function settle(ok: boolean, error?: ErrorKind, detail?: string): void {
      if (phase === "done") return;
      phase = "done";
      clearTimeout(timer);
      resolve({
        ok,
        error,
        detail,
        backend,
        source: o.localAddress,
        latencyMs: performance.now() - started,
        helloMs,
        bytesSent: 0,
        bytesReceived,
        socket: then === "keep" && ok ? socket : undefined,
      });
    }
    function fail(error: ErrorKind, detail: string): void {
      if (phase === "done") return;
      socket.destroy();
      settle(false, error, detail);
    }

    socket.on("connect", () => void (phase = "hello"));
    socket.on("data", (buf: Buffer) => {
      bytesReceived += buf.length;
      if (phase !== "hello") return;
      let r;
      try {
        r = reader.push(buf);
      } catch (err) {
        return fail("corrupt", String(err));
      }
      if (!r) return;
      backend = r.line;
      helloMs = performance.now() - started;
      o.onHello?.(backend);
      phase = "after";
      if (then === "keep") settle(true);
      else if (then === "destroy") {
        socket.destroy();
        settle(true);
      } else if (then === "end") socket.end();
    });
    socket.on("end", () => {
      if (then === "await-close" || then === "end") socket.end();
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (phase === "connecting") fail("connect", err.code ?? err.message);
      else if (phase === "hello") fail("no_hello", err.code ?? err.message);
      else if (then === "await-close") fail("reset", err.code ?? err.message);
      else settle(true); // greeted: what happens after is not this conversation's business
    });
    socket.on("close", () => {
      if (phase === "connecting") settle(false, "connect", "closed while connecting");
      else if (phase === "hello") settle(false, "no_hello", "closed before any greeting");
      else settle(true);
    });
  });
}

/**
 * The name of the backend that serves a new connection (its greeting line), "" when the connection
 * closes before one; throws when the connect itself fails.
 */
export async function whoServes(host: string, port: number, localAddress?: string): Promise<string> {
  const r = await greetConn({ host, port, localAddress });
  if (r.error === "connect") throw new Error(`connect to ${host}:${port}: ${r.detail}`);
  return r.backend ?? "";
}

/** The e2e conversation as a load's `conn` (load.ts): connection i from `source(i)`, a fresh payload each. */
export function echoConns(o: {
  host: string;
  port: number;
  payload: () => Payload;
  holdMs?: (backend: string) => number;
  source?: (i: number) => string | undefined;
  timeoutMs: number;
}): (i: number, onHello: (backend: string) => void) => Promise<ConnResult> {
  return (i, onHello) =>
    runConn({ host: o.host, port: o.port, localAddress: o.source?.(i), payload: o.payload(), holdMs: o.holdMs ?? (() => 0), timeoutMs: o.timeoutMs, onHello });
}
