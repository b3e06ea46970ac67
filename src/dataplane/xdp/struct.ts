/**
 * C types as TypeScript reads and writes them: scalars with their byte order, byte arrays, structs
 * (nested ones included) and enums. Each type carries the name BTF gives it (`__be16`, `__u8[6]`,
 * `struct next_hop`), so test/xdp/layout.test.ts can check a description field by field against the
 * compiled object: name, offset, size and type — byte order included, since `__be16` and `__u16` are
 * distinct typedefs there. Offsets follow C's natural-alignment rules.
 *
 * Pure TypeScript (no FFI): the descriptions of our BPF object are in layout.ts, libbpf's option
 * structs in libbpf.ts.
 */

import { XdpError } from "./errors.ts";

/** A C type: how many bytes, aligned how, named how in BTF; reads as T, writes from In. */
export interface CType<T, In = T> {
  /** The type as BTF names it: the typedef (`__u32`, `__be16`, `size_t`), `T[n]`, `struct x`, `void *`. */
  readonly cType: string;
  readonly size: number;
  readonly align: number;
  read(view: DataView, at: number): T;
  write(view: DataView, at: number, value: In): void;
}

/** What a type reads as, and what it accepts. */
export type Out<C> = C extends CType<infer T, unknown> ? T : never;
export type In<C> = C extends CType<unknown, infer I> ? I : never;
/** Some CType, whatever it reads and writes (`any`: the only way to say so across both parameters). */
export type AnyCType = CType<any, any>;

function scalar<T, I = T>(cType: string, size: number, read: (v: DataView, at: number) => T, write: (v: DataView, at: number, x: I) => void): CType<T, I> {
  return { cType, size, align: size, read, write };
}

// Host-order fields are read and written little-endian, the byte order of the hosts the XDP plane
// runs on (x86-64, arm64); wire-order fields are the __be* types.
export const u8 = scalar<number>("__u8", 1, (v, at) => v.getUint8(at), (v, at, x) => v.setUint8(at, x));
export const u16 = scalar<number>("__u16", 2, (v, at) => v.getUint16(at, true), (v, at, x) => v.setUint16(at, x, true));
export const u32 = scalar<number>("__u32", 4, (v, at) => v.getUint32(at, true), (v, at, x) => v.setUint32(at, x >>> 0, true));
export const u64 = scalar<bigint, bigint | number>("__u64", 8, (v, at) => v.getBigUint64(at, true), (v, at, x) => v.setBigUint64(at, BigInt.asUintN(64, BigInt(x)), true));
/** Network byte order: a port as a plain number, an IPv4 address as a host-order u32 (ipv4ToU32). */
export const be16 = scalar<number>("__be16", 2, (v, at) => v.getUint16(at, false), (v, at, x) => v.setUint16(at, x, false));
export const be32 = scalar<number>("__be32", 4, (v, at) => v.getUint32(at, false), (v, at, x) => v.setUint32(at, x >>> 0, false));
// The C types of libbpf's option structs (LP64).
export const int = scalar<number>("int", 4, (v, at) => v.getInt32(at, true), (v, at, x) => v.setInt32(at, x, true));
export const sizeT = scalar<bigint, bigint | number>("size_t", 8, (v, at) => v.getBigUint64(at, true), (v, at, x) => v.setBigUint64(at, BigInt(x), true));
/** A pointer (a bun:ffi address). BTF names `const void *` and `void *` alike here: qualifiers do not change layout. */
export const pointer = scalar<number>("void *", 8, (v, at) => Number(v.getBigUint64(at, true)), (v, at, x) => v.setBigUint64(at, BigInt(x), true));

/** `__u8 name[n]` (a MAC address): read as a copy, written from the first n bytes given. */
export function bytes(n: number): CType<Uint8Array> {
  return {
    cType: `__u8[${n}]`,
    size: n,
    align: 1,
    read: (v, at) => new Uint8Array(v.buffer.slice(v.byteOffset + at, v.byteOffset + at + n)),
    write: (v, at, x) => new Uint8Array(v.buffer, v.byteOffset + at, n).set(x.subarray(0, n)),
  };
}

/** Encode one value of `type` into a fresh buffer (map keys and values that are not structs). */
export function encode<C extends AnyCType>(type: C, value: In<C>): Uint8Array {
  const out = new Uint8Array(type.size);
  type.write(new DataView(out.buffer), 0, value);
  return out;
}

export function decode<C extends AnyCType>(type: C, bytes: Uint8Array, at = 0): Out<C> {
  return type.read(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), at);
}

// ---- structs ----

export type Fields = Record<string, AnyCType>;
/** A decoded struct: every field, typed. */
export type Decoded<F extends Fields> = { -readonly [K in keyof F]: Out<F[K]> };
/** The field types of a Struct. */
export type FieldsOf<S> = S extends Struct<infer F> ? F : never;
/** What encode takes: any subset of the fields (the rest are 0). */
export type Encodable<F extends Fields> = { [K in keyof F]?: In<F[K]> };

export interface Field {
  readonly name: string;
  readonly type: AnyCType;
  readonly offset: number;
}

export interface StructOptions {
  /**
   * For a struct defined elsewhere (libbpf's option structs): the C struct's sizeof, when the
   * description lists only the leading fields TypeScript uses. Our own structs list every field.
   */
  sizeof?: number;
}

export class Struct<F extends Fields> implements CType<Decoded<F>, Encodable<F>> {
  readonly cType: string;
  readonly size: number;
  readonly align: number;
  /** The fields in declaration order, with their offsets. */
  readonly fields: readonly Field[];
  /** True when `fields` are only the leading ones of the C struct (StructOptions.sizeof). */
  readonly partial: boolean;
  private readonly byName: Readonly<Record<string, Field>>;

  constructor(
    /** The C struct's name (the BTF type the layout test looks up). */
    readonly cName: string,
    spec: F,
    options: StructOptions = {},
  ) {
    let offset = 0;
    let align = 1;
    const fields: Field[] = [];
    for (const [name, type] of Object.entries(spec)) {
      offset = Math.ceil(offset / type.align) * type.align;
      fields.push({ name, type, offset });
      offset += type.size;
      align = Math.max(align, type.align);
    }
    const natural = Math.ceil(offset / align) * align;
    if (options.sizeof !== undefined && options.sizeof < natural) throw new XdpError("invalid_argument", `struct ${cName}: sizeof ${options.sizeof} < ${natural}`);
    this.cType = `struct ${cName}`;
    this.size = options.sizeof ?? natural;
    this.align = align;
    this.fields = fields;
    this.partial = options.sizeof !== undefined;
    this.byName = Object.fromEntries(fields.map((f) => [f.name, f]));
  }

  /** The field called `name` (its offset and type). */
  field(name: keyof F & string): Field {
    return this.byName[name]!;
  }

  read(view: DataView, at: number): Decoded<F> {
    const out = {} as Record<string, unknown>;
    for (const f of this.fields) out[f.name] = f.type.read(view, at + f.offset);
    return out as Decoded<F>;
  }

  write(view: DataView, at: number, values: Encodable<F>): void {
    for (const [name, value] of Object.entries(values)) {
      const f = this.byName[name];
      if (f && value !== undefined) f.type.write(view, at + f.offset, value);
    }
  }

  /** Encode into `out` at `at` (default: a fresh zeroed buffer); unspecified fields stay as they are (0). */
  encode(values: Encodable<F>, out = new Uint8Array(this.size), at = 0): Uint8Array {
    this.write(new DataView(out.buffer, out.byteOffset, out.byteLength), at, values);
    return out;
  }

  decode(bytes: Uint8Array, at = 0): Decoded<F> {
    return this.read(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), at);
  }
}

// ---- enums ----

/** A C enum shared with the BPF program: its BTF name and every enumerator, name → value. */
export interface CEnum {
  readonly cName: string;
  readonly enumerators: Readonly<Record<string, number>>;
}

/**
 * Describe `enum cName` from the TypeScript values: key `k` is the enumerator `prefix + K` (upper
 * case), so { two_choices: 4 } with prefix "PLAN_" is PLAN_TWO_CHOICES = 4.
 */
export function cEnum(cName: string, prefix: string, values: Readonly<Record<string, number>>): CEnum {
  return { cName, enumerators: Object.fromEntries(Object.entries(values).map(([k, v]) => [prefix + k.toUpperCase(), v])) };
}
