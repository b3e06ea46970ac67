/**
 * Open, load and attach the XDP program (bpf/featherlb.bpf.c, embedded in the binary). index.ts imports
 * this module dynamically: it loads libbpf through bun:ffi, and a host where that fails gets a
 * UserError (mode: auto then runs the proxy) instead of a crash at startup.
 */
import objectPath from "../../../build/bpf/featherlb.bpf.o" with { type: "file" };
import type { AttachMode } from "../../config/types.ts";
import type { Logger } from "../../control/log.ts";
import { UserError } from "../../errors.ts";
import { MIN_CAPACITY, mapSizes, type Capacity } from "./capacity.ts";
import { isXdpError } from "./errors.ts";
import { CFG_FLAGS, MAPS, RODATA_SIZES_OFFSET, SIZES, type MapKey } from "./layout.ts";
import { readFileSync } from "node:fs";
import { BpfObject, EACCES, EBUSY, EEXIST, EINVAL, ENODEV, EOPNOTSUPP, EPERM, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, closeFd, linkUpdate, mapInfo, xdpLinkCreate } from "./libbpf.ts";
import { MIN_KERNEL } from "./kernel.ts";
import { isVeth } from "./netif.ts";
import { XdpProgram } from "./program.ts";

export interface LoadOptions {
  /** Entries per flow table (xdp.flow_table_size). */
  flowTableSize: number;
  /** The sizes of the other maps (capacity.ts capacityFor(config)); default MIN_CAPACITY. */
  capacity?: Capacity;
  /**
   * Existing maps (pinned by an earlier process: pins.ts) to use instead of creating these, by MapKey.
   * Used only if every one has exactly the definition this object would create; else none is, and
   * `incompatible` is told why (in one sentence) before the object loads with fresh maps.
   */
  reuse?: ReadonlyMap<MapKey, number>;
  incompatible?: (why: string) => void;
}

/** Open the embedded object, size its maps, load (verify). Throws XdpError("bpf") with the verifier's log. */
export async function loadProgram(options: LoadOptions): Promise<XdpProgram> {
  const capacity = options.capacity ?? MIN_CAPACITY;
  return wrap(await loadObject(options), (obj) => new XdpProgram(obj, capacity));
}

/**
 * loadProgram's first half: the loaded object, before it is wrapped (test/xdp/program-test.ts wraps it
 * too). Every sized map gets its max_entries, and flb_sizes (.rodata) the per-backend stride, before
 * load: array maps cannot be resized afterwards.
 */
export async function loadObject(options: LoadOptions): Promise<BpfObject> {
  const capacity = options.capacity ?? MIN_CAPACITY;
  const image = new Uint8Array(await Bun.file(objectPath).arrayBuffer());
  return wrap(BpfObject.open(image), (obj) => {
    for (const [key, entries] of Object.entries(mapSizes(capacity, options.flowTableSize))) obj.setMaxEntries(MAPS[key as MapKey].name, entries);
    obj.writeRodata(RODATA_SIZES_OFFSET, SIZES.encode({ backends: capacity.backends, pad: 0 }));
    if (options.reuse) {
      const why = mismatch(obj, options.reuse);
      if (why) options.incompatible?.(why);
      else for (const [key, fd] of options.reuse) obj.reuseMap(MAPS[key].name, fd);
    }
    obj.load();
    return obj;
  });
}

/** How the first of `maps` differs from what `obj` would create in its place, or undefined if none does. */
function mismatch(obj: BpfObject, maps: ReadonlyMap<MapKey, number>): string | undefined {
  for (const [key, fd] of maps) {
    const want = obj.mapDef(MAPS[key].name);
    const have = mapInfo(fd);
    for (const field of ["type", "keySize", "valueSize", "flags", "maxEntries"] as const) {
      if (want[field] !== have[field]) return `${MAPS[key].name} has ${field} ${have[field]}, this config needs ${want[field]}`;
    }
  }
  return undefined;
}

/** `make(obj)`, closing `obj` when it throws. */
export function wrap<T>(obj: BpfObject, make: (obj: BpfObject) => T): T {
  try {
    return make(obj);
  } catch (err) {
    obj.close();
    throw err;
  }
}

/** A failure of loadProgram as the user sees it: one sentence naming what is missing. */
export function loadError(err: unknown): UserError {
  if (err instanceof UserError) return err;
  if (isXdpError(err, "bpf")) {
    // EPERM: no CAP_BPF. EACCES: the verifier refused the program — which is what it does when it checks
    // it as for an unprivileged loader (no CAP_PERFMON: pointer arithmetic, bpf_ktime…), so with a
    // capability missing it is a permission problem, not the kernel's.
    const missing = missingLoadCapabilities();
    if (err.errno === EPERM || (err.errno === EACCES && missing.length > 0)) {
      const which = missing.length ? ` (this process lacks ${missing.join(", ")})` : "";
      return new UserError("permission", `loading the XDP program needs root or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON${which}; run featherlb as root, grant those capabilities, or use mode: proxy.`);
    }
    const last = err.log.trim().split("\n").slice(-3).join(" | ");
    return new UserError("unsupported", `this kernel rejected the XDP program (${err.message}${last ? `: ${last}` : ""}); XDP needs Linux ≥ ${MIN_KERNEL.join(".")} with BTF, or use mode: proxy.`);
  }
  return new UserError("unsupported", `the XDP program could not be loaded (${(err as Error).message}); use mode: proxy.`);
}

export type AttachedMode = "native" | "generic";

/** The program attached to an interface: closing the link detaches it (unless it is pinned). */
export interface XdpLink {
  readonly mode: AttachedMode;
  /** The bpf_link's fd (pinned at a SIGUSR2 handover); absent for a stand-in in tests. */
  readonly fd?: number;
  close(): void;
  /**
   * A link handed over by an earlier process (adoptLink) still runs that process's program: put ours
   * on it. Called once our plans are in the maps.
   */
  takeOver?(): void;
}

/**
 * The link an earlier featherlb pinned at SIGUSR2 (pins.ts), still running its program in the mode it
 * was attached in. The replacement waits for takeOver(): until then the old program keeps serving
 * with its own plans, over the flow tables both programs share.
 */
export function adoptLink(program: XdpProgram, fd: number, native: boolean): XdpLink {
  const cfg = program.readConfig();
  program.writeConfig({ ...cfg, flags: native ? cfg.flags | CFG_FLAGS.NATIVE : cfg.flags & ~CFG_FLAGS.NATIVE });
  let pending = true;
  return {
    mode: native ? "native" : "generic",
    fd,
    close: () => closeFd(fd),
    takeOver() {
      if (!pending) return;
      linkUpdate(fd, program.progFd);
      pending = false;
    },
  };
}

/**
 * Attach the program to `ifname` with a bpf_link (gone when the process dies, even by SIGKILL), in the
 * first mode `attach` allows that works. Throws a UserError (permission, interface or unsupported).
 */
export async function attachProgram(program: XdpProgram, ifname: string, ifindex: number, attach: AttachMode, log: Logger): Promise<XdpLink> {
  // auto on a veth: generic. Native XDP_TX on a veth reaches the wire only if the peer veth runs an
  // XDP program too (or has GRO on), which is outside our control; generic XDP has no such condition.
  const veth = attach === "auto" && (await isVeth(ifname));
  if (veth) log.info("xdp.attach auto on a veth: using generic mode (native XDP_TX on veth needs an XDP program on the peer)", { interface: ifname });
  const modes: [AttachedMode, number][] =
    veth
      ? [["generic", XDP_FLAGS_SKB_MODE]]
      : attach === "native"
      ? [["native", XDP_FLAGS_DRV_MODE]]
      : attach === "generic"
        ? [["generic", XDP_FLAGS_SKB_MODE]]
        : [
            ["native", XDP_FLAGS_DRV_MODE],
            ["generic", XDP_FLAGS_SKB_MODE],
          ];
  let errno = 0;
  for (const [mode, flags] of modes) {
    // Before the first packet: natively attached, the program completes partial TCP checksums (what it
    // transmits leaves as it is; bpf/l4csum.h), in generic mode it keeps them partial.
    const cfg = program.readConfig();
    program.writeConfig({ ...cfg, flags: mode === "native" ? cfg.flags | CFG_FLAGS.NATIVE : cfg.flags & ~CFG_FLAGS.NATIVE });
    try {
      const fd = xdpLinkCreate(program.progFd, ifindex, flags);
      return { mode, fd, close: () => closeFd(fd) };
    } catch (err) {
      if (!isXdpError(err, "bpf")) throw err;
      errno = err.errno;
      log.debug("xdp attach failed", { interface: ifname, mode, errno });
    }
  }
  throw attachError(errno, ifname, attach);
}

function attachError(errno: number, ifname: string, mode: string): UserError {
  if (errno === EPERM) return new UserError("permission", `attaching XDP to ${ifname} needs CAP_NET_ADMIN; run featherlb as root or use mode: proxy.`);
  if (errno === EBUSY || errno === EEXIST) {
    return new UserError("interface", `interface ${ifname} already has an XDP program attached; detach it with "ip link set dev ${ifname} xdp off" or choose another xdp.interface.`);
  }
  if (errno === ENODEV) return new UserError("interface", `interface ${ifname} disappeared while attaching XDP; set xdp.interface to an existing interface.`);
  if (mode === "native" && (errno === EOPNOTSUPP || errno === EINVAL)) {
    return new UserError("unsupported", `the driver of ${ifname} has no native XDP support; set xdp.attach: generic (or auto).`);
  }
  return new UserError("unsupported", `attaching XDP to ${ifname} failed (errno ${errno}); check the kernel supports XDP links (Linux ≥ 5.9) or use mode: proxy.`);
}

/** Linux capability numbers (linux/capability.h). */
const CAP = { NET_ADMIN: 12, SYS_ADMIN: 21, PERFMON: 38, BPF: 39 } as const;

/**
 * The capabilities loading and attaching need that this process does not have in its effective set
 * (/proc/self/status CapEff). CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (kernels before 5.8,
 * and Docker 20.10, which does not know CAP_BPF).
 */
export function missingLoadCapabilities(status = readProcStatus()): string[] {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (hex === undefined) return [];
  const eff = BigInt(`0x${hex}`);
  const has = (bit: number) => (eff >> BigInt(bit)) & 1n;
  const admin = has(CAP.SYS_ADMIN) === 1n;
  const missing: string[] = [];
  if (!admin && !has(CAP.BPF)) missing.push("CAP_BPF");
  if (!admin && !has(CAP.PERFMON)) missing.push("CAP_PERFMON");
  if (!has(CAP.NET_ADMIN)) missing.push("CAP_NET_ADMIN");
  return missing;
}

function readProcStatus(): string {
  try {
    return readFileSync("/proc/self/status", "utf8");
  } catch {
    return "";
  }
}
