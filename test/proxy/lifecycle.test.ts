/**
 * Lifecycle of a featherlb process: SIGHUP reload (valid and invalid), SIGTERM drain, admin endpoints.
 */
import { expect, test } from "bun:test";
import { lbYaml } from "../support/config.ts";
import { startLB } from "../support/lb.ts";
import { startBackend } from "../support/backend.ts";
import { whoServes } from "../support/conn.ts";
import { connect, freePort, waitFor } from "../support/net.ts";

function config(port: number, backends: string[], opts: { algorithm?: string; drain?: string; extraService?: string } = {}): string {
  // config_watch off: these tests reload by SIGHUP; the file watcher would race them to the rewritten file.
  return lbYaml({ top: `drain_timeout: ${opts.drain ?? "5s"}\nconfig_watch: off`, services: [{ name: "web", port, algorithm: opts.algorithm, backends }] }) + (opts.extraService ?? "");
}

test("SIGHUP: a valid config applies to new connections while an established one keeps flowing", async () => {
  const [a, b, c] = ["a", "b", "c"].map((n) => startBackend(n));
  const port = await freePort();
  const port2 = await freePort();
  const lb = await startLB(config(port, [a!.address, b!.address]));
  try {
    const established = await connect("127.0.0.1", port);
    await waitFor("greeting", () => established.text() === "a\n");
    // New backend set (b replaced by c), a second service on another port.
    lb.rewrite(
      config(port, [a!.address, c!.address], {
        extraService: `  - name: api\n    listen: 127.0.0.1:${port2}\n    algorithm: random\n    health_check: { enabled: false }\n    backends:\n      - address: ${b!.address}\n`,
      }),
    );
    const mark = lb.logs().length;
    lb.signal("SIGHUP");
    await lb.waitForLog("config reloaded", 5000, mark);
    expect(new Set([await whoServes("127.0.0.1", port), await whoServes("127.0.0.1", port)])).toEqual(new Set(["a", "c"]));
    expect(await whoServes("127.0.0.1", port2)).toBe("b");
    // The connection opened before the reload still relays both ways.
    established.socket.write("still here");
    await waitFor("echo over the old connection", () => established.text() === "a\nstill here");
    expect(await lb.metric("featherlb_config_reloads_total", { result: "ok" })).toBe(1);
    established.socket.end();
  } finally {
    await lb.stop();
    [a, b, c].forEach((x) => x!.stop());
  }
});

test("SIGHUP: an invalid config is rejected with a clear message and the old one keeps serving", async () => {
  const a = startBackend("a");
  const port = await freePort();
  const lb = await startLB(config(port, [a.address]));
  try {
    lb.rewrite(config(port, [a.address], { algorithm: "fastest" }));
    const mark = lb.logs().length;
    lb.signal("SIGHUP");
    const line = await lb.waitForLog("reload rejected, still serving the previous config", 5000, mark);
    expect(String(line.error)).toMatch(/lb\.yaml:\d+:\d+ services\[0\]\.algorithm: .*round_robin/);
    expect(await whoServes("127.0.0.1", port)).toBe("a");
    expect(await lb.metric("featherlb_config_reloads_total", { result: "failed" })).toBe(1);
  } finally {
    await lb.stop();
    a.stop();
  }
});

test("SIGHUP: a backend that loops back into featherlb is rejected with its place in the file", async () => {
  const a = startBackend("a");
  const port = await freePort();
  const lb = await startLB(config(port, [a.address]));
  try {
    lb.rewrite(config(port, [a.address, `127.0.0.1:${port}`]));
    const mark = lb.logs().length;
    lb.signal("SIGHUP");
    const line = await lb.waitForLog("reload rejected, still serving the previous config", 5000, mark);
    expect(String(line.error)).toMatch(new RegExp(`lb\\.yaml:\\d+:\\d+ services\\[0\\]\\.backends\\[1\\]\\.address: 127\\.0\\.0\\.1:${port} reaches featherlb itself`));
    expect(await whoServes("127.0.0.1", port)).toBe("a");
  } finally {
    await lb.stop();
    a.stop();
  }
});

test("SIGHUP: a new listen port that is taken rejects the reload, nothing changes", async () => {
  const a = startBackend("a");
  const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = await freePort();
  const lb = await startLB(config(port, [a.address]));
  try {
    lb.rewrite(config(taken.port, [a.address]));
    const mark = lb.logs().length;
    lb.signal("SIGHUP");
    const line = await lb.waitForLog("reload rejected, still serving the previous config", 5000, mark);
    expect(String(line.error)).toContain(`cannot listen on 127.0.0.1:${taken.port}: the address is already in use`);
    expect(await whoServes("127.0.0.1", port)).toBe("a");
    // "In use" came from the taken port itself: once it is free, the same file applies. (A reload that
    // bound the service's old address again would be refused by featherlb's own listener instead.)
    const free = taken.port;
    taken.stop(true);
    const again = lb.logs().length;
    lb.signal("SIGHUP");
    await lb.waitForLog("config reloaded", 5000, again);
    expect(await whoServes("127.0.0.1", free)).toBe("a");
  } finally {
    await lb.stop();
    a.stop();
    taken.stop(true);
  }
});

test("SIGHUP: a service moved to another port listens there, leaves the old one, and its connections keep flowing", async () => {
  const a = startBackend("a");
  const [port, moved] = [await freePort(), await freePort()];
  const lb = await startLB(config(port, [a.address]));
  try {
    const established = await connect("127.0.0.1", port);
    await waitFor("greeting", () => established.text() === "a\n");
    lb.rewrite(config(moved, [a.address]));
    const mark = lb.logs().length;
    lb.signal("SIGHUP");
    await lb.waitForLog("config reloaded", 5000, mark);
    expect(await whoServes("127.0.0.1", moved)).toBe("a");
    await expect(connect("127.0.0.1", port)).rejects.toThrow();
    // Accepted on the old port before the move: relays both ways until it ends.
    established.socket.write("after the move");
    await waitFor("echo over the moved service's old connection", () => established.text() === "a\nafter the move");
    established.socket.end();
    await established.closed;
    await waitFor("no connection left", async () => (await lb.metric("featherlb_service_connections_active", { service: "web" })) === 0);
  } finally {
    await lb.stop();
    a.stop();
  }
});

test("SIGHUP: a removed service stops listening and its connections keep flowing; two services swap ports", async () => {
  const [a, b] = [startBackend("a"), startBackend("b")];
  const [p1, p2, p3] = [freePort(), freePort(), freePort()];
  const three = (x: number, y: number, z?: number) =>
    lbYaml({
      services: [
        { name: "one", port: x, backends: [a.address] },
        { name: "two", port: y, backends: [b.address] },
        ...(z === undefined ? [] : [{ name: "three", port: z, backends: [a.address] }]),
      ],
    });
  const lb = await startLB(three(p1, p2, p3));
  try {
    const onThree = await connect("127.0.0.1", p3);
    await waitFor("greeting", () => onThree.text() === "a\n");
    lb.rewrite(three(p2, p1)); // "three" removed, "one" and "two" swap ports
    const mark = lb.logs().length;
    lb.signal("SIGHUP");
    await lb.waitForLog("config reloaded", 5000, mark);
    expect(await whoServes("127.0.0.1", p1)).toBe("b");
    expect(await whoServes("127.0.0.1", p2)).toBe("a");
    await expect(connect("127.0.0.1", p3)).rejects.toThrow();
    onThree.socket.write("x");
    await waitFor("echo over the removed service's connection", () => onThree.text() === "a\nx");
    onThree.socket.end();
  } finally {
    await lb.stop();
    a.stop();
    b.stop();
  }
});

test("SIGHUP: from the wildcard to a specific address on the same port (the two cannot be bound at once)", async () => {
  const a = startBackend("a");
  const port = await freePort();
  const lb = await startLB(config(port, [a.address]).replace(`listen: 127.0.0.1:${port}`, `listen: 0.0.0.0:${port}`));
  try {
    const established = await connect("127.0.0.1", port);
    await waitFor("greeting", () => established.text() === "a\n");
    lb.rewrite(config(port, [a.address]));
    const mark = lb.logs().length;
    lb.signal("SIGHUP");
    await lb.waitForLog("config reloaded", 5000, mark);
    expect(await whoServes("127.0.0.1", port)).toBe("a");
    await expect(connect("127.0.0.2", port)).rejects.toThrow(); // only the wildcard covered 127.0.0.2
    established.socket.write("y");
    await waitFor("echo over the old listener's connection", () => established.text() === "a\ny");
    established.socket.end();
  } finally {
    await lb.stop();
    a.stop();
  }
});

test("SIGHUP: a failed reload that had given up an overlapping listener binds it again", async () => {
  const [a, b] = [startBackend("a"), startBackend("b")];
  const port = await freePort();
  const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const wildcard = config(port, [a.address]).replace(`listen: 127.0.0.1:${port}`, `listen: 0.0.0.0:${port}`);
  const lb = await startLB(wildcard);
  try {
    // The service moves to 127.0.0.1 (the wildcard must go first), a new one wants a taken port.
    lb.rewrite(config(port, [a.address], { extraService: `  - name: api\n    listen: 127.0.0.1:${taken.port}\n    health_check: { enabled: false }\n    backends:\n      - address: ${a.address}\n` }));
    const mark = lb.logs().length;
    lb.signal("SIGHUP");
    const line = await lb.waitForLog("reload rejected, still serving the previous config", 5000, mark);
    expect(String(line.error)).toContain(`127.0.0.1:${taken.port}: the address is already in use`);
    expect(await whoServes("127.0.0.2", port)).toBe("a"); // the wildcard is back
    // …and it is the listener later reloads update: a new service on it (new name, new backend) serves.
    lb.rewrite(wildcard.replace("name: web", "name: web2").replace(a.address, b.address));
    const next = lb.logs().length;
    lb.signal("SIGHUP");
    await lb.waitForLog("config reloaded", 5000, next);
    expect(await whoServes("127.0.0.2", port)).toBe("b");
  } finally {
    await lb.stop();
    a.stop();
    b.stop();
    taken.stop(true);
  }
});

test("SIGHUP: the admin listener moves only with a reload that applies", async () => {
  const a = startBackend("a");
  const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const [port, newAdmin] = [await freePort(), await freePort()];
  const lb = await startLB(config(port, [a.address]));
  const answers = (adminPort: number) => fetch(`http://127.0.0.1:${adminPort}/healthz`).then((r) => r.ok, () => false);
  try {
    // A new admin address and a service port that is taken: the reload fails, the admin stays put.
    lb.rewrite(config(taken.port, [a.address]).replace("ADMIN", `127.0.0.1:${newAdmin}`));
    let mark = lb.logs().length;
    lb.signal("SIGHUP");
    const line = await lb.waitForLog("reload rejected, still serving the previous config", 5000, mark);
    expect(String(line.error)).toContain("already in use");
    expect(await answers(lb.adminPort)).toBe(true);
    expect(await answers(newAdmin)).toBe(false);
    expect(await whoServes("127.0.0.1", port)).toBe("a");
    // The same admin move with a free service port applies, and the old admin port closes.
    lb.rewrite(config(port, [a.address]).replace("ADMIN", `127.0.0.1:${newAdmin}`));
    mark = lb.logs().length;
    lb.signal("SIGHUP");
    await lb.waitForLog("config reloaded", 5000, mark);
    expect(await answers(newAdmin)).toBe(true);
    expect(await answers(lb.adminPort)).toBe(false);
  } finally {
    await lb.stop();
    a.stop();
    taken.stop(true);
  }
});

test("SIGTERM: stop accepting, let established connections finish, exit 0", async () => {
  const a = startBackend("a");
  const port = await freePort();
  const lb = await startLB(config(port, [a.address], { drain: "10s" }));
  try {
    const established = await connect("127.0.0.1", port);
    await waitFor("greeting", () => established.text() === "a\n");
    lb.signal("SIGTERM");
    await lb.waitForLog("draining");
    // Once every proxy worker has closed its listener (a message away), new clients are refused…
    await lb.waitForLog("proxy listeners closed; waiting for open connections to end");
    await expect(connect("127.0.0.1", port)).rejects.toThrow();
    // …while the established connection still relays.
    established.socket.write("bye");
    await waitFor("echo during drain", () => established.text() === "a\nbye");
    const t0 = Date.now();
    established.socket.end();
    expect(await lb.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2000);
  } finally {
    await lb.stop();
    a.stop();
  }
});

test("SIGTERM: connections still open at drain_timeout are closed and the process exits 0", async () => {
  const a = startBackend("a");
  const port = await freePort();
  const lb = await startLB(config(port, [a.address], { drain: "500ms" }));
  try {
    const stuck = await connect("127.0.0.1", port);
    await waitFor("greeting", () => stuck.text() === "a\n");
    const t0 = Date.now();
    lb.signal("SIGINT");
    expect(await lb.exited).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    await stuck.closed;
  } finally {
    await lb.stop();
    a.stop();
  }
});

test("admin: /metrics in Prometheus text and /status as JSON, per service and backend", async () => {
  const a = startBackend("a");
  const port = await freePort();
  const lb = await startLB(config(port, [a.address]));
  try {
    const c = await connect("127.0.0.1", port);
    await waitFor("greeting", () => c.text() === "a\n");
    c.socket.write("12345");
    await waitFor("echo", () => c.text() === "a\n12345");
    const text = await lb.metrics();
    expect(text).toContain("# TYPE featherlb_backend_connections_active gauge");
    expect(text).toContain(`featherlb_backend_connections_active{service="web",backend="${a.address}"} 1`);
    expect(text).toContain(`featherlb_backend_bytes_total{service="web",backend="${a.address}",direction="in"} 5`);
    expect(text).toContain(`featherlb_backend_bytes_total{service="web",backend="${a.address}",direction="out"} 7`);
    expect(text).toContain(`featherlb_backend_up{service="web",backend="${a.address}"} 1`);
    expect(text).toContain(`featherlb_info{version="`);
    const status = await lb.status();
    expect(status.mode).toBe("proxy");
    expect(status.services[0].name).toBe("web");
    expect(status.services[0].backends[0]).toMatchObject({ address: a.address, health: "up", active: 1, total: 1 });
    c.socket.end();
    await c.closed;
    await waitFor("active back to 0", async () => (await lb.metric("featherlb_service_connections_active", { service: "web" })) === 0);
    expect((await fetch(`http://127.0.0.1:${lb.adminPort}/nope`)).status).toBe(404);
  } finally {
    await lb.stop();
    a.stop();
  }
});

test("mode: auto on the wildcard runs that service in the proxy, and the logged reason names the file and the field", async () => {
  const a = startBackend("a");
  const port = await freePort();
  const lb = await startLB(`mode: auto\n${config(port, [a.address]).replace(`listen: 127.0.0.1:${port}`, `listen: 0.0.0.0:${port}`)}`);
  try {
    const line = await lb.waitForLog("service runs in the proxy: the xdp data plane cannot serve it");
    expect(line.service).toBe("web");
    expect(String(line.reason)).toMatch(/lb\.yaml: services\[0\]\.listen: mode: xdp needs a specific IPv4 address of this host, got 0\.0\.0\.0; /);
    // No service needed XDP, so nothing was loaded or attached.
    expect(lb.logs().some((l) => l.msg === "xdp program attached" || l.msg === "xdp data plane unavailable, running the proxy")).toBe(false);
    expect((await lb.status()).mode).toBe("proxy");
    expect((await lb.status()).services[0].plane).toBe("proxy");
    expect(await whoServes("127.0.0.1", port)).toBe("a");
  } finally {
    await lb.stop();
    a.stop();
  }
});

test("logs are JSON lines with ts, level and msg", async () => {
  const a = startBackend("a");
  const port = await freePort();
  const lb = await startLB(config(port, [a.address]));
  try {
    const started = await lb.waitForLog("featherlb started");
    expect(started).toMatchObject({ level: "info", mode: "proxy" });
    expect(typeof started.ts).toBe("string");
    expect(lb.logs().every((l) => !l.raw)).toBe(true);
  } finally {
    await lb.stop();
    a.stop();
  }
});

test("mode: auto runs the proxy when XDP cannot attach, and logs why", async () => {
  const a = startBackend("a");
  const port = await freePort();
  // snat_ports off the ephemeral range freePort draws from: with the default 40000-59999 the port
  // would often be inside it, and auto would fall back for that reason before looking at the interface.
  const lb = await startLB(`mode: auto\nxdp: { interface: flb-no-such-if, snat_ports: 1024-2047 }\n${config(port, [a.address])}`);
  try {
    const line = await lb.waitForLog("xdp data plane unavailable, running the proxy");
    expect(String(line.reason)).toContain("flb-no-such-if");
    expect((await lb.status()).mode).toBe("proxy");
    expect(await whoServes("127.0.0.1", port)).toBe("a");
  } finally {
    await lb.stop();
    a.stop();
  }
});
