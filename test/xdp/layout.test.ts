/**
 * The C ↔ TypeScript contract (Cilium's alignchecker idea, extended to enums, byte order and map
 * types): everything src/dataplane/xdp/layout.ts declares must match the compiled object's BTF, and
 * everything shared in BTF must be declared there.
 * - structs: size, and every member's name, offset, size and C type (`__be16` ≠ `__u16`; a nested
 *   struct by name); a struct or a member on one side only fails;
 * - shared enums (`enum flb_*`): every enumerator's name and value, both ways; enum flb_limit against
 *   src/config/limits.ts;
 * - maps: names, key and value types, per-CPU or not, and their declared sizes (the limits; the loader
 *   sizes them from the config, capacity.ts); the load-time sizes in .rodata (flb_sizes at offset 0);
 * - libbpf's option structs (libbpf-opts.ts): against libbpf's headers, with a probe compiled by clang.
 * Needs bpftool and clang (no root).
 */
import { describe, expect, test } from "bun:test";
import * as limits from "../../src/config/limits.ts";
import { mapSizes } from "../../src/dataplane/xdp/capacity.ts";
import { ENUMS, LIMITS, MAPS, MAX_SERVICES, PLAN_BUFFERS, REASONS, RODATA_SIZES_OFFSET, SIZES, SLOT_POOL_MAX, STRUCTS } from "../../src/dataplane/xdp/layout.ts";
import { LIBBPF_STRUCTS } from "../../src/dataplane/xdp/libbpf-opts.ts";
import { MAX_BACKENDS } from "../../src/config/limits.ts";
import { Btf, isPerCpu } from "./btf.ts";
import { probe } from "./cprobe.ts";

const OBJ = new URL("../../build/bpf/featherlb.bpf.o", import.meta.url).pathname;
const btf = new Btf(OBJ);

/** Failure message of every C-vs-TypeScript comparison: which side the diff's lines come from. */
const DRIFT = "C and TypeScript differ: + lines are the C side (BTF of build/bpf/featherlb.bpf.o), - lines src/dataplane/xdp/layout.ts";

/** Named structs in BTF that are not shared with TypeScript: the kernel's program context, and the BTF anchor of the shared enums (consts.h). */
const NOT_SHARED = ["xdp_md", "flb_contract"];

describe("struct layouts match the BPF object's BTF", () => {
  for (const s of STRUCTS) {
    test(`struct ${s.cName}`, () => {
      const t = btf.struct(s.cName);
      expect(t, `struct ${s.cName} missing from BTF`).toBeDefined();
      const ts = s.fields.map((f) => ({ name: f.name, offset: f.offset, size: f.type.size, type: f.type.cType }));
      expect({ struct: s.cName, size: t!.size, members: t!.members }, DRIFT).toEqual({ struct: s.cName, size: s.size, members: ts });
    });
  }

  test("every struct in BTF is described in layout.ts STRUCTS", () => {
    const shared = btf.structNames().filter((n) => !NOT_SHARED.includes(n));
    expect(shared.sort(), DRIFT).toEqual(STRUCTS.map((s) => s.cName).sort());
  });
});

describe("shared constants: the enum flb_* of bpf/consts.h match layout.ts ENUMS", () => {
  const inBtf = btf.enums("flb_");

  test("the same enums on both sides", () => {
    expect([...inBtf.keys()].sort(), DRIFT).toEqual(ENUMS.map((e) => e.cName).sort());
  });

  for (const e of ENUMS) {
    test(`enum ${e.cName}: every enumerator, name and value`, () => {
      expect(inBtf.get(e.cName) ?? {}, DRIFT).toEqual(e.enumerators);
    });
  }

  test("enum flb_limit is src/config/limits.ts's", () => {
    for (const [name, value] of Object.entries(LIMITS)) expect({ [name]: value }).toEqual({ [name]: limits[name as keyof typeof LIMITS] });
    expect(LIMITS.MAX_BACKENDS).toBe(MAX_BACKENDS);
  });
});

describe("maps", () => {
  const defs = btf.maps();
  const maxEntries = (name: string) => defs.get(name)!.maxEntries;
  const specs = Object.values(MAPS);

  test("every map layout.ts names exists, and names are ≤ 15 characters", () => {
    for (const { name } of specs) {
      expect(defs.has(name), name).toBe(true);
      expect(name.length).toBeLessThanOrEqual(15);
    }
    expect([...defs.keys()].sort(), DRIFT).toEqual(specs.map((m) => m.name).sort());
  });

  for (const spec of specs) {
    test(`${spec.name}: key and value types, per-CPU or not`, () => {
      const d = defs.get(spec.name);
      expect(d, `${spec.name} missing from BTF`).toBeDefined();
      expect({ key: d!.key, value: d!.value, perCpu: isPerCpu(d!.mapType) }, DRIFT).toEqual({
        key: { type: spec.key.cType, size: spec.key.size },
        value: { type: spec.value.cType, size: spec.value.size },
        perCpu: spec.perCpu,
      });
    });
  }

  test("declared sizes are the largest the loader may choose (capacity.ts sizes every map within them)", () => {
    const largest = { services: MAX_SERVICES, backends: MAX_BACKENDS, slots: SLOT_POOL_MAX, neighbours: MAX_SERVICES * MAX_BACKENDS };
    // The flow tables are sized from xdp.flow_table_size (verifier.test.ts loads every size).
    const { fwd: _fwd, rev: _rev, synFwd: _synFwd, synRev: _synRev, ...sized } = mapSizes(largest, 0);
    const declared = Object.fromEntries(Object.keys(sized).map((k) => [k, maxEntries(MAPS[k as keyof typeof MAPS].name)]));
    expect(declared, DRIFT).toEqual(sized);
    expect(maxEntries(MAPS.plans.name)).toBe(MAX_SERVICES * PLAN_BUFFERS);
    expect(maxEntries(MAPS.members.name)).toBe(MAX_SERVICES * PLAN_BUFFERS * MAX_BACKENDS);
    expect(maxEntries(MAPS.backends.name)).toBe(MAX_SERVICES * MAX_BACKENDS);
    expect(maxEntries(MAPS.slots.name)).toBe(SLOT_POOL_MAX);
    expect(maxEntries(MAPS.reasons.name)).toBe((MAX_SERVICES + 1) * REASONS.length);
    expect(maxEntries(MAPS.snatFull.name)).toBe(MAX_SERVICES * MAX_BACKENDS);
  });

  test(".rodata holds flb_sizes alone, at the offset the loader writes (layout.ts RODATA_SIZES_OFFSET)", () => {
    expect(btf.datasec(".rodata"), DRIFT).toEqual([{ name: "flb_sizes", offset: RODATA_SIZES_OFFSET, size: SIZES.size, type: `struct ${SIZES.cName}` }]);
    // Nothing else (a string literal, a constant table) was put in the section either.
    const sections = Bun.spawnSync(["llvm-objdump", "-h", OBJ]).stdout.toString();
    expect(Number.parseInt(/\.rodata\s+([0-9a-f]+)/.exec(sections)?.[1] ?? "", 16)).toBe(SIZES.size);
  });
});

describe("libbpf's option structs match the headers of the libbpf we embed", () => {
  const probed = probe(["bpf/bpf.h"], LIBBPF_STRUCTS);
  for (const s of LIBBPF_STRUCTS) {
    test(`struct ${s.cName}`, () => {
      expect(probed[s.cName], "+ lines are libbpf's headers (the C probe), - lines src/dataplane/xdp/libbpf-opts.ts").toEqual({
        size: s.size,
        fields: s.fields.map((f) => ({ name: f.name, offset: f.offset, size: f.type.size, typeMatches: true })),
      });
    });
  }
});

test("bun:ffi is imported only by the four modules that wrap C: xdp/libbpf.ts, xdp/nlsocket.ts, proxy/backlog.ts and proxy/splice/libc.ts", async () => {
  const importers: string[] = [];
  for await (const file of new Bun.Glob("src/**/*.ts").scan({ cwd: new URL("../../", import.meta.url).pathname })) {
    const text = await Bun.file(new URL(`../../${file}`, import.meta.url)).text();
    if (/from\s+["']bun:ffi["']|import\(["']bun:ffi["']\)/.test(text)) importers.push(file);
  }
  expect(importers.sort()).toEqual(["src/dataplane/proxy/backlog.ts", "src/dataplane/proxy/splice/libc.ts", "src/dataplane/xdp/libbpf.ts", "src/dataplane/xdp/nlsocket.ts"]);
});
