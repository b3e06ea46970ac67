/**
 * The mode: xdp refusals as the data plane sees them (xdpRefusal: a Config, no file positions), and the
 * plan-size bound. load.test.ts has the located messages `check` prints.
 */
import { describe, expect, test } from "bun:test";
import { parseConfig } from "./load.ts";
import { MAGLEV_TABLE_SIZE_MAX, RANDOM_TABLE_SIZE, SOURCE_HASH_TABLE_SIZE } from "./limits.ts";
import { isSpecificIPv4, planSlotsBound, xdpRefusal } from "./xdp.ts";

/** mode: auto is never refused by the loader, so it carries every config the data plane may be handed. */
function auto(...lines: string[]) {
  return parseConfig(["mode: auto", ...lines].join("\n") + "\n", "auto.yaml");
}
const service = (listen: string) => ["services:", "  - name: web", `    listen: "${listen}"`, "    backends: [{address: 10.0.0.11:8080}]"];

describe("xdpRefusal (before attaching under mode: auto, and on every apply)", () => {
  test("a config XDP can serve: no refusal", () => {
    expect(xdpRefusal(auto(...service("10.0.0.1:80")))).toBeUndefined();
  });

  test("the first refusal, with its field path and without a file position", () => {
    expect(xdpRefusal(auto(...service("0.0.0.0:80")))).toBe(
      "services[0].listen: mode: xdp needs a specific IPv4 address of this host, got 0.0.0.0; set listen to that address or use mode: proxy",
    );
  });

  test("the default snat_ports is taken as not written (reported at the service), another range as written", () => {
    expect(xdpRefusal(auto(...service("10.0.0.1:50000")))).toStartWith("services[0].listen: port 50000 is inside xdp.snat_ports (40000-59999 by default)");
    expect(xdpRefusal(auto("xdp: {snat_ports: 50000-51023}", ...service("10.0.0.1:50000")))).toStartWith("xdp.snat_ports: 50000-51023 contains port 50000");
  });
});

test("isSpecificIPv4: what the XDP program can match a packet's destination against", () => {
  expect(["10.0.0.1", "127.0.0.1", "192.168.1.255"].map(isSpecificIPv4)).toEqual([true, true, true]);
  expect(["0.0.0.0", "::", "::1", "::ffff:10.0.0.1", "10.0.0.256", "host.example"].map(isSpecificIPv4)).toEqual([false, false, false, false, false, false]);
});

test("planSlotsBound per algorithm (algorithms.test.ts checks every plan against it)", () => {
  const weights = [6, 4, 10];
  expect(planSlotsBound("round_robin", weights, 307)).toBe(3);
  expect(planSlotsBound("weighted_round_robin", weights, 307)).toBe(10); // (6 + 4 + 10) / gcd 2
  expect(planSlotsBound("weighted_round_robin", [1000, 999], 307)).toBe(1999);
  expect(planSlotsBound("random", weights, 307)).toBe(RANDOM_TABLE_SIZE);
  expect(planSlotsBound("source_hash", weights, 307)).toBe(SOURCE_HASH_TABLE_SIZE);
  expect(planSlotsBound("maglev", weights, MAGLEV_TABLE_SIZE_MAX)).toBe(MAGLEV_TABLE_SIZE_MAX);
  expect(planSlotsBound("least_connections", weights, 307)).toBe(0);
  expect(planSlotsBound("power_of_two", weights, 307)).toBe(0);
});
