/**
 * Many idle connections through one featherlb process: all are relayed, and the figure that matters
 * for capacity — resident memory per connection — is printed (a measurement, not a timed assertion).
 */
import { expect, test } from "bun:test";
import { type RunningLB, rssKiB, startLB } from "../support/lb.ts";
import { startBackend } from "../support/backend.ts";
import { type Client, connect, freePort, waitFor } from "../support/net.ts";

const N = 1000;

test(`${N} idle connections are all relayed; RSS per connection is reported`, async () => {
  const backend = startBackend("a");
  const port = await freePort();
  const lb: RunningLB = await startLB(`
admin: { listen: ADMIN }
log: { level: warn }
services:
  - name: idle
    listen: 127.0.0.1:${port}
    algorithm: least_connections
    health_check: { enabled: false }
    backends:
      - address: localhost:${backend.port}
`);
  const clients: Client[] = [];
  try {
    await waitFor("backend resolved", async () => (await lb.status()).services[0].backends[0].ip === "127.0.0.1");
    const before = rssKiB(lb.pid);
    for (let i = 0; i < N; i++) clients.push(await connect("127.0.0.1", port));
    await waitFor(`${N} greetings`, () => clients.every((c) => c.text() === "a\n"), 30_000);
    expect(backend.open.size).toBe(N);
    expect(await lb.metric("featherlb_service_connections_active", { service: "idle" })).toBe(N);
    const after = rssKiB(lb.pid);
    const perConn = ((after - before) * 1024) / N;
    console.log(`scale: ${N} idle connections through the proxy: RSS ${before} → ${after} KiB, ${(perConn / 1024).toFixed(1)} KiB per connection (client + backend socket)`);
    // Every one of them still relays.
    clients[N - 1]!.socket.write("x");
    await waitFor("echo on the last connection", () => clients[N - 1]!.text() === "a\nx");
  } finally {
    clients.forEach((c) => c.socket.end());
    await lb.stop();
    backend.stop();
  }
}, 60_000);
