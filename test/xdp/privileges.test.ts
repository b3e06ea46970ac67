/**
 * mode: xdp without the capabilities it needs ends in one sentence naming the missing one, exit 2 —
 * not "this kernel rejected the XDP program": without CAP_PERFMON the verifier refuses the program with
 * EACCES, as it would an invalid one. Root here, with capabilities taken out of the bounding set before
 * featherlb is exec'd (setpriv), in a private network namespace with only `lo` (unshare -n).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { missingLoadCapabilities } from "../../src/dataplane/xdp/loader.ts";
import { featherlbCommand } from "../support/lb.ts";
import { bpfSuiteEnabled } from "./require.ts";

if (bpfSuiteEnabled("xdp privileges")) {
  const dir = mkdtempSync(join(tmpdir(), "flb-priv-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, "lb.yaml");
  writeFileSync(
    config,
    `mode: xdp
admin: { listen: off }
xdp: { interface: lo, snat_ports: "40000-41999" }
services:
  - name: web
    listen: 127.0.0.1:8080
    backends: [ { address: "127.0.0.2:80" } ]
`,
  );

  for (const [drop, lacks] of [
    ["-perfmon,-sys_admin", "CAP_PERFMON"],
    ["-bpf,-sys_admin", "CAP_BPF"],
  ] as const) {
    test(`without ${lacks}: exit 2, one sentence naming it`, () => {
      const cmd = ["unshare", "-n", "sh", "-c", `ip link set lo up && exec setpriv --bounding-set=${drop} "$@"`, "sh", ...featherlbCommand(), config];
      const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
      const err = r.stderr.toString().trim().split("\n");
      expect({ code: r.exitCode, lines: err.length }).toEqual({ code: 2, lines: 1 });
      expect(err[0]).toContain(`lacks ${lacks}`);
      expect(err[0]).toContain("grant those capabilities");
    });
  }

  test("xdp.pin_path on no bpffs, and no CAP_SYS_ADMIN to mount one: exit 2, one sentence naming the fix", () => {
    const pins = join(dir, "not-bpffs");
    const cfg = join(dir, "pins.yaml");
    writeFileSync(cfg, readFileSync(config, "utf8").replace('snat_ports: "40000-41999" }', `snat_ports: "40000-41999", pin_path: "${pins}" }`));
    const cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec setpriv --bounding-set=-sys_admin "$@"', "sh", ...featherlbCommand(), cfg];
    const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", timeout: 20_000, env: { ...process.env, FEATHERLB_RUN_DIR: join(dir, "run") } });
    const err = r.stderr.toString().trim().split("\n");
    expect({ code: r.exitCode, lines: err.length }).toEqual({ code: 2, lines: 1 });
    expect(err[0]).toContain(`xdp.pin_path ${pins} is not on a bpf filesystem and mounting one at ${pins} was not permitted`);
    expect(err[0]).toContain("set xdp.pin_path: off");
  });

  test("the capability reader: CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON", () => {
    const status = (eff: bigint) => `Name:\tx\nCapEff:\t${eff.toString(16).padStart(16, "0")}\n`;
    const bit = (n: number) => 1n << BigInt(n);
    expect(missingLoadCapabilities(status(bit(12) | bit(38) | bit(39)))).toEqual([]);
    expect(missingLoadCapabilities(status(bit(12) | bit(21)))).toEqual([]);
    expect(missingLoadCapabilities(status(bit(12) | bit(39)))).toEqual(["CAP_PERFMON"]);
    expect(missingLoadCapabilities(status(0n))).toEqual(["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]);
  });
}
