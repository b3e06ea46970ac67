/** Service state across reloads: backends are diffed by address, removed ones drain, ids are reused. */
import { describe, expect, test } from "bun:test";
import { MAX_BACKENDS } from "../config/limits.ts";
import { parseConfig } from "../config/load.ts";
import { Logger } from "./log.ts";
import { Service } from "./service.ts";

function serviceConfig(backends: string[], algorithm = "round_robin") {
  const yaml = `services:\n  - name: s\n    listen: 127.0.0.1:1\n    algorithm: ${algorithm}\n    backends:\n${backends.map((b) => `      - address: ${b}`).join("\n")}\n`;
  return parseConfig(yaml, "t.yaml").services[0]!;
}

test("a reload keeps surviving backends (state and ids), adds new ones, drains removed ones", async () => {
  const s = new Service(serviceConfig(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]));
  const b2 = [...s.backends.values()].find((b) => b.key === "10.0.0.2:80")!;
  b2.stats.total = 42;
  b2.stats.active = 1;
  const removed = [...s.backends.values()].find((b) => b.key === "10.0.0.1:80")!;
  removed.stats.active = 2;

  s.update(serviceConfig(["10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]));
  await s.settled();
  expect(s.backends.get(b2.id)).toBe(b2);
  expect(b2.stats.total).toBe(42);
  // The removed backend still has connections: it stays, out of the pick set, until they end.
  expect(removed.enabled).toBe(false);
  expect(s.backends.get(removed.id)).toBe(removed);
  expect(Array.from(s.picker.plan.members).sort()).not.toContain(removed.id);
  const added = [...s.backends.values()].find((b) => b.key === "10.0.0.4:80")!;
  expect(added.id).toBe(3);
  removed.stats.active = 0;
  s.collectDrained();
  expect(s.backends.has(removed.id)).toBe(false);
  // Its id is free again.
  s.update(serviceConfig(["10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.5:80"]));
  expect([...s.backends.values()].find((b) => b.key === "10.0.0.5:80")!.id).toBe(removed.id);
});

test("health and DNS gate the pick set; every change notifies plan listeners", async () => {
  const s = new Service(serviceConfig(["10.0.0.1:80", "backend.example:80"]));
  await s.settled();
  const [ip, named] = [...s.backends.values()];
  expect(named!.ip).toBeUndefined();
  expect(Array.from(s.picker.plan.members)).toEqual([ip!.id]);
  let notified = 0;
  s.onPlan(() => notified++);
  named!.ip = "10.0.0.9";
  s.rebuild();
  expect(Array.from(s.picker.plan.members)).toEqual([ip!.id, named!.id]);
  ip!.health = "down";
  s.rebuild();
  expect(Array.from(s.picker.plan.members)).toEqual([named!.id]);
  expect(notified).toBe(2);
});

test("changing the algorithm on reload rebuilds the plan kind", async () => {
  const s = new Service(serviceConfig(["10.0.0.1:80", "10.0.0.2:80"]));
  await s.settled();
  expect(s.picker.plan.kind).toBe("sequence");
  s.update(serviceConfig(["10.0.0.1:80", "10.0.0.2:80"], "maglev"));
  await s.settled();
  expect(s.picker.plan.kind).toBe("hash");
  expect(s.picker.plan.slots.length).toBe(65537);
});

describe("the Service owns backend state: checkers and DNS report, it decides, logs once and rebuilds", () => {
  function logged() {
    const lines: Array<Record<string, unknown>> = [];
    return { lines, log: new Logger("debug", (l) => void lines.push(JSON.parse(l))) };
  }

  test("markHealth: a flip is logged once and rebuilds; a repeated result changes nothing", async () => {
    const { lines, log } = logged();
    const s = new Service(serviceConfig(["10.0.0.1:80", "10.0.0.2:80"]), log);
    await s.settled();
    const [a, b] = [...s.backends.values()];
    let plans = 0;
    s.onPlan(() => plans++);
    s.markHealth(a!, "down", "ECONNREFUSED");
    s.markHealth(a!, "down", "ECONNREFUSED");
    await s.settled();
    expect(Array.from(s.picker.plan.members)).toEqual([b!.id]);
    expect(plans).toBe(1);
    s.markHealth(a!, "up", "ok");
    await s.settled();
    expect(Array.from(s.picker.plan.members)).toEqual([a!.id, b!.id]);
    expect(plans).toBe(2);
    expect(lines.map((l) => [l.level, l.msg, l.service, l.backend, l.reason])).toEqual([
      ["warn", "backend down", "s", "10.0.0.1:80", "ECONNREFUSED"],
      ["info", "backend up", "s", "10.0.0.1:80", "ok"],
    ]);
  });

  test("setAddresses: changed names take their address, logged each, one rebuild for the lot", async () => {
    const { lines, log } = logged();
    const s = new Service(serviceConfig(["10.0.0.1:80", "a.example:80", "b.example:80", "c.example:80"]), log);
    await s.settled();
    let plans = 0;
    s.onPlan(() => plans++);
    s.setAddresses(new Map([["a.example", "10.0.0.2"], ["b.example", "10.0.0.3"]]));
    await s.settled();
    expect(plans).toBe(1);
    expect(Array.from(s.picker.plan.members)).toEqual([0, 1, 2]);
    expect(lines.map((l) => [l.msg, l.backend, l.ip, l.previous])).toEqual([
      ["backend address resolved", "a.example:80", "10.0.0.2", null],
      ["backend address resolved", "b.example:80", "10.0.0.3", null],
    ]);
    // The same answers again: nothing changed, no rebuild.
    s.setAddresses(new Map([["a.example", "10.0.0.2"]]));
    await s.settled();
    expect(plans).toBe(1);
  });

  test("a reload frees the ids of removed idle backends before new ones take ids; backendsAfter counts draining ones", () => {
    const full = Array.from({ length: MAX_BACKENDS }, (_, i) => `10.0.${i >> 8}.${i & 255}:80`);
    const s = new Service(serviceConfig(full));
    const next = full.map((a) => a.replace(":80", ":81"));
    expect(s.backendsAfter(serviceConfig(next))).toBe(MAX_BACKENDS);
    [...s.backends.values()][0]!.stats.active = 1;
    expect(s.backendsAfter(serviceConfig(next))).toBe(MAX_BACKENDS + 1);
    [...s.backends.values()][0]!.stats.active = 0;
    s.update(serviceConfig(next));
    expect(s.backends.size).toBe(MAX_BACKENDS);
  });
});

describe("plan fingerprint", () => {
  const xyz = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"];

  // Plans are rebuilt on the next turn of the event loop (rebuild.ts): each step awaits settled().
  const built = async (s: Service) => (await s.settled(), s);

  test("equal for the same backends and health whatever the ids; changes with health, weights and algorithm", async () => {
    const a = await built(new Service(serviceConfig(xyz, "maglev")));
    // b reaches the same set through a reload: its backends have other ids (1, 2, 3), in the same order.
    const b = await built(new Service(serviceConfig(["10.0.0.9:80", ...xyz], "maglev")));
    b.update(serviceConfig(xyz, "maglev"));
    await b.settled();
    expect([...b.backends.keys()].sort()).toEqual([1, 2, 3]);
    expect(a.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(b.fingerprint).toBe(a.fingerprint);

    const before = a.fingerprint;
    for (const s of [a, b]) s.markHealth([...s.backends.values()].find((x) => x.key === "10.0.0.2:80")!, "down", "test");
    await Promise.all([a.settled(), b.settled()]);
    expect(a.fingerprint).not.toBe(before);
    expect(b.fingerprint).toBe(a.fingerprint);

    expect((await built(new Service(serviceConfig(xyz, "source_hash")))).fingerprint).not.toBe(before);
    expect((await built(new Service(serviceConfig(xyz, "maglev")))).fingerprint).toBe(before);
  });

  test("a different pick order is a different plan (round robin over the same set, renumbered out of order)", async () => {
    const a = await built(new Service(serviceConfig(xyz)));
    const c = await built(new Service(serviceConfig(["10.0.0.3:80", "10.0.0.1:80", "10.0.0.2:80"])));
    expect(c.fingerprint).not.toBe(a.fingerprint);
  });
});
