/**
 * Long-lived echoing connections under the test's control (handover.test.ts), as a process in the
 * client namespace:
 *   bun longlived.ts <host> <port> <count> <intervalMs> <srcIp>
 * Opens `count` connections (greeting first), prints {event:"ready"}, then each sends a 32-byte message
 * every intervalMs and checks its echo. Commands on stdin, one per line:
 *   pause   stop sending; once every message sent is answered (or 3 s passed) print
 *           {event:"paused", …stats}: connections were idle from here on
 *   resume  each connection sends one message at once, then every intervalMs again; prints
 *           {event:"resumed", answered, failed} once each has answered its first (or 5 s passed)
 *   end     print {event:"end", …stats} and exit
 * stats: {echoes, resets, closed, lostBytes (sent, never echoed back), wrong (echoes that differ),
 * maxStallMs (longest wait for an echo), failed (connections that saw a reset, close or wrong echo), errors}.
 * Bounded by FLBX_DEADLINE_S (default 120 s).
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { greetConn } from "../../support/conn.ts";
import { stdinLines } from "../../support/stdin.ts";

const [host = "", portText = "0", countText = "1", intervalText = "200", srcIp] = process.argv.slice(2);
const port = Number(portText);
const interval = Number(intervalText);
setTimeout(() => {
  console.log(JSON.stringify({ error: "deadline" }));
  process.exit(3);
}, Number(process.env.FLBX_DEADLINE_S ?? 120) * 1000).unref();

interface Conn {
  sock: net.Socket;
  /** Messages sent and not echoed yet, with when they were sent. */
  pending: { msg: Buffer; at: number }[];
  inbox: Buffer;
  failed?: string;
  n: number;
  /** Echoes since the last resume. */
  sinceResume: number;
}

const conns: Conn[] = [];
const stats = { echoes: 0, resets: 0, closed: 0, lostBytes: 0, wrong: 0, maxStallMs: 0 };
const errors: string[] = [];
let paused = false;

function fail(c: Conn, why: string): void {
  if (c.failed) return;
  c.failed = why;
  if (errors.length < 10) errors.push(`${c.sock.localPort} ${why}`);
}

function onData(c: Conn, b: Buffer): void {
  c.inbox = Buffer.concat([c.inbox, b]);
  while (c.pending.length && c.inbox.length >= c.pending[0]!.msg.length) {
    const { msg, at } = c.pending.shift()!;
    if (!c.inbox.subarray(0, msg.length).equals(msg)) {
      stats.wrong++;
      fail(c, "wrong echo");
    }
    c.inbox = c.inbox.subarray(msg.length);
    stats.echoes++;
    c.sinceResume++;
    stats.maxStallMs = Math.max(stats.maxStallMs, Date.now() - at);
  }
}

function send(c: Conn, i: number): void {
  if (c.failed || c.sock.destroyed) return;
  const msg = Buffer.from(`${String(i).padStart(6, "0")}:${String(c.n++).padStart(8, "0")}:${randomBytes(8).toString("hex")}`);
  c.pending.push({ msg, at: Date.now() });
  c.sock.write(msg);
}

for (let i = 0; i < Number(countText); i++) {
  const r = await greetConn({ host, port, localAddress: srcIp, then: "keep", timeoutMs: 5000 });
  if (!r.socket) {
    console.log(JSON.stringify({ error: `connection ${i} not opened: ${r.error} ${r.detail}` }));
    process.exit(1);
  }
  const c: Conn = { sock: r.socket, pending: [], inbox: Buffer.alloc(0), n: 0, sinceResume: 0 };
  r.socket.on("data", (b: Buffer) => onData(c, b));
  r.socket.on("error", (e) => {
    const code = (e as NodeJS.ErrnoException).code ?? e.message;
    if (code === "ECONNRESET") stats.resets++;
    fail(c, `error ${code}`);
  });
  r.socket.on("close", () => {
    stats.closed++;
    fail(c, "closed");
  });
  conns.push(c);
}

// Each connection on its own timer, spread over the interval.
conns.forEach((c, i) => {
  setTimeout(() => setInterval(() => paused || send(c, i), interval), (i * interval) / conns.length);
});
console.log(JSON.stringify({ event: "ready", conns: conns.length }));

const outstanding = () => conns.reduce((n, c) => n + (c.failed ? 0 : c.pending.length), 0);
const report = () => {
  const lostBytes = conns.reduce((n, c) => n + c.pending.reduce((m, p) => m + p.msg.length, 0), 0);
  return { ...stats, lostBytes, failed: conns.filter((c) => c.failed).length, errors };
};

async function waitUntil(cond: () => boolean, ms: number): Promise<void> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end; ) await Bun.sleep(10);
}

for await (const cmd of stdinLines()) {
  if (cmd === "pause") {
    paused = true;
    await waitUntil(() => outstanding() === 0, 3000);
    console.log(JSON.stringify({ event: "paused", ...report() }));
  } else if (cmd === "resume") {
    for (const c of conns) c.sinceResume = 0;
    conns.forEach((c, i) => send(c, i));
    await waitUntil(() => conns.every((c) => c.failed || c.sinceResume > 0), 5000);
    console.log(JSON.stringify({ event: "resumed", answered: conns.filter((c) => !c.failed && c.sinceResume > 0).length, failed: conns.filter((c) => c.failed).length }));
    paused = false;
  } else if (cmd === "end") {
    paused = true;
    console.log(JSON.stringify({ event: "end", ...report() }));
    for (const c of conns) c.sock.destroy();
    process.exit(0);
  }
}
