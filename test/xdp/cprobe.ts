/**
 * Check Struct descriptions (src/dataplane/xdp/struct.ts) against C headers of this host: a C program
 * generated from the descriptions, compiled with clang and run, prints as JSON the sizeof of each
 * struct and, per described field, its offsetof, its size and whether its C type is the one described
 * (__builtin_types_compatible_p: `size_t` is not `__u64`, nor `int` `__u32`; for `void *`, that it is a
 * pointer). For structs whose layout is not in our BTF: libbpf's option structs.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Fields, Struct } from "../../src/dataplane/xdp/struct.ts";

export interface Probed {
  size: number;
  fields: { name: string; offset: number; size: number; typeMatches: boolean }[];
}

/** The probe's C source for `structs`, after `#include`s of `headers`. */
export function probeSource(headers: readonly string[], structs: readonly Struct<Fields>[]): string {
  const lines = ["#include <stdio.h>", "#include <stddef.h>", ...headers.map((h) => `#include <${h}>`), "int main(void) {", '  printf("{");'];
  structs.forEach((s, i) => {
    const T = `struct ${s.cName}`;
    lines.push(`  printf("%s\\"${s.cName}\\": {\\"size\\": %zu, \\"fields\\": [", ${i ? '", "' : '""'}, sizeof(${T}));`);
    s.fields.forEach((f, j) => {
      const x = `((${T} *)0)->${f.name}`;
      const typeMatches = f.type.cType === "void *" ? `__builtin_classify_type(${x}) == 5 /* pointer_type_class */` : `__builtin_types_compatible_p(__typeof__(${x}), ${f.type.cType})`;
      lines.push(
        `  printf("%s{\\"name\\": \\"${f.name}\\", \\"offset\\": %zu, \\"size\\": %zu, \\"typeMatches\\": %s}", ${j ? '", "' : '""'}, offsetof(${T}, ${f.name}), sizeof(${x}), (${typeMatches}) ? "true" : "false");`,
      );
    });
    lines.push('  printf("]}");');
  });
  lines.push('  printf("}\\n");', "  return 0;", "}");
  return lines.join("\n") + "\n";
}

/** Compile the probe with clang for this host, run it, and return what it printed (by struct name). */
export function probe(headers: readonly string[], structs: readonly Struct<Fields>[]): Record<string, Probed> {
  const dir = mkdtempSync(join(tmpdir(), "flb-cprobe-"));
  try {
    const src = join(dir, "probe.c");
    const bin = join(dir, "probe");
    writeFileSync(src, probeSource(headers, structs));
    const cc = Bun.spawnSync(["clang", "-Wall", "-Werror", src, "-o", bin], { stdout: "pipe", stderr: "pipe" });
    if (cc.exitCode !== 0) throw new Error(`the C probe did not compile:\n${cc.stderr.toString()}`);
    const run = Bun.spawnSync([bin], { stdout: "pipe", stderr: "pipe" });
    if (run.exitCode !== 0) throw new Error(`the C probe failed: ${run.stderr.toString()}`);
    return JSON.parse(run.stdout.toString());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
