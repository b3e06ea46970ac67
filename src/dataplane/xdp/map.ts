/**
 * Typed handles on the loaded maps: keys and values are encoded and decoded with the types layout.ts
 * declares for each map (MAPS), so callers pass numbers and objects, never bytes or offsets. Failures
 * are XdpError("bpf") from libbpf.ts.
 */
import type { MapSpec } from "./layout.ts";
import { BPF_ANY, mapDelete, mapLookup, mapLookupBatch, mapNextKey, mapUpdate, mapUpdateBatch, type MapRef } from "./libbpf.ts";
import { isXdpError } from "./errors.ts";
import { encode, type AnyCType, type In, type Out } from "./struct.ts";

/** A key as its type takes it, or already encoded (keys walked with nextKey). */
type KeyArg<K extends AnyCType> = In<K> | Uint8Array;

abstract class Handle<K extends AnyCType, V extends AnyCType> implements MapRef {
  readonly name: string;

  constructor(
    readonly spec: MapSpec<K, V>,
    readonly fd: number,
  ) {
    this.name = spec.name;
  }

  protected key(key: KeyArg<K>): Uint8Array {
    return key instanceof Uint8Array ? key : encode(this.spec.key, key as In<K>);
  }

  /** Delete `key`; false when it was absent. */
  delete(key: KeyArg<K>): boolean {
    return mapDelete(this, this.key(key));
  }

  /** Bytes of one entry's value in a lookup (per-CPU maps: every CPU's, each padded to 8 bytes). */
  abstract get valueBytes(): number;

  /**
   * The values of keys from … from + count − 1 of a u32-keyed array into `out` (valueBytes each, back
   * to back): one syscall where the kernel has batch lookups on arrays (Linux ≥ 5.6), else one lookup
   * per entry.
   */
  lookupRange(out: Uint8Array, count: number, from = 0): void {
    const size = this.valueBytes;
    try {
      if (mapLookupBatch(this, new Uint8Array(count * 4), out, count, from) === count) return;
    } catch (err) {
      if (!isXdpError(err, "bpf")) throw err;
    }
    const key = new Uint32Array(1);
    const kb = new Uint8Array(key.buffer);
    for (let i = 0; i < count; i++) {
      key[0] = from + i;
      mapLookup(this, kb, out.subarray(i * size, (i + 1) * size));
    }
  }

  /** The key after `prev` (null = the first) into `out`; false at the end of the walk. */
  nextKey(prev: Uint8Array | null, out: Uint8Array): boolean {
    return mapNextKey(this, prev, out);
  }
}

export class BpfMap<K extends AnyCType, V extends AnyCType> extends Handle<K, V> {
  get valueBytes(): number {
    return this.spec.value.size;
  }

  update(key: KeyArg<K>, value: In<V>, flags = BPF_ANY): void {
    mapUpdate(this, this.key(key), encode(this.spec.value, value), flags);
  }

  lookup(key: KeyArg<K>): Out<V> | undefined {
    const out = new Uint8Array(this.spec.value.size);
    return mapLookup(this, this.key(key), out) ? this.spec.value.read(new DataView(out.buffer), 0) : undefined;
  }

  /**
   * Write `count` entries of a u32-keyed array at once: `keys` and `values` are packed back to back.
   * One syscall where the kernel has batch ops on arrays (Linux ≥ 5.6), else one update per entry.
   */
  updateBatch(keys: Uint32Array, values: Uint8Array): void {
    const count = keys.length;
    const kb = new Uint8Array(keys.buffer, keys.byteOffset, keys.byteLength);
    try {
      mapUpdateBatch(this, kb, values, count);
      return;
    } catch (err) {
      if (!isXdpError(err, "bpf")) throw err;
      // Older kernels without batch ops on arrays: one element at a time (their failures are thrown).
    }
    const size = this.spec.value.size;
    for (let i = 0; i < count; i++) mapUpdate(this, kb.subarray(i * 4, i * 4 + 4), values.subarray(i * size, (i + 1) * size));
  }
}

/** A per-CPU map: one value per possible CPU, each padded to 8 bytes. */
export class PerCpuMap<K extends AnyCType, V extends AnyCType> extends Handle<K, V> {
  private readonly stride: number;

  constructor(
    spec: MapSpec<K, V>,
    fd: number,
    readonly cpus: number,
  ) {
    super(spec, fd);
    this.stride = Math.ceil(spec.value.size / 8) * 8;
  }

  get valueBytes(): number {
    return this.stride * this.cpus;
  }

  /** Every CPU's value for `key`, or undefined when absent. */
  lookup(key: KeyArg<K>): Out<V>[] | undefined {
    const out = new Uint8Array(this.stride * this.cpus);
    if (!mapLookup(this, this.key(key), out)) return undefined;
    const view = new DataView(out.buffer);
    return Array.from({ length: this.cpus }, (_, cpu) => this.spec.value.read(view, cpu * this.stride));
  }

  /** Set each CPU's value for `key` (values[cpu]; CPUs without one get zeros). */
  update(key: KeyArg<K>, values: In<V>[]): void {
    const buf = new Uint8Array(this.stride * this.cpus);
    values.forEach((v, cpu) => buf.set(encode(this.spec.value, v), cpu * this.stride));
    mapUpdate(this, this.key(key), buf);
  }

  /** Set every CPU's value for `key` to zero. */
  zero(key: KeyArg<K>): void {
    mapUpdate(this, this.key(key), new Uint8Array(this.stride * this.cpus));
  }
}
