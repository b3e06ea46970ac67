/**
 * An exception thrown inside one of the proxy's socket handlers (a bug) is visible and contained: it is
 * counted (featherlb_internal_errors_total), logged once per kind with its stack, the connection
 * concerned is closed, and every other connection carries on. No featherlb bug can be summoned from
 * outside on purpose, so the proxy data plane runs in this process on real sockets, and one of its
 * collaborators is made to throw: the service's picker (client side, during accept) and the relay's
 * backend-to-client step (backend side, during data).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { Incidents } from "../../src/control/incidents.ts";
import { Logger } from "../../src/control/log.ts";
import { renderMetrics } from "../../src/control/metrics.ts";
import { Service } from "../../src/control/service.ts";
import { ProxyDataPlane } from "../../src/dataplane/proxy/index.ts";
import { Relay } from "../../src/dataplane/proxy/relay.ts";
import { startBackend, type TestBackend } from "../support/backend.ts";
import { connect, freePort, waitFor } from "../support/net.ts";
import { Metrics, parseMetrics } from "../support/metrics.ts";

let backend: TestBackend;
let plane: ProxyDataPlane;
let service: Service;
let port: number;
const logs: Array<Record<string, unknown>> = [];
let incidents: Incidents;

beforeAll(async () => {
  backend = startBackend("b");
  port = freePort();
  const config = parseConfig(
    `services:\n  - name: web\n    listen: 127.0.0.1:${port}\n    health_check: { enabled: false }\n    backends:\n      - address: ${backend.address}\n`,
    "lb.yaml",
  );
  const log = new Logger("info", (line) => void logs.push(JSON.parse(line)));
  incidents = new Incidents(log);
  service = new Service(config.services[0]!, log);
  plane = new ProxyDataPlane(log, { connectFailed: () => {}, connected: () => {} }, incidents);
  await plane.apply(config, [{ config: config.services[0]!, service }]);
});
afterAll(() => {
  plane?.close();
  backend?.stop();
});

const internal = (kind: string) =>
  new Metrics(parseMetrics(renderMetrics({ version: "t", mode: "proxy", startedAt: 0, reloads: { ok: 0, failed: 0 } }, [service], { incidents }))).get("featherlb_internal_errors_total", { kind });

test("a throw while accepting closes that client only; counted per throw, logged once per kind", async () => {
  const established = await connect("127.0.0.1", port);
  await waitFor("greeting", () => established.text() === "b\n");
  const picker = service.picker;
  const pick = picker.pick.bind(picker);
  picker.pick = () => {
    throw new TypeError("picker bug");
  };
  const victims = [await connect("127.0.0.1", port), await connect("127.0.0.1", port)];
  picker.pick = pick;
  for (const v of victims) await Promise.race([v.closed, Bun.sleep(3000).then(() => Promise.reject(new Error("the client of a failed handler was left open")))]);
  expect(internal("client socket handler: TypeError")).toBe(2);
  const logged = logs.filter((l) => l.kind === "client socket handler: TypeError");
  expect(logged).toHaveLength(1);
  expect(logged[0]).toMatchObject({ level: "error", error: "picker bug", service: "web" });
  expect(String(logged[0]!.stack)).toContain("picker bug");
  // The others carry on: the established connection relays, and a new client is served.
  established.socket.write("still");
  await waitFor("echo on the established connection", () => established.text() === "b\nstill");
  const next = await connect("127.0.0.1", port);
  await waitFor("a new client served", () => next.text() === "b\n");
  next.socket.end();
  established.socket.end();
  await waitFor("no connection left open", () => service.stats.active === 0);
});

test("a throw while relaying backend bytes closes that pair (both sides) only", async () => {
  const bystander = await connect("127.0.0.1", port);
  const victim = await connect("127.0.0.1", port);
  await waitFor("greetings", () => bystander.text() === "b\n" && victim.text() === "b\n");
  const fromBackend = Relay.prototype.fromBackend;
  Relay.prototype.fromBackend = function (this: Relay, data: Buffer) {
    if (data.includes("boom")) throw new RangeError("relay bug");
    return fromBackend.call(this, data);
  };
  try {
    victim.socket.write("boom");
    await Promise.race([victim.closed, Bun.sleep(3000).then(() => Promise.reject(new Error("the pair of a failed handler was left open")))]);
    bystander.socket.write("fine");
    await waitFor("echo on the other connection", () => bystander.text() === "b\nfine");
  } finally {
    Relay.prototype.fromBackend = fromBackend;
  }
  expect(internal("backend socket handler: RangeError")).toBe(1);
  expect(logs.filter((l) => l.kind === "backend socket handler: RangeError")).toHaveLength(1);
  bystander.socket.end();
  await waitFor("no connection left open", () => service.stats.active === 0 && backend.stats.active === 0);
});
