/**
 * The mode: xdp refusals as the data plane sees them (xdpRefusal: a Config, no file positions), and the
 * plan-size bound. load.test.ts has the located messages `check` prints.
 */
import { describe, expect, test } from "bun:test";
import { parseConfig } from "./load.ts";
import { MAGLEV_TABLE_SIZE_MAX, MAX_SERVICES, RANDOM_TABLE_SIZE, SOURCE_HASH_TABLE_SIZE } from "./limits.ts";
import { isSpecificIPv4, planSlotsBound, splitPlanes, xdpRefusal } from "./xdp.ts";

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

describe("splitPlanes: the data plane of each service", () => {
  const parse = (...lines: string[]) => parseConfig(lines.join("\n") + "\n", "lb.yaml");
  const svc = (name: string, listen: string, extra = "") => `  - {name: ${name}, listen: "${listen}"${extra}, backends: [{address: 10.0.0.11:8080}]}`;
  const planes = (split: ReturnType<typeof splitPlanes>) => [...split.plane].map(([s, p]) => `${s.name}:${p}`);

  test("own modes win over the top-level one; proxy and xdp services are taken as they are", () => {
    const config = parse("mode: xdp", "services:", svc("a", "10.0.0.1:80"), svc("b", "10.0.0.1:81", ", mode: proxy, send_proxy: v2"));
    expect(planes(splitPlanes(config))).toEqual(["a:xdp", "b:proxy"]);
    expect(splitPlanes(config).fallbacks).toEqual([]);
  });

  test("mode: auto falls back per service, each with its own reason, and keeps the others in xdp", () => {
    const config = parse(
      "mode: auto",
      "services:",
      svc("a", "10.0.0.1:80"),
      svc("wild", "0.0.0.0:81"),
      svc("pp", "10.0.0.1:82", ", accept_proxy: true"),
      svc("snat", "10.0.0.1:50000"),
      svc("d", "10.0.0.1:83"),
    );
    const split = splitPlanes(config);
    expect(planes(split)).toEqual(["a:xdp", "wild:proxy", "pp:proxy", "snat:proxy", "d:xdp"]);
    expect(split.fallbacks.map((f) => [f.service.name, f.reason.split(":")[0]])).toEqual([
      ["wild", "services[1].listen"],
      ["pp", "services[2].accept_proxy"],
      ["snat", "services[3].listen"],
    ]);
    expect(split.fallbacks[1]!.reason).toContain("accept_proxy reads a PROXY protocol header from the stream, which only the proxy can do");
  });

  test("shared limits: auto services beyond what the XDP maps hold run in the proxy", () => {
    const many = Array.from({ length: MAX_SERVICES + 2 }, (_, k) => svc(`s${k}`, `10.0.0.1:${1000 + k}`));
    const split = splitPlanes(parse("mode: auto", "services:", ...many));
    expect([...split.plane.values()].filter((p) => p === "xdp")).toHaveLength(MAX_SERVICES);
    expect(split.fallbacks.map((f) => f.service.name)).toEqual([`s${MAX_SERVICES}`, `s${MAX_SERVICES + 1}`]);
    expect(split.fallbacks[0]!.reason).toStartWith(`services[${MAX_SERVICES}]: mode: xdp holds at most ${MAX_SERVICES} services`);
  });

  test("with the XDP plane unavailable, the auto services it could serve run in the proxy with that reason", () => {
    const config = parse("mode: auto", "services:", svc("a", "10.0.0.1:80"), svc("wild", "0.0.0.0:81"));
    const split = splitPlanes(config, "no XDP here");
    expect(planes(split)).toEqual(["a:proxy", "wild:proxy"]);
    expect(split.fallbacks.map((f) => f.reason)).toEqual(["no XDP here", expect.stringContaining("services[1].listen") as unknown as string]);
  });

  test("xdpRefusal over a subset: the services given, with their index in the file", () => {
    const config = parse("mode: proxy", "services:", svc("wild", "0.0.0.0:81"), svc("a", "10.0.0.1:80", ", send_proxy: v1"));
    expect(xdpRefusal(config, [config.services[0]!])).toStartWith("services[0].listen: mode: xdp needs a specific IPv4 address");
    expect(xdpRefusal(config, [config.services[1]!])).toStartWith("services[1].send_proxy: send_proxy: v1 writes a PROXY protocol header");
    expect(xdpRefusal(config, [])).toBeUndefined();
  });
});
