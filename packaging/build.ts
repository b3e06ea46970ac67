/**
 * Compile featherlb for one release target (`make release` runs this once per target):
 *
 *   bun packaging/build.ts TARGET OUTFILE BUN_EXECUTABLE LIB_DIR COMMIT
 *
 * The same compile as `make build` (minified, with a source map), with three differences:
 * - the Bun runtime baked in is BUN_EXECUTABLE (packaging/fetch-bun.sh: from Bun's npm package for the
 *   target) instead of one `bun build` would download from GitHub;
 * - the shared libraries the XDP data plane embeds come from LIB_DIR (packaging/target-libs.sh: Debian's
 *   packages for the target's architecture) instead of build/lib/ (the host's, bpf/bpf.mk): a plugin
 *   points libbpf.ts's `build/lib/*.so.1` imports there, and the build fails unless it did so for
 *   every one of them;
 * - TARGET and COMMIT are what `featherlb --version` prints (src/version.ts).
 */
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";

/** Release target → Bun's compile target. */
const TARGETS: Record<string, Bun.Build.CompileTarget> = {
  "linux-x64": "bun-linux-x64",
  "linux-x64-baseline": "bun-linux-x64-baseline",
  "linux-arm64": "bun-linux-arm64",
};
/** The files libbpf.ts imports from build/lib/: all must be redirected. */
const EMBEDDED_LIBS = ["libz.so.1", "libelf.so.1", "libbpf.so.1"];

// The rest: the entry points (Makefile ENTRYPOINTS: main and the worker threads' scripts).
const [target, outfile, executable, libDir, commit, ...entries] = process.argv.slice(2);
if (!target || !outfile || !executable || !libDir || commit === undefined || entries.length === 0) {
  console.error("usage: bun packaging/build.ts TARGET OUTFILE BUN_EXECUTABLE LIB_DIR COMMIT ENTRYPOINT...");
  process.exit(2);
}
const compileTarget = TARGETS[target];
if (!compileTarget) {
  console.error(`build.ts: unknown target ${target}; one of ${Object.keys(TARGETS).join(", ")}`);
  process.exit(2);
}

const redirected = new Set<string>();
const libs: Bun.BunPlugin = {
  name: "featherlb-target-libs",
  setup(build) {
    build.onResolve({ filter: /(^|\/)build\/lib\/[^/]+\.so\.1$/ }, (args) => {
      const name = basename(args.path);
      const path = resolve(libDir, name);
      if (!existsSync(path)) throw new Error(`${path} does not exist (packaging/target-libs.sh makes it)`);
      redirected.add(name);
      return { path };
    });
  },
};

const root = resolve(import.meta.dir, "..");
const result = await Bun.build({
  entrypoints: entries.map((e) => join(root, e)),
  minify: true,
  sourcemap: "linked",
  define: { FEATHERLB_COMMIT: JSON.stringify(commit), FEATHERLB_TARGET: JSON.stringify(target) },
  plugins: [libs],
  compile: { target: compileTarget, executablePath: resolve(executable), outfile: resolve(outfile) },
  throw: false,
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
const missing = EMBEDDED_LIBS.filter((l) => !redirected.has(l));
if (missing.length > 0) {
  console.error(`build.ts: ${missing.join(", ")} were not taken from ${libDir}: did the imports in src/dataplane/xdp/libbpf.ts change?`);
  process.exit(1);
}
console.log(`build.ts: ${target} → ${outfile}`);
