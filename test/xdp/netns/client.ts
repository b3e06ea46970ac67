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
