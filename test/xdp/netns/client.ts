/**
 * The test client as a process in the client namespace: the load runner (test/support/load.ts) over
 * greeting connections (test/support/conn.ts), plus two probes of the LB host's own stack. Every mode
 * is bounded by FLBX_DEADLINE_S seconds and prints one JSON line.
 *   spread <host> <port> <count> <concurrency> <hold 0|1> <ip,ip,…>  → {byIp: {ip: {backend: n}}, failures}
 *   echo <host> <port> <bytes> <srcIp>                             → {backend, sent, received, sentSha, recvSha}
 *   line <host> <port>                                              → {line} (first line the server sends)
 *   udp <host> <port>                                               → {reply}
 *   bench <host[,host…]> <port> <seconds> <concurrency> <ip,ip,…>   → {requests, failures, seconds}
 *   churn <host> <port> <count> <concurrency> <ip,ip,…>            → {count, failures, slow, maxMs, p50Ms, p99Ms}
 *     short connections the server closes first; `slow` counts those over 500 ms (a SYN retransmit
 *     takes ≥ 1 s), connections rotate over the source addresses
 *   get <host> <port>                                               → {bytes, sha256, ms}
 *     everything a "source" backend sends, until it closes
 *   put <host> <port> <bytes>                                       → {bytes, sha256, ms}
 *     `bytes` random bytes to a "source" backend (0 bytes: a sink), then FIN; done when it closes
 *   echoers <host> <port> <count> <intervalMs> <seconds> <ip,ip,…>  → {echoes, failed, errors}
 *     `count` long-lived connections, each sending a 32-byte message every intervalMs and expecting
 *     it back within 2 s, for `seconds`. Prints {event:"ready", tuples:[{ip, port}]} once all are open.
 *     A connection that is reset, closed or too slow counts as failed and stops.
 *   attempts <host> <port> <count> <timeoutMs>                     → {connected, refused, timeouts, other}
 *     connects one after another and closes at once: how the service answers SYNs
 *   soak <host> <port> <count> <concurrency> <bytes> <ip,ip,…> [pauseMs] → {ok, mismatched, wrongClient, failures}
 *     short connections: greeting, then `bytes` of random data starting with the connection's number
 *     (in two halves pauseMs apart, so `concurrency` connections are open at once), echoed back and
 *     compared; bytes that carry another connection's number count as wrongClient
 */
import { createHash, randomBytes } from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";
import { greetConn } from "../../support/conn.ts";
import { percentile, runLoad, type LoadStats } from "../../support/load.ts";

const [mode, host = "", portText = "0", ...rest] = process.argv.slice(2);
const port = Number(portText);
const DEADLINE_MS = Number(process.env.FLBX_DEADLINE_S ?? 60) * 1000;
setTimeout(() => {
  console.log(JSON.stringify({ error: "deadline" }));
  process.exit(3);
}, DEADLINE_MS).unref();

const failures = (s: LoadStats) => ({ failures: s.errorCount, errors: s.errorSamples });

/** `count` greetings from `ips` in turn; with `hold` every connection stays open until all are made. */
async function spread(count: number, concurrency: number, hold: boolean, ips: string[]) {
  const held: net.Socket[] = [];
  const stats = await runLoad({
    label: "spread",
    concurrency,
    durationMs: DEADLINE_MS,
    maxConns: count,
    conn: async (i, onHello) => {
      const r = await greetConn({ host, port, localAddress: ips[i % ips.length], then: hold ? "keep" : "end", onHello });
      if (r.socket) held.push(r.socket);
      return r;
    },
  });
  for (const s of held) s.end();
  await Bun.sleep(200);
  const byIp = Object.fromEntries([...stats.perSource].map(([ip, m]) => [ip, Object.fromEntries(m)]));
  return { byIp, ...failures(stats) };
}

/** One greeting, then `bytes` of random data echoed back; both directions hashed. */
async function echo(bytes: number, srcIp: string) {
  const payload = randomBytes(bytes);
  const sentSha = createHash("sha256").update(payload).digest("hex");
  const greeting = await greetConn({ host, port, localAddress: srcIp, then: "keep" });
  const sock = greeting.socket;
  if (!sock) throw new Error(`no greeting: ${greeting.error} ${greeting.detail}`);
  const recv = createHash("sha256");
  let received = 0;
  const t0 = performance.now();
  const done = new Promise<void>((resolve, reject) => {
    sock.on("data", (b: Buffer) => {
      recv.update(b);
      received += b.length;
      if (received >= bytes) sock.end();
    });
    sock.on("error", reject);
    sock.on("close", () => resolve());
  });
  sock.write(payload);
  await done;
  return { backend: greeting.backend, sent: bytes, received, sentSha, recvSha: recv.digest("hex"), ms: Math.round(performance.now() - t0) };
}

/** Greetings for `seconds`; `host` may list several addresses (comma-separated): requests rotate over them. */
async function bench(seconds: number, concurrency: number, ips: string[]) {
  const hosts = host.split(",");
  const stats = await runLoad({
    label: "bench",
    concurrency,
    durationMs: seconds * 1000,
    conn: (i, onHello) => greetConn({ host: hosts[i % hosts.length]!, port, localAddress: ips.length ? ips[i % ips.length] : undefined, then: "destroy", onHello }),
  });
  return { requests: stats.ok, failures: stats.errorCount, seconds: stats.elapsedMs / 1000 };
}

/** Connections the server closes first, from `ips` in turn: how long each took to be done with. */
async function churn(count: number, concurrency: number, ips: string[]) {
  const stats = await runLoad({
    label: "churn",
    concurrency,
    durationMs: DEADLINE_MS,
    maxConns: count,
    conn: (i, onHello) => greetConn({ host, port, localAddress: ips[i % ips.length], then: "await-close", onHello }),
  });
  const ms = stats.latencies;
  const at = (p: number) => Math.round(percentile(ms, p) || -1);
  return { count: stats.ok, ...failures(stats), slow: ms.filter((x) => x > 500).length, maxMs: Math.round(ms.at(-1) ?? -1), p50Ms: at(50), p99Ms: at(99) };
}

/** Bulk data one way: everything the server sends (get), or `bytes` of random data to it (put). */
async function bulk(put: number) {
  const payload = randomBytes(put);
  const hash = createHash("sha256");
  let bytes = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const sock = net.connect({ host, port, allowHalfOpen: true }, () => {
      if (put) sock.end(payload);
    });
    sock.on("data", (b: Buffer) => {
      hash.update(b);
      bytes += b.length;
    });
    sock.on("end", () => {
      if (!put) sock.end();
    });
    sock.on("error", reject);
    sock.on("close", () => resolve());
  });
  const ms = Math.round(performance.now() - t0);
  if (put) return { bytes: put, sha256: createHash("sha256").update(payload).digest("hex"), ms };
  return { bytes, sha256: hash.digest("hex"), ms };
}

/** Long-lived echo connections that each check an echo every intervalMs (see the header). */
async function echoers(count: number, intervalMs: number, seconds: number, ips: string[]) {
  const conns: { sock: net.Socket; ip: string; port: number; failed?: string }[] = [];
  for (let i = 0; i < count; i++) {
    const ip = ips[i % ips.length]!;
    const r = await greetConn({ host, port, localAddress: ip, then: "keep", timeoutMs: 5000 });
    if (!r.socket) return { error: `connection ${i} not opened: ${r.error} ${r.detail}` };
    conns.push({ sock: r.socket, ip, port: r.socket.localPort! });
  }
  console.log(JSON.stringify({ event: "ready", tuples: conns.map(({ ip, port }) => ({ ip, port })) }));
  let echoes = 0;
  const errors: string[] = [];
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    conns.map(async (c, i) => {
      let inbox = Buffer.alloc(0);
      let wake: (() => void) | undefined;
      c.sock.on("data", (b: Buffer) => {
        inbox = Buffer.concat([inbox, b]);
        wake?.();
      });
      const stop = (why: string) => {
        c.failed ??= why;
        wake?.();
      };
      c.sock.on("error", (e) => stop(`error ${(e as NodeJS.ErrnoException).code ?? e.message}`));
      c.sock.on("close", () => stop("closed"));
      await Bun.sleep((i * intervalMs) / count); // spread the echoes over the interval
      for (let n = 0; Date.now() < end && !c.failed; n++) {
        const msg = Buffer.from(`${String(i).padStart(8, "0")}:${String(n).padStart(8, "0")}:${randomBytes(7).toString("hex")}`);
        c.sock.write(msg);
        const deadline = Date.now() + 2000;
        while (inbox.length < msg.length && !c.failed && Date.now() < deadline) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, Math.max(0, deadline - Date.now()));
          });
        }
        if (c.failed) break;
        if (inbox.length < msg.length) {
          c.failed = `no echo within 2 s (message ${n})`;
          break;
        }
        if (!inbox.subarray(0, msg.length).equals(msg)) {
          c.failed = `wrong echo (message ${n})`;
          break;
        }
        inbox = inbox.subarray(msg.length);
        echoes++;
        await Bun.sleep(intervalMs);
      }
      if (c.failed && errors.length < 10) errors.push(`${c.ip}:${c.port} ${c.failed}`);
    }),
  );
  for (const c of conns) c.sock.destroy();
  return { echoes, failed: conns.filter((c) => c.failed).length, errors };
}

/** Short connections each echoing `bytes` of their own data (see the header). */
async function soak(count: number, concurrency: number, bytes: number, ips: string[], pauseMs: number) {
  let ok = 0;
  let mismatched = 0;
  let wrongClient = 0;
  const stats = await runLoad({
    label: "soak",
    concurrency,
    durationMs: DEADLINE_MS - 5000, // report what happened rather than only "deadline"
    maxConns: count,
    conn: async (i, onHello) => {
      const r = await greetConn({ host, port, localAddress: ips[i % ips.length], then: "keep", onHello, timeoutMs: 10_000 });
      const sock = r.socket;
      if (!sock) return r;
      const payload = randomBytes(bytes);
      payload.writeUInt32BE(i, 0); // whose bytes these are
      const got = await new Promise<Buffer | string>((resolve) => {
        const parts: Buffer[] = [];
        let n = 0;
        const timer = setTimeout(() => resolve("timeout"), 10_000);
        sock.on("data", (b: Buffer) => {
          parts.push(b);
          n += b.length;
          if (n >= bytes) {
            clearTimeout(timer);
            resolve(Buffer.concat(parts));
          }
        });
        sock.on("error", (e) => resolve(`error ${(e as NodeJS.ErrnoException).code}`));
        sock.on("close", () => resolve(n >= bytes ? Buffer.concat(parts) : "closed"));
        const half = bytes >> 1;
        sock.write(payload.subarray(0, half));
        setTimeout(() => sock.write(payload.subarray(half)), pauseMs);
      });
      // Close as the backend does, FIN after FIN; wait for its FIN so no connection is left half-open.
      if (typeof got !== "string") await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000);
        sock.on("close", () => {
          clearTimeout(timer);
          resolve();
        });
        sock.end();
      });
      sock.destroy();
      if (typeof got === "string") return { ...r, ok: false, error: "reset" as const, detail: got, socket: undefined };
      const same = createHash("sha256").update(got.subarray(0, bytes)).digest("hex") === createHash("sha256").update(payload).digest("hex");
      if (same && got.length === bytes) ok++;
      else {
        mismatched++;
        if (got.readUInt32BE(0) !== i) wrongClient++;
      }
      return { ...r, socket: undefined };
    },
  });
  return { ok, mismatched, wrongClient, ...failures(stats) };
}

/** `count` connects in a row, each closed at once: connected, refused (an RST), timed out, or other errors. */
async function attempts(count: number, timeoutMs: number) {
  const out = { connected: 0, refused: 0, timeouts: 0, other: 0, ms: 0 };
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const r = await new Promise<keyof typeof out>((resolve) => {
      const sock = net.createConnection({ host, port });
      const timer = setTimeout(() => {
        sock.destroy();
        resolve("timeouts");
      }, timeoutMs);
      sock.on("connect", () => {
        clearTimeout(timer);
        sock.destroy();
        resolve("connected");
      });
      sock.on("error", (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        resolve(e.code === "ECONNREFUSED" ? "refused" : "other");
      });
    });
    out[r]++;
  }
  out.ms = Math.round(performance.now() - t0);
  return out;
}

async function udp() {
  const sock = dgram.createSocket("udp4");
  const reply = await new Promise<string | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), 3000);
    sock.on("message", (m) => {
      clearTimeout(timer);
      resolve(m.toString());
    });
    sock.send("ping-udp", port, host);
  });
  sock.close();
  return { reply };
}

const list = (s = "") => s.split(",").filter(Boolean);
let result: unknown;
switch (mode) {
  case "churn": {
    const [count = "2000", conc = "2", ips = ""] = rest;
    result = await churn(Number(count), Number(conc), list(ips));
    break;
  }
  case "spread": {
    const [count = "300", conc = "8", hold = "0", ips = ""] = rest;
    result = await spread(Number(count), Number(conc), hold === "1", list(ips));
    break;
  }
  case "echo":
    result = await echo(Number(rest[0]), rest[1]!);
    break;
  case "echoers": {
    const [count = "10", interval = "1000", secs = "10", ips = ""] = rest;
    result = await echoers(Number(count), Number(interval), Number(secs), list(ips));
    break;
  }
  case "attempts": {
    const [count = "10", timeout = "2000"] = rest;
    result = await attempts(Number(count), Number(timeout));
    break;
  }
  case "soak": {
    const [count = "1000", conc = "32", bytes = "1024", ips = "", pause = "0"] = rest;
    result = await soak(Number(count), Number(conc), Number(bytes), list(ips), Number(pause));
    break;
  }
  case "line":
    result = { line: (await greetConn({ host, port })).backend };
    break;
  case "udp":
    result = await udp();
    break;
  case "get":
    result = await bulk(0);
    break;
  case "put":
    result = await bulk(Number(rest[0]));
    break;
  case "bench": {
    const [secs = "5", conc = "8", ips = ""] = rest;
    result = await bench(Number(secs), Number(conc), list(ips));
    break;
  }
  default:
    result = { error: `unknown mode ${mode}` };
}
console.log(JSON.stringify(result));
process.exit(0);
