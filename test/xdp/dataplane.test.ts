/**
 * The XdpDataPlane against a loaded program (BPF_PROG_TEST_RUN, static neighbour table), without an
 * interface: apply and reload, plan changes from health flips, counters into Service objects, the
 * flow sweeper (idle expiry, LRU-evicted flows stop counting as active), drain and close.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/types.ts";
import { Logger } from "../../src/control/log.ts";
import { Service } from "../../src/control/service.ts";
import { XdpDataPlane } from "../../src/dataplane/xdp/plane.ts";
import { XdpError } from "../../src/dataplane/xdp/errors.ts";
import { capacityFor, mapSizes } from "../../src/dataplane/xdp/capacity.ts";
import { CFG_FLAGS, MAPS, ipv4ToU32, u32ToIpv4, type MapKey } from "../../src/dataplane/xdp/layout.ts";
import { clientHash } from "../../src/control/algorithms/hash.ts";
import * as ffi from "../../src/dataplane/xdp/libbpf.ts";
import { HostState } from "../../src/dataplane/xdp/hoststate.ts";
import { TEST_CAPACITY, loadTestProgram, type TestProgram } from "./program-test.ts";
import { CLIENT_MAC, LB_MAC, TCP, mac, parseTcp, tcpPacket } from "./packets.ts";
import { bpfSuiteEnabled } from "./require.ts";

const XDP_PASS = 2;
const XDP_TX = 3;
const BACKENDS = ["10.0.0.21", "10.0.0.22", "10.0.0.23"];
const LB_ADDR = "10.0.0.2"; // the SNAT address (the VIP is 10.0.0.1)

function config(port: number, algorithm = "round_robin", idle = "5m", o: { name?: string; snat?: string } = {}): Config {
  return parseConfig(
    `mode: xdp
xdp:
  snat_ports: "${o.snat ?? "40000-49999"}"
services:
  - name: ${o.name ?? "web"}
    listen: "10.0.0.1:${port}"
    algorithm: ${algorithm}
    idle_timeout: ${idle}
    backends:
${BACKENDS.map((b) => `      - { address: "${b}:8080" }`).join("\n")}
`,
    "test.yaml",
  );
}

async function plane(flowTableSize = 65536, capacity = TEST_CAPACITY) {
  const program = await loadTestProgram({ flowTableSize, capacity });
  const lines: string[] = [];
  const log = new Logger("debug", (l) => void lines.push(l));
  const cfg = config(80);
  // net.ipv4.ip_local_reserved_ports of a pretend host: a SNAT range change must not touch the real one.
  const reserved = { value: "", read: () => reserved.value, write: (v: string) => void (reserved.value = v.trim()) };
  const p = new XdpDataPlane(program, log, cfg, { mode: "generic", close: () => {} }, "flbxtest0", () => {}, HostState.unrecorded(log, reserved));
  // As the loader does, plus the TEST ONLY static neighbour table in place of bpf_fib_lookup.
  program.writeConfig({ snatFirst: 40000, snatLast: 49999, snatAddr: ipv4ToU32(LB_ADDR), flags: CFG_FLAGS.STATIC_NEIGH, smac: mac(LB_MAC) });
  for (const ip of BACKENDS) program.setNeighbour(ipv4ToU32(ip), mac("02:00:00:00:00:99"));
  for (let i = 0; i < 256; i++) program.setNeighbour(ipv4ToU32(`10.0.1.${i}`), mac(CLIENT_MAC));
  return { p, program, cfg, lines, reserved };
}

/** The config's Services with their first plans built (a new Service picks nothing until then). */
async function built(cfg: ReturnType<typeof config>): Promise<Service[]> {
  const services = cfg.services.map((c) => new Service(c));
  await Promise.all(services.map((s) => s.settled()));
  return services;
}

/** Apply `cfg` with a new Service per service (as the runtime does for a renamed one); the Services. */
async function applyNew(p: XdpDataPlane, cfg: Config): Promise<Service[]> {
  const services = await built(cfg);
  await p.apply(cfg, services.map((service, i) => ({ config: cfg.services[i]!, service })));
  return services;
}

/** The raw gauges of service index `svc` (flb_be_active, signed: a wrap below zero reads negative). */
const gauges = (program: TestProgram, svc: number) => [0, 1, 2].map((id) => program.backendActiveRaw(svc, id));

let port = 20000;
const syn = (dport = 80, src = `10.0.1.${port % 256}`) => tcpPacket({ src, dst: "10.0.0.1", sport: port++, dport, flags: TCP.SYN });
const backendOf = (frame: Uint8Array) => BACKENDS.indexOf(u32ToIpv4(parseTcp(frame).dst));
/** A flow through a full handshake (a SYN alone is no flow); the backend index it went to. */
const open = (program: TestProgram, dport = 80, src = `10.0.1.${port % 256}`) =>
  BACKENDS.indexOf(program.handshake({ src, dst: "10.0.0.1", sport: port++, dport, flags: TCP.SYN }).backend);

if (bpfSuiteEnabled("xdp data plane")) {
  describe("XdpDataPlane", () => {
    let env: Awaited<ReturnType<typeof plane>>;
    let services: Service[];
    beforeAll(async () => {
      env = await plane();
      services = await built(env.cfg);
      await env.p.apply(env.cfg, services.map((service, i) => ({ config: env.cfg.services[i]!, service })));
    });
    afterAll(() => env?.p.close());

    test("apply mirrors the service: new flows are spread round robin", () => {
      const got = Array.from({ length: 6 }, () => open(env.program));
      expect(got).toEqual([0, 1, 2, 0, 1, 2]);
    });

    test("a health flip rebuilds the plan and the maps follow (onPlan)", () => {
      const s = services[0]!;
      s.backends.get(1)!.health = "down";
      s.rebuild();
      const got = new Set(Array.from({ length: 9 }, () => open(env.program)));
      expect([...got].sort()).toEqual([0, 2]);
      s.backends.get(1)!.health = "up";
      s.rebuild();
    });

    test("refreshStats fills the Service and Backend counters", async () => {
      await env.p.refreshStats();
      const s = services[0]!;
      expect(s.stats.total).toBe(15);
      expect(s.stats.active).toBe(15);
      expect(s.stats.packetsIn).toBe(30); // SYN and ACK of each
      // 0,1,2,0,1,2 then (backend 1 down, cursor restarts) 0,2,0,2,0,2,0,2,0.
      expect([...s.backends.values()].map((b) => b.stats.total)).toEqual([7, 2, 6]);
    });

    test("the sweeper expires idle flows and active drops to 0", async () => {
      const r = await env.p.sweep(ffi.monotonicSeconds() + 301);
      expect(r?.flows?.expired).toBe(15);
      expect(env.program.flowCounts()).toEqual({ fwd: 0, rev: 0, synFwd: 0, synRev: 0 });
      await env.p.refreshStats();
      expect(services[0]!.stats.active).toBe(0);
      expect(services[0]!.stats.total).toBe(15);
    });

    test("least_connections sees the swept counts", async () => {
      const cfg = config(80, "least_connections");
      services = await built(cfg);
      await env.p.apply(cfg, services.map((service, i) => ({ config: cfg.services[i]!, service })));
      // 3 flows spread one per backend, then expire them all: the next three picks go 0, 1, 2 again.
      const first = Array.from({ length: 3 }, () => open(env.program));
      expect(first).toEqual([0, 1, 2]);
      await env.p.sweep(ffi.monotonicSeconds() + 301);
      const again = Array.from({ length: 3 }, () => open(env.program));
      expect(again).toEqual([0, 1, 2]);
    });

    test("reload to another port (as the runtime does it: apply first, then Service.update)", async () => {
      const cfg = config(81, "least_connections");
      await env.p.apply(cfg, services.map((service, i) => ({ config: cfg.services[i]!, service }))); // same Service objects, still holding the old config
      cfg.services.forEach((c, i) => services[i]!.update(c));
      expect(env.program.run(syn(80)).retval).toBe(XDP_PASS);
      expect(open(env.program, 81)).toBeGreaterThanOrEqual(0);
    });

    test("drain: new SYNs are answered with an RST in XDP; it resolves once flows are gone or at the deadline", async () => {
      const t0 = Date.now();
      await env.p.drain(Date.now() + 600); // one open flow from the previous test: waits to the deadline
      expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
      const r = env.program.run(syn(81));
      expect(r.retval).toBe(XDP_TX);
      expect(parseTcp(r.data).flags).toBe(TCP.RST | TCP.ACK);
      await env.p.sweep(ffi.monotonicSeconds() + 301);
      const t1 = Date.now();
      await env.p.drain(Date.now() + 5000);
      expect(Date.now() - t1).toBeLessThan(1000);
    });

    test("a listen address that is not a specific IPv4 is a config UserError", async () => {
      const cfg = config(82);
      const bad = { ...cfg, services: [{ ...cfg.services[0]!, listen: { host: "0.0.0.0", port: 82 } }] };
      await expect(env.p.apply(bad, bad.services.map((c) => ({ config: c, service: new Service(c) })))).rejects.toMatchObject({ name: "UserError", code: "config" });
    });
  });

  test("two services on one address: each port follows its own plan and counters", async () => {
    const env = await plane();
    try {
      const text = `mode: xdp
services:
  - name: rr
    listen: "10.0.0.1:80"
    algorithm: round_robin
    backends: [{ address: "10.0.0.21:8080" }, { address: "10.0.0.22:8080" }]
  - name: one
    listen: "10.0.0.1:90"
    algorithm: source_hash
    backends: [{ address: "10.0.0.23:8080" }]
`;
      const cfg = parseConfig(text, "two.yaml");
      const services = await built(cfg);
      await env.p.apply(cfg, services.map((service, i) => ({ config: cfg.services[i]!, service })));
      const to80 = Array.from({ length: 4 }, () => open(env.program, 80));
      const to90 = Array.from({ length: 4 }, () => open(env.program, 90));
      expect(to80).toEqual([0, 1, 0, 1]);
      expect(to90).toEqual([2, 2, 2, 2]);
      await env.p.refreshStats();
      expect(services.map((s) => s.stats.total)).toEqual([4, 4]);
    } finally {
      env.p.close();
    }
  });

  test("LRU-evicted flows stop counting as active after a sweep", async () => {
    const env = await plane(1024);
    try {
      const cfg = config(80, "least_connections");
      const services = await built(cfg);
      await env.p.apply(cfg, services.map((service, i) => ({ config: cfg.services[i]!, service })));
      for (let i = 0; i < 1500; i++) open(env.program);
      const raw = [0, 1, 2].reduce((n, id) => n + env.program.backendActiveRaw(0, id), 0);
      expect(raw).toBe(1500);
      await env.p.sweep();
      const live = env.program.flowCounts().fwd;
      expect(live).toBeLessThanOrEqual(1024);
      const effective = [0, 1, 2].reduce((n, id) => n + env.program.backendActive(0, id), 0);
      expect(effective).toBe(live);
    } finally {
      env.p.close();
    }
  });

  test("a plan the maps cannot hold: a plan event logs it and the previous plan stays; apply refuses it (config UserError)", async () => {
    const env = await plane();
    try {
      const cfg = config(80);
      const services = await built(cfg);
      await env.p.apply(cfg, services.map((service, i) => ({ config: cfg.services[i]!, service })));
      const writePlan = env.program.writePlan;
      env.program.writePlan = () => {
        throw new XdpError("plan_too_large", "no room for a 3-slot plan in the test's pool");
      };
      try {
        services[0]!.backends.get(1)!.health = "down";
        services[0]!.rebuild(); // the plan event: not thrown
        expect(env.lines.some((l) => l.includes("xdp plan not written"))).toBe(true);
        // The previous plan (all three backends) still serves.
        expect(Array.from({ length: 3 }, () => backendOf(env.program.run(syn()).data))).toEqual([0, 1, 2]);
        const next = config(80);
        await expect(env.p.apply(next, next.services.map((c) => ({ config: c, service: new Service(c) })))).rejects.toMatchObject({ name: "UserError", code: "config" });
      } finally {
        env.program.writePlan = writePlan;
      }
    } finally {
      env.p.close();
    }
  });

  test("the maps are sized from the config at load time; a reload they cannot hold is refused and the old config keeps serving", async () => {
    const cfg = config(80);
    const capacity = { ...capacityFor(cfg.services), neighbours: TEST_CAPACITY.neighbours };
    expect(capacity).toMatchObject({ services: 16, backends: 64 });
    const env = await plane(4096, capacity);
    try {
      const services = await built(cfg);
      await env.p.apply(cfg, services.map((service, i) => ({ config: cfg.services[i]!, service })));
      const loaded = Object.fromEntries(env.program.mapMemory().map((m) => [m.name, m.maxEntries]));
      const wanted = Object.entries(mapSizes(capacity, 4096)).map(([k, n]) => [MAPS[k as MapKey].name, n]);
      expect(wanted.map(([name]) => [name, loaded[name!]])).toEqual(wanted);
      expect(env.program.mapMemory().every((m) => m.bytes > 0)).toBe(true);
      // What /status shows (xdp_maps) and /metrics (featherlb_xdp_map_bytes).
      const shown = env.p.maps();
      expect(shown.capacity).toEqual({ ...capacity });
      expect(shown.bytes).toBe(shown.maps.reduce((n, m) => n + m.bytes, 0));
      expect(shown.maps.map((m) => m.name).sort()).toEqual(Object.values(MAPS).map((m) => m.name).sort());

      const ports = Array.from({ length: 17 }, (_, i) => 80 + i);
      const many = parseConfig(
        `mode: xdp\nxdp: { snat_ports: "40000-49999" }\nservices:\n${ports.map((p) => `  - { name: s${p}, listen: "10.0.0.1:${p}", backends: [{ address: "10.0.0.21:8080" }] }`).join("\n")}\n`,
        "many.yaml",
      );
      const next = await built(many);
      await expect(env.p.apply(many, next.map((service, i) => ({ config: many.services[i]!, service })))).rejects.toMatchObject({
        name: "UserError",
        code: "config",
        message: expect.stringContaining("sized at start for 16 services and this config has 17; restart featherlb"),
      });
      expect(backendOf(env.program.run(syn(80)).data)).toBeGreaterThanOrEqual(0);
      expect(env.program.run(syn(81)).retval).toBe(XDP_PASS);
    } finally {
      env.p.close();
    }
  });

  test("a health flip writes only the Maglev slots that changed (the live plan again: none)", async () => {
    const env = await plane();
    try {
      const cfg = config(80, "maglev");
      const services = await built(cfg);
      await env.p.apply(cfg, services.map((service, i) => ({ config: cfg.services[i]!, service })));
      const s = services[0]!;
      const written = () => env.lines.map((l) => JSON.parse(l)).filter((j) => j.msg === "xdp plan written").map((j) => j.slots_written as number);
      const flip = (id: number, health: "up" | "down") => {
        s.backends.get(id)!.health = health;
        s.rebuild();
        for (let i = 0; i < 30; i++) {
          const src = `10.0.1.${i}`;
          const r = env.program.run(syn(80, src));
          expect(backendOf(r.data)).toBe(s.picker.pick({ clientHash: clientHash(src) }));
        }
      };
      flip(1, "down"); // into the other buffer, empty so far: all of it
      flip(1, "up"); // back into the first buffer, which holds this very table: nothing to write
      flip(2, "down"); // the buffer of "1 down": only the slots of 1 and 2 differ
      expect(written()).toEqual([65537, 65537, 0, expect.any(Number)]);
      expect(written()[3]).toBeGreaterThan(0);
      expect(written()[3]).toBeLessThan(65537 * 0.8);
    } finally {
      env.p.close();
    }
  });

  describe("reloads keep open flows right", () => {
    /** Open a flow to :dport; close() ends it with an RST at the backend's next sequence number. */
    const flow = (program: TestProgram, dport = 80) => {
      const sport = port++;
      const spec = { src: "10.0.1.9", dst: "10.0.0.1", sport, dport, flags: TCP.SYN };
      const h = program.handshake(spec);
      return {
        ...h,
        sport,
        packet: (flags: number) => tcpPacket({ ...spec, flags, seq: h.cseq, ack: h.bseq }),
        close: () => expect(program.run(tcpPacket({ ...spec, flags: TCP.RST, seq: h.cseq })).retval).toBe(XDP_TX),
      };
    };

    test("the sweeper re-reads each entry before deleting it: a flow that saw a packet after the walk stays, an idle one goes", async () => {
      const env = await plane();
      try {
        await applyNew(env.p, config(80));
        const [busy, idle] = [flow(env.program), flow(env.program)];
        const now = ffi.monotonicSeconds() + 301; // both look idle to the walk
        const r = await env.program.sweepFlows(() => 300, 60, now, undefined, {
          // …and then a packet of `busy` arrives (its last_seen moves) before the deletes.
          afterWalk: async () => {
            const key = { saddr: ipv4ToU32("10.0.1.9"), daddr: ipv4ToU32("10.0.0.1"), sport: busy.sport, dport: 80 };
            const f = env.program.maps.fwd.lookup(key)!;
            env.program.maps.fwd.update(key, { ...f, last_seen: f.last_seen + 1 });
          },
        });
        expect({ expired: r.expired, deleted: r.deleted }).toEqual({ expired: 2, deleted: 1 });
        expect(env.program.flowCounts()).toMatchObject({ fwd: 1, rev: 1 });
        expect(env.program.run(busy.packet(TCP.ACK)).retval).toBe(XDP_TX);
        expect(env.program.run(idle.packet(TCP.ACK)).retval).toBe(XDP_PASS);
      } finally {
        env.p.close();
      }
    });

    test("renaming a service (new Service and Backend objects, same listener): its backends' gauges keep counting its open flows and never wrap", async () => {
      const env = await plane();
      try {
        await applyNew(env.p, config(80, "round_robin", "5m", { name: "web" }));
        const flows = Array.from({ length: 3 }, () => flow(env.program));
        expect(gauges(env.program, 0)).toEqual([1, 1, 1]);
        const renamed = await applyNew(env.p, config(80, "round_robin", "5m", { name: "www" }));
        expect(gauges(env.program, 0)).toEqual([1, 1, 1]);
        for (const f of flows) f.close();
        expect(gauges(env.program, 0)).toEqual([0, 0, 0]);
        await env.p.refreshStats();
        expect([...renamed[0]!.backends.values()].map((b) => b.stats.active)).toEqual([0, 0, 0]);
      } finally {
        env.p.close();
      }
    });

    test("moving a service to another port: flows on the old port close without touching the new service's gauges; no gauge wraps", async () => {
      const env = await plane();
      try {
        await applyNew(env.p, config(80, "least_connections"));
        const old = Array.from({ length: 3 }, () => flow(env.program, 80));
        const moved = await applyNew(env.p, config(81, "least_connections"));
        const fresh = flow(env.program, 81);
        for (const f of old) f.close();
        // The old flows counted under the old index, the new service under another; nothing below zero.
        for (const svc of [0, 1]) for (const g of gauges(env.program, svc)) expect(g).toBeGreaterThanOrEqual(0);
        await env.p.refreshStats();
        expect([...moved[0]!.backends.values()].reduce((n, b) => n + b.stats.active, 0)).toBe(1);
        // least_connections on the new port is not starved by a wrapped gauge: the next picks spread.
        const picks = Array.from({ length: 2 }, () => BACKENDS.indexOf(flow(env.program, 81).backend));
        expect(new Set([BACKENDS.indexOf(fresh.backend), ...picks]).size).toBe(3);
      } finally {
        env.p.close();
      }
    });

    test("a snat_ports change: open flows keep their ports both ways, new flows take the new range; the old range is released once no flow uses it", async () => {
      const env = await plane();
      try {
        await applyNew(env.p, config(80));
        const f = flow(env.program);
        expect(f.snat).toBeGreaterThanOrEqual(40000);
        await applyNew(env.p, config(80, "round_robin", "5m", { snat: "30000-31023" }));
        expect(env.reserved.value).toBe("30000-31023,40000-49999");
        const reply = tcpPacket({ srcMac: "02:00:00:00:00:99", dstMac: LB_MAC, src: f.backend, dst: LB_ADDR, sport: 8080, dport: f.snat, flags: TCP.ACK, seq: f.bseq, ack: f.cseq });
        expect(env.program.run(reply).retval).toBe(XDP_TX);
        expect(env.program.run(f.packet(TCP.ACK)).retval).toBe(XDP_TX);
        const g = flow(env.program);
        expect(g.snat).toBeGreaterThanOrEqual(30000);
        expect(g.snat).toBeLessThanOrEqual(31023);
        await env.p.sweep();
        expect(env.reserved.value).toBe("30000-31023,40000-49999"); // still in use
        f.close();
        await env.p.sweep();
        expect(env.reserved.value).toBe("30000-31023");
        expect(env.program.readConfig()).toMatchObject({ prevFirst: 0, prevLast: 0 });
      } finally {
        env.p.close();
      }
    });
  });
}
