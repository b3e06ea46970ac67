/**
 * featherlb's /metrics as the namespace suites read it: from inside the LB's namespace (the admin
 * endpoint listens on its loopback, netns/config.ts ADMIN), by a Bun one-liner run there, parsed by the
 * tests' one metrics reader (test/support/metrics.ts).
 */
import { Metrics, parseMetrics } from "../../support/metrics.ts";
import { ADMIN } from "./config.ts";
import { inNs } from "./topology.ts";

/** Scrape /metrics of the featherlb in namespace `ns`. Throws when it cannot be read. */
export function nsMetrics(ns: string): Metrics {
  const script = `const r = await fetch("http://${ADMIN}/metrics"); if (!r.ok) process.exit(1); process.stdout.write(await r.text());`;
  const r = Bun.spawnSync(inNs(ns, process.execPath, "-e", script), { stdout: "pipe", stderr: "pipe", timeout: 10_000 });
  if (r.exitCode !== 0) throw new Error(`/metrics in ${ns}: exit ${r.exitCode} ${r.stderr.toString().trim()}`);
  return new Metrics(parseMetrics(r.stdout.toString()));
}

/** The XDP program's counts by reason: every outcome (featherlb_xdp_packets_total) and event (_events_total). */
export function xdpReasons(m: Metrics): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of m.samples) {
    if (s.name === "featherlb_xdp_packets_total") out[s.labels.reason!] = s.value;
    if (s.name === "featherlb_xdp_events_total") out[s.labels.event!] = s.value;
  }
  return out;
}

/** The entries of the flow tables by stage after the last sweep (featherlb_xdp_flows). */
export function xdpFlows(m: Metrics): { established: number; handshake: number } {
  return { established: m.get("featherlb_xdp_flows", { stage: "established" }) ?? NaN, handshake: m.get("featherlb_xdp_flows", { stage: "handshake" }) ?? NaN };
}
