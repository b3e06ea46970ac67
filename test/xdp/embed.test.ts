/**
 * The compiled binary carries the BPF object and libbpf (+ libelf, libz): a `bun build --compile` of a
 * small entry that loads the program must work with the host's copies of those libraries hidden
 * (bind-mounted over by /dev/null in a private mount namespace), i.e. on a host without libbpf.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bpfSuiteEnabled } from "./require.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

if (bpfSuiteEnabled("xdp embedded libraries")) {
  const dir = mkdtempSync(join(tmpdir(), "flbx-embed-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("a compiled binary loads the XDP program with the host's libbpf, libelf and libz hidden", () => {
    const entry = join(dir, "entry.ts");
    writeFileSync(
      entry,
      `import { loadProgram } from ${JSON.stringify(join(ROOT, "src/dataplane/xdp/loader.ts"))};
const p = await loadProgram({ flowTableSize: 1024 });
const libs = (await Bun.file("/proc/self/maps").text()).split("\\n").map((l) => l.split(/\\s+/).slice(5).join(" ")).filter((l) => l.includes(".so"));
console.log(JSON.stringify({ ok: p.progFd > 0, libs: [...new Set(libs)] }));
p.close();
`,
    );
    const bin = join(dir, "entry");
    const build = Bun.spawnSync([process.execPath, "build", "--compile", entry, "--outfile", bin], { stdout: "pipe", stderr: "pipe" });
    expect(build.exitCode, build.stderr.toString()).toBe(0);

    // Hide every host copy of the three libraries (whatever their versioned file names).
    const hide = `for f in $(ls /usr/lib/*/libbpf.so* /usr/lib/*/libelf*.so* /usr/lib/*/libz.so* /lib/*/libbpf.so* /lib/*/libelf*.so* /lib/*/libz.so* 2>/dev/null); do [ -f "$f" ] && [ ! -L "$f" ] && mount --bind /dev/null "$f"; done; exec ${bin}`;
    const r = Bun.spawnSync(["unshare", "-m", "sh", "-c", hide], { stdout: "pipe", stderr: "pipe" });
    expect(r.exitCode, r.stderr.toString()).toBe(0);
    const out = JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!);
    expect(out.ok).toBe(true);
    expect(out.libs.filter((l: string) => /libbpf|libelf|libz/.test(l))).toEqual([]);
  }, 60000);
}
