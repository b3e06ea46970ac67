/**
 * C ↔ TypeScript layout check (Cilium's alignchecker idea): every struct declared in
 * src/dataplane/xdp/layout.ts must match the compiled object's BTF — size, member order, every member's
 * offset and size — and the map sizes that encode shared constants must match layout.ts too.
 * Needs only bpftool (no root).
 */
import { describe, expect, test } from "bun:test";
import { MAPS, MAX_BACKENDS_BPF, MAX_SERVICES, PLAN_BUFFERS, REASONS, SLOT_POOL_SIZE, STRUCTS } from "../../src/dataplane/xdp/layout.ts";
import { MAX_BACKENDS } from "../../src/config/limits.ts";

const OBJ = new URL("../../build/bpf/featherlb.bpf.o", import.meta.url).pathname;

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
  vars?: { type_id: number; name?: string }[];
}

const dump = Bun.spawnSync(["bpftool", "btf", "dump", "file", OBJ, "-j"]);
if (dump.exitCode !== 0) throw new Error(`bpftool btf dump failed: ${dump.stderr.toString()}`);
const types: BtfType[] = JSON.parse(dump.stdout.toString()).types;
const byId = new Map(types.map((t) => [t.id, t]));

function sizeOf(id: number): number {
  const t = byId.get(id)!;
  switch (t.kind) {
    case "TYPEDEF":
    case "VOLATILE":
    case "CONST":
      return sizeOf(t.type_id!);
    case "ARRAY":
      return sizeOf(t.type_id!) * t.nr_elems!;
    default:
      return t.size!;
  }
}

describe("struct layouts match the BPF object's BTF", () => {
  for (const s of STRUCTS) {
    test(`struct ${s.cName}`, () => {
      const t = types.find((x) => x.kind === "STRUCT" && x.name === s.cName);
      expect(t, `struct ${s.cName} missing from BTF`).toBeDefined();
      expect({ struct: s.cName, size: t!.size }).toEqual({ struct: s.cName, size: s.size });
      const btf = t!.members!.map((m) => ({ name: m.name, offset: m.bits_offset / 8, size: sizeOf(m.type_id) }));
      const ts = s.order.map((f) => ({ name: f.name, offset: f.offset, size: f.size }));
      expect(ts).toEqual(btf);
    });
  }
});

describe("maps", () => {
  const maps = types.find((t) => t.kind === "DATASEC" && t.name === ".maps")!;
  const defs = new Map(
    maps.vars!.map((v) => {
      const variable = byId.get(v.type_id)!;
      return [variable.name, byId.get(variable.type_id!)!] as const;
    }),
  );
  /** max_entries of a BTF-defined map: __uint(max_entries, N) is `int (*max_entries)[N]`. */
  const maxEntries = (name: string) => {
    const m = defs.get(name)!.members!.find((x) => x.name === "max_entries")!;
    return byId.get(byId.get(m.type_id)!.type_id!)!.nr_elems!;
  };

  test("every map layout.ts names exists, and names are ≤ 15 characters", () => {
    for (const name of Object.values(MAPS)) {
      expect(defs.has(name), name).toBe(true);
      expect(name.length).toBeLessThanOrEqual(15);
    }
    expect([...defs.keys()].sort()).toEqual(Object.values(MAPS).sort());
  });

  test("shared constants (map sizes) match layout.ts and service.ts", () => {
    expect(MAX_BACKENDS_BPF).toBe(MAX_BACKENDS);
    expect(maxEntries(MAPS.svc)).toBe(MAX_SERVICES);
    expect(maxEntries(MAPS.plans)).toBe(MAX_SERVICES * PLAN_BUFFERS);
    expect(maxEntries(MAPS.members)).toBe(MAX_SERVICES * PLAN_BUFFERS * MAX_BACKENDS);
    expect(maxEntries(MAPS.backends)).toBe(MAX_SERVICES * MAX_BACKENDS);
    expect(maxEntries(MAPS.slots)).toBe(SLOT_POOL_SIZE);
    expect(maxEntries(MAPS.reasons)).toBe(REASONS.length);
  });
});

test("bun:ffi is imported only by the two modules that wrap C: xdp/libbpf.ts and proxy/backlog.ts", async () => {
  const importers: string[] = [];
  for await (const file of new Bun.Glob("src/**/*.ts").scan({ cwd: new URL("../../", import.meta.url).pathname })) {
    const text = await Bun.file(new URL(`../../${file}`, import.meta.url)).text();
    if (/from\s+["']bun:ffi["']|import\(["']bun:ffi["']\)/.test(text)) importers.push(file);
  }
  expect(importers.sort()).toEqual(["src/dataplane/proxy/backlog.ts", "src/dataplane/xdp/libbpf.ts"]);
});
