/**
 * Two featherlb processes with the same services (as two instances behind ECMP) show the same plan
 * fingerprint in /status and /metrics, and agree again after a backend goes down on both.
 */
import { expect, test } from "bun:test";
import { startBackend } from "../support/backend.ts";
import { lbYaml } from "../support/config.ts";
import { startLB, type RunningLB } from "../support/lb.ts";
import { Metrics, parseMetrics } from "../support/metrics.ts";
import { freePort, waitFor } from "../support/net.ts";

async function fingerprints(lb: RunningLB): Promise<{ status: string; metrics: string | undefined }> {
  const status = (await lb.status()).services[0].plan.fingerprint;
  const m = new Metrics(parseMetrics(await lb.metrics()));
  const metrics = m.samples.find((s) => s.name === "featherlb_service_plan_info" && s.labels.service === "web")?.labels.fingerprint;
  return { status, metrics };
}

test("two instances with one config show one plan fingerprint, before and after a backend goes down", async () => {
  const backends = ["a", "b", "c"].map((n) => startBackend(n));
  const settings = "    health_check: { interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }";
  // The same service on two ports (two instances on one host): the listen address is not part of the plan.
  const yaml = () => lbYaml({ services: [{ name: "web", port: freePort(), algorithm: "maglev", backends: backends.map((b) => b.address), settings }] });
  const lbs = [await startLB(yaml()), await startLB(yaml())];
  try {
    const [one, two] = await Promise.all(lbs.map(fingerprints));
    expect(one!.status).toMatch(/^[0-9a-f]{16}$/);
    expect(one!.metrics).toBe(one!.status);
    expect(two).toEqual(one!);

    backends[1]!.stop();
    await waitFor("b down on both", async () => (await Promise.all(lbs.map((lb) => lb.metric("featherlb_backend_up", { backend: backends[1]!.address })))).every((v) => v === 0));
    const [three, four] = await Promise.all(lbs.map(fingerprints));
    expect(three!.status).not.toBe(one!.status);
    expect(four).toEqual(three!);
  } finally {
    await Promise.all(lbs.map((lb) => lb.stop()));
    backends.forEach((b) => b.stop());
  }
}, 30_000);
