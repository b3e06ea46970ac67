/**
 * One client connection of the e2e protocol (../protocol.ts): connect (optionally from a chosen source
 * IP), read HELLO, send ECHO + payload, verify every echoed byte and the backend's SHA-256, and wait
 * for the backend to close. node:net is used because Bun.connect cannot bind a source address.
 */
import net from "node:net";
import { formatRequest, LineReader, parseHello, parseTrailer, type Hello } from "../protocol.ts";

export type ErrorKind =
  | "connect" // the TCP connect to the LB failed (refused, unreachable)
  | "no_hello" // the LB accepted, then closed before any backend greeted
  | "truncated" // a backend greeted, then the connection ended before the trailer
  | "corrupt" // echoed bytes, the backend's hash or a protocol line did not match
  | "reset" // ECONNRESET or another socket error after connecting
  | "timeout";

export interface Payload {
  /** Bytes to send. Small payloads are compared byte for byte, bulk ones by SHA-256. */
  length: number;
  /** Produce the bytes, chunk by chunk; called lazily as the socket drains. */
  chunks(): Iterable<Uint8Array>;
}

export interface ConnOptions {
  host: string;
  port: number;
  /** Source IP to bind (the client container owns several; see sources.ts). */
  localAddress?: string;
  payload: Payload;
  /** Hold time asked of the backend, chosen once its HELLO names it. */
  holdMs: (backend: string) => number;
  timeoutMs: number;
  /** Called when the backend is known (in-flight accounting) … */
  onHello?: (hello: Hello) => void;
}

export interface ConnResult {
  ok: boolean;
  error?: ErrorKind;
  detail?: string;
  backend?: string;
  instance?: string;
  source?: string;
  /** From connect() to the backend's close, in ms. */
  latencyMs: number;
  /** From connect() to the HELLO, in ms (undefined without one). */
  helloMs?: number;
  /** Every byte written / read on the socket, protocol lines included. */
  bytesSent: number;
  bytesReceived: number;
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
          o.onHello?.(h);
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
