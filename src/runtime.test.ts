/** The composition root with a stand-in data plane: what it takes from the plane reaches /status. */
import { expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DataPlane, ServicePair } from "./dataplane/types.ts";
import { Runtime } from "./runtime.ts";

function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = l;
  l.stop(true);
  return port;
}

test("/status shows how the XDP program is attached, as the data plane reports it", async () => {
  const admin = freePort();
  const path = join(mkdtempSync(join(tmpdir(), "featherlb-runtime-")), "lb.yaml");
  writeFileSync(
    path,
    `mode: xdp\nlog: { level: error }\nadmin: { listen: 127.0.0.1:${admin} }\nxdp: { snat_ports: 1024-2047 }\nservices:\n  - name: web\n    listen: 127.0.0.1:8080\n    health_check: { enabled: false }\n    backends:\n      - address: 10.0.0.1:80\n`,
  );
  const applied: ServicePair[][] = [];
  const plane: DataPlane = {
    kind: "xdp",
    attachMode: "generic",
    apply: async (_config, services) => void applied.push([...services]),
    refreshStats: () => {},
    drain: async () => {},
    close: () => {},
  };
  const runtime = await Runtime.start(path, async () => plane);
  try {
    expect(applied[0]?.map((p) => [p.config.name, p.service.name])).toEqual([["web", "web"]]);
    const status = await (await fetch(`http://127.0.0.1:${runtime.adminPort}/status`)).json();
    expect(status).toMatchObject({ mode: "xdp", attach: "generic" });
  } finally {
    await runtime.shutdown("test");
  }
});
