/**
 * The command line as a user meets it: --version, --help, check, and the one-sentence errors with
 * exit code 2 (never a stack trace).
 */
import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { runCli, tempConfig } from "./support/lb.ts";
import { freePort } from "./support/net.ts";
import pkg from "../package.json" with { type: "json" };

const ROOT = resolve(import.meta.dir, "..");

/**
 * The commit `--version` must name: the checkout's HEAD (12 hex digits, "-dirty" with uncommitted changes
 * to tracked files) for the compiled binary — `make build` rebuilds it when HEAD moves — and "unknown"
 * when the test runs the source.
 */
function builtFrom(): string {
  if (!process.env.FEATHERLB_BIN) return "unknown";
  const git = (...args: string[]) => Bun.spawnSync(["git", ...args], { cwd: ROOT, stdout: "pipe" }).stdout.toString().trim();
  return git("rev-parse", "--short=12", "HEAD") + (git("status", "--porcelain", "--untracked-files=no") ? "-dirty" : "");
}

/** A user error: exit 2, one line on stderr that starts with "featherlb: ", no stack frames. */
function expectUserError(r: { code: number; stderr: string }, pattern: RegExp): void {
  expect(r.code).toBe(2);
  const lines = r.stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^featherlb: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe("featherlb CLI", () => {
  test("--version prints the version, the git commit it was built from, the Bun version and the target", async () => {
    const r = await runCli(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`featherlb ${pkg.version} (commit ${builtFrom()}, bun ${pkg.devDependencies.bun}, linux-${process.arch})`);
  });

  test("--help lists the commands and all seven algorithms", async () => {
    const r = await runCli(["--help"]);
    expect(r.code).toBe(0);
    for (const word of ["check", "round_robin", "weighted_round_robin", "least_connections", "random", "power_of_two", "source_hash", "maglev", "SIGHUP"]) {
      expect(r.stdout).toContain(word);
    }
  });

  test("check accepts the shipped example configs", async () => {
    for (const file of ["config/lb.yaml", "config/minimal.yaml"]) {
      const r = await runCli(["check", resolve(ROOT, file)]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(": ok (");
    }
  });

  test("check rejects a bad config with file:line:col, field path and exit 2", async () => {
    const path = tempConfig(`services:\n  - name: web\n    listen: 0.0.0.0:8080\n    algorithm: round_robin\n    backends:\n      - address: 10.0.0.1:70000\n`);
    expectUserError(await runCli(["check", path]), /lb\.yaml:6:\d+ services\[0\]\.backends\[0\]\.address: .*70000/);
  });

  test("check knows what mode: xdp refuses: a wildcard listen is file:line:col, exit 2, and so is run", async () => {
    const path = tempConfig(`mode: xdp\nservices:\n  - name: web\n    listen: 0.0.0.0:8080\n    backends:\n      - address: 10.0.0.1:80\n`);
    const message = /lb\.yaml:4:13 services\[0\]\.listen: mode: xdp needs a specific IPv4 address of this host, got 0\.0\.0\.0; set listen to that address or use mode: proxy$/;
    expectUserError(await runCli(["check", path]), message);
    expectUserError(await runCli([path]), message);
  });

  test("check accepts the same file in mode: auto (which falls back to the proxy at run time)", async () => {
    const path = tempConfig(`mode: auto\nservices:\n  - name: web\n    listen: 0.0.0.0:8080\n    backends:\n      - address: 10.0.0.1:80\n`);
    const r = await runCli(["check", path]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(": ok (1 service, mode auto)");
  });

  test("check refuses a backend that loops back into featherlb itself, with file:line:col and exit 2", async () => {
    const path = tempConfig(`services:\n  - name: web\n    listen: 0.0.0.0:8080\n    backends:\n      - address: 10.0.0.1:80\n      - address: 127.0.0.1:8080\n`);
    expectUserError(
      await runCli(["check", path]),
      /lb\.yaml:6:18 services\[0\]\.backends\[1\]\.address: 127\.0\.0\.1:8080 reaches featherlb itself, where this service listens on 0\.0\.0\.0:8080; .*point the backend at the real server$/,
    );
  });

  test("a missing config file is one sentence naming the path", async () => {
    expectUserError(await runCli(["/nonexistent/lb.yaml"]), /\/nonexistent\/lb\.yaml/);
  });

  test("unknown options and extra arguments are usage errors", async () => {
    expectUserError(await runCli(["--frobnicate"]), /unknown option "--frobnicate".*--help/);
    expectUserError(await runCli(["check"]), /check needs a config file/);
  });

  test("a listen port already in use is one sentence and exit 2", async () => {
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const admin = await freePort();
      const path = tempConfig(
        `admin: { listen: 127.0.0.1:${admin} }\nservices:\n  - name: web\n    listen: 127.0.0.1:${taken.port}\n    algorithm: round_robin\n    backends:\n      - address: 127.0.0.1:9\n`,
      );
      expectUserError(await runCli([path]), new RegExp(`127\\.0\\.0\\.1:${taken.port}.*already in use`));
    } finally {
      taken.stop(true);
    }
  });

  test("mode: xdp on a missing interface exits 2 with one sentence naming it", async () => {
    const admin = await freePort();
    // A fixed port outside the default xdp.snat_ports (mode: xdp binds no socket on it): a free port from
    // the ephemeral range is often inside 40000-59999, which the config check now refuses first.
    const path = tempConfig(
      `mode: xdp\nadmin: { listen: 127.0.0.1:${admin} }\nxdp: { interface: flb-no-such-if }\nservices:\n  - name: web\n    listen: 127.0.0.1:8080\n    algorithm: round_robin\n    backends:\n      - address: 127.0.0.1:9\n`,
    );
    expectUserError(await runCli([path]), /interface flb-no-such-if does not exist; set xdp\.interface/);
  });
});

describe("the compiled binary", () => {
  test("runs from an empty directory with no Bun and no node_modules on the machine's PATH", async () => {
    const { mkdtempSync, copyFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "featherlb-bin-"));
    const bin = join(dir, "featherlb");
    if (process.env.FEATHERLB_BIN) copyFileSync(resolve(ROOT, process.env.FEATHERLB_BIN), bin);
    else {
      const b = Bun.spawnSync([process.execPath, "build", "--compile", resolve(ROOT, "src/main.ts"), "--outfile", bin], { stderr: "pipe" });
      expect(b.exitCode, b.stderr.toString()).toBe(0);
    }
    copyFileSync(resolve(ROOT, "config/minimal.yaml"), join(dir, "lb.yaml"));
    const env = { PATH: "/nonexistent", HOME: dir };
    const version = Bun.spawnSync([bin, "--version"], { cwd: dir, env, stdout: "pipe" });
    expect(version.stdout.toString().trim()).toStartWith(`featherlb ${pkg.version} (commit `);
    const check = Bun.spawnSync([bin, "check", "lb.yaml"], { cwd: dir, env, stdout: "pipe", stderr: "pipe" });
    expect(check.stderr.toString()).toBe("");
    expect(check.exitCode).toBe(0);
  }, 60_000);
});
