/** Service state across reloads: backends are diffed by address, removed ones drain, ids are reused. */
import { expect, test } from "bun:test";
import { parseConfig } from "../config/load.ts";
import { Service } from "./service.ts";

function serviceConfig(backends: string[], algorithm = "round_robin") {
  const yaml = `services:\n  - name: s\n    listen: 127.0.0.1:1\n    algorithm: ${algorithm}\n    backends:\n${backends.map((b) => `      - address: ${b}`).join("\n")}\n`;
  return parseConfig(yaml, "t.yaml").services[0]!;
}

test("a reload keeps surviving backends (state and ids), adds new ones, drains removed ones", () => {
  const s = new Service(serviceConfig(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]));
  const b2 = [...s.backends.values()].find((b) => b.key === "10.0.0.2:80")!;
  b2.stats.total = 42;
  b2.stats.active = 1;
  const removed = [...s.backends.values()].find((b) => b.key === "10.0.0.1:80")!;
  removed.stats.active = 2;

  s.update(serviceConfig(["10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]));
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

test("health and DNS gate the pick set; every change notifies plan listeners", () => {
  const s = new Service(serviceConfig(["10.0.0.1:80", "backend.example:80"]));
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

test("changing the algorithm on reload rebuilds the plan kind", () => {
  const s = new Service(serviceConfig(["10.0.0.1:80", "10.0.0.2:80"]));
  expect(s.picker.plan.kind).toBe("sequence");
  s.update(serviceConfig(["10.0.0.1:80", "10.0.0.2:80"], "maglev"));
  expect(s.picker.plan.kind).toBe("hash");
  expect(s.picker.plan.slots.length).toBe(65537);
});
