/**
 * The kernel relay's failure paths and drain, through a real featherlb process on 127.0.0.1 (its happy
 * paths — integrity, half-close, backpressure, timeouts — run in relay.test.ts for both relays): a side
 * that resets, a proxy worker that dies while its relay thread holds connections, and SIGTERM with
 * relayed connections open. Each connection is
 * handed over with its first byte (after_bytes: 0), which the tests check.
 */
import { expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { lbYaml } from "../support/config.ts";
import { startBackend } from "../support/backend.ts";
import { type RunningLB, startLB } from "../support/lb.ts";
import { type Client, connect, freePort, waitFor, writeAll } from "../support/net.ts";

const MiB = 1 << 20;
const KERNEL = "kernel_relay: { enabled: true, after_bytes: 0 }";

function config(port: number, backends: string[], top = "", level = "warn"): string {
  return lbYaml({ level, top: `${KERNEL}\n${top}`, services: [{ name: "kr", port, backends, settings: "    health_check: { enabled: false }" }] });
}

const handovers = (lb: RunningLB) => lb.metric("featherlb_service_kernel_relayed_total", { service: "kr" });
const active = (lb: RunningLB) => lb.metric("featherlb_service_connections_active", { service: "kr" });

/** A connection to backend "a" handed to the relay thread with its first byte (the echo came back through it). */
async function relayedEcho(lb: RunningLB, port: number): Promise<Client> {
  const c = await connect("127.0.0.1", port);
  c.socket.write("x");
  await waitFor("echo", () => c.text() === "a\nx");
  await waitFor("the handover counted", async () => (await handovers(lb)) === 1);
  return c;
}

test("a backend that resets mid-transfer resets the client; the relay thread and featherlb carry on", async () => {
  // Reads nothing, so the client's upload piles up unread in its socket; closing it then sends RST.
  const sink = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.pause();
        setTimeout(() => s.terminate(), 500);
      },
      data() {},
    },
  });
  const echo = startBackend("echo");
  const port = freePort();
  const port2 = freePort();
  const lb = await startLB(
    lbYaml({
      level: "warn",
      top: KERNEL,
      services: [
        { name: "kr", port, backends: [`127.0.0.1:${sink.port}`], settings: "    health_check: { enabled: false }" },
        { name: "ok", port: port2, backends: [echo.address], settings: "    health_check: { enabled: false }" },
      ],
    }),
  );
  try {
    const client = await connect("127.0.0.1", port);
    writeAll(client.socket, randomBytes(32 * MiB));
    // The upload never completes: the client's connection is closed under it.
    await client.closed;
    expect(await handovers(lb)).toBeGreaterThan(0);
    await waitFor("the connection counted closed", async () => (await active(lb)) === 0, 3000);
    // The write toward the reset socket failed with EPIPE (SIGPIPE ignored): featherlb still serves,
    // and the relay thread still relays.
    const c = await connect("127.0.0.1", port2);
    await waitFor("greeting", () => c.text() === "echo\n");
    c.socket.write("after");
    await waitFor("echo after the reset", () => c.text() === "echo\nafter");
    c.socket.end();
  } finally {
    await lb.stop();
    sink.stop(true);
    echo.stop();
  }
}, 30_000);

test("a client that resets mid-download resets the backend side too", async () => {
  let backendClosed = false;
  const chunk = randomBytes(MiB);
  // Streams until its socket closes.
  const source = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        const more = () => {
          while (!backendClosed && s.write(chunk) === chunk.length);
        };
        more();
        (s as unknown as { more: () => void }).more = more;
      },
      drain(s) {
        (s as unknown as { more: () => void }).more();
      },
      data() {},
      close() {
        backendClosed = true;
      },
    },
  });
  const port = freePort();
  const lb = await startLB(config(port, [`127.0.0.1:${source.port}`]));
  try {
    const client = await connect("127.0.0.1", port);
    client.socket.write("go");
    await waitFor("bytes flowing", () => client.received().length > 8 * MiB);
    expect(await handovers(lb)).toBeGreaterThan(0);
    client.socket.terminate();
    await waitFor("the backend's socket closed", () => backendClosed, 5000);
    await waitFor("the connection counted closed", async () => (await active(lb)) === 0, 3000);
    expect(await lb.metric("featherlb_service_bytes_total", { service: "kr", direction: "out" })).toBeGreaterThan(8 * MiB);
  } finally {
    await lb.stop();
    source.stop(true);
  }
}, 30_000);

test("a worker that dies resets the connections its relay thread held; the other worker's keep flowing", async () => {
  const a = startBackend("a");
  const port = freePort();
  const lb = await startLB(config(port, [a.address], "workers: 2"), { env: { FEATHERLB_TEST_HOOKS: "1" } });
  const held: Client[] = [];
  try {
    for (let i = 0; i < 24; i++) {
      const c = await connect("127.0.0.1", port);
      c.socket.write(`p${i}`); // handed over with this first byte
      await waitFor("echo", () => c.text() === `a\np${i}`);
      held.push(c);
    }
    await waitFor("all handed over", async () => (await handovers(lb)) === 24);
    const workers: { connections: number; kernel_relayed: number }[] = (await lb.status()).workers;
    const lose = workers[1]!.connections;
    expect(lose).toBeGreaterThan(0);
    // /status and /metrics say which connections the relay threads hold: all of them here.
    expect(workers.map((w) => w.kernel_relayed)).toEqual(workers.map((w) => w.connections));
    expect(await lb.metric("featherlb_worker_connections_kernel_relayed", { worker: "1" })).toBe(lose);

    const ended = new Set<Client>();
    for (const c of held) void c.ended.then(() => ended.add(c));
    lb.signal("SIGUSR1"); // worker 1 throws; its relay thread goes with it
    await lb.waitForLog("proxy worker exited; restarting it");
    // Without the cleanup its relay thread's duplicated sockets would stay open: these would hang.
    await waitFor("the dead worker's connections ended", () => ended.size === lose, 5000);
    await Bun.sleep(200);
    expect(ended.size).toBe(lose);
    const open = held.filter((c) => !ended.has(c));
    for (const [i, c] of open.entries()) c.socket.write(`q${i}`);
    await waitFor("the surviving worker's relayed connections echo", () => open.every((c, i) => c.text().endsWith(`q${i}`)));
    for (const c of open) c.socket.end();
  } finally {
    await lb.stop();
    a.stop();
  }
}, 30_000);

test("SIGTERM drain: a relayed connection keeps relaying until it ends, then featherlb exits 0 at once", async () => {
  const a = startBackend("a");
  const port = freePort();
  const lb = await startLB(config(port, [a.address], "drain_timeout: 10s\nconfig_watch: off", "info"));
  try {
    const c = await relayedEcho(lb, port);
    lb.signal("SIGTERM");
    await lb.waitForLog("proxy listeners closed; waiting for open connections to end");
    // Still relayed by the relay thread while featherlb drains.
    c.socket.write("during drain");
    await waitFor("echo during drain", () => c.text() === "a\nxduring drain");
    const t0 = Date.now();
    c.socket.end();
    expect(await lb.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2000);
  } finally {
    await lb.stop();
    a.stop();
  }
}, 30_000);

test("SIGTERM drain: a relayed connection still open at drain_timeout is closed, and featherlb exits 0", async () => {
  const a = startBackend("a");
  const port = freePort();
  const lb = await startLB(config(port, [a.address], "drain_timeout: 500ms\nconfig_watch: off"));
  try {
    const c = await relayedEcho(lb, port);
    const t0 = Date.now();
    lb.signal("SIGTERM");
    expect(await lb.exited).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    // Closed with the process: the relay thread's descriptors went with it.
    await c.closed;
  } finally {
    await lb.stop();
    a.stop();
  }
}, 30_000);

test("a reload that changes kernel_relay says it takes effect at the next restart; relaying goes on as started", async () => {
  const a = startBackend("a");
  const port = freePort();
  const lb = await startLB(config(port, [a.address], "config_watch: off"));
  try {
    lb.rewrite(config(port, [a.address], "config_watch: off").replace(KERNEL, "kernel_relay: { enabled: false }"));
    lb.signal("SIGHUP");
    const said = await lb.waitForLog("kernel_relay takes effect at the next restart; the running workers keep theirs");
    expect(said).toMatchObject({ running: { enabled: true, after_bytes: 0 }, configured: { enabled: false } });
    const c = await relayedEcho(lb, port); // handed over as started
    c.socket.end();
  } finally {
    await lb.stop();
    a.stop();
  }
}, 30_000);

test("send_proxy: the PROXY header goes first, then the relay thread carries the client's bytes; the header is not counted", async () => {
  const pp = startBackend("pp", { proxy: true });
  const port = freePort();
  const lb = await startLB(
    lbYaml({ level: "warn", top: KERNEL, services: [{ name: "kr", port, backends: [pp.address], settings: "    health_check: { enabled: false }\n    send_proxy: v2" }] }),
  );
  try {
    const c = await connect("127.0.0.1", port);
    c.socket.write("hello"); // sent before featherlb has a backend: it follows the header
    await waitFor("greeting and echo", () => c.text() === "pp\nhello");
    expect(await handovers(lb)).toBe(1);
    const bulk = randomBytes(4 * MiB);
    writeAll(c.socket, bulk);
    await waitFor("the echo of 4 MiB through the relay thread", () => c.received().length === 3 + 5 + bulk.length);
    expect(c.received().subarray(8).equals(bulk)).toBe(true);
    expect(pp.headers[0]).toMatchObject({ version: 2, family: 4, srcAddress: "127.0.0.1", srcPort: c.socket.localPort, dstPort: port });
    expect(await lb.metric("featherlb_service_bytes_total", { service: "kr", direction: "in" })).toBe(5 + bulk.length);
    c.socket.end();
  } finally {
    await lb.stop();
    pp.stop();
  }
}, 30_000);
