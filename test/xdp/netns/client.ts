/**
 * Test client (run inside the client namespace). Every mode is bounded by --deadline seconds and prints
 * one JSON line.
 *   spread <host> <port> <count> <concurrency> <hold 0|1> <ip,ip,…>  → {byIp: {ip: {backend: n}}, failures}
 *   echo <host> <port> <bytes> <srcIp>                             → {backend, sent, received, sentSha, recvSha}
 *   line <host> <port>                                              → {line} (first line the server sends)
 *   udp <host> <port>                                               → {reply}
 *   bench <host[,host…]> <port> <seconds> <concurrency> <ip,ip,…>   → {requests, failures, seconds}
 *   churn <host> <port> <count> <concurrency> <ip,ip,…>            → {count, failures, slow, maxMs, p50Ms, p99Ms}
 *     short connections the server closes first; `slow` counts those over 500 ms (a SYN retransmit
 *     takes ≥ 1 s), connections rotate over the source addresses
 */
import { createHash, randomBytes } from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";

const [mode, host = "", portText = "0", ...rest] = process.argv.slice(2);
const port = Number(portText);
const DEADLINE = Date.now() + Number(process.env.FLBX_DEADLINE_S ?? 60) * 1000;
setTimeout(() => {
  console.log(JSON.stringify({ error: "deadline" }));
  process.exit(3);
}, DEADLINE - Date.now()).unref();

/** Connect, read the greeting line; resolves with the socket and the line (the backend's name). */
function greet(localAddress?: string, to = host): Promise<{ sock: net.Socket; line: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: to, port, localAddress });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("timeout"));
    }, 5000);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf(10);
      if (nl >= 0) {
        clearTimeout(timer);
        sock.off("data", onData);
        resolve({ sock, line: buf.subarray(0, nl).toString() });
      }
    };
    sock.on("data", onData);
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

async function spread(count: number, concurrency: number, hold: boolean, ips: string[]) {
  const byIp: Record<string, Record<string, number>> = {};
  const errors: string[] = [];
  const held: net.Socket[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const ip = ips[i % ips.length]!;
      try {
        const { sock, line } = await greet(ip);
        (byIp[ip] ??= {})[line] = (byIp[ip]![line] ?? 0) + 1;
        if (hold) held.push(sock);
        else sock.end();
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  for (const s of held) s.end();
  await Bun.sleep(200);
  return { byIp, failures: errors.length, errors: errors.slice(0, 5) };
}

async function echo(bytes: number, srcIp: string) {
  const payload = randomBytes(bytes);
  const sentSha = createHash("sha256").update(payload).digest("hex");
  const { sock, line } = await greet(srcIp);
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
  const ms = performance.now() - t0;
  return { backend: line, sent: bytes, received, sentSha, recvSha: recv.digest("hex"), ms: Math.round(ms) };
}

/** `host` may list several addresses (comma-separated): requests rotate over them. */
async function bench(seconds: number, concurrency: number, ips: string[]) {
  const hosts = host.split(",");
  const end = Date.now() + seconds * 1000;
  let requests = 0;
  let failures = 0;
  let k = 0;
  const worker = async () => {
    while (Date.now() < end) {
      try {
        const i = k++;
        const { sock } = await greet(ips[i % ips.length], hosts[i % hosts.length]);
        sock.destroy();
        requests++;
      } catch {
        failures++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { requests, failures, seconds: (performance.now() - t0) / 1000 };
}

/** One connection the server closes: connect, read until its FIN, close; resolves with the time taken. */
function shortConnection(localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const sock = net.connect({ host, port, localAddress });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("timeout"));
    }, 5000);
    sock.on("data", () => {});
    sock.on("end", () => sock.end());
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - t0);
    });
  });
}

async function churn(count: number, concurrency: number, ips: string[]) {
  const ms: number[] = [];
  const errors: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      try {
        ms.push(await shortConnection(ips[i % ips.length]!));
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  ms.sort((a, b) => a - b);
  const at = (q: number) => Math.round(ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? -1);
  return { count: ms.length, failures: errors.length, errors: errors.slice(0, 5), slow: ms.filter((x) => x > 500).length, maxMs: Math.round(ms.at(-1) ?? -1), p50Ms: at(0.5), p99Ms: at(0.99) };
}

let result: unknown;
switch (mode) {
  case "churn": {
    const [count = "2000", conc = "2", ips = ""] = rest;
    result = await churn(Number(count), Number(conc), ips.split(","));
    break;
  }
  case "spread": {
    const [count = "300", conc = "8", hold = "0", ips = ""] = rest;
    result = await spread(Number(count), Number(conc), hold === "1", ips.split(","));
    break;
  }
  case "echo":
    result = await echo(Number(rest[0]), rest[1]!);
    break;
  case "line": {
    const { sock, line } = await greet();
    sock.end();
    result = { line };
    break;
  }
  case "udp": {
    const sock = dgram.createSocket("udp4");
    result = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ reply: null }), 3000);
      sock.on("message", (m) => {
        clearTimeout(timer);
        resolve({ reply: m.toString() });
      });
      sock.send("ping-udp", port, host);
    });
    sock.close();
    break;
  }
  case "bench": {
    const [secs = "5", conc = "8", ips = ""] = rest;
    result = await bench(Number(secs), Number(conc), ips ? ips.split(",") : [undefined as unknown as string]);
    break;
  }
  default:
    result = { error: `unknown mode ${mode}` };
}
console.log(JSON.stringify(result));
process.exit(0);
