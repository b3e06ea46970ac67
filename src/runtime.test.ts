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

/** A stand-in XDP plane that records the services it is given. */
function standIn() {
  const applied: string[][] = [];
  const plane: DataPlane = {
    kind: "xdp",
    attachMode: "generic",
    apply: async (_config, services) => void applied.push(services.map((p) => p.config.name)),
    refreshStats: () => {},
    drain: async () => {},
    close: () => {},
  };
  return { plane, applied };
}

test("services in both planes: each plane gets its own, /status and /metrics name each service's plane", async () => {
  const [admin, port] = [freePort(), freePort()];
  const backend = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void s.end("hi\n"), data() {} } });
  const path = join(mkdtempSync(join(tmpdir(), "featherlb-runtime-")), "lb.yaml");
  const write = (pMode: string) =>
    writeFileSync(
      path,
      [
        "mode: xdp",
        "log: { level: error }",
        `admin: { listen: 127.0.0.1:${admin} }`,
        "xdp: { snat_ports: 1024-2047 }",
        "services:",
        "  - { name: kernel, listen: 127.0.0.1:8080, health_check: { enabled: false }, backends: [{address: 10.0.0.1:80}] }",
        `  - { name: user, mode: ${pMode}, listen: 127.0.0.1:${port}, send_proxy: v1, health_check: { enabled: false }, backends: [{address: 127.0.0.1:${backend.port}}] }`,
        "",
      ].join("\n"),
    );
  write("proxy");
  const { plane, applied } = standIn();
  const seen: string[][] = [];
  const runtime = await Runtime.start(path, async (_c, _l, serving) => {
    seen.push(serving.map((s) => s.name));
    return plane;
  });
  try {
    expect(seen).toEqual([["kernel"]]);
    expect(applied).toEqual([["kernel"]]);
    // The proxy service really listens.
    const got = await new Promise<string>((resolve) => {
      let text = "";
      void Bun.connect({ hostname: "127.0.0.1", port, socket: { data: (_s, d) => void (text += d), close: () => resolve(text) } });
    });
    expect(got).toBe("hi\n");
    const status = (await (await fetch(`http://127.0.0.1:${admin}/status`)).json()) as { mode: string; services: { name: string; plane: string }[] };
    expect(status.mode).toBe("mixed");
    expect(status.services.map((s: { name: string; plane: string }) => [s.name, s.plane])).toEqual([
      ["kernel", "xdp"],
      ["user", "proxy"],
    ]);
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    expect(metrics).toContain('featherlb_service_info{service="kernel",plane="xdp",algorithm="round_robin"} 1');
    expect(metrics).toContain('featherlb_service_info{service="user",plane="proxy",algorithm="round_robin"} 1');
    expect(metrics).toContain('featherlb_info{version="');
  } finally {
    await runtime.shutdown("test");
    backend.stop(true);
  }
});

test("reload: a service may move between the planes that run; one that needs XDP in a process without it is refused", async () => {
  const [admin, port] = [freePort(), freePort()];
  const path = join(mkdtempSync(join(tmpdir(), "featherlb-runtime-")), "lb.yaml");
  const write = (top: string, second: string) =>
    writeFileSync(
      path,
      [
        `mode: ${top}`,
        "log: { level: error }",
        `admin: { listen: 127.0.0.1:${admin} }`,
        "xdp: { snat_ports: 1024-2047 }",
        "services:",
        "  - { name: a, listen: 127.0.0.1:8080, health_check: { enabled: false }, backends: [{address: 10.0.0.1:80}] }",
        `  - { name: b, ${second}listen: 127.0.0.1:${port}, health_check: { enabled: false }, backends: [{address: 10.0.0.1:80}] }`,
        "",
      ].join("\n"),
    );
  const status = async () => ((await (await fetch(`http://127.0.0.1:${admin}/status`)).json()) as { services: { name: string; plane: string }[] }).services.map((s: { name: string; plane: string }) => `${s.name}:${s.plane}`);

  // An XDP plane running: b moves into it and back out.
  write("xdp", "mode: proxy, ");
  const { plane, applied } = standIn();
  const runtime = await Runtime.start(path, async () => plane);
  try {
    expect(await status()).toEqual(["a:xdp", "b:proxy"]);
    write("xdp", "");
    await runtime.reload();
    expect(applied.at(-1)).toEqual(["a", "b"]);
    expect(await status()).toEqual(["a:xdp", "b:xdp"]);
    write("proxy", "");
    await runtime.reload();
    expect(applied.at(-1)).toEqual([]);
    expect(await status()).toEqual(["a:proxy", "b:proxy"]);
    expect(runtime.info.reloads).toEqual({ ok: 2, failed: 0 });
  } finally {
    await runtime.shutdown("test");
  }

  // No XDP plane (no service needed it at start): a reload that needs one is refused, auto falls back.
  write("proxy", "");
  const proxyOnly = await Runtime.start(path, async () => {
    throw new Error("not called: no service runs in xdp at start");
  });
  try {
    write("proxy", "mode: xdp, ");
    await proxyOnly.reload();
    expect(proxyOnly.info.reloads).toEqual({ ok: 0, failed: 1 });
    expect(await status()).toEqual(["a:proxy", "b:proxy"]);
    write("auto", "");
    await proxyOnly.reload();
    expect(proxyOnly.info.reloads).toEqual({ ok: 1, failed: 1 });
    expect(await status()).toEqual(["a:proxy", "b:proxy"]);
  } finally {
    await proxyOnly.shutdown("test");
  }
});
