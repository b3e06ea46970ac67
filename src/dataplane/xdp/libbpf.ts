/**
 * libbpf through bun:ffi — with proxy/backlog.ts (three libc socket calls) the only modules that
 * import bun:ffi. Everything else sees typed functions taking Uint8Arrays and file descriptors.
 *
 * libbpf.so.1 and what it links (libelf.so.1, libz.so.1) are embedded in the compiled binary (bpf/bpf.mk
 * copies them into build/lib/) and dlopened by path, dependencies first: the dynamic loader then finds
 * libbpf's DT_NEEDED entries among the already-loaded sonames, so the host needs no libbpf installed.
 *
 * Conventions (libbpf ≥ 1.0): int functions return 0/fd or −errno; pointer functions return NULL and set
 * errno.
 */
import { dlopen, JSCallback, ptr, read, type Pointer } from "bun:ffi";
import libzPath from "../../../build/lib/libz.so.1" with { type: "file" };
import libelfPath from "../../../build/lib/libelf.so.1" with { type: "file" };
import libbpfPath from "../../../build/lib/libbpf.so.1" with { type: "file" };

export class BpfError extends Error {
  constructor(
    message: string,
    /** Positive errno (EPERM = 1, …). */
    readonly errno: number,
    /** libbpf's log (verifier output included) collected while the failing call ran. */
    readonly log = "",
  ) {
    super(message);
    this.name = "BpfError";
  }
}

export const EPERM = 1;
export const ENOENT = 2;
export const E2BIG = 7;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const EBUSY = 16;
export const EOPNOTSUPP = 95;

/** bpf_map_update_elem flags (linux/bpf.h). */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;
/** enum bpf_attach_type BPF_XDP (linux/bpf.h). */
const BPF_XDP = 37;
/** linux/if_link.h */
export const XDP_FLAGS_SKB_MODE = 1 << 1;
export const XDP_FLAGS_DRV_MODE = 1 << 2;

const libc = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: "ptr" },
  vsnprintf: { args: ["ptr", "u64", "ptr", "ptr"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  clock_gettime: { args: ["i32", "ptr"], returns: "i32" },
});
// Loaded for their side effect (the sonames libbpf needs); one symbol each because dlopen wants one.
const libz = dlopen(libzPath, { zlibVersion: { args: [], returns: "ptr" } });
const libelf = dlopen(libelfPath, { elf_version: { args: ["u32"], returns: "u32" } });
void libz, libelf;

const lib = dlopen(libbpfPath, {
  libbpf_set_print: { args: ["function"], returns: "ptr" },
  libbpf_num_possible_cpus: { args: [], returns: "i32" },
  bpf_object__open_mem: { args: ["ptr", "u64", "ptr"], returns: "ptr" },
  bpf_object__load: { args: ["ptr"], returns: "i32" },
  bpf_object__close: { args: ["ptr"], returns: "void" },
  bpf_object__find_map_by_name: { args: ["ptr", "cstring"], returns: "ptr" },
  bpf_object__find_program_by_name: { args: ["ptr", "cstring"], returns: "ptr" },
  bpf_map__set_max_entries: { args: ["ptr", "u32"], returns: "i32" },
  bpf_map__fd: { args: ["ptr"], returns: "i32" },
  bpf_program__fd: { args: ["ptr"], returns: "i32" },
  bpf_map_update_elem: { args: ["i32", "ptr", "ptr", "u64"], returns: "i32" },
  bpf_map_update_batch: { args: ["i32", "ptr", "ptr", "ptr", "ptr"], returns: "i32" },
  bpf_map_lookup_elem: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  bpf_map_delete_elem: { args: ["i32", "ptr"], returns: "i32" },
  bpf_map_get_next_key: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  bpf_prog_test_run_opts: { args: ["i32", "ptr"], returns: "i32" },
  bpf_link_create: { args: ["i32", "i32", "u32", "ptr"], returns: "i32" },
});
const bpf = lib.symbols;

function errno(): number {
  const p = libc.symbols.__errno_location();
  return p ? read.i32(p, 0) : 0;
}

// ---- libbpf's log: collected per call so errors can carry the verifier's explanation ----

let logSink: string[] | undefined;
const LOG_BUF = new Uint8Array(8192);
/**
 * libbpf_print_fn_t(level, fmt, va_list). On x86-64 a va_list argument is passed as a pointer, so it
 * can be handed straight to vsnprintf. Elsewhere we do not format (the log is then empty).
 */
const printer = new JSCallback(
  (_level: number, fmt: Pointer, args: Pointer) => {
    if (!logSink || process.arch !== "x64") return 0;
    const n = libc.symbols.vsnprintf(LOG_BUF, LOG_BUF.length, fmt, args);
    if (n > 0) logSink.push(new TextDecoder().decode(LOG_BUF.subarray(0, Math.min(n, LOG_BUF.length - 1))));
    return 0;
  },
  { args: ["i32", "ptr", "ptr"], returns: "i32" },
);
bpf.libbpf_set_print(printer.ptr);

function withLog<T>(fn: () => T): { value: T; log: string } {
  const sink: string[] = [];
  logSink = sink;
  try {
    return { value: fn(), log: sink.join("") };
  } finally {
    logSink = undefined;
  }
}

// ---- objects ----

const cstr = (s: string) => Buffer.from(s + "\0");

export class BpfObject {
  private obj: Pointer | null;
  private loaded = false;

  private constructor(
    obj: Pointer,
    /** libbpf reads the ELF image from this buffer until load: keep it referenced. */
    private readonly image: Uint8Array,
  ) {
    this.obj = obj;
  }

  /** Parse an ELF object from memory (bpf_object__open_mem). */
  static open(image: Uint8Array): BpfObject {
    const { value: obj, log } = withLog(() => bpf.bpf_object__open_mem(image, image.byteLength, null) as Pointer | null);
    if (!obj) {
      const e = errno();
      throw new BpfError(`bpf_object__open_mem failed (errno ${e})`, e, log);
    }
    return new BpfObject(obj, image);
  }

  private handle(): Pointer {
    if (!this.obj) throw new Error("BPF object is closed");
    return this.obj;
  }

  private map(name: string): Pointer {
    const m = bpf.bpf_object__find_map_by_name(this.handle(), cstr(name)) as Pointer | null;
    if (!m) throw new BpfError(`BPF map ${name} not found in the object`, ENOENT);
    return m;
  }

  /** Before load only. */
  setMaxEntries(name: string, n: number): void {
    const rc = bpf.bpf_map__set_max_entries(this.map(name), n);
    if (rc < 0) throw new BpfError(`bpf_map__set_max_entries(${name}, ${n}) failed`, -rc);
  }

  /** Create the maps and load (verify) the programs. */
  load(): void {
    const { value: rc, log } = withLog(() => bpf.bpf_object__load(this.handle()));
    if (rc < 0) throw new BpfError(`bpf_object__load failed (errno ${-rc})`, -rc, log);
    this.loaded = true;
    void this.image;
  }

  mapFd(name: string): number {
    const fd = bpf.bpf_map__fd(this.map(name));
    if (fd < 0) throw new BpfError(`map ${name} has no fd (loaded: ${this.loaded})`, -fd);
    return fd;
  }

  progFd(name: string): number {
    const p = bpf.bpf_object__find_program_by_name(this.handle(), cstr(name)) as Pointer | null;
    if (!p) throw new BpfError(`BPF program ${name} not found in the object`, ENOENT);
    const fd = bpf.bpf_program__fd(p);
    if (fd < 0) throw new BpfError(`program ${name} has no fd (loaded: ${this.loaded})`, -fd);
    return fd;
  }

  /** Unload: maps and programs go away once no link or fd holds them. */
  close(): void {
    if (this.obj) bpf.bpf_object__close(this.obj);
    this.obj = null;
  }
}

// ---- maps ----

/** 0 on success, −errno on failure (e.g. −EEXIST with BPF_NOEXIST). */
export function mapUpdate(fd: number, key: Uint8Array, value: Uint8Array, flags = BPF_ANY): number {
  return bpf.bpf_map_update_elem(fd, key, value, flags);
}

/**
 * Update `count` consecutive keys/values in one syscall (BPF_MAP_UPDATE_BATCH; array maps since 5.6).
 * keys/values are packed back to back. Returns 0 or −errno. struct bpf_map_batch_opts: sz@0
 * elem_flags@8 flags@16, size 24.
 */
export function mapUpdateBatch(fd: number, keys: Uint8Array, values: Uint8Array, count: number): number {
  if (count === 0) return 0;
  const n = new Uint32Array([count]);
  const opts = new Uint8Array(24);
  new DataView(opts.buffer).setBigUint64(0, 24n, true);
  return bpf.bpf_map_update_batch(fd, keys, values, n, opts);
}

/** Copy the value for `key` into `out`; false when absent. Per-CPU maps fill ncpus × round8(size) bytes. */
export function mapLookup(fd: number, key: Uint8Array, out: Uint8Array): boolean {
  return bpf.bpf_map_lookup_elem(fd, key, out) === 0;
}

export function mapDelete(fd: number, key: Uint8Array): boolean {
  return bpf.bpf_map_delete_elem(fd, key) === 0;
}

/** The key after `key` (null = the first) into `next`; false at the end. */
export function mapNextKey(fd: number, key: Uint8Array | null, next: Uint8Array): boolean {
  return bpf.bpf_map_get_next_key(fd, key, next) === 0;
}

/** Count a hash map's entries by walking its keys (tests and diagnostics; O(n)). */
export function mapCount(fd: number, keySize: number): number {
  let key: Uint8Array | null = null;
  const next = new Uint8Array(keySize);
  let n = 0;
  while (mapNextKey(fd, key, next)) {
    n++;
    key = Uint8Array.from(next);
  }
  return n;
}

export function possibleCpus(): number {
  const n = bpf.libbpf_num_possible_cpus();
  if (n <= 0) throw new BpfError("libbpf_num_possible_cpus failed", -n);
  return n;
}

// ---- programs ----

export interface TestRunResult {
  /** The XDP action the program returned. */
  retval: number;
  /** The packet after the program (XDP_TX/PASS: the rewritten bytes). */
  data: Uint8Array;
  /** Average ns per repetition. */
  durationNs: number;
}

/**
 * Run an XDP program on one packet (BPF_PROG_TEST_RUN via bpf_prog_test_run_opts). struct
 * bpf_test_run_opts (libbpf 1.1 bpf.h) on LP64: sz@0 data_in@8 data_out@16 data_size_in@24
 * data_size_out@28 ctx_in@32 ctx_out@40 ctx_size_in@48 ctx_size_out@52 retval@56 repeat@60 duration@64
 * flags@68 cpu@72 batch_size@76, size 80.
 */
export function testRun(progFd: number, packet: Uint8Array, repeat = 1): TestRunResult {
  const out = new Uint8Array(packet.byteLength + 256);
  const opts = new Uint8Array(80);
  const v = new DataView(opts.buffer);
  v.setBigUint64(0, 80n, true);
  v.setBigUint64(8, BigInt(ptr(packet)), true);
  v.setBigUint64(16, BigInt(ptr(out)), true);
  v.setUint32(24, packet.byteLength, true);
  v.setUint32(28, out.byteLength, true);
  v.setInt32(60, repeat, true);
  const rc = bpf.bpf_prog_test_run_opts(progFd, opts);
  if (rc < 0) throw new BpfError(`bpf_prog_test_run_opts failed (errno ${-rc})`, -rc);
  return {
    retval: v.getUint32(56, true),
    data: out.slice(0, v.getUint32(28, true)),
    durationNs: v.getUint32(64, true),
  };
}

/**
 * Attach an XDP program to an interface with a bpf_link (BPF_LINK_CREATE). The link lives as long as
 * the returned fd: when the process exits, even by SIGKILL, the kernel closes it and detaches the
 * program. `flags` picks the mode (XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE). Returns fd or −errno.
 *
 * struct bpf_link_create_opts (libbpf 1.1) on LP64: sz@0 flags@8 … size 64; only sz and flags are set.
 */
export function xdpLinkCreate(progFd: number, ifindex: number, flags: number): number {
  const opts = new Uint8Array(64);
  const v = new DataView(opts.buffer);
  v.setBigUint64(0, 64n, true);
  v.setUint32(8, flags, true);
  return bpf.bpf_link_create(progFd, ifindex, BPF_XDP, opts);
}

const CLOCK_MONOTONIC = 1;
const timespec = new BigInt64Array(2);
/** CLOCK_MONOTONIC in whole seconds: the clock the BPF program stamps flows with (bpf_ktime_get_coarse_ns). */
export function monotonicSeconds(): number {
  libc.symbols.clock_gettime(CLOCK_MONOTONIC, timespec);
  return Number(timespec[0]);
}

export function closeFd(fd: number): void {
  if (fd >= 0) libc.symbols.close(fd);
}
