/**
 * PROXY protocol through a real featherlb process: `send_proxy: v1 | v2` toward backends, whose header
 * the test backend parses with test/support/proxyproto.ts (written from the spec, not featherlb's
 * encoder), for IPv4 clients, IPv6 clients on an IPv6 listener and IPv4 clients of a dual-stack one; and
 * `accept_proxy` from clients: the address it carries is used and passed on, the header is never
 * forwarded, and a missing, malformed, over-long or late header closes the connection and is counted.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lbYaml, type ServiceSpec } from "../support/config.ts";
import { type RunningLB, startLB } from "../support/lb.ts";
import { startBackend, type TestBackend } from "../support/backend.ts";
import { connect, freePort, waitFor } from "../support/net.ts";
import { sameIp, v1Header, v2Header } from "../support/proxyproto.ts";
import { predictor } from "../support/predict.ts";

const settings = (...lines: string[]) => ["    health_check: { enabled: false }", ...lines.map((l) => `    ${l}`)].join("\n");

describe("send_proxy", () => {
  let lb: RunningLB;
  let backend: TestBackend;
  const ports = { v1: 0, v2: 0, v6: 0, dual: 0, off: 0 };
  let plain: TestBackend;

  beforeAll(async () => {
    backend = startBackend("pp", { proxy: true });
    plain = startBackend("plain");
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = k === "v6" ? freePort("::1") : freePort();
    const services: ServiceSpec[] = [
      { name: "v1", port: ports.v1, backends: [backend.address], settings: settings("send_proxy: v1") },
      { name: "v2", port: ports.v2, backends: [backend.address], settings: settings("send_proxy: v2") },
      { name: "v6", host: "::1", port: ports.v6, backends: [backend.address], settings: settings("send_proxy: v2") },
      { name: "dual", host: "::", port: ports.dual, backends: [backend.address], settings: settings("send_proxy: v1") },
      { name: "off", port: ports.off, backends: [plain.address] },
    ];
    lb = await startLB(lbYaml({ level: "warn", services }));
  }, 20_000);
  afterAll(async () => {
    await lb?.stop();
    backend?.stop();
    plain?.stop();
  });

  /** Connect, send `early` at once (before featherlb has a backend), read the echo; the header the backend parsed. */
  async function through(host: string, port: number, early = "hello") {
    const before = backend.headers.length;
    const c = await connect(host, port);
    c.socket.write(early);
    await waitFor("greeting and echo", () => c.text() === `pp\n${early}`);
    const header = backend.headers[before]!;
    const local = { address: c.socket.localAddress, port: c.socket.localPort };
    c.socket.end();
    await c.closed;
    return { header, local };
  }

  for (const version of [1, 2] as const) {
    test(`v${version}, IPv4 client: the client's address and port and the listener's, before any client byte`, async () => {
      const port = version === 1 ? ports.v1 : ports.v2;
      const { header, local } = await through("127.0.0.1", port);
      expect(header).toMatchObject({ version, family: 4, srcAddress: "127.0.0.1", srcPort: local.port, dstAddress: "127.0.0.1", dstPort: port });
    });
  }

  test("v2, IPv6 client on an IPv6 listener: family 6, ::1 both ways", async () => {
    const { header, local } = await through("::1", ports.v6);
    expect(header).toMatchObject({ version: 2, command: "PROXY", family: 6, srcPort: local.port, dstPort: ports.v6 });
    expect(sameIp(header.srcAddress!, "::1") && sameIp(header.dstAddress!, "::1")).toBe(true);
  });

  test("an IPv4 client of a dual-stack listener is sent as IPv4, not as an IPv4-mapped IPv6 address", async () => {
    const { header, local } = await through("127.0.0.1", ports.dual);
    expect(header).toMatchObject({ version: 1, family: 4, srcAddress: "127.0.0.1", srcPort: local.port, dstAddress: "127.0.0.1", dstPort: ports.dual });
  });

  test("the header is not counted as relayed bytes; send_proxy: off sends none", async () => {
    const before = (await lb.metric("featherlb_service_bytes_total", { service: "v2", direction: "in" })) ?? 0;
    await through("127.0.0.1", ports.v2, "12345");
    expect(await lb.metric("featherlb_service_bytes_total", { service: "v2", direction: "in" })).toBe(before + 5);
    const c = await connect("127.0.0.1", ports.off);
    c.socket.write("x");
    await waitFor("echo without a header", () => c.text() === "plain\nx");
    c.socket.end();
  });
});

describe("accept_proxy", () => {
  let lb: RunningLB;
  let backend: TestBackend;
  let a: TestBackend;
  let b: TestBackend;
  const ports = { fwd: 0, hash: 0 };

  beforeAll(async () => {
    backend = startBackend("pp", { proxy: true });
    a = startBackend("a");
    b = startBackend("b");
    ports.fwd = freePort();
    ports.hash = freePort();
    const services: ServiceSpec[] = [
      // Passes on what it received; a short connect_timeout bounds the wait for a header.
      { name: "fwd", port: ports.fwd, backends: [backend.address], settings: settings("accept_proxy: true", "send_proxy: v2", "connect_timeout: 700ms") },
      { name: "hash", port: ports.hash, algorithm: "source_hash", backends: [a.address, b.address], settings: settings("accept_proxy: true") },
    ];
    lb = await startLB(lbYaml({ level: "warn", services }));
  }, 20_000);
  afterAll(async () => {
    await lb?.stop();
    [backend, a, b].forEach((x) => x?.stop());
  });

  const rejected = () => lb.metric("featherlb_service_rejected_total", { service: "fwd", reason: "proxy_header" });

  test("v1 in, v2 out: the backend sees the address from the client's header, the header itself is not forwarded", async () => {
    const c = await connect("127.0.0.1", ports.fwd);
    c.socket.write(Buffer.concat([v1Header(4, "203.0.113.7", "198.51.100.1", 40001, 443), Buffer.from("data")]));
    await waitFor("echo", () => c.text() === "pp\ndata");
    expect(backend.headers.at(-1)).toMatchObject({ version: 2, family: 4, srcAddress: "203.0.113.7", srcPort: 40001, dstAddress: "198.51.100.1", dstPort: 443 });
    c.socket.end();
  });

  test("v2 with TLVs, one byte at a time, and IPv6 in v1", async () => {
    const c = await connect("127.0.0.1", ports.fwd);
    const bytes = Buffer.concat([v2Header("192.0.2.9", "192.0.2.1", 5555, 80, Buffer.from([0x04, 0x00, 0x03, 1, 2, 3])), Buffer.from("z")]);
    for (const byte of bytes) {
      c.socket.write(Buffer.from([byte]));
      await Bun.sleep(1);
    }
    await waitFor("echo", () => c.text() === "pp\nz");
    expect(backend.headers.at(-1)).toMatchObject({ family: 4, srcAddress: "192.0.2.9", srcPort: 5555, dstAddress: "192.0.2.1", dstPort: 80 });
    c.socket.end();
    const d = await connect("127.0.0.1", ports.fwd);
    d.socket.write(v1Header(6, "2001:db8::7", "2001:db8::1", 1234, 443));
    await waitFor("greeting", () => d.text() === "pp\n");
    const h = backend.headers.at(-1)!;
    expect(h).toMatchObject({ family: 6, srcPort: 1234, dstPort: 443 });
    expect(sameIp(h.srcAddress!, "2001:db8::7") && sameIp(h.dstAddress!, "2001:db8::1")).toBe(true);
    d.socket.end();
  });

  test("v2 LOCAL (a health check of the balancer in front): the connection's own addresses", async () => {
    const c = await connect("127.0.0.1", ports.fwd);
    c.socket.write(v2Header("0.0.0.0", "0.0.0.0", 0, 0, Buffer.alloc(0), "LOCAL"));
    await waitFor("greeting", () => c.text() === "pp\n");
    expect(backend.headers.at(-1)).toMatchObject({ family: 4, srcAddress: "127.0.0.1", srcPort: c.socket.localPort, dstPort: ports.fwd });
    c.socket.end();
  });

  test("missing, malformed, over-long and late headers close the connection and are counted; nothing reaches the backend", async () => {
    const accepted = backend.stats.accepted;
    const before = (await rejected()) ?? 0;
    const attempts: Array<[string, Buffer | null]> = [
      ["no header", Buffer.from("GET / HTTP/1.0\r\n\r\n")],
      ["v1 without CRLF in 107 bytes", Buffer.from(`PROXY TCP4 ${"1".repeat(120)}`)],
      ["v1 with a bare LF", Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")],
      ["v1 with a leading zero", Buffer.from("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n")],
      ["v2 version 3", Buffer.from([...v2Header("1.2.3.4", "5.6.7.8", 1, 2).subarray(0, 12), 0x31, 0x11, 0, 12, ...new Array(12).fill(0)])],
      ["v2 over 1040 bytes", v2Header("1.2.3.4", "5.6.7.8", 1, 2, Buffer.alloc(2000))],
      ["silent past connect_timeout", null],
    ];
    for (const [what, bytes] of attempts) {
      const c = await connect("127.0.0.1", ports.fwd);
      const t0 = Date.now();
      if (bytes) c.socket.write(bytes);
      await Promise.race([c.ended, Bun.sleep(5000).then(() => Promise.reject(new Error(`${what}: not closed within 5 s`)))]);
      expect(c.text()).toBe("");
      c.socket.end();
      if (!bytes) expect(Date.now() - t0).toBeGreaterThanOrEqual(600);
    }
    expect(await rejected()).toBe(before + attempts.length);
    expect(backend.stats.accepted).toBe(accepted);
    expect(await lb.metric("featherlb_service_connections_active", { service: "fwd" })).toBe(0);
  }, 20_000);

  test("source_hash hashes the address from the header, not the connection's", async () => {
    const cfg = { name: "hash", host: "127.0.0.1", port: ports.hash, forwarding: "nat" as const, algorithm: "source_hash" as const, maglevTableSize: 65537, plane: "proxy" as const, sendProxy: "off" as const, backends: [a, b].map((x) => ({ address: x.address, id: x.name, weight: 1 })) };
    const predict = predictor(cfg);
    // Client IPs the hash puts on each backend, so both must show up if the header's address is used.
    const ips = Array.from({ length: 40 }, (_, i) => `198.18.${i}.${i + 1}`);
    const want = { a: ips.find((ip) => predict(ip) === "a")!, b: ips.find((ip) => predict(ip) === "b")! };
    for (const [name, ip] of Object.entries(want)) {
      for (let k = 0; k < 3; k++) {
        const c = await connect("127.0.0.1", ports.hash);
        c.socket.write(v1Header(4, ip, "127.0.0.1", 1000 + k, ports.hash));
        await waitFor(`greeting from ${name}`, () => c.text().length > 0);
        expect(c.text()).toBe(`${name}\n`);
        c.socket.end();
      }
    }
  });
});
