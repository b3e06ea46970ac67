/**
 * Plan rebuilds are coalesced and sliced (rebuild.ts): a storm of health flips costs a few rebuilds per
 * service, a flip undone before its rebuild costs none, and a big Maglev table is built over many turns
 * of the event loop. Real Services on a queue of their own; the waiting is for the queue, not for time.
 */
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../config/load.ts";
import { maglevTable } from "./algorithms/maglev.ts";
import { Logger } from "./log.ts";
import { RebuildQueue } from "./rebuild.ts";
import { Service } from "./service.ts";

const quiet = new Logger("error");

function serviceConfig(n: number, algorithm = "maglev", tableSize = 65537) {
  const backends = Array.from({ length: n }, (_, i) => `      - address: 10.1.${i >> 8}.${i & 255}:80`).join("\n");
  const yaml = `services:\n  - name: s\n    listen: 127.0.0.1:1\n    algorithm: ${algorithm}\n    maglev: { table_size: ${tableSize} }\n    backends:\n${backends}\n`;
  return parseConfig(yaml, "t.yaml").services[0]!;
}

/** A Service on its own queue, its first plan built, counting the plans it publishes. */
async function counted(n: number, queue = new RebuildQueue()) {
  const s = new Service(serviceConfig(n), quiet, queue);
  await s.settled();
  const plans: number[] = [];
  s.onPlan(() => plans.push(performance.now()));
  return { s, plans, queue, backends: [...s.backends.values()] };
}

describe("coalescing", () => {
  test("a new service picks nothing until its first plan is built; settled() waits for it", async () => {
    const s = new Service(serviceConfig(3), quiet, new RebuildQueue());
    expect(s.picker.size).toBe(0);
    await s.settled();
    expect(s.picker.size).toBe(3);
  });

  test("every backend of a service going down within one turn is one rebuild, not one per backend", async () => {
    const { s, plans, backends } = await counted(200);
    for (const b of backends) s.markHealth(b, "down", "ECONNREFUSED");
    await s.settled();
    expect(plans.length).toBe(1);
    expect(s.picker.size).toBe(0);
  });

  test("flips spread over time: at most one rebuild per interval, and the last plan has the last state", async () => {
    // Cost factor ∞: every rebuild waits the whole interval after the previous one.
    const { s, plans, backends } = await counted(50, new RebuildQueue(100, 4, Number.POSITIVE_INFINITY));
    const start = performance.now();
    for (const b of backends) {
      s.markHealth(b, "down", "ECONNREFUSED");
      await Bun.sleep(5); // 50 flips over ≥ 250 ms
    }
    const spread = performance.now() - start;
    await s.settled();
    expect(s.picker.size).toBe(0);
    // One rebuild at once, then at most one per 100 ms interval (and one after the last flip).
    expect(plans.length).toBeGreaterThanOrEqual(2);
    expect(plans.length).toBeLessThanOrEqual(Math.ceil(spread / 100) + 2);
    for (let i = 1; i < plans.length; i++) expect(plans[i]! - plans[i - 1]!).toBeGreaterThanOrEqual(99);
  });

  test("a plan that costs microseconds waits microseconds: round robin follows every flip at once", async () => {
    const queue = new RebuildQueue(60_000);
    const s = new Service(serviceConfig(3, "round_robin"), quiet, queue);
    await s.settled();
    const [a, b] = [...s.backends.values()];
    const t = performance.now();
    for (const [backend, health] of [[a, "down"], [b, "down"], [a, "up"], [b, "up"]] as const) {
      s.markHealth(backend!, health, "x");
      await s.settled();
    }
    expect(s.picker.size).toBe(3);
    expect(performance.now() - t).toBeLessThan(5000); // not 60 s per flip
  });

  test("a flip undone before its rebuild publishes no plan; an unchanged reload neither", async () => {
    const { s, plans, backends } = await counted(10);
    s.markHealth(backends[3]!, "down", "ECONNREFUSED");
    s.markHealth(backends[3]!, "up", "ok");
    await s.settled();
    s.update(s.config);
    await s.settled();
    expect(plans.length).toBe(0);
  });

  test("a service whose plan picks nothing does not wait for the interval: the first backend back is served at once", async () => {
    const queue = new RebuildQueue(60_000);
    const { s, plans, backends } = await counted(2, queue);
    for (const b of backends) s.markHealth(b, "down", "x");
    queue.flush(); // this rebuild would wait out the interval: its plan still picks
    expect(s.picker.size).toBe(0);
    const t = performance.now();
    s.markHealth(backends[0]!, "up", "ok"); // 60 s after the last rebuild would be the interval
    await s.settled();
    expect(performance.now() - t).toBeLessThan(5000);
    expect(s.picker.size).toBe(1);
    expect(plans.length).toBe(2);
  });

  test("a change while a build runs: the build finishes, then one more rebuild takes the change", async () => {
    const queue = new RebuildQueue(0);
    const { s, plans, backends } = await counted(100, queue);
    s.markHealth(backends[0]!, "down", "x");
    // The queue starts the build on the next turn; let it run one slice, then change again.
    await new Promise((r) => setImmediate(r));
    s.markHealth(backends[1]!, "down", "x");
    await s.settled();
    expect(plans.length).toBeLessThanOrEqual(2);
    expect([...s.picker.plan.members]).not.toContain(backends[1]!.id);
    expect([...s.picker.plan.members]).not.toContain(backends[0]!.id);
  });
});

describe("slicing", () => {
  test("a 1,000,003-slot Maglev table is built over many turns of the event loop, the same table as in one step", async () => {
    const queue = new RebuildQueue(0, 4);
    const s = new Service(serviceConfig(250, "maglev", 1_000_003), quiet, queue);
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    await s.settled();
    clearInterval(ticker);
    // One build takes tens of ms; in 4 ms slices, timers run in between many times.
    expect(turns).toBeGreaterThan(3);
    const members = [...s.backends.values()].map((b) => ({ id: b.id, weight: 1, key: b.key }));
    expect(s.picker.plan.slots).toEqual(maglevTable(members, 1_000_003));
  });

  test("many dirty services share the slices in the order they changed; flush() runs them all at once", async () => {
    const queue = new RebuildQueue(0, 4);
    const services = await Promise.all(Array.from({ length: 8 }, () => counted(100, queue)));
    for (const { s, backends } of services) s.markHealth(backends[0]!, "down", "x");
    queue.flush();
    for (const { s, plans } of services) {
      expect(plans.length).toBe(1);
      expect(s.picker.size).toBe(99);
    }
  });
});
