/**
 * Open, load and attach the XDP program (bpf/featherlb.bpf.c, embedded in the binary). index.ts imports
 * this module dynamically: it loads libbpf through bun:ffi, and a host where that fails gets a
 * UserError (mode: auto then runs the proxy) instead of a crash at startup.
 */
import objectPath from "../../../build/bpf/featherlb.bpf.o" with { type: "file" };
import type { AttachMode } from "../../config/types.ts";
import type { Logger } from "../../control/log.ts";
import { UserError } from "../../errors.ts";
import { isXdpError } from "./errors.ts";
import { MAPS } from "./layout.ts";
import { BpfObject, EBUSY, EEXIST, EINVAL, ENODEV, EOPNOTSUPP, EPERM, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, closeFd, xdpLinkCreate } from "./libbpf.ts";
import { MIN_KERNEL } from "./kernel.ts";
import { isVeth } from "./netif.ts";
import { XdpProgram } from "./program.ts";

export interface LoadOptions {
  /** Entries per flow table (xdp.flow_table_size). */
  flowTableSize: number;
}

/**
 * Entries per handshake table (flb_syn_fwd, flb_syn_rev): a quarter of the flow table, at least 1024.
 * Handshakes last a round trip, so few are open at once; a SYN flood churns this table only, and an
 * entry then lives about size / SYN rate (bpf/README.md "Flows").
 */
export const handshakeTableSize = (flowTableSize: number): number => Math.max(1024, flowTableSize / 4);

/** Open the embedded object, size the flow tables, load (verify). Throws XdpError("bpf") with the verifier's log. */
export async function loadProgram(options: LoadOptions): Promise<XdpProgram> {
  return wrap(await loadObject(options), (obj) => new XdpProgram(obj));
}

/** loadProgram's first half: the loaded object, before it is wrapped (test/xdp/program-test.ts wraps it too). */
export async function loadObject(options: LoadOptions): Promise<BpfObject> {
  const image = new Uint8Array(await Bun.file(objectPath).arrayBuffer());
  return wrap(BpfObject.open(image), (obj) => {
    obj.setMaxEntries(MAPS.fwd.name, options.flowTableSize);
    obj.setMaxEntries(MAPS.rev.name, options.flowTableSize);
    obj.setMaxEntries(MAPS.synFwd.name, handshakeTableSize(options.flowTableSize));
    obj.setMaxEntries(MAPS.synRev.name, handshakeTableSize(options.flowTableSize));
    obj.load();
    return obj;
  });
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
    if (err.errno === EPERM) {
      return new UserError("permission", "loading the XDP program needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON); run featherlb as root or use mode: proxy.");
    }
    const last = err.log.trim().split("\n").slice(-3).join(" | ");
    return new UserError("unsupported", `this kernel rejected the XDP program (${err.message}${last ? `: ${last}` : ""}); XDP needs Linux ≥ ${MIN_KERNEL.join(".")} with BTF, or use mode: proxy.`);
  }
  return new UserError("unsupported", `the XDP program could not be loaded (${(err as Error).message}); use mode: proxy.`);
}

export type AttachedMode = "native" | "generic";

/** The program attached to an interface: closing the link detaches it. */
export interface XdpLink {
  readonly mode: AttachedMode;
  close(): void;
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
    try {
      const fd = xdpLinkCreate(program.progFd, ifindex, flags);
      return { mode, close: () => closeFd(fd) };
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
