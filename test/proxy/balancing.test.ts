/**
 * Balancing, limits and failure handling of the proxy data plane, through a real featherlb process
 * and real backends on 127.0.0.x.
 */
import { describe, expect, test } from "bun:test";
import { type BackendSpec, lbYaml } from "../support/config.ts";
import { startLB } from "../support/lb.ts";
import { blackhole, refusing } from "../support/blackhole.ts";
import { startBackend } from "../support/backend.ts";
import { whoServes } from "../support/conn.ts";
import { connect, freePort, waitFor } from "../support/net.ts";

interface Svc {
  algorithm?: string;
  backends: BackendSpec[];
  extra?: string;
}
function config(port: number, svc: Svc): string {
  return lbYaml({ services: [{ name: "svc", port, algorithm: svc.algorithm, backends: svc.backends, settings: svc.extra }] });
}

async function spread(port: number, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await whoServes("127.0.0.1", port));
  return out;
}

test("round_robin: exact order across three backends", async () => {
  const backends = ["a", "b", "c"].map((n) => startBackend(n));
  const port = await freePort();
  const lb = await startLB(config(port, { backends: backends.map((b) => b.address) }));
  try {
    expect(await spread(port, 9)).toEqual(["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
    expect(await lb.metric("featherlb_backend_connections_total", { backend: backends[0]!.address })).toBe(3);
  } finally {
    await lb.stop();
    backends.forEach((b) => b.stop());
  }
});

test("weighted_round_robin: smooth 5:1:1 through the proxy", async () => {
  const backends = ["a", "b", "c"].map((n) => startBackend(n));
  const port = await freePort();
  const lb = await startLB(
    config(port, {
      algorithm: "weighted_round_robin",
      backends: backends.map((b, i) => ({ address: b.address, weight: i === 0 ? 5 : 1 })),
    }),
  );
  try {
    expect(await spread(port, 14)).toEqual(["a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"]);
  } finally {
    await lb.stop();
    backends.forEach((b) => b.stop());
  }
});

test.each([["source_hash"], ["maglev"]])("%s: one client IP sticks to one backend, clients spread", async (algorithm) => {
  const backends = ["a", "b", "c"].map((n) => startBackend(n));
  const port = await freePort();
  const lb = await startLB(config(port, { algorithm, backends: backends.map((b) => b.address) }));
  try {
    const seen = new Set<string>();
    // 30 client IPs (127.0.1.x are all this host's on lo), four connections each.
    for (let i = 1; i <= 30; i++) {
      const got: string[] = [];
      for (let k = 0; k < 4; k++) got.push(await whoServes("127.0.0.1", port, `127.0.1.${i}`));
      expect(new Set(got).size).toBe(1);
      seen.add(got[0]!);
    }
    expect(seen).toEqual(new Set(["a", "b", "c"]));
  } finally {
    await lb.stop();
    backends.forEach((b) => b.stop());
  }
});

test("least_connections follows live counts: held connections steer new ones elsewhere", async () => {
  const backends = ["a", "b", "c"].map((n) => startBackend(n));
  const port = await freePort();
  const lb = await startLB(config(port, { algorithm: "least_connections", backends: backends.map((b) => b.address) }));
  try {
    const active = (name: string) => lb.metric("featherlb_backend_connections_active", { backend: backends.find((b) => b.name === name)!.address });
    // Three held connections: one per backend (ties go to the earlier backend).
    const held = [];
    for (let i = 0; i < 3; i++) {
      const c = await connect("127.0.0.1", port);
      await waitFor("greeting", () => c.text().includes("\n"));
      held.push(c);
    }
    expect(held.map((c) => c.text().trim())).toEqual(["a", "b", "c"]);
    // b's client leaves: b is now the only backend with 0 active, so it gets the next one…
    held[1]!.socket.end();
    await waitFor("b idle", async () => (await active("b")) === 0);
    const next = await connect("127.0.0.1", port);
    await waitFor("greeting", () => next.text().includes("\n"));
    expect(next.text().trim()).toBe("b");
    // …and with all at 1 again, the tie goes to a.
    const after = await connect("127.0.0.1", port);
    await waitFor("greeting", () => after.text().includes("\n"));
    expect(after.text().trim()).toBe("a");
    [...held, next, after].forEach((c) => c.socket.end());
  } finally {
    await lb.stop();
    backends.forEach((b) => b.stop());
  }
});

test("max_connections: the excess is closed at once and counted", async () => {
  const backend = startBackend("a");
  const port = await freePort();
  const lb = await startLB(config(port, { backends: [backend.address], extra: "    max_connections: 2\n    health_check: { enabled: false }" }));
  try {
    const held = [await connect("127.0.0.1", port), await connect("127.0.0.1", port)];
    await waitFor("two served", () => held.every((c) => c.text() === "a\n"));
    const third = await connect("127.0.0.1", port);
    const t0 = Date.now();
    // The LB closes its side at once (FIN); this client allows half-open, so it sees the end.
    await third.ended;
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(third.text()).toBe("");
    expect(await lb.metric("featherlb_service_rejected_total", { reason: "max_connections" })).toBe(1);
    held[0]!.socket.end();
    await held[0]!.closed;
    await waitFor("slot freed", async () => (await lb.metric("featherlb_service_connections_active", { service: "svc" })) === 1);
    expect(await whoServes("127.0.0.1", port)).toBe("a");
    held[1]!.socket.end();
  } finally {
    await lb.stop();
    backend.stop();
  }
});

test("connect failures retry on another backend and passive checks take the dead one out", async () => {
  const live = startBackend("live");
  const dead = refusing();
  const deadPort = Number(dead.address.split(":")[1]);
  const port = await freePort();
  const lb = await startLB(
    config(port, {
      backends: [`127.0.0.1:${deadPort}`, live.address],
      extra: "    connect_retries: 1\n    health_check: { interval: 1h, timeout: 1s, rise: 1, fall: 2 }",
    }),
  );
  try {
    // Every client is served: the refused connect is retried on the live backend. After the second
    // failure (fall: 2) the dead backend leaves the plan within one rebuild interval: wait for that
    // before the rest, so no third client meets it.
    const served = await spread(port, 2);
    await waitFor("the dead backend out of the plan", async () => (await lb.metric("featherlb_service_backends_eligible", {})) === 1);
    served.push(...(await spread(port, 4)));
    expect(served).toEqual(new Array(6).fill("live"));
    expect(await lb.metric("featherlb_backend_connect_failures_total", { backend: `127.0.0.1:${deadPort}` })).toBe(2);
    expect(await lb.metric("featherlb_backend_up", { backend: `127.0.0.1:${deadPort}` })).toBe(0);
    expect(lb.logs().some((l) => l.msg === "backend down" && l.backend === `127.0.0.1:${deadPort}`)).toBe(true);
  } finally {
    await lb.stop();
    live.stop();
    dead.close();
  }
});

test("connect timeout: a backend that never answers the SYN is given up on and the next one serves", async () => {
  const hole = blackhole();
  const live = startBackend("live");
  const port = await freePort();
  const lb = await startLB(
    config(port, {
      backends: [hole.address, live.address],
      extra: "    connect_timeout: 300ms\n    connect_retries: 1\n    health_check: { enabled: false }",
    }),
  );
  try {
    const t0 = Date.now();
    expect(await whoServes("127.0.0.1", port)).toBe("live");
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(3000);
    expect(await lb.metric("featherlb_backend_connect_failures_total", { backend: hole.address })).toBe(1);
  } finally {
    await lb.stop();
    live.stop();
    hole.close();
  }
});

test("every backend down: new clients are closed at once and counted, never left hanging", async () => {
  const dead = refusing();
  const port = await freePort();
  const lb = await startLB(
    config(port, { backends: [dead.address], extra: "    health_check: { interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }" }),
  );
  try {
    // Marked down, and out of the plan (rebuilt within one rebuild interval of the flip).
    await waitFor("backend marked down", async () => (await lb.metric("featherlb_backend_up", {})) === 0 && (await lb.metric("featherlb_service_backends_eligible", {})) === 0);
    const client = await connect("127.0.0.1", port);
    const t0 = Date.now();
    await client.ended;
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(client.text()).toBe("");
    expect(await lb.metric("featherlb_service_rejected_total", { reason: "no_backend" })).toBeGreaterThanOrEqual(1);
  } finally {
    await lb.stop();
    dead.close();
  }
});

describe("active health checks", () => {
  test("a stopped backend leaves within fall × interval and rejoins after rise × interval", async () => {
    const a = startBackend("a");
    let b = startBackend("b");
    const bPort = b.port;
    const port = await freePort();
    const lb = await startLB(
      config(port, { backends: [a.address, b.address], extra: "    health_check: { interval: 200ms, timeout: 200ms, rise: 2, fall: 2 }" }),
    );
    try {
      expect(new Set(await spread(port, 4))).toEqual(new Set(["a", "b"]));
      b.stop();
      const t0 = Date.now();
      await lb.waitForLog("backend down", 5000);
      // fall × interval = 400 ms, plus one interval of phase and scheduling slack.
      expect(Date.now() - t0).toBeLessThan(1500);
      expect(await spread(port, 4)).toEqual(["a", "a", "a", "a"]);
      b = startBackend("b", { port: bPort });
      await lb.waitForLog("backend up", 5000);
      expect(new Set(await spread(port, 4))).toEqual(new Set(["a", "b"]));
    } finally {
      await lb.stop();
      a.stop();
      b.stop();
    }
  });
});
