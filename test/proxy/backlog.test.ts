/**
 * The proxy's listeners get a larger accept backlog than Bun's fixed 512 (src/dataplane/proxy/backlog.ts):
 * checked on a real featherlb process with `ss`, which shows a listening socket's backlog as Send-Q.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { WANTED_BACKLOG, canonical, sockaddrText } from "../../src/dataplane/proxy/backlog.ts";
import { lbYaml } from "../support/config.ts";
import { startLB } from "../support/lb.ts";
import { startBackend } from "../support/backend.ts";
import { freePort } from "../support/net.ts";

test("a listener is recognised by the address getsockname() reports, IPv4 and IPv6", () => {
  const v4 = new Uint8Array(16);
  v4.set([2, 0, 0x1f, 0x90, 127, 0, 0, 1]); // AF_INET (little-endian u16), port 8080, 127.0.0.1
  expect(sockaddrText(v4)).toBe("127.0.0.1 8080");
  const v6 = new Uint8Array(28);
  v6.set([10, 0, 0x01, 0xbb]); // AF_INET6, port 443
  v6.set([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2], 8); // fe80::1:2
  expect(sockaddrText(v6)).toBe(`${canonical("fe80::1:2")} 443`);
  expect(canonical("fe80::1:2")).toBe("fe80:0:0:0:0:0:1:2");
  expect(canonical("::")).toBe("0:0:0:0:0:0:0:0");
  expect(canonical("::1")).toBe(canonical("0:0:0:0:0:0:0:1"));
  expect(canonical("2001:DB8::")).toBe("2001:db8:0:0:0:0:0:0");
});

test("a proxy listener's backlog is net.core.somaxconn (capped at 65535), not Bun's 512", async () => {
  const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
  const want = Math.min(WANTED_BACKLOG, somaxconn);
  const backend = startBackend("a");
  const port = await freePort();
  const lb = await startLB(lbYaml({ services: [{ name: "web", port, backends: [backend.address] }] }));
  try {
    const ss = Bun.spawnSync(["ss", "-Hltn", `sport = :${port}`]).stdout.toString().trim();
    // State Recv-Q Send-Q Local Peer; for a listener Send-Q is the backlog
    const [, , sendQ, local] = ss.split(/\s+/);
    expect(local).toBe(`127.0.0.1:${port}`);
    expect(Number(sendQ)).toBe(want);
    expect(lb.logs().some((l) => l.msg === "accept backlog left at Bun's 512")).toBe(false);
  } finally {
    await lb.stop();
    backend.stop();
  }
});
