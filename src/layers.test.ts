/**
 * Folders depend one way: config ← control ← dataplane ← runtime/main. The config contract imports
 * nothing above it, the control plane knows no data plane, the two data planes do not know each other,
 * and only the composition root (runtime.ts, main.ts) sees everything. errors.ts, version.ts and
 * slice.ts (working on the event loop in slices) are leaves anyone may import. Tests are exempt (they
 * may compare a layer with the code that uses it).
 */
import { expect, test } from "bun:test";
import { dirname, join, normalize } from "node:path";

const SRC = import.meta.dir;

/** The layer of a file under src/ (path relative to src/), lowest first; undefined = not placed yet. */
function layerOf(file: string): { rank: number; name: string } | undefined {
  if (file === "errors.ts" || file === "version.ts" || file === "slice.ts") return { rank: -1, name: "leaf" };
  if (file.startsWith("config/")) return { rank: 0, name: "config" };
  if (file.startsWith("control/")) return { rank: 1, name: "control" };
  if (file === "dataplane/types.ts") return { rank: 2, name: "dataplane" };
  const plane = /^dataplane\/([^/]+)\//.exec(file);
  if (plane) return { rank: 2, name: `dataplane/${plane[1]}` };
  if (file === "runtime.ts" || file === "main.ts") return { rank: 3, name: "runtime" };
  return undefined;
}

/** Relative module specifiers of static imports, re-exports, `import "x"` and `import("x")`/`typeof import("x")`. */
function relativeImports(text: string): string[] {
  const specifiers = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["'](\.{1,2}\/[^"']+)["']/gm)];
  return specifiers.map((m) => m[1]!);
}

/** Every import between src/ files that goes the wrong way, as "from → to (why)". */
function violations(files: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const [file, text] of files) {
    const from = layerOf(file);
    if (!from) {
      out.push(`${file}: not in any layer; place it in layerOf() (src/layers.test.ts)`);
      continue;
    }
    for (const spec of relativeImports(text)) {
      const target = normalize(join(dirname(file), spec));
      if (target.startsWith("..")) continue; // outside src/ (package.json, bpf/ objects)
      const to = layerOf(target);
      if (!to) out.push(`${file} → ${spec}: imports a file in no layer`);
      else if (from.rank === -1) out.push(`${file} → ${spec}: a leaf imports nothing of the program`);
      else if (to.rank > from.rank) out.push(`${file} → ${spec}: ${from.name} must not import ${to.name}`);
      else if (from.rank === 2 && to.rank === 2 && from.name !== "dataplane" && to.name !== "dataplane" && from.name !== to.name) {
        out.push(`${file} → ${spec}: the data planes must not import each other`);
      }
    }
  }
  return out;
}

test("src/ imports go one way: config ← control ← dataplane ← runtime/main", async () => {
  const files = new Map<string, string>();
  for await (const file of new Bun.Glob("**/*.ts").scan({ cwd: SRC })) {
    if (file.endsWith(".test.ts") || file.endsWith(".d.ts")) continue;
    files.set(file, await Bun.file(join(SRC, file)).text());
  }
  // The walk saw the layers (a broken glob would find nothing and pass).
  for (const f of ["config/schema.ts", "control/service.ts", "dataplane/proxy/index.ts", "dataplane/xdp/index.ts", "runtime.ts"]) {
    expect(files.has(f)).toBe(true);
  }
  expect(violations(files)).toEqual([]);
});

test("the check catches each kind of wrong import", () => {
  const bad = new Map([
    ["config/load.ts", 'import { Service } from "../control/service.ts";'],
    ["control/service.ts", 'import type { DataPlane } from "../dataplane/types.ts";'],
    ["control/admin.ts", 'const m = await import("../runtime.ts");'],
    ["dataplane/proxy/index.ts", 'export { XdpDataPlane } from "../xdp/index.ts";'],
    ["dataplane/xdp/index.ts", 'type P = typeof import("../proxy/connect.ts");'],
    ["errors.ts", 'import "./config/types.ts";'],
    ["app/new.ts", ""],
  ]);
  expect(violations(bad)).toEqual([
    "config/load.ts → ../control/service.ts: config must not import control",
    "control/service.ts → ../dataplane/types.ts: control must not import dataplane",
    "control/admin.ts → ../runtime.ts: control must not import runtime",
    "dataplane/proxy/index.ts → ../xdp/index.ts: the data planes must not import each other",
    "dataplane/xdp/index.ts → ../proxy/connect.ts: the data planes must not import each other",
    "errors.ts → ./config/types.ts: a leaf imports nothing of the program",
    "app/new.ts: not in any layer; place it in layerOf() (src/layers.test.ts)",
  ]);
  const good = new Map([
    ["dataplane/xdp/index.ts", 'import type { Service } from "../../control/service.ts";\nimport { isIPv4 } from "../../config/address.ts";\nimport type { DataPlane } from "../types.ts";'],
    ["runtime.ts", 'import { ProxyDataPlane } from "./dataplane/proxy/index.ts";\nimport { UserError } from "./errors.ts";'],
  ]);
  expect(violations(good)).toEqual([]);
});
