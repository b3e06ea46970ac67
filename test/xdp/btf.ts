/**
 * A BPF object's BTF (`bpftool btf dump file … -j`), read for the layout test: structs as
 * {name, offset, size, C type} per member, enums as name → value, maps with their key and value types.
 * C types are named as struct.ts names them: the first typedef (`__be16`, `__u32`), `T[n]` for arrays,
 * `struct x`, `enum x`, `void *` (qualifiers dropped: they do not change layout).
 */

export interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
  vars?: { type_id: number; offset?: number; size?: number }[];
  values?: { name: string; val: number }[];
}

export interface Member {
  name: string;
  offset: number;
  size: number;
  type: string;
}

export interface BtfMap {
  key: { type: string; size: number };
  value: { type: string; size: number };
  /** BPF_MAP_TYPE_* number (__uint(type, …)). */
  mapType: number;
  maxEntries: number;
}

// enum bpf_map_type (linux/bpf.h): the per-CPU kinds.
const BPF_MAP_TYPE_PERCPU_HASH = 5;
const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
const BPF_MAP_TYPE_LRU_PERCPU_HASH = 10;
export const isPerCpu = (mapType: number) => [BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH].includes(mapType);

export class Btf {
  readonly types: BtfType[];
  private readonly byId: Map<number, BtfType>;

  constructor(object: string) {
    const dump = Bun.spawnSync(["bpftool", "btf", "dump", "file", object, "-j"]);
    if (dump.exitCode !== 0) throw new Error(`bpftool btf dump failed: ${dump.stderr.toString()}`);
    this.types = JSON.parse(dump.stdout.toString()).types;
    this.byId = new Map(this.types.map((t) => [t.id, t]));
  }

  private get(id: number): BtfType {
    const t = this.byId.get(id);
    if (!t) throw new Error(`BTF type ${id} missing`);
    return t;
  }

  sizeOf(id: number): number {
    const t = this.get(id);
    switch (t.kind) {
      case "TYPEDEF":
      case "VOLATILE":
      case "CONST":
        return this.sizeOf(t.type_id!);
      case "ARRAY":
        return this.sizeOf(t.type_id!) * t.nr_elems!;
      case "PTR":
        return 8;
      default:
        return t.size!;
    }
  }

  /** The C type of `id` as struct.ts names it. */
  typeName(id: number): string {
    const t = this.get(id);
    switch (t.kind) {
      case "CONST":
      case "VOLATILE":
        return this.typeName(t.type_id!);
      case "ARRAY":
        return `${this.typeName(t.type_id!)}[${t.nr_elems}]`;
      case "PTR":
        return "void *";
      case "STRUCT":
        return `struct ${t.name}`;
      case "UNION":
        return `union ${t.name}`;
      case "ENUM":
        return `enum ${t.name}`;
      default:
        return t.name; // TYPEDEF and INT: their own name
    }
  }

  /** Named structs (anonymous ones are map definitions and unions' members). */
  structNames(): string[] {
    return this.types.filter((t) => t.kind === "STRUCT" && t.name !== "(anon)").map((t) => t.name);
  }

  struct(name: string): { size: number; members: Member[] } | undefined {
    const t = this.types.find((x) => x.kind === "STRUCT" && x.name === name);
    if (!t) return undefined;
    return {
      size: t.size!,
      members: t.members!.map((m) => ({ name: m.name, offset: m.bits_offset / 8, size: this.sizeOf(m.type_id), type: this.typeName(m.type_id) })),
    };
  }

  /** Every enum whose name starts with `prefix`: name → (enumerator → value). */
  enums(prefix: string): Map<string, Record<string, number>> {
    const out = new Map<string, Record<string, number>>();
    for (const t of this.types) {
      if (t.kind !== "ENUM" || !t.name.startsWith(prefix)) continue;
      out.set(t.name, Object.fromEntries(t.values!.map((v) => [v.name, v.val])));
    }
    return out;
  }

  /** The variables of a data section (.rodata, .bss, …): name, offset and size, in order. */
  datasec(name: string): { name: string; offset: number; size: number; type: string }[] {
    const sec = this.types.find((t) => t.kind === "DATASEC" && t.name === name);
    return (sec?.vars ?? []).map((v) => {
      const variable = this.get(v.type_id);
      return { name: variable.name, offset: v.offset ?? 0, size: v.size ?? 0, type: this.typeName(variable.type_id!) };
    });
  }

  /** The BTF-defined maps of section .maps, by name. */
  maps(): Map<string, BtfMap> {
    const sec = this.types.find((t) => t.kind === "DATASEC" && t.name === ".maps");
    const out = new Map<string, BtfMap>();
    for (const v of sec?.vars ?? []) {
      const variable = this.get(v.type_id);
      const def = this.get(variable.type_id!);
      const member = (name: string) => def.members!.find((m) => m.name === name)!;
      // __uint(name, N) is `int (*name)[N]`; __type(name, T) is `T *name`.
      const uint = (name: string) => this.get(this.get(member(name).type_id).type_id!).nr_elems!;
      const pointee = (name: string) => {
        const id = this.get(member(name).type_id).type_id!;
        return { type: this.typeName(id), size: this.sizeOf(id) };
      };
      out.set(variable.name, { key: pointee("key"), value: pointee("value"), mapType: uint("type"), maxEntries: uint("max_entries") });
    }
    return out;
  }
}
