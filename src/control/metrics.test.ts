import { expect, test } from "bun:test";
import { renderMetrics, type XdpStats } from "./metrics.ts";

const info = { version: "t", mode: "xdp" as const, startedAt: Date.now(), reloads: { ok: 0, failed: 0 } };

test("xdp: every outcome under its action, events apart, per service and in total, and the flow tables' entries", () => {
  const xdp: XdpStats = {
    total: { not_ours: 7, tx_c2b: 100, no_backend: 2, rst_out_of_window: 5, neigh_table: 3 },
    services: new Map([["web", { tx_c2b: 90, no_backend: 2, rst_out_of_window: 5, neigh_table: 3 }]]),
    kinds: { not_ours: "pass", tx_c2b: "tx", no_backend: "tx", rst_out_of_window: "drop", neigh_table: "event" },
    entries: { established: 12, handshake: 3 },
  };
  const lines = renderMetrics(info, [], { xdp }).split("\n");
  for (const want of [
    'featherlb_xdp_packets_total{action="pass",reason="not_ours"} 7',
    'featherlb_xdp_packets_total{action="tx",reason="tx_c2b"} 100',
    'featherlb_xdp_packets_total{action="tx",reason="no_backend"} 2',
    'featherlb_xdp_packets_total{action="drop",reason="rst_out_of_window"} 5',
    'featherlb_xdp_events_total{event="neigh_table"} 3',
    'featherlb_service_xdp_packets_total{service="web",action="tx",reason="tx_c2b"} 90',
    'featherlb_service_xdp_packets_total{service="web",action="drop",reason="rst_out_of_window"} 5',
    'featherlb_service_xdp_events_total{service="web",event="neigh_table"} 3',
    'featherlb_xdp_flows{stage="established"} 12',
    'featherlb_xdp_flows{stage="handshake"} 3',
    "# TYPE featherlb_xdp_flows gauge",
  ]) {
    expect(lines).toContain(want);
  }
  expect(lines.filter((l) => l.includes("neigh_table") && l.includes("packets_total"))).toEqual([]);
});

test("the proxy renders no xdp families", () => {
  expect(renderMetrics({ ...info, mode: "proxy" }, [])).not.toContain("featherlb_xdp");
});
