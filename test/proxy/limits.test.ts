/**
 * Limits that keep one cause from taking the whole service down, through a real featherlb process:
 *
 * - the LB's own descriptor limit: with `ulimit -n 256` and 600 concurrent clients, the excess is refused
 *   cleanly and counted as a local error, every backend stays up (local errors are not failed checks),
 *   the process keeps running, and new clients are served again as soon as the load drops;
 * - max_connections_per_source: one client IP holding 2,000 idle connections cannot starve another
 *   client IP's 100 connections a second.
 */
import { expect, test } from "bun:test";
import type net from "node:net";
import { lbYaml } from "../support/config.ts";
import { greetConn, whoServes, type ConnResult } from "../support/conn.ts";
import { startLB } from "../support/lb.ts";
import { startBackend } from "../support/backend.ts";
import { freePort, waitFor } from "../support/net.ts";

/** Open `n` connections at once that read the greeting and stay open; each settles served or refused. */
async function hold(n: number, port: number, localAddress?: string): Promise<Array<ConnResult & { socket?: net.Socket }>> {
  return Promise.all(Array.from({ length: n }, () => greetConn({ host: "127.0.0.1", port, localAddress, then: "keep", timeoutMs: 10_000 })));
}

test("ulimit -n 256 and 600 concurrent clients: excess refused cleanly, backends stay up, service resumes at once", async () => {
  const [a, b] = [startBackend("a"), startBackend("b")];
  const port = freePort();
  // Checks every 200 ms that give up after 2 failures: a local error counted as a failure would take
  // both backends down within a second.
  const settings = "    health_check: { interval: 200ms, timeout: 200ms, rise: 1, fall: 2 }\n    max_connections: 0";
  const lb = await startLB(lbYaml({ level: "info", services: [{ name: "web", port, backends: [a.address, b.address], settings }] }), {
    wrap: ["bash", "-c", 'ulimit -n 256 && exec "$@"', "featherlb-ulimit"],
  });
  try {
    const limits = await Bun.file(`/proc/${lb.pid}/limits`).text();
    expect(limits).toMatch(/Max open files\s+256\s+256/);
    const results = await hold(600, port);
    const served = results.filter((r) => r.ok);
    const refused = results.filter((r) => !r.ok);
    console.log(`ulimit -n 256: ${served.length} of 600 served, ${refused.length} refused (${[...new Set(refused.map((r) => r.error))].join(", ")})`);
    // Two descriptors per proxied connection: about (256 − what featherlb holds − its reserve) / 2.
    expect(served.length).toBeGreaterThan(40);
    expect(served.length).toBeLessThan(128);
    // Refused means closed at once with a clean FIN before any greeting: no reset, no hang.
    expect(refused.every((r) => r.error === "no_hello" && r.detail === "closed before any greeting")).toBe(true);
    expect(refused.length).toBe(600 - served.length);
    // Hold the load past a few check intervals: the checks must keep finding both backends up.
    await Bun.sleep(1000);
    for (const backend of [a, b]) expect(await lb.metric("featherlb_backend_up", { service: "web", backend: backend.address })).toBe(1);
    expect(lb.logs().some((l) => l.msg === "backend down")).toBe(false);
    expect(await lb.metric("featherlb_service_rejected_total", { service: "web", reason: "local_resources" })).toBe(refused.length);
    expect(await lb.metric("featherlb_local_errors_total", { errno: "EMFILE" })).toBe(refused.length);
    // Logged at most once a second, with the errno; the next line says how many were not logged.
    const logged = lb.logs().filter((l) => l.msg === "local resources exhausted; not counted against the backend");
    expect(logged.length).toBeGreaterThanOrEqual(1);
    expect(logged.length).toBeLessThan(refused.length / 10);
    const times = logged.map((l) => Date.parse(String(l.ts)));
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(1000);
    expect(logged[0]).toMatchObject({ level: "warn", errno: "EMFILE", service: "web" });
    // The load drops: the very next client is served.
    for (const r of served) r.socket?.destroy();
    await waitFor("connections closed", async () => (await lb.metric("featherlb_service_connections_active", { service: "web" })) === 0, 5000);
    const t0 = performance.now();
    expect(["a", "b"]).toContain(await whoServes("127.0.0.1", port));
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(lb.exited).not.toBeNull();
    expect((await lb.status()).services[0].backends.map((x: { health: string }) => x.health)).toEqual(["up", "up"]);
  } finally {
    await lb.stop();
    a.stop();
    b.stop();
  }
}, 30_000);

test("max_connections_per_source: 2,000 idle connections from one IP cannot starve another IP's 100 conn/s", async () => {
  const backend = startBackend("be");
  const port = freePort();
  const settings = "    health_check: { enabled: false }\n    max_connections: 1000\n    max_connections_per_source: 400";
  const lb = await startLB(lbYaml({ level: "warn", services: [{ name: "web", port, backends: [backend.address], settings }] }));
  const greedy: Array<net.Socket | undefined> = [];
  try {
    // 127.0.0.2 opens 2,000 and keeps every one featherlb lets through.
    const first = await hold(2000, port, "127.0.0.2");
    greedy.push(...first.map((r) => r.socket));
    const held = first.filter((r) => r.ok).length;
    expect(held).toBe(400);
    // …and keeps asking for more (200 a second) while 127.0.0.3 connects 100 times a second for 5 s.
    const pressing = setInterval(() => {
      for (let i = 0; i < 20; i++) void greetConn({ host: "127.0.0.1", port, localAddress: "127.0.0.2", then: "keep" }).then((r) => greedy.push(r.socket));
    }, 100);
    const polite: Promise<ConnResult>[] = [];
    const t0 = performance.now();
    for (let i = 0; i < 500; i++) {
      const due = t0 + i * 10;
      const wait = due - performance.now();
      if (wait > 0) await Bun.sleep(wait);
      polite.push(greetConn({ host: "127.0.0.1", port, localAddress: "127.0.0.3", then: "end" }));
    }
    const results = await Promise.all(polite);
    clearInterval(pressing);
    const ok = results.filter((r) => r.ok).length;
    console.log(`per-source limit: 127.0.0.2 holds ${held}; 127.0.0.3 ${ok}/500 served`);
    expect(ok / results.length).toBeGreaterThanOrEqual(0.999);
    expect(await lb.metric("featherlb_service_rejected_total", { service: "web", reason: "max_connections_per_source" })).toBeGreaterThanOrEqual(1600);
    expect(await lb.metric("featherlb_service_rejected_total", { service: "web", reason: "max_connections" })).toBe(0);
  } finally {
    for (const s of greedy) s?.destroy();
    await lb.stop();
    backend.stop();
  }
}, 30_000);

test("a connect that fails for want of a descriptor is local, although Bun reports it as ECONNREFUSED", () => {
  const script = new URL("./fixtures/emfile.ts", import.meta.url).pathname;
  const r = Bun.spawnSync(["bash", "-c", 'ulimit -n 64 && exec "$@"', "emfile", process.execPath, script], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  const out = JSON.parse(r.stdout.toString().trim().split("\n").at(-1) || "{}");
  expect(out).toEqual({ full: { code: "ECONNREFUSED", local: "EMFILE" }, refused: { code: "ECONNREFUSED" } });
});
