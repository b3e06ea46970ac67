/**
 * The proxy's byte relay, end to end through a real featherlb process on 127.0.0.1: integrity under
 * load in both directions, half-close, bounded memory with a slow reader, idle and half-close timeouts.
 * Every case runs twice: bytes relayed in JavaScript (kernel_relay off), and handed to the kernel relay
 * (splice(2) in a relay thread) from the first byte — each case then checks the handover happened.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import type { Socket } from "bun";
import { lbYaml } from "../support/config.ts";
import { type RunningLB, rssKiB, startLB } from "../support/lb.ts";
import { startBackend } from "../support/backend.ts";
import { connect, flushPending, freePort, sha256, waitFor, writeAll } from "../support/net.ts";

const MiB = 1 << 20;

const RELAYS = [
  { name: "relayed in JavaScript", top: "kernel_relay: { enabled: false }", kernel: false },
  { name: "kernel relay (splice)", top: "kernel_relay: { enabled: true, after_bytes: 0 }", kernel: true },
];

for (const relay of RELAYS) {
const { top } = relay;

function config(port: number, backends: string[], extra = ""): string {
  const settings = `    health_check: { enabled: false }${extra ? `\n${extra}` : ""}`;
  return lbYaml({ level: "warn", top, services: [{ name: "relay", port, backends, settings }] });
}

/** The connections `service` handed to the kernel relay: some in the kernel runs, none in the others. */
async function expectHandovers(lb: RunningLB, service = "relay"): Promise<void> {
  const n = await lb.metric("featherlb_service_kernel_relayed_total", { service });
  if (relay.kernel) expect(n).toBeGreaterThan(0);
  else expect(n).toBe(0);
}

describe(relay.name, () => {

describe("relay through a featherlb process", () => {
  let lb: RunningLB;
  let port: number;
  // A backend that sends `down` bytes while it receives, hashes what it got, and ends after the client's FIN.
  const down = randomBytes(64 * MiB);
  let backendGot = "";
  let backendReceivedBytes = 0;
  const hasher = new Bun.CryptoHasher("sha256");
  let backendDone!: () => void;
  const backendFinished = new Promise<void>((r) => (backendDone = r));
  const bulk = Bun.listen<{ sent: boolean; gotFin: boolean }>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      open(s) {
        s.data = { sent: false, gotFin: false };
        writeAll(s, down, () => {
          s.data.sent = true;
          if (s.data.gotFin) s.end();
        });
      },
      data(_s, d) {
        hasher.update(d);
        backendReceivedBytes += d.length;
      },
      drain: (s) => flushPending(s),
      end(s) {
        backendGot = hasher.digest("hex");
        backendDone();
        s.data.gotFin = true;
        if (s.data.sent) s.end();
      },
    },
  });

  beforeAll(async () => {
    port = await freePort();
    lb = await startLB(config(port, [`127.0.0.1:${bulk.port}`]));
  }, 20_000);
  afterAll(async () => {
    await lb.stop();
    bulk.stop(true);
  });

  test("64 MiB of random bytes each way at once arrive intact (SHA-256 on both ends)", async () => {
    const up = randomBytes(64 * MiB);
    const client = await connect("127.0.0.1", port);
    writeAll(client.socket, up, () => client.socket.shutdown());
    await client.ended;
    await backendFinished;
    expect(backendReceivedBytes).toBe(up.length);
    expect(backendGot).toBe(sha256(up));
    const got = client.received();
    expect(got.length).toBe(down.length);
    expect(sha256(got)).toBe(sha256(down));
    expect(await lb.metric("featherlb_backend_bytes_total", { direction: "in" })).toBe(64 * MiB);
    expect(await lb.metric("featherlb_backend_bytes_total", { direction: "out" })).toBe(64 * MiB);
    await expectHandovers(lb);
  }, 120_000);
});

describe("half-close", () => {
  test("a client FIN leaves the reply direction open until the backend finishes", async () => {
    const backend = startBackend("late", { behaviour: "echo-on-end" });
    const port = await freePort();
    const lb = await startLB(config(port, [backend.address]));
    try {
      const payload = randomBytes(3 * MiB);
      const client = await connect("127.0.0.1", port);
      // The backend replies only after it has seen our FIN: without half-close support the reply is lost.
      writeAll(client.socket, payload, () => client.socket.shutdown());
      await client.closed;
      expect(sha256(client.received())).toBe(sha256(payload));
      await expectHandovers(lb);
    } finally {
      await lb.stop();
      backend.stop();
    }
  });
});

describe("backpressure", () => {
  test("a slow reader stalls the backend instead of growing the proxy's memory", async () => {
    let written = 0;
    let stopAt = 0;
    const chunk = randomBytes(MiB);
    // Writes as fast as the socket takes data, for at most 6 s or 1 GiB.
    const pushMore = (s: Socket<unknown>) => {
      while (Date.now() < stopAt && written < 1024 * MiB) {
        const n = s.write(chunk);
        written += Math.max(n, 0);
        if (n < chunk.length) {
          // Keep the byte stream exact: resend the unwritten tail first on the next drain.
          const rest = chunk.subarray(Math.max(n, 0));
          const m = s.write(rest);
          written += Math.max(m, 0);
          if (m < rest.length) {
            pendingTail = rest.subarray(Math.max(m, 0));
            return;
          }
        }
      }
      s.end();
    };
    let pendingTail: Buffer | null = null;
    const firehose = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(s) {
          stopAt = Date.now() + 6000;
          pushMore(s);
        },
        drain(s) {
          if (pendingTail) {
            const n = s.write(pendingTail);
            written += Math.max(n, 0);
            pendingTail = n >= pendingTail.length ? null : pendingTail.subarray(Math.max(n, 0));
            if (pendingTail) return;
          }
          pushMore(s);
        },
        data() {},
      },
    });
    const port = await freePort();
    const lb = await startLB(config(port, [`127.0.0.1:${firehose.port}`]));
    try {
      const before = rssKiB(lb.pid);
      const client = await connect("127.0.0.1", port);
      client.socket.pause();
      await Bun.sleep(3000);
      const stalledAt = written;
      const during = rssKiB(lb.pid);
      console.log(`backpressure: backend wrote ${(stalledAt / MiB).toFixed(1)} MiB while the client read nothing; proxy RSS ${before} → ${during} KiB`);
      // Only socket buffers (a few MiB per hop) can be in flight; without backpressure it would be GiBs.
      expect(stalledAt).toBeLessThan(64 * MiB);
      expect(during - before).toBeLessThan(32 * 1024);
      client.socket.resume();
      // The backend closes after its 6 s; the proxy forwards that FIN once every byte is delivered.
      await client.ended;
      expect(client.received().length).toBe(written);
      await expectHandovers(lb);
    } finally {
      await lb.stop();
      firehose.stop(true);
    }
  }, 30_000);
});

describe("idle timeout", () => {
  test("a connection with no bytes either way for idle_timeout is closed; an active one is not", async () => {
    const backend = startBackend("idle");
    const port = await freePort();
    const lb = await startLB(config(port, [backend.address], "    idle_timeout: 1s"));
    try {
      // Timed from before the quiet connection exists: its idle clock starts when featherlb accepts it.
      const started = Date.now();
      const quiet = await connect("127.0.0.1", port);
      const chatty = await connect("127.0.0.1", port);
      const ticker = setInterval(() => chatty.socket.write("ping"), 200);
      await quiet.closed;
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(900);
      expect(elapsed).toBeLessThan(3000);
      await Bun.sleep(500);
      expect(chatty.isClosed()).toBe(false);
      clearInterval(ticker);
      await chatty.closed;
      await expectHandovers(lb);
    } finally {
      await lb.stop();
      backend.stop();
    }
  });
});

describe("half-close timeout", () => {
  test("with idle_timeout 0, a half-closed connection whose other side stays silent ends after half_close_timeout", async () => {
    // The backend reads, never answers and never closes; the client sends a request and its FIN.
    let backendGotFin = false;
    const silent = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      allowHalfOpen: true,
      socket: { data() {}, end: () => void (backendGotFin = true) },
    });
    // A backend that answers every byte: an open connection that is merely quiet must not be touched.
    const echo = startBackend("echo");
    const [port, port2] = [freePort(), freePort()];
    const services = [
      { name: "fin", port, backends: [`127.0.0.1:${silent.port}`], settings: "    health_check: { enabled: false }\n    idle_timeout: 0\n    half_close_timeout: 1s" },
      { name: "open", port: port2, backends: [echo.address], settings: "    health_check: { enabled: false }\n    idle_timeout: 0\n    half_close_timeout: 1s" },
    ];
    const lb = await startLB(lbYaml({ level: "warn", top, services }));
    try {
      const half = await connect("127.0.0.1", port);
      const quiet = await connect("127.0.0.1", port2);
      half.socket.write("request");
      await Bun.sleep(300); // a reply direction that keeps flowing resets the clock: not tested here
      const started = Date.now();
      half.socket.shutdown();
      await half.ended;
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(900);
      expect(elapsed).toBeLessThan(3500);
      // featherlb ended its side toward the backend too (FIN), and counts no connection open.
      await waitFor("the backend to see featherlb's FIN", () => backendGotFin, 3000);
      expect(await lb.metric("featherlb_service_connections_active", { service: "fin" })).toBe(0);
      // Not half-closed: quiet for as long, still open (idle_timeout 0 means never).
      expect(quiet.isClosed()).toBe(false);
      quiet.socket.write("still");
      await waitFor("echo on the quiet connection", () => quiet.text() === "echo\nstill");
      quiet.socket.end();
      await expectHandovers(lb, "fin");
      await expectHandovers(lb, "open");
    } finally {
      await lb.stop();
      silent.stop(true);
      echo.stop();
    }
  });

  test("a half-closed connection whose other direction keeps flowing is not cut", async () => {
    // Answers with a byte every 300 ms after the client's FIN, for 2 s, then closes.
    const slow = Bun.listen<{ n: number }>({
      hostname: "127.0.0.1",
      port: 0,
      allowHalfOpen: true,
      socket: {
        open(s) {
          s.data = { n: 0 };
        },
        data() {},
        end(s) {
          const t = setInterval(() => {
            s.write(".");
            if (++s.data.n === 7) {
              clearInterval(t);
              s.end();
            }
          }, 300);
        },
      },
    });
    const port = freePort();
    const lb = await startLB(config(port, [`127.0.0.1:${slow.port}`], "    idle_timeout: 0\n    half_close_timeout: 1s"));
    try {
      const c = await connect("127.0.0.1", port);
      // A first byte hands the connection to the kernel relay (after_bytes: 0) before the FIN.
      c.socket.write("x");
      await Bun.sleep(200);
      c.socket.shutdown();
      await c.ended;
      expect(c.text()).toBe(".......");
      await expectHandovers(lb);
    } finally {
      await lb.stop();
      slow.stop(true);
    }
  });
});
});
}
