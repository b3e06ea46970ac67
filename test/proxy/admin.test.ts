/**
 * The admin listener answers plain HTTP probes, including HTTP/1.0 without a Host header (a `printf |
 * nc` check, an old balancer's health check), and never shows Bun's developer error page.
 */
import { afterAll, expect, test } from "bun:test";
import { connect as netConnect } from "node:net";
import { startBackend } from "../support/backend.ts";
import { lbYaml } from "../support/config.ts";
import { startLB, type RunningLB } from "../support/lb.ts";
import { freePort } from "../support/net.ts";

const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

/** One raw HTTP exchange on a fresh connection: everything the server sent before closing. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = netConnect({ host: "127.0.0.1", port }, () => s.write(request));
    s.setTimeout(5000, () => s.destroy(new Error("no answer within 5 s")));
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("end", () => resolve(Buffer.concat(chunks).toString()));
    s.on("error", reject);
  });
}

test("HTTP/1.0 without a Host header: /healthz is 200, an unknown path a plain 404, never a developer page", async () => {
  const backend = startBackend("b1");
  cleanup.push(() => backend.stop());
  const lb: RunningLB = await startLB(lbYaml({ services: [{ name: "web", port: freePort(), backends: [backend.address] }] }));
  cleanup.push(() => lb.stop());

  const ok = await raw(lb.adminPort, "GET /healthz HTTP/1.0\r\n\r\n");
  expect(ok.split("\r\n")[0]).toMatch(/^HTTP\/1\.[01] 200/);
  expect(ok.endsWith("ok\n")).toBe(true);

  const missing = await raw(lb.adminPort, "GET /nope?x=1 HTTP/1.0\r\n\r\n");
  expect(missing.split("\r\n")[0]).toMatch(/^HTTP\/1\.[01] 404/);
  expect(missing.length).toBeLessThan(1024);

  const metrics = await raw(lb.adminPort, "GET /metrics HTTP/1.0\r\n\r\n");
  expect(metrics).toContain("featherlb_info");
});
