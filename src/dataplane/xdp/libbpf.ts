/**
 * libbpf through bun:ffi — with nlsocket.ts, proxy/backlog.ts (three libc socket calls) and
 * proxy/splice/libc.ts (splice, pipes, epoll) the only modules that import bun:ffi. Everything else
 * sees typed functions taking Uint8Arrays, maps (MapRef) and file descriptors.
 *
 * libbpf.so.1 and what it links (libelf.so.1, libz.so.1) are embedded in the compiled binary (bpf/bpf.mk
 * copies them into build/lib/) and dlopened by path, dependencies first: the dynamic loader then finds
 * libbpf's DT_NEEDED entries among the already-loaded sonames, so the host needs no libbpf installed.
 *
 * Conventions (libbpf ≥ 1.0): int functions return 0/fd or −errno; pointer functions return NULL and set
 * errno. Every return code is checked here and a failure thrown as XdpError("bpf") with its errno (and
 * libbpf's log where it has one); an outcome that is not a failure (a key that is absent, the end of a
 * walk) is a boolean result instead. The few codes left unchecked say why where they are dropped.
 *
 * libbpf's option structs are described in libbpf-opts.ts (no hand-written offsets).
 */
import { dlopen, JSCallback, ptr, read, toArrayBuffer, type Pointer } from "bun:ffi";
import libzPath from "../../../build/lib/libz.so.1" with { type: "file" };
import libelfPath from "../../../build/lib/libelf.so.1" with { type: "file" };
import libbpfPath from "../../../build/lib/libbpf.so.1" with { type: "file" };
import { XdpError } from "./errors.ts";
import { BPF_LINK_CREATE_OPTS, BPF_MAP_BATCH_OPTS, BPF_TEST_RUN_OPTS } from "./libbpf-opts.ts";

export const EPERM = 1;
export const ENOENT = 2;
export const E2BIG = 7;
export const EACCES = 13;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const EBUSY = 16;
export const EOPNOTSUPP = 95;

/** The XdpError of a failed libbpf call; `e` is the positive errno. */
function failed(call: string, e: number, log = ""): XdpError {
  return new XdpError("bpf", `${call} failed (errno ${e})`, e, log);
}

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
  mmap: { args: ["ptr", "u64", "i32", "i32", "i32", "i64"], returns: "ptr" },
  munmap: { args: ["ptr", "u64"], returns: "i32" },
  mount: { args: ["cstring", "cstring", "cstring", "u64", "cstring"], returns: "i32" },
});
// Loaded for their side effect (the sonames libbpf needs); one symbol each because dlopen wants one.
// dlopen throws when a library cannot be loaded: index.ts turns that into a UserError ("unsupported").
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
  bpf_map__initial_value: { args: ["ptr", "ptr"], returns: "ptr" },
  bpf_map__fd: { args: ["ptr"], returns: "i32" },
  bpf_program__fd: { args: ["ptr"], returns: "i32" },
  bpf_map_update_elem: { args: ["i32", "ptr", "ptr", "u64"], returns: "i32" },
  bpf_map_update_batch: { args: ["i32", "ptr", "ptr", "ptr", "ptr"], returns: "i32" },
  bpf_map_lookup_batch: { args: ["i32", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr"], returns: "i32" },
  bpf_map_lookup_elem: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  bpf_map_delete_elem: { args: ["i32", "ptr"], returns: "i32" },
  bpf_map_get_next_key: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  bpf_prog_test_run_opts: { args: ["i32", "ptr"], returns: "i32" },
  bpf_link_create: { args: ["i32", "i32", "u32", "ptr"], returns: "i32" },
  bpf_enable_stats: { args: ["i32"], returns: "i32" },
  bpf_map__reuse_fd: { args: ["ptr", "i32"], returns: "i32" },
  bpf_map__type: { args: ["ptr"], returns: "u32" },
  bpf_map__key_size: { args: ["ptr"], returns: "u32" },
  bpf_map__value_size: { args: ["ptr"], returns: "u32" },
  bpf_map__max_entries: { args: ["ptr"], returns: "u32" },
  bpf_map__map_flags: { args: ["ptr"], returns: "u32" },
  bpf_obj_pin: { args: ["i32", "cstring"], returns: "i32" },
  bpf_obj_get: { args: ["cstring"], returns: "i32" },
  bpf_obj_get_info_by_fd: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  bpf_link_update: { args: ["i32", "i32", "ptr"], returns: "i32" },
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
// Returns the previous print function (not an error code): nothing to check.
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
    if (!obj) throw failed("bpf_object__open_mem", errno(), log);
    return new BpfObject(obj, image);
  }

  private handle(): Pointer {
    if (!this.obj) throw new XdpError("closed", "the BPF object is closed");
    return this.obj;
  }

  private map(name: string): Pointer {
    const m = bpf.bpf_object__find_map_by_name(this.handle(), cstr(name)) as Pointer | null;
    if (!m) throw new XdpError("bpf", `BPF map ${name} not found in the object`, ENOENT);
    return m;
  }

  /** Before load only. */
  setMaxEntries(name: string, n: number): void {
    const rc = bpf.bpf_map__set_max_entries(this.map(name), n);
    if (rc < 0) throw failed(`bpf_map__set_max_entries(${name}, ${n})`, -rc);
  }

  /**
   * Before load only: overwrite `bytes` at `offset` of the object's .rodata (its `const volatile`
   * globals). libbpf hands out its copy of the section's initial value; load creates the map from it and
   * freezes it, so the verifier sees these values as constants.
   */
  writeRodata(offset: number, bytes: Uint8Array): void {
    const size = new BigUint64Array(1);
    const p = bpf.bpf_map__initial_value(this.map(".rodata"), size) as Pointer | null;
    if (!p) throw failed("bpf_map__initial_value(.rodata)", errno());
    const length = Number(size[0]);
    if (offset + bytes.length > length) throw new XdpError("bpf", `.rodata has ${length} bytes, cannot write ${bytes.length} at ${offset}`, EINVAL);
    new Uint8Array(toArrayBuffer(p, 0, length)).set(bytes, offset);
  }

  /**
   * Before load only: what load would create for map `name` (its type, sizes and flags as the object
   * declares them, after setMaxEntries), to compare with a pinned map before reusing it.
   */
  mapDef(name: string): MapInfo {
    const m = this.map(name);
    return {
      type: bpf.bpf_map__type(m),
      keySize: bpf.bpf_map__key_size(m),
      valueSize: bpf.bpf_map__value_size(m),
      maxEntries: bpf.bpf_map__max_entries(m),
      flags: bpf.bpf_map__map_flags(m),
    };
  }

  /**
   * Before load only: use the existing map `fd` (a pinned one, bpf_obj_get) as map `name` instead of
   * creating it (bpf_map__reuse_fd; libbpf dups the fd). libbpf takes the map's definition from the fd,
   * so the caller compares it with mapDef first.
   */
  reuseMap(name: string, fd: number): void {
    const rc = bpf.bpf_map__reuse_fd(this.map(name), fd);
    if (rc < 0) throw failed(`bpf_map__reuse_fd(${name})`, -rc);
  }

  /** Create the maps and load (verify) the programs. */
  load(): void {
    const { value: rc, log } = withLog(() => bpf.bpf_object__load(this.handle()));
    if (rc < 0) throw failed("bpf_object__load", -rc, log);
    this.loaded = true;
    void this.image;
  }

  mapFd(name: string): number {
    const fd = bpf.bpf_map__fd(this.map(name));
    if (fd < 0) throw failed(`bpf_map__fd(${name}) (loaded: ${this.loaded})`, -fd);
    return fd;
  }

  progFd(name: string): number {
    const p = bpf.bpf_object__find_program_by_name(this.handle(), cstr(name)) as Pointer | null;
    if (!p) throw new XdpError("bpf", `BPF program ${name} not found in the object`, ENOENT);
    const fd = bpf.bpf_program__fd(p);
    if (fd < 0) throw failed(`bpf_program__fd(${name}) (loaded: ${this.loaded})`, -fd);
    return fd;
  }

  /** Unload: maps and programs go away once no link or fd holds them. */
  close(): void {
    if (this.obj) bpf.bpf_object__close(this.obj); // returns void
    this.obj = null;
  }
}

// ---- maps ----

/** A map's definition (struct bpf_map_info's first fields, or libbpf's view before load). */
export interface MapInfo {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

/** The kernel's definition of the map behind `fd` (bpf_obj_get_info_by_fd, struct bpf_map_info). */
export function mapInfo(fd: number): MapInfo {
  const info = new Uint32Array(32); // struct bpf_map_info is 88 bytes today; the kernel fills what fits
  const len = new Uint32Array([info.byteLength]);
  const rc = bpf.bpf_obj_get_info_by_fd(fd, info, len);
  if (rc < 0) throw failed("bpf_obj_get_info_by_fd(map)", -rc);
  // type, id, key_size, value_size, max_entries, map_flags (linux/bpf.h struct bpf_map_info)
  return { type: info[0]!, keySize: info[2]!, valueSize: info[3]!, maxEntries: info[4]!, flags: info[5]! };
}

/** A map as the functions below see it: its fd, and its name for messages. */
export interface MapRef {
  readonly fd: number;
  readonly name: string;
}

/** bpf_map_update_elem. Throws XdpError("bpf") (e.g. errno EEXIST with BPF_NOEXIST). */
export function mapUpdate(map: MapRef, key: Uint8Array, value: Uint8Array, flags = BPF_ANY): void {
  const rc = bpf.bpf_map_update_elem(map.fd, key, value, flags);
  if (rc < 0) throw failed(`bpf_map_update_elem(${map.name})`, -rc);
}

/**
 * Update `count` consecutive keys/values in one syscall (BPF_MAP_UPDATE_BATCH; array maps since 5.6).
 * keys/values are packed back to back. Throws XdpError("bpf"), e.g. on kernels without batch ops.
 */
export function mapUpdateBatch(map: MapRef, keys: Uint8Array, values: Uint8Array, count: number): void {
  if (count === 0) return;
  const n = new Uint32Array([count]);
  const opts = BPF_MAP_BATCH_OPTS.encode({ sz: BPF_MAP_BATCH_OPTS.size });
  const rc = bpf.bpf_map_update_batch(map.fd, keys, values, n, opts);
  if (rc < 0) throw failed(`bpf_map_update_batch(${map.name}, ${count})`, -rc);
}

/**
 * Read `count` entries of an array map from index `from` in one syscall (BPF_MAP_LOOKUP_BATCH; arrays
 * since Linux 5.6): keys into `keys` (u32 each) and their values back to back into `values` (per-CPU
 * maps: ncpus × round8(size) bytes each). Returns how many were read (fewer at the map's end). Throws
 * XdpError("bpf"), e.g. on kernels without batch ops.
 */
export function mapLookupBatch(map: MapRef, keys: Uint8Array, values: Uint8Array, count: number, from = 0): number {
  if (count === 0) return 0;
  const n = new Uint32Array([count]);
  // The batch token of an array is an index: the walk resumes after in_batch (none: from index 0).
  const after = from > 0 ? new Uint32Array([from - 1]) : null;
  const next = new Uint32Array(1);
  const opts = BPF_MAP_BATCH_OPTS.encode({ sz: BPF_MAP_BATCH_OPTS.size });
  const rc = bpf.bpf_map_lookup_batch(map.fd, after, next, keys, values, n, opts);
  // -ENOENT: the walk reached the end of the map; `n` says how many entries came back.
  if (rc < 0 && rc !== -ENOENT) throw failed(`bpf_map_lookup_batch(${map.name}, ${count})`, -rc);
  return n[0]!;
}

/** Copy the value for `key` into `out`; false when absent. Per-CPU maps fill ncpus × round8(size) bytes. */
export function mapLookup(map: MapRef, key: Uint8Array, out: Uint8Array): boolean {
  const rc = bpf.bpf_map_lookup_elem(map.fd, key, out);
  if (rc === -ENOENT) return false;
  if (rc < 0) throw failed(`bpf_map_lookup_elem(${map.name})`, -rc);
  return true;
}

/** Delete `key`; false when it was absent. */
export function mapDelete(map: MapRef, key: Uint8Array): boolean {
  const rc = bpf.bpf_map_delete_elem(map.fd, key);
  if (rc === -ENOENT) return false;
  if (rc < 0) throw failed(`bpf_map_delete_elem(${map.name})`, -rc);
  return true;
}

/** The key after `key` (null = the first) into `next`; false at the end. */
export function mapNextKey(map: MapRef, key: Uint8Array | null, next: Uint8Array): boolean {
  const rc = bpf.bpf_map_get_next_key(map.fd, key, next);
  if (rc === -ENOENT) return false;
  if (rc < 0) throw failed(`bpf_map_get_next_key(${map.name})`, -rc);
  return true;
}

export function possibleCpus(): number {
  const n = bpf.libbpf_num_possible_cpus();
  if (n <= 0) throw failed("libbpf_num_possible_cpus", -n);
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
 * Run an XDP program on one packet (BPF_PROG_TEST_RUN via bpf_prog_test_run_opts). For the tests: the
 * data plane never calls it, but it lives here because only this module touches bun:ffi.
 */
export function testRun(progFd: number, packet: Uint8Array, repeat = 1): TestRunResult {
  const out = new Uint8Array(packet.byteLength + 256);
  const opts = BPF_TEST_RUN_OPTS.encode({
    sz: BPF_TEST_RUN_OPTS.size,
    data_in: ptr(packet),
    data_out: ptr(out),
    data_size_in: packet.byteLength,
    data_size_out: out.byteLength,
    repeat,
  });
  const rc = bpf.bpf_prog_test_run_opts(progFd, opts);
  if (rc < 0) throw failed("bpf_prog_test_run_opts", -rc);
  const r = BPF_TEST_RUN_OPTS.decode(opts);
  return { retval: r.retval, data: out.slice(0, r.data_size_out), durationNs: r.duration };
}

/**
 * Attach an XDP program to an interface with a bpf_link (BPF_LINK_CREATE). The link lives as long as
 * the returned fd: when the process exits, even by SIGKILL, the kernel closes it and detaches the
 * program. `flags` picks the mode (XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE). Returns the link's fd;
 * throws XdpError("bpf") with the errno (loader.ts explains it to the user).
 */
export function xdpLinkCreate(progFd: number, ifindex: number, flags: number): number {
  const opts = BPF_LINK_CREATE_OPTS.encode({ sz: BPF_LINK_CREATE_OPTS.size, flags });
  const fd = bpf.bpf_link_create(progFd, ifindex, BPF_XDP, opts);
  if (fd < 0) throw failed(`bpf_link_create(ifindex ${ifindex})`, -fd);
  return fd;
}

/** enum bpf_link_type BPF_LINK_TYPE_XDP (linux/bpf.h). */
export const BPF_LINK_TYPE_XDP = 6;

/** A link's type and, for an XDP link, its interface (bpf_obj_get_info_by_fd, struct bpf_link_info). */
export function linkInfo(fd: number): { type: number; ifindex: number } {
  const info = new Uint32Array(16);
  const len = new Uint32Array([info.byteLength]);
  const rc = bpf.bpf_obj_get_info_by_fd(fd, info, len);
  if (rc < 0) throw failed("bpf_obj_get_info_by_fd(link)", -rc);
  // type, id, prog_id, then a union aligned to 8: xdp.ifindex at byte 16 (linux/bpf.h struct bpf_link_info)
  return { type: info[0]!, ifindex: info[4]! };
}

/**
 * Replace the program of link `linkFd` with `progFd` (BPF_LINK_UPDATE): atomic, every packet runs the
 * old program or the new one, none goes unprocessed. Throws XdpError("bpf").
 */
export function linkUpdate(linkFd: number, progFd: number): void {
  const rc = bpf.bpf_link_update(linkFd, progFd, null);
  if (rc < 0) throw failed("bpf_link_update", -rc);
}

/** Pin the BPF object `fd` (map, link) at `path` on a bpffs (bpf_obj_pin). Throws XdpError("bpf"). */
export function objPin(fd: number, path: string): void {
  const rc = bpf.bpf_obj_pin(fd, cstr(path));
  if (rc < 0) throw failed(`bpf_obj_pin(${path})`, -rc);
}

/** Open the BPF object pinned at `path` (bpf_obj_get): a new fd the caller closes. Throws XdpError("bpf"). */
export function objGet(path: string): number {
  const fd = bpf.bpf_obj_get(cstr(path));
  if (fd < 0) throw failed(`bpf_obj_get(${path})`, -fd);
  return fd;
}

/** Mount a bpf filesystem at `target` (mount(2), mode 0700). Throws XdpError("bpf") with the errno. */
export function mountBpffs(target: string): void {
  const rc = libc.symbols.mount(cstr("bpf"), cstr(target), cstr("bpf"), 0, cstr("mode=0700"));
  if (rc !== 0) throw failed(`mount -t bpf bpf ${target}`, errno());
}

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;

/** A BPF_F_MMAPABLE array map's memory, mapped into this process; `close` unmaps it. */
export interface MappedMap {
  readonly bytes: Uint8Array;
  close(): void;
}

/**
 * Map the values of a BPF_F_MMAPABLE array map (`bytes` = max_entries × value size, rounded up to a
 * page): reads and writes go straight to the map, no syscall per element. Throws XdpError("bpf").
 */
export function mapMmap(map: MapRef, bytes: number): MappedMap {
  const length = Math.ceil(bytes / 4096) * 4096;
  const p = libc.symbols.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, map.fd, 0) as Pointer | null;
  // MAP_FAILED is (void *) -1: far above any user-space address (x86-64 and arm64 keep those below 2^48).
  if (!p || Number(p) >= 2 ** 48) throw failed(`mmap(${map.name})`, errno());
  let open = true;
  return {
    bytes: new Uint8Array(toArrayBuffer(p, 0, length)),
    close() {
      if (open) libc.symbols.munmap(p, length); // the mapping goes whatever munmap returns
      open = false;
    },
  };
}

/** enum bpf_stats_type BPF_STATS_RUN_TIME (linux/bpf.h). */
const BPF_STATS_RUN_TIME = 0;

/**
 * Turn on the kernel's per-program run-time statistics (run_time_ns, run_cnt: what
 * `sysctl kernel.bpf_stats_enabled=1` turns on) for as long as the returned fd is open; closeFd turns
 * them off again unless someone else wants them. For the benchmarks: the data plane never calls it.
 */
export function enableRunTimeStats(): number {
  const fd = bpf.bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) throw failed("bpf_enable_stats(BPF_STATS_RUN_TIME)", -fd);
  return fd;
}

const CLOCK_MONOTONIC = 1;
const timespec = new BigInt64Array(2);
/** CLOCK_MONOTONIC in whole seconds: the clock the BPF program stamps flows with (bpf_ktime_get_coarse_ns). */
export function monotonicSeconds(): number {
  if (libc.symbols.clock_gettime(CLOCK_MONOTONIC, timespec) !== 0) throw failed("clock_gettime(CLOCK_MONOTONIC)", errno());
  return Number(timespec[0]);
}

/**
 * Close a file descriptor (a bpf_link: detaches the program). close()'s result is not checked: after
 * close the fd is released whatever it returns (Linux), and EBADF would mean we closed it twice.
 */
export function closeFd(fd: number): void {
  if (fd >= 0) libc.symbols.close(fd);
}
