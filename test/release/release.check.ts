/**
 * `make release-test`: the artifacts of `make release` as a user meets them. Not part of `make test`
 * (the file name is not *.test.ts): it needs dist/release/ and what the Makefile prepares — an arm64
 * sysroot for qemu-user (build/release-test/arm64) and a debootstrapped Debian root
 * (build/release-test/debroot).
 *
 * Everything runs from a directory outside the checkout, with PATH reduced to a folder of links to the
 * few tools a user's machine has (tar, sha256sum, ip, qemu-aarch64-static): no node, npm or bun.
 * - Each tarball: its file list; the binary's CPU (ELF header); `--version`, `check lb.yaml` and a proxy
 *   relay on loopback (x64 and baseline natively and on an emulated Nehalem without AVX, arm64 under
 *   qemu-aarch64-static); `mode: xdp` on lo
 *   in a private network namespace (natively it attaches; under qemu the embedded arm64 libbpf loads
 *   and parses the program, and the kernel call fails with ENOSYS because qemu-user has no bpf(2)).
 * - SHA256SUMS verifies, and fails on a changed file.
 * - The BPF object compiled with arm64's kernel headers is the same program (debug info aside).
 * - Each .deb: control fields, file list with modes, conffiles, maintainer scripts; the amd64 one is
 *   installed into the Debian root with `dpkg --root`, runs there (chroot) as root and as the
 *   `featherlb` user it created, its unit passes `systemd-analyze verify`, and remove/purge behave.
 * - The unit under a real systemd: the Debian root booted with systemd-nspawn (a throwaway overlay, its
 *   own network namespace), the .deb installed there with dpkg: the proxy as the `featherlb` user with
 *   the ambient capabilities, reload, the upgrade's restart (a drain), mode: xdp attached under the
 *   hardening, a SIGKILL restarted by Restart=on-failure that adopts the host-change record, a clean
 *   stop that undoes them, and ExecStartPre refusing an invalid config.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { startBackend } from "../support/backend.ts";
import { connect, freePort, sha256, writeAll } from "../support/net.ts";
import { Proc } from "../support/proc.ts";
import { bpfSuiteEnabled } from "../xdp/require.ts";

// Unpacking and hashing 110 MB binaries, or starting one under emulation, takes seconds on a busy
// 2-core machine; the tests that take longer say so.
setDefaultTimeout(60_000);

const ROOT = resolve(import.meta.dir, "../..");
const VERSION = pkg.version;
const BUN_VERSION = pkg.devDependencies.bun;
const RELEASE = join(ROOT, "dist/release");
const PREP = join(ROOT, "build/release-test");
const SYSROOT_ARM64 = join(PREP, "arm64/root");
const DEBROOT = join(PREP, "debroot");
const COMMIT = readFileSync(join(ROOT, "build/commit"), "utf8").trim();

const EM_X86_64 = 62;
const EM_AARCH64 = 183;
interface Target {
  name: string;
  machine: number;
  /** How this host runs the binary: natively, or under qemu-user with the target's glibc. */
  prefix: string[];
}
const native = (arch: string) => process.arch === arch;
const TARGETS: Target[] = [
  { name: "linux-x64", machine: EM_X86_64, prefix: native("x64") ? [] : ["qemu-x86_64-static"] },
  { name: "linux-x64-baseline", machine: EM_X86_64, prefix: native("x64") ? [] : ["qemu-x86_64-static"] },
  { name: "linux-arm64", machine: EM_AARCH64, prefix: native("arm64") ? [] : ["qemu-aarch64-static", "-L", SYSROOT_ARM64] },
];
const DEBS = [
  { arch: "amd64", target: "linux-x64-baseline" },
  { arch: "arm64", target: "linux-arm64" },
];
const ARTIFACTS = [...TARGETS.map((t) => `featherlb-${VERSION}-${t.name}.tar.gz`), ...DEBS.map((d) => `featherlb_${VERSION}_${d.arch}.deb`)];

// ---------------------------------------------------------------- a user's machine, outside the checkout
const HOME = mkdtempSync(join(tmpdir(), "featherlb-release-"));
const DOWNLOAD = join(HOME, "download");
const TOOLS = join(HOME, "tools");
/** PATH as the artifacts see it: only links to what a user would have. */
const PATH = TOOLS;
// The coreutils and grep serve the test's own shell snippets; featherlb itself needs only `ip` (mode: xdp).
const USER_TOOLS = ["sh", "tar", "gzip", "sha256sum", "cat", "grep", "seq", "sleep", "ip", "qemu-aarch64-static", "qemu-x86_64-static"];

function hostTool(name: string): string {
  const found = Bun.which(name, { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" });
  if (!found) throw new Error(`${name} is not installed (make release-test installs it as root)`);
  return found;
}

beforeAll(() => {
  mkdirSync(DOWNLOAD, { recursive: true });
  mkdirSync(TOOLS, { recursive: true });
  for (const f of [...ARTIFACTS, "SHA256SUMS"]) copyFileSync(join(RELEASE, f), join(DOWNLOAD, f));
  for (const t of USER_TOOLS) symlinkSync(hostTool(t), join(TOOLS, t));
});
afterAll(() => rmSync(HOME, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
/** Run `cmd` (resolved in the reduced PATH unless absolute) in `cwd`, with nothing but PATH and HOME. */
function run(cmd: string[], cwd = HOME): Run {
  const [exe, ...args] = cmd;
  const resolved = exe!.startsWith("/") ? exe! : Bun.which(exe!, { PATH });
  if (!resolved) throw new Error(`${exe} is not on the reduced PATH`);
  const r = Bun.spawnSync([resolved, ...args], { cwd, env: { PATH, HOME }, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 120_000, killSignal: "SIGKILL" });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}
/**
 * A host tool the test itself uses (dpkg, clang…), with the normal environment; in a session of its own
 * without a terminal (systemctl and dpkg in the container never stop on a tty), and bounded in time.
 */
function host(cmd: string[], opts: { cwd?: string } = {}): Run {
  const r = Bun.spawnSync(["setsid", "--wait", ...cmd], { cwd: opts.cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 120_000, killSignal: "SIGKILL" });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}
function ok(r: Run): Run {
  if (r.code !== 0) throw new Error(`exit ${r.code}\n${r.stderr}${r.stdout}`);
  return r;
}
const elfMachine = (path: string) => readFileSync(path).readUInt16LE(18);
const versionLine = (target: string) => `featherlb ${VERSION} (commit ${COMMIT}, bun ${BUN_VERSION}, ${target})`;

test("the reduced PATH has no node, npm or bun", () => {
  for (const t of ["node", "npm", "npx", "bun"]) expect(Bun.which(t, { PATH })).toBeNull();
  expect(HOME.startsWith(ROOT)).toBe(false);
});

describe("SHA256SUMS", () => {
  test("lists every artifact and verifies", () => {
    const sums = readFileSync(join(DOWNLOAD, "SHA256SUMS"), "utf8").trim().split("\n");
    expect(sums.map((l) => l.split(/\s+/)[1]).sort()).toEqual([...ARTIFACTS].sort());
    const r = ok(run(["sha256sum", "-c", "SHA256SUMS"], DOWNLOAD));
    expect(r.stdout.trim().split("\n").sort()).toEqual(ARTIFACTS.map((a) => `${a}: OK`).sort());
  });

  test("fails on a changed artifact", () => {
    const dir = join(HOME, "tampered");
    mkdirSync(dir);
    copyFileSync(join(DOWNLOAD, "SHA256SUMS"), join(dir, "SHA256SUMS"));
    for (const a of ARTIFACTS) symlinkSync(join(DOWNLOAD, a), join(dir, a));
    const victim = ARTIFACTS[0]!;
    rmSync(join(dir, victim));
    const bytes = readFileSync(join(DOWNLOAD, victim));
    bytes[bytes.length >> 1]! ^= 0xff;
    writeFileSync(join(dir, victim), bytes);
    const r = run(["sha256sum", "-c", "SHA256SUMS"], dir);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toContain(`${victim}: FAILED`);
  });
});

/** A config: one proxy service on loopback in front of `backend`, admin off. */
function proxyConfig(listenPort: number, backend: string): string {
  return `admin: { listen: off }\ndrain_timeout: 2s\nservices:\n  - name: relay\n    listen: 127.0.0.1:${listenPort}\n    backends:\n      - address: ${backend}\n`;
}

/** The command line: the emulator (if any) resolved in the reduced PATH, then the binary. */
function command(prefix: string[], bin: string, args: string[]): string[] {
  const [emulator, ...rest] = prefix;
  return [...(emulator ? [Bun.which(emulator, { PATH })!, ...rest] : []), bin, ...args];
}

/** What a user does first with a binary: --version, check, a proxy relay (then SIGTERM). */
function userChecks(target: string, dir: string, bin: string, prefix: string[], how: string): void {
  const cwd = dirname(bin);
  test(`--version names the version, commit, Bun and target${how}`, () => {
    const r = ok(run(command(prefix, bin, ["--version"]), cwd));
    expect(r.stdout.trim()).toBe(versionLine(target));
  }, 60_000);

  test(`check accepts the lb.yaml it ships with${how}`, () => {
    const r = ok(run(command(prefix, bin, ["check", "lb.yaml"]), cwd));
    expect(r.stdout.trim()).toBe("lb.yaml: ok (7 services, mode proxy)");
    expect(r.stderr).toBe("");
  }, 60_000);

  test(`relays a connection to a backend in proxy mode, and drains on SIGTERM${how}`, async () => {
    const backend = startBackend("b1", { behaviour: "echo" });
    const port = freePort();
    const config = join(dir, "relay.yaml");
    writeFileSync(config, proxyConfig(port, backend.address));
    const lb = new Proc(command(prefix, bin, [config]), { env: { PATH, HOME } });
    try {
      // Under emulation the runtime starts in seconds, not milliseconds.
      await lb.waitFor((j) => j.msg === "featherlb started", 60_000);
      const client = await connect("127.0.0.1", port);
      // The backend greets with its name, then echoes every byte; FIN is answered with FIN.
      const payload = crypto.getRandomValues(new Uint8Array(256 * 1024));
      writeAll(client.socket, payload, () => client.socket.shutdown());
      await Promise.race([client.ended, Bun.sleep(30_000)]);
      const got = client.received();
      expect(got.subarray(0, 3).toString()).toBe("b1\n");
      expect(got.length).toBe(3 + payload.length);
      expect(sha256(got.subarray(3))).toBe(sha256(payload));
      expect(await lb.stop(30_000)).toBe(0);
      expect(lb.lines.some((l) => l.json?.msg === "stopped")).toBe(true);
    } finally {
      lb.kill("SIGKILL");
      backend.stop();
    }
  }, 120_000);
}

test("the emulated Nehalem refuses AVX2 (so running there proves a binary does without it)", () => {
  const probe = join(HOME, "avx2");
  const src = join(HOME, "avx2.c");
  writeFileSync(src, 'int main(void) { __asm__ volatile("vpaddd %ymm0, %ymm0, %ymm0"); return 0; }\n');
  ok(host(["clang", "-O0", src, "-o", probe]));
  const r = Bun.spawnSync([Bun.which("qemu-x86_64-static", { PATH })!, "-cpu", "Nehalem", probe], { stdout: "pipe", stderr: "pipe" });
  expect(r.signalCode).toBe("SIGILL");
});

for (const target of TARGETS) {
  describe(`featherlb-${VERSION}-${target.name}.tar.gz`, () => {
    const dir = join(HOME, target.name);
    const top = `featherlb-${VERSION}-${target.name}`;
    const bin = join(dir, top, "featherlb");
    const argv = (args: string[]) => command(target.prefix, bin, args);

    test("holds the binary, lb.yaml, README, LICENSE and the systemd unit; extracts with tar", () => {
      const list = ok(run(["tar", "-tzf", join(DOWNLOAD, `${top}.tar.gz`)])).stdout.trim().split("\n").sort();
      expect(list).toEqual([`${top}/`, ...["LICENSE", "README.md", "featherlb", "featherlb.service", "lb.yaml"].map((f) => `${top}/${f}`)].sort());
      mkdirSync(dir);
      ok(run(["tar", "-xzf", join(DOWNLOAD, `${top}.tar.gz`)], dir));
      expect(elfMachine(bin)).toBe(target.machine);
    });

    userChecks(target.name, dir, bin, target.prefix, "");
    // With Bun 1.4.5 both x86-64 targets carry one runtime, built for Nehalem (SSE4.2) with AVX2 and
    // AVX-512 chosen at run time (Bun's baseline npm package is an alias of the default one). An
    // emulated Nehalem, which refuses AVX2 (checked below), shows each runs on a CPU from before 2013.
    if (target.machine === EM_X86_64) userChecks(target.name, dir, bin, ["qemu-x86_64-static", "-cpu", "Nehalem"], " on a CPU without AVX (qemu-x86_64-static -cpu Nehalem)");

    if (bpfSuiteEnabled(`${target.name} mode: xdp`)) {
      test(target.prefix.length === 0 ? "mode: xdp attaches on lo in a private network namespace" : "mode: xdp under qemu-user: the embedded libbpf loads and parses the program; bpf(2) is ENOSYS", () => {
        const config = join(dir, "xdp.yaml");
        writeFileSync(config, `mode: xdp\nadmin: { listen: off }\nxdp: { interface: lo, attach: generic }\nservices:\n  - name: web\n    listen: 127.0.0.1:8080\n    backends:\n      - address: 127.0.0.2:80\n`);
        const runDir = join(dir, "run");
        mkdirSync(runDir);
        // A fresh namespace: its lo is ours alone. featherlb runs until SIGTERM; here it is sent as soon
        // as it logged the attach (the shell waits for that line), or featherlb exits by itself.
        const cmd = argv([config]).map((a) => `'${a}'`).join(" ");
        const script = `ip link set lo up
${cmd} 2>err & pid=$!
for i in $(seq 1 600); do grep -q '"xdp services applied"' err && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -TERM $pid 2>/dev/null; wait $pid; echo "exit $?"; cat err`;
        const r = Bun.spawnSync([hostTool("unshare"), "-n", hostTool("sh"), "-c", script], { cwd: dir, env: { PATH, HOME, FEATHERLB_RUN_DIR: runDir }, stdout: "pipe", stderr: "pipe" });
        const out = r.stdout.toString();
        expect(out).not.toContain("the embedded libbpf could not be loaded");
        if (target.prefix.length === 0) {
          expect(out).toContain('"xdp program attached"');
          expect(out).toContain("exit 0");
        } else {
          expect(out).toContain("exit 2");
          expect(out).toContain("bpf_object__load failed (errno 38)");
        }
        expect(readdirSync(runDir)).toEqual([]);
      }, 120_000);
    }
  });
}

test("the BPF object is the same program when compiled with arm64's kernel headers", () => {
  // bpf/bpf.mk compiles with the host's asm/ headers (-I/usr/include/<triplet>). The object's code,
  // maps, BTF and line info must not depend on them: compile with linux-libc-dev:arm64's, strip the
  // DWARF (which records the include directories), compare byte for byte.
  const out = join(HOME, "bpf");
  mkdirSync(out);
  const include = join(SYSROOT_ARM64, "usr/include");
  const flags = ["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror", "-c", join(ROOT, "bpf/featherlb.bpf.c")];
  ok(host(["clang", ...flags, `-I${include}/aarch64-linux-gnu`, `-I${include}`, "-o", join(out, "arm64.o")]));
  expect(existsSync(join(include, "aarch64-linux-gnu/asm/types.h"))).toBe(true);
  for (const [src, dst] of [[join(out, "arm64.o"), join(out, "arm64.stripped.o")], [join(ROOT, "build/bpf/featherlb.bpf.o"), join(out, "host.stripped.o")]]) {
    ok(host(["llvm-objcopy", "--strip-debug", src!, dst!]));
  }
  expect(sha256(readFileSync(join(out, "arm64.stripped.o")))).toBe(sha256(readFileSync(join(out, "host.stripped.o"))));
});

// ------------------------------------------------------------------------------------------ .deb
const DEB_FILES = [
  ["-rwxr-xr-x", "./usr/bin/featherlb"],
  ["-rw-r--r--", "./etc/featherlb/lb.yaml"],
  ["-rw-r--r--", "./usr/lib/systemd/system/featherlb.service"],
  ["-rw-r--r--", "./usr/share/doc/featherlb/README.md"],
  ["-rw-r--r--", "./usr/share/doc/featherlb/copyright"],
];

for (const deb of DEBS) {
  describe(`featherlb_${VERSION}_${deb.arch}.deb`, () => {
    const file = join(DOWNLOAD, `featherlb_${VERSION}_${deb.arch}.deb`);
    const control = join(HOME, `control-${deb.arch}`);

    test("control: package, version, architecture, dependencies", () => {
      const field = (f: string) => ok(host(["dpkg-deb", "-f", file, f])).stdout.trim();
      expect(field("Package")).toBe("featherlb");
      expect(field("Version")).toBe(VERSION);
      expect(field("Architecture")).toBe(deb.arch);
      expect(field("Depends")).toBe("libc6 (>= 2.33), passwd, procps");
    });

    test("files: the binary, the config, the unit, the docs; owned by root, nothing else", () => {
      const lines = ok(host(["dpkg-deb", "-c", file])).stdout.trim().split("\n");
      const files = lines.filter((l) => !l.startsWith("d")).map((l) => l.split(/\s+/));
      expect(files.map((f) => [f[0], f[5]]).sort()).toEqual([...DEB_FILES].sort());
      for (const l of lines) expect(l.split(/\s+/)[1]).toBe("root/root");
    });

    test("the binary is the release tarball's", () => {
      const dir = join(HOME, `deb-${deb.arch}`);
      ok(host(["dpkg-deb", "-x", file, dir]));
      const fromTar = join(HOME, deb.target, `featherlb-${VERSION}-${deb.target}`, "featherlb");
      expect(sha256(readFileSync(join(dir, "usr/bin/featherlb")))).toBe(sha256(readFileSync(fromTar)));
    });

    test("conffiles and maintainer scripts", () => {
      ok(host(["dpkg-deb", "-e", file, control]));
      expect(readdirSync(control).sort()).toEqual(["conffiles", "control", "postinst", "postrm", "prerm"]);
      expect(readFileSync(join(control, "conffiles"), "utf8")).toBe("/etc/featherlb/lb.yaml\n");
      for (const s of ["postinst", "prerm", "postrm"]) {
        ok(host(["sh", "-n", join(control, s)]));
        expect(readFileSync(join(control, s), "utf8")).toStartWith("#!/bin/sh\n");
      }
      const postinst = readFileSync(join(control, "postinst"), "utf8");
      expect(postinst).toContain("useradd --system");
      // An upgrade restarts a running service (a drain); a first install starts nothing.
      expect(postinst).toContain("systemctl try-restart featherlb.service");
    });
  });
}

describe("the amd64 .deb in a Debian root (dpkg --root, chroot)", () => {
  const file = join(DOWNLOAD, `featherlb_${VERSION}_amd64.deb`);
  const dpkg = (...args: string[]) => host(["dpkg", `--root=${DEBROOT}`, ...args]);
  /** Run in the root with /proc mounted (a Bun binary reads /proc/self/exe), in a private mount namespace. */
  const inRoot = (args: string[], userspec?: string) =>
    host(["unshare", "-m", "sh", "-c", `mount -t proc proc "$0/proc" && exec chroot ${userspec ? `--userspec=${userspec}` : ""} "$0" "$@"`, DEBROOT, ...args]);

  beforeAll(() => {
    // A previous run that stopped half way may have left it installed.
    dpkg("--purge", "featherlb");
  });
  afterAll(() => {
    dpkg("--purge", "featherlb");
  });

  test("installs, and the postinst creates the featherlb system user", () => {
    ok(dpkg("-i", file));
    const passwd = ok(inRoot(["getent", "passwd", "featherlb"])).stdout.trim().split(":");
    expect(Number(passwd[2])).toBeLessThan(1000); // a system user
    expect(passwd[5]).toBe("/nonexistent");
    expect(passwd[6]).toBe("/usr/sbin/nologin");
    expect(ok(dpkg("-s", "featherlb")).stdout).toContain("Status: install ok installed");
  });

  test("the installed binary runs: --version as root, check as the featherlb user", () => {
    expect(ok(inRoot(["featherlb", "--version"])).stdout.trim()).toBe(versionLine("linux-x64-baseline"));
    expect(ok(inRoot(["featherlb", "check", "/etc/featherlb/lb.yaml"], "featherlb:featherlb")).stdout).toContain(": ok (7 services");
  });

  test("the unit passes systemd-analyze verify", () => {
    const r = host(["systemd-analyze", "verify", `--root=${DEBROOT}`, "--man=no", "/usr/lib/systemd/system/featherlb.service"]);
    expect(r.stderr + r.stdout).toBe("");
    expect(r.code).toBe(0);
  });

  test("reinstalling (the upgrade path) keeps an edited conffile; remove keeps it, purge deletes it", () => {
    const conf = join(DEBROOT, "etc/featherlb/lb.yaml");
    writeFileSync(conf, readFileSync(conf, "utf8") + "# edited by the operator\n");
    ok(dpkg("-i", file));
    expect(readFileSync(conf, "utf8")).toEndWith("# edited by the operator\n");
    ok(dpkg("-r", "featherlb"));
    expect(existsSync(join(DEBROOT, "usr/bin/featherlb"))).toBe(false);
    expect(existsSync(conf)).toBe(true);
    ok(dpkg("--purge", "featherlb"));
    expect(existsSync(conf)).toBe(false);
  });
});

describe("the unit under systemd (the Debian root booted with systemd-nspawn)", () => {
  const deb = `featherlb_${VERSION}_amd64.deb`;
  let nspawn: ReturnType<typeof Bun.spawn> | undefined;
  let init = 0;
  /** A shell command inside the container (nsenter into all its namespaces). */
  const sh = (cmd: string) => host(["nsenter", "-t", String(init), "-a", "sh", "-c", cmd]);
  const journal = () => sh("journalctl -u featherlb -o cat --no-pager").stdout;
  const prop = (p: string) => sh(`systemctl show -p ${p} --value featherlb`).stdout.trim();
  const writeConfig = (yaml: string) => ok(sh(`cat > /etc/featherlb/lb.yaml <<'EOF'\n${yaml}EOF`));
  async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; journal:\n${journal().split("\n").slice(-15).join("\n")}`);
      await Bun.sleep(200);
    }
  }

  beforeAll(async () => {
    // --volatile=overlay: every write goes to a tmpfs overlay, the Debian root stays as it was.
    // --keep-unit --register=no: no systemd on this host to register with. The container's seccomp
    // filter allows bpf(2) only when asked (a host systemd applies no such filter to services).
    nspawn = Bun.spawn(
      [hostTool("systemd-nspawn"), "-D", DEBROOT, "--volatile=overlay", `--bind-ro=${DOWNLOAD}:/mnt/release`, "--boot", "--keep-unit", "--register=no",
        "--private-network", "--console=pipe", "--drop-capability=CAP_SYS_RESOURCE", "--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN",
        "--system-call-filter=bpf perf_event_open"],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    // The container's init is nspawn's child once the set-up forks are done: ask until it answers.
    const child = () => Number(readFileSync(`/proc/${nspawn!.pid}/task/${nspawn!.pid}/children`, "utf8").trim().split(" ")[0]) || 0;
    const end = Date.now() + 60_000;
    let state = "";
    while (state !== "running" && nspawn.exitCode === null && Date.now() < end) {
      await Bun.sleep(200);
      init = child();
      if (init) state = sh("systemctl is-system-running").stdout.trim();
    }
    expect(state).toBe("running");
    ok(sh("ip link set lo up"));
  }, 90_000);

  afterAll(async () => {
    if (!nspawn) return;
    nspawn.kill("SIGTERM"); // a booted container halts on SIGTERM
    const t = setTimeout(() => nspawn!.kill("SIGKILL"), 20_000);
    await nspawn.exited;
    clearTimeout(t);
  });

  test("dpkg installs it under systemd: the unit is known, neither enabled nor started", () => {
    ok(sh(`dpkg -i /mnt/release/${deb}`));
    expect(sh("systemctl is-enabled featherlb").stdout.trim()).toBe("disabled");
    expect(sh("systemctl is-active featherlb").stdout.trim()).toBe("inactive");
  });

  test("proxy mode: runs as featherlb with the ambient capabilities, serves port 80, reloads on systemctl reload", async () => {
    writeConfig(`admin: { listen: 127.0.0.1:9090 }\nservices:\n  - name: web\n    listen: 127.0.0.1:80\n    backends:\n      - address: 127.0.0.1:8081\n`);
    ok(sh("systemctl start featherlb"));
    await until("featherlb started", () => journal().includes('"featherlb started"'));
    const status = sh(`cat /proc/${prop("MainPID")}/status`).stdout;
    const uid = sh("id -u featherlb").stdout.trim();
    expect(status).toMatch(new RegExp(`Uid:\\s+${uid}\\s+${uid}\\s+${uid}`));
    // CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39); nothing else.
    expect(/CapAmb:\s+([0-9a-f]+)/.exec(status)?.[1]).toBe(((1n << 10n) | (1n << 12n) | (1n << 38n) | (1n << 39n)).toString(16).padStart(16, "0"));
    expect(/CapEff:\s+([0-9a-f]+)/.exec(status)?.[1]).toBe(/CapAmb:\s+([0-9a-f]+)/.exec(status)?.[1]);
    expect(sh("bash -c 'exec 3<>/dev/tcp/127.0.0.1/80' && echo connected").stdout.trim()).toBe("connected");
    ok(sh("systemctl reload featherlb"));
    await until("config reloaded", () => journal().includes('"config reloaded"'));
  }, 60_000);

  test("an upgrade (dpkg -i over a running service) drains the old process and starts the new one", async () => {
    const before = prop("MainPID");
    ok(sh(`dpkg -i /mnt/release/${deb}`));
    await until("a new main process", () => prop("ActiveState") === "active" && prop("MainPID") !== before && prop("MainPID") !== "0");
    expect(journal()).toContain('"draining","signal":"SIGTERM"');
  }, 60_000);

  test("an invalid config: systemctl reload fails and the old config keeps serving; a start fails in ExecStartPre", async () => {
    const running = prop("MainPID");
    writeConfig(`services:\n  - name: web\n    listen: 127.0.0.1:80\n    backends:\n      - address: 127.0.0.1:70000\n`);
    const reload = sh("systemctl reload featherlb");
    expect(reload.code).not.toBe(0);
    expect(prop("MainPID")).toBe(running);
    expect(prop("ActiveState")).toBe("active");
    expect(journal()).toContain("backends[0].address: port must be 1-65535, got 70000");

    ok(sh("systemctl stop featherlb"));
    const starts = () => journal().split('"featherlb started"').length;
    const before = starts();
    expect(sh("systemctl start featherlb").code).not.toBe(0);
    // Retried as a failed start until the start limit (5 in 60 s); the main process never ran.
    await until("the start limit", () => journal().includes("Start request repeated too quickly") && prop("ActiveState") === "failed", 60_000);
    expect(starts()).toBe(before);
    ok(sh("systemctl reset-failed featherlb"));
  }, 60_000);

  test("mode: xdp attaches under the unit's hardening; a SIGKILL restarts it and the record is adopted; stop undoes the changes", async () => {
    writeConfig(`mode: xdp\nadmin: { listen: 127.0.0.1:9090 }\nxdp: { interface: lo, attach: generic }\nservices:\n  - name: web\n    listen: 127.0.0.1:80\n    backends:\n      - address: 127.0.0.2:8081\n`);
    ok(sh("systemctl restart featherlb"));
    await until("xdp program attached", () => journal().includes('"xdp program attached"'));
    expect(sh("sysctl -n net.ipv4.ip_local_reserved_ports").stdout.trim()).toBe("40000-59999");
    expect(sh("stat -c %U /run/featherlb/netns-*.json").stdout.trim()).toBe("featherlb");

    const restarts = Number(prop("NRestarts"));
    ok(sh(`kill -KILL ${prop("MainPID")}`));
    await until("the restart to adopt the record", () => journal().includes("adopting the host changes of a featherlb that did not exit cleanly"));
    expect(Number(prop("NRestarts"))).toBe(restarts + 1);

    ok(sh("systemctl stop featherlb"));
    expect(prop("Result")).toBe("success");
    expect(sh("sysctl -n net.ipv4.ip_local_reserved_ports").stdout.trim()).toBe("");
    expect(sh("ls /run/featherlb").stdout.trim()).toBe("");
  }, 90_000);

  test("purge removes the unit", () => {
    ok(sh("dpkg --purge featherlb"));
    expect(sh("systemctl cat featherlb").code).not.toBe(0);
  });
});
