/**
 * The proxy's listeners get a larger accept backlog than Bun's fixed 512 (src/dataplane/proxy/backlog.ts):
 * checked on a real featherlb process with `ss`, which shows a listening socket's backlog as Send-Q.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { endianness } from "node:os";
import { WANTED_BACKLOG, procNetAddress } from "../../src/dataplane/proxy/backlog.ts";
import { lbYaml } from "../support/config.ts";
import { startLB } from "../support/lb.ts";
import { freePort, startBackend } from "../support/net.ts";

test("addresses are written the way /proc/net/tcp and tcp6 print them", () => {
  const le = endianness() === "LE";
  expect(procNetAddress("127.0.0.1", 8080)).toBe(le ? "0100007F:1F90" : "7F000001:1F90");
  expect(procNetAddress("0.0.0.0", 80)).toBe("00000000:0050");
  expect(procNetAddress("::1", 443)).toBe(le ? "00000000000000000000000001000000:01BB" : "00000000000000000000000000000001:01BB");
  expect(procNetAddress("fe80::1:2", 1)).toBe(le ? "000080FE000000000000000002000100:0001" : "FE800000000000000000000000010002:0001");
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
