/**
 * What the e2e client assumes about featherlb and about its own files, checked against the real code:
 * the /metrics names it reads, the member ids it predicts hashes with, the configs and compose.yml
 * agreeing on backends. A rename in src/ breaks this test, not a 5-minute Docker run.
 */
import { describe, expect, test } from "bun:test";
import { parse } from "yaml";
import { ALGORITHM_NAMES } from "../../src/config/types.ts";
import { clientHash } from "../../src/control/algorithms/hash.ts";
import { renderMetrics } from "../../src/control/metrics.ts";
import { Service } from "../../src/control/service.ts";
import { parseConfig } from "../../src/config/load.ts";
import { allServed, exactEqual, predicted, shareWithin, slowBackendAvoided, sticky, weightedExact } from "./client/checks.ts";
import { readLbConfig } from "../support/lbconfig.ts";
import { parseMetrics, Metrics } from "../support/metrics.ts";
import { predictor } from "../support/predict.ts";
import { parseSources } from "./client/sources.ts";

const root = new URL("../../", import.meta.url).pathname;
const read = (p: string) => Bun.file(root + p).text();

describe("e2e configs and compose.yml", async () => {
  const compose = parse(await read("compose.yml")) as { services: Record<string, { environment?: Record<string, string> }> };
  for (const mode of ["proxy", "xdp"]) {
    test(`config/e2e-${mode}.yaml: valid for featherlb, one service per algorithm, backends deployed by compose.yml`, async () => {
      const text = await read(`config/e2e-${mode}.yaml`);
      const cfg = readLbConfig(text, `e2e-${mode}.yaml`);
      expect(cfg.mode).toBe(mode);
      const plain = cfg.services.filter((s) => s.sendProxy === "off" && s.forwarding === "nat");
      expect(plain.map((s) => s.algorithm).sort()).toEqual([...ALGORITHM_NAMES].sort());
      // xdp: one forwarding: dsr service on a VIP of its own, outside Docker's ip_range (run.sh adds it
      // to the LB container), on the backends' own port (compose.xdp*.yml prepares them for it).
      const dsr = cfg.services.filter((s) => s.forwarding === "dsr");
      expect(dsr.map((s) => `${s.host}:${s.port}`)).toEqual(mode === "xdp" ? ["10.213.61.150:7000"] : []);
      for (const s of dsr) for (const b of s.backends) expect(b.address).toBe(`${b.id}:${compose.services[b.id]?.environment?.PORT ?? 7000}`);
      for (const s of cfg.services)
        for (const b of s.backends) expect(compose.services[b.id]?.environment?.BACKEND_ID).toBe(b.id);
      // One send_proxy service, on the backends' PROXY port; in the xdp run it is the proxy-plane one.
      const proxied = cfg.services.filter((s) => s.sendProxy !== "off");
      expect(proxied).toHaveLength(1);
      expect(proxied[0]!.plane).toBe("proxy");
      for (const b of proxied[0]!.backends) expect(`${b.id}:${compose.services[b.id]?.environment?.PROXY_PORT}`).toBe(b.address);
      for (const s of plain) expect(s.plane as string).toBe(mode);
      // The fault scenario kills backend-b: it must be in the round_robin and maglev services.
      for (const alg of ["round_robin", "maglev"]) expect(cfg.services.find((s) => s.algorithm === alg)?.backends.map((b) => b.id)).toContain("backend-b");
      // Weights differ, or the weighted checks would prove nothing.
      expect(new Set(cfg.services[0]!.backends.map((b) => b.weight)).size).toBeGreaterThan(1);
    });
  }
  test("the client's extra source IPs are outside Docker's ip_range", () => {
    const ips = parseSources("10.213.61.200-215");
    expect(ips).toHaveLength(16);
    expect(ips.every((ip) => Number(ip.split(".")[3]) >= 128)).toBe(true);
  });
});

describe("featherlb's /metrics as the client reads them", () => {
  test("backend_up, backends_eligible and connections_total by service and backend address", async () => {
    const config = parseConfig(await read("config/e2e-proxy.yaml"), "e2e-proxy.yaml");
    const svc = new Service(config.services[0]!);
    const [a, b] = [...svc.backends.values()];
    a!.stats.total = 41;
    b!.health = "down";
    svc.rebuild();
    const m = new Metrics(parseMetrics(renderMetrics({ version: "t", mode: "proxy", startedAt: Date.now(), reloads: { ok: 0, failed: 0 } }, [svc])));
    expect(m.get("featherlb_backend_connections_total", { service: svc.name, backend: a!.key })).toBe(41);
    expect(m.up(svc.name, b!.key)).toBe(false);
    expect(m.up(svc.name, a!.key)).toBe(true);
    // Names are unresolved in a unit test, so nobody is eligible: the readiness wait would keep waiting.
    expect(m.eligible(svc.name)).toBe(0);
  });

  test("label values with quotes and backslashes survive", () => {
    const [s] = parseMetrics('x{a="q\\"uote",b="back\\\\slash"} 3');
    expect(s).toEqual({ name: "x", labels: { a: 'q"uote', b: "back\\slash" }, value: 3 });
  });
});

describe("hash predictions use featherlb's own member ids", () => {
  test("predictor = Service's picker for source_hash and maglev, with and without a backend", async () => {
    const text = await read("config/e2e-proxy.yaml");
    const config = parseConfig(text, "e2e-proxy.yaml");
    const e2e = readLbConfig(text);
    for (const alg of ["source_hash", "maglev"] as const) {
      const i = config.services.findIndex((s) => s.algorithm === alg);
      const svc = new Service(config.services[i]!);
      for (const b of svc.backends.values()) b.ip = "192.0.2.1"; // resolved, as DNS would
      svc.rebuild();
      const ips = parseSources("10.213.61.200-215");
      const predict = predictor(e2e.services[i]!);
      const name = (id: number) => svc.backends.get(id)!.config.host;
      for (const ip of ips) expect(predict(ip)).toBe(name(svc.picker.pick({ clientHash: clientHash(ip) })));
      const victim = [...svc.backends.values()].find((b) => b.config.host === "backend-b")!;
      victim.health = "down";
      svc.rebuild();
      const without = predictor(e2e.services[i]!, ["backend-b"]);
      for (const ip of ips) expect(without(ip)).toBe(name(svc.picker.pick({ clientHash: clientHash(ip) })));
    }
  });
});

describe("checks", () => {
  const rows = (a: number, b: number, c: number) => [
    { backend: "a", weight: 1, count: a },
    { backend: "b", weight: 1, count: b },
    { backend: "c", weight: 2, count: c },
  ];
  test("round robin: max − min ≤ 1", () => {
    expect(exactEqual(rows(10, 10, 9)).pass).toBe(true);
    expect(exactEqual(rows(10, 10, 8)).pass).toBe(false);
  });
  test("weighted round robin: within one cycle (4) and ±5 points", () => {
    expect(weightedExact(rows(100, 101, 199)).every((c) => c.pass)).toBe(true);
    expect(weightedExact(rows(95, 100, 205))[0]!.pass).toBe(false);
  });
  test("random: ±5 points of weight share, or 4.5 σ when N is small", () => {
    expect(shareWithin(rows(260, 240, 500), 0.05, undefined, true).pass).toBe(true);
    expect(shareWithin(rows(330, 170, 500), 0.05, undefined, true).pass).toBe(false);
    // N = 100: σ of a 25 % share is 4.3 points; 33 vs 25 is 1.8 σ, within 4.5 σ.
    expect(shareWithin(rows(33, 17, 50), 0.05, undefined, true).pass).toBe(true);
    expect(shareWithin(rows(33, 17, 50), 0.05).pass).toBe(false);
  });
  test("slow backend avoided", () => {
    expect(slowBackendAvoided(rows(10, 400, 800), "a", 0.25).pass).toBe(true);
    expect(slowBackendAvoided(rows(300, 400, 800), "a", 0.25).pass).toBe(false);
  });
  test("every backend served", () => expect(allServed(rows(1, 0, 1)).pass).toBe(false));
  test("sticky and predicted", () => {
    const one = new Map([["10.0.0.1", new Map([["a", 5]])]]);
    const two = new Map([["10.0.0.1", new Map([["a", 5], ["b", 1]])]]);
    expect(sticky(one, 1).pass).toBe(true);
    expect(sticky(two, 1).pass).toBe(false);
    expect(sticky(one, 8).pass).toBe(false);
    expect(predicted(one, () => "a").pass).toBe(true);
    expect(predicted(one, () => "b").pass).toBe(false);
  });
});
