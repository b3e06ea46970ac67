/**
 * `workers: 2`: two proxy threads accept on the same listeners (SO_REUSEPORT), and the algorithms and
 * limits behave as with one — through a real featherlb process, real backends and real sockets. Each
 * test also checks that both workers did accept connections (/status), so it is not one worker's
 * behaviour being measured. A worker is killed through the test hook (FEATHERLB_TEST_HOOKS=1 + SIGUSR1:
 * the last worker throws an uncaught exception, as a bug would).
 */
import { expect, test } from "bun:test";
import { type BackendSpec, lbYaml } from "../support/config.ts";
import { startLB, type RunningLB } from "../support/lb.ts";
import { startBackend } from "../support/backend.ts";
import { whoServes } from "../support/conn.ts";
import { type Client, connect, connectFrom, freePort, waitFor } from "../support/net.ts";

function config(port: number, backends: BackendSpec[], o: { algorithm?: string; settings?: string; top?: string } = {}): string {
  return lbYaml({ top: `workers: 2\n${o.top ?? ""}`, services: [{ name: "svc", port, algorithm: o.algorithm, backends, settings: o.settings }] });
}

interface Worker {
  index: number;
  alive: boolean;
  connections: number;
  accepted: number;
  restarts: number;
}
const workers = async (lb: RunningLB): Promise<Worker[]> => (await lb.status()).workers;

/** Open `n` connections one after the other, each held, waiting for each backend greeting. */
async function hold(port: number, n: number): Promise<Client[]> {
  const out: Client[] = [];
  for (let i = 0; i < n; i++) {
    const c = await connect("127.0.0.1", port);
    await waitFor("greeting", () => c.text().includes("\n"));
    out.push(c);
  }
  return out;
}

test("round_robin: the exact sequence for sequential connections, whichever worker accepts each", async () => {
  const backends = ["a", "b", "c"].map((n) => startBackend(n));
  const port = freePort();
  const lb = await startLB(config(port, backends.map((b) => b.address)));
  try {
    const got: string[] = [];
    for (let i = 0; i < 30; i++) got.push(await whoServes("127.0.0.1", port));
    expect(got).toEqual(Array.from({ length: 30 }, (_, i) => "abc"[i % 3]!));
    const w = await workers(lb);
    expect(w.map((x) => x.index)).toEqual([0, 1]);
    // The kernel hashed connections to both workers (2 × 2^-30 that it did not).
    expect(w.every((x) => x.accepted > 0)).toBe(true);
    expect(w[0]!.accepted + w[1]!.accepted).toBe(30);
    // /metrics adds both workers up.
    for (const b of backends) expect(await lb.metric("featherlb_backend_connections_total", { backend: b.address })).toBe(10);
    expect(await lb.metric("featherlb_service_connections_total", { service: "svc" })).toBe(30);
  } finally {
    await lb.stop();
    backends.forEach((b) => b.stop());
  }
});

test("weighted_round_robin: the smooth 5:1:1 sequence across workers", async () => {
  const backends = ["a", "b", "c"].map((n) => startBackend(n));
  const port = freePort();
  const lb = await startLB(config(port, backends.map((b, i) => ({ address: b.address, weight: i === 0 ? 5 : 1 })), { algorithm: "weighted_round_robin" }));
  try {
    const got: string[] = [];
    for (let i = 0; i < 28; i++) got.push(await whoServes("127.0.0.1", port));
    const cycle = ["a", "a", "b", "a", "c", "a", "a"];
    expect(got).toEqual([...cycle, ...cycle, ...cycle, ...cycle]);
    expect((await workers(lb)).every((x) => x.accepted > 0)).toBe(true);
  } finally {
    await lb.stop();
    backends.forEach((b) => b.stop());
  }
});

test("least_connections sees both workers' connections: held one by one they go a, b, c, …; a burst ends even", async () => {
  const backends = ["a", "b", "c"].map((n) => startBackend(n));
  const port = freePort();
  const lb = await startLB(config(port, backends.map((b) => b.address), { algorithm: "least_connections" }));
  const held: Client[] = [];
  try {
    // Each new connection sees every held one, whichever worker holds it: ties go to the earlier backend.
    held.push(...(await hold(port, 12)));
    expect(held.map((c) => c.text().trim())).toEqual(Array.from({ length: 12 }, (_, i) => "abc"[i % 3]!));
    // A burst of 30 at once, accepted by both workers in parallel: picks and counts happen under the
    // service's lock, so the spread ends exactly even.
    const burst = await Promise.all(Array.from({ length: 30 }, () => connect("127.0.0.1", port)));
    held.push(...burst);
    await waitFor("burst greeted", () => burst.every((c) => c.text().includes("\n")));
    const count = (name: string) => held.filter((c) => c.text().trim() === name).length;
    expect([count("a"), count("b"), count("c")]).toEqual([14, 14, 14]);
    const active = await Promise.all(backends.map((b) => lb.metric("featherlb_backend_connections_active", { backend: b.address })));
    expect(active).toEqual([14, 14, 14]);
    const w = await workers(lb);
    expect(w.every((x) => x.connections > 0)).toBe(true);
    expect(w[0]!.connections + w[1]!.connections).toBe(42);
  } finally {
    held.forEach((c) => c.socket.end());
    await lb.stop();
    backends.forEach((b) => b.stop());
  }
});

test("max_connections and max_connections_per_source count across workers", async () => {
  const a = startBackend("a");
  const port = freePort();
  const lb = await startLB(config(port, [a.address], { settings: "    max_connections: 6\n    max_connections_per_source: 4\n    health_check: { enabled: false }" }));
  const held: Client[] = [];
  try {
    // Four from 127.0.0.1 (the per-source limit), whichever worker takes each…
    held.push(...(await hold(port, 4)));
    const extra = await connect("127.0.0.1", port);
    await extra.ended;
    expect(extra.text()).toBe("");
    expect(await lb.metric("featherlb_service_rejected_total", { service: "svc", reason: "max_connections_per_source" })).toBe(1);
    // …two more from another source fill max_connections; the next is refused whatever its source.
    for (let i = 0; i < 2; i++) {
      const c = await connectFrom("127.0.0.1", port, "127.0.0.2");
      await waitFor("greeting", () => c.text() === "a\n");
      held.push(c);
    }
    const over = await connectFrom("127.0.0.1", port, "127.0.0.3");
    await over.ended;
    expect(await lb.metric("featherlb_service_rejected_total", { service: "svc", reason: "max_connections" })).toBe(1);
    // Refused ones are not counted as held; every held one still relays.
    expect(await lb.metric("featherlb_service_connections_active", { service: "svc" })).toBe(6);
    const w = await workers(lb);
    expect(w[0]!.connections + w[1]!.connections).toBe(6);
    // One source's connection ends: that source may connect again.
    held.shift()!.socket.end();
    await waitFor("freed", async () => (await lb.metric("featherlb_service_connections_active", { service: "svc" })) === 5);
    held.push(...(await hold(port, 1)));
  } finally {
    held.forEach((c) => c.socket.end());
    await lb.stop();
    a.stop();
  }
});

test("a worker that dies loses only its own connections, is restarted and logged; the other keeps serving", async () => {
  const a = startBackend("a");
  const port = freePort();
  const lb = await startLB(config(port, [a.address]), { env: { FEATHERLB_TEST_HOOKS: "1" } });
  const held: Client[] = [];
  try {
    held.push(...(await hold(port, 24)));
    const before = await workers(lb);
    // Both hold some (2 × 2^-24 that one holds all), 24 in all.
    expect(before.every((x) => x.connections > 0)).toBe(true);
    const [keep, lose] = [before[0]!.connections, before[1]!.connections];
    expect(keep + lose).toBe(24);

    const ended = new Set<Client>();
    for (const c of held) void c.ended.then(() => ended.add(c));
    lb.signal("SIGUSR1"); // worker 1 throws
    await lb.waitForLog("proxy worker exited; restarting it");
    // Exactly worker 1's connections end (its sockets closed with its thread); worker 0's keep relaying.
    await waitFor("the dead worker's connections ended", () => ended.size === lose);
    await Bun.sleep(200);
    expect(ended.size).toBe(lose);
    const open = held.filter((c) => !ended.has(c));
    expect(open).toHaveLength(keep);
    for (const [i, c] of open.entries()) c.socket.write(`ping${i}`);
    await waitFor("echoes through the surviving worker", () => open.every((c, i) => c.text() === `a\nping${i}`));

    const exited = lb.logs().find((l) => l.msg === "proxy worker exited; restarting it")!;
    expect(exited).toMatchObject({ worker: 1, connections_lost: lose });
    await lb.waitForLog("proxy worker restarted");
    // Its share left the shared counts: active is what worker 0 holds.
    expect(await lb.metric("featherlb_service_connections_active", { service: "svc" })).toBe(keep);
    const after = await workers(lb);
    expect(after[1]).toMatchObject({ alive: true, restarts: 1, connections: 0 });
    expect(await lb.metric("featherlb_worker_restarts_total", { worker: "1" })).toBe(1);
    // The restarted worker accepts again.
    const accepted = after[1]!.accepted;
    for (let i = 0; i < 20; i++) expect(await whoServes("127.0.0.1", port)).toBe("a");
    expect((await workers(lb))[1]!.accepted).toBeGreaterThan(accepted);
  } finally {
    held.forEach((c) => c.socket.end());
    await lb.stop();
    a.stop();
  }
}, 30_000);

test("reload and drain reach every worker", async () => {
  const a = startBackend("a");
  const [port, moved] = [freePort(), freePort()];
  const lb = await startLB(config(port, [a.address]));
  const held: Client[] = [];
  try {
    // The listener moves: both workers stop accepting on the old port and accept on the new one.
    const accepted = (await workers(lb)).map((w) => w.accepted);
    lb.rewrite(config(moved, [a.address]));
    lb.signal("SIGHUP");
    await lb.waitForLog("config reloaded");
    await expect(connect("127.0.0.1", port)).rejects.toThrow();
    held.push(...(await hold(moved, 24)));
    const w = await workers(lb);
    expect(w.every((x, i) => x.accepted > accepted[i]!)).toBe(true);
    expect(w.every((x) => x.connections > 0)).toBe(true);

    // SIGTERM: every worker stops accepting; the held connections still relay; exit once they end.
    lb.signal("SIGTERM");
    await lb.waitForLog("draining");
    expect(await lb.waitForLog("proxy listeners closed; waiting for open connections to end")).toMatchObject({ connections: 24 });
    await expect(connect("127.0.0.1", moved)).rejects.toThrow();
    for (const [i, c] of held.entries()) c.socket.write(`x${i}`);
    await waitFor("held connections relay while draining", () => held.every((c, i) => c.text() === `a\nx${i}`));
    held.forEach((c) => c.socket.end());
    expect(await lb.exited).toBe(0);
  } finally {
    held.forEach((c) => c.socket.end());
    await lb.stop();
    a.stop();
  }
});
