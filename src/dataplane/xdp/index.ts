/**
 * `mode: xdp` — the kernel data plane. createXdpDataPlane chooses the interface (netif.ts), loads the
 * BPF program and attaches it with a bpf_link (loader.ts: gone when the process dies, even by SIGKILL),
 * and returns the DataPlane (plane.ts) that mirrors every Service's plan and backends into the maps.
 * The maps are pinned (pins.ts, xdp.pin_path): a start adopts those an earlier process left — after a
 * crash, or with its link after a SIGUSR2 handover, which it then takes over — so flows survive both.
 *
 * Everything a user can get wrong (privileges, kernel support, interface) surfaces as one UserError
 * sentence; the control plane's mode `auto` catches it and runs the proxy instead.
 */
import { release as kernelRelease } from "node:os";
import type { Config, ServiceConfig } from "../../config/types.ts";
import { xdpRefusal } from "../../config/xdp.ts";
import type { Logger } from "../../control/log.ts";
import { UserError } from "../../errors.ts";
import type { DataPlane } from "../types.ts";
import { HostState } from "./hoststate.ts";
import { checkKernel } from "./kernel.ts";
import type { XdpLink } from "./loader.ts";
import { capacityFor, overflow } from "./capacity.ts";
import { isXdpError } from "./errors.ts";
import { SVC_FLAGS, ipv4ToU32, type MapKey } from "./layout.ts";
import type { Found, Previous } from "./pins.ts";
import { chooseInterface, ifindexOf, isVeth, reservedPorts, snatAddress, taggedNeighbours } from "./netif.ts";
import { forwardingOn, interfaceMac } from "./nexthops.ts";
import { XdpDataPlane, inFile, tryReserve } from "./plane.ts";
import type { PortRange, XdpProgram } from "./program.ts";

export { XdpDataPlane } from "./plane.ts";

/**
 * Load and attach the XDP program for the services of `config` in `serving` (default: all), which run
 * in xdp; the returned plane is empty until `apply`. Throws a UserError (code permission, unsupported
 * or interface) with one sentence naming what is missing.
 */
export async function createXdpDataPlane(config: Config, log: Logger, serving: readonly ServiceConfig[] = config.services): Promise<DataPlane> {
  return createXdpDataPlaneDetailed(config, log, serving);
}

/**
 * As createXdpDataPlane, typed with the XDP specifics (attach mode, interface) for tests and logs. Its
 * errors name the config file: they cannot point at a line, because they depend on the host.
 */
export async function createXdpDataPlaneDetailed(config: Config, log: Logger, serving: readonly ServiceConfig[] = config.services): Promise<XdpDataPlane> {
  try {
    return await start(config, log, serving);
  } catch (err) {
    throw err instanceof UserError ? new UserError(err.code, inFile(config, err.message)) : err;
  }
}

async function start(config: Config, log: Logger, serving: readonly ServiceConfig[]): Promise<XdpDataPlane> {
  if (process.platform !== "linux") throw new UserError("unsupported", "mode: xdp needs Linux; use mode: proxy on this platform.");
  // What the file alone rules out comes first: for mode: xdp the loader has refused it already, and
  // mode: auto falls back to the proxy for it before anything is loaded or attached.
  const refusal = xdpRefusal(config, serving);
  if (refusal) throw new UserError("config", `${refusal}.`);
  checkKernel(kernelRelease());
  // Only the services that run in xdp say which interface to attach to.
  const ifname = chooseInterface({ ...config, services: [...serving] });
  const ifindex = ifindexOf(ifname);
  const snat = snatAddress(config, ifname);

  // Dynamically: loader.ts loads libbpf (bun:ffi), which a host may lack; the proxy never needs it.
  let loader: typeof import("./loader.ts");
  let pinning: typeof import("./pins.ts");
  try {
    loader = await import("./loader.ts");
    pinning = await import("./pins.ts");
  } catch (err) {
    throw new UserError("unsupported", `the embedded libbpf could not be loaded (${(err as Error).message}); use mode: proxy.`);
  }

  // A featherlb handing over (SIGUSR2) in this namespace exits first: what it pins is then complete.
  await HostState.awaitHandover();
  // Before changing anything on the host (a bpffs mount, pins, the sysctl): refuses if another
  // featherlb owns this namespace's changes.
  const host = HostState.claim(log, reservedPorts, taggedNeighbours());
  let found: Found = {};
  let program: XdpProgram | undefined;
  let pins: import("./pins.ts").Pins | undefined;
  let previous: Previous | undefined;
  let adopted = false;
  let link: XdpLink;
  try {
    // Pinned state of an earlier process on this interface (pins.ts): its maps, and its link after a
    // SIGUSR2 handover. Adopted only if this config fits the maps' sizes and the layout is ours.
    // Without the capabilities to load, loading fails with the sentence that names them: not the pins first.
    if (config.xdp.pin_path !== null && loader.missingLoadCapabilities().length === 0) {
      pins = pinning.Pins.prepare(config.xdp.pin_path, ifname, log);
      found = pins.find(ifindex, log);
    }
    let capacity = capacityFor(serving);
    let reuse: Map<MapKey, number> | undefined;
    if (found.maps) {
      const pinned = pinning.pinnedCapacity(found.maps, capacity);
      const full = overflow(pinned, serving, (i) => serving[i]!.backends.length);
      if (full) log.warn("pinned XDP maps do not fit this config: starting with fresh maps (the flows they held are reset)", { pinned: pins!.mapsDir, reason: full });
      else {
        capacity = pinned;
        reuse = new Map(pinning.KEPT.map((k) => [k, found.maps!.get(k)!]));
      }
    }
    adopted = reuse !== undefined;
    const incompatible = (why: string) => {
      adopted = false;
      log.warn("pinned XDP maps do not match what this config needs: starting with fresh maps (the flows they held are reset)", { pinned: pins!.mapsDir, reason: why });
    };
    try {
      program = await loader.loadProgram({ flowTableSize: config.xdp.flow_table_size, capacity, reuse, incompatible });
    } catch (err) {
      throw loader.loadError(err);
    } finally {
      if (found.maps) pinning.closeAll(found.maps); // libbpf holds its own duplicates of the reused ones
    }
    previous = adopted ? found.previous : undefined;
    if (found.maps && !adopted) pins!.removeMaps();

    // A previous process's SNAT range (changed in this config, or still draining from a reload of its)
    // keeps translating its flows until a sweep finds none left (plane.ts prevRange).
    const [range, prev] = snatRanges(previous, config);
    program.writeConfig({ snatFirst: range!.first, snatLast: range!.last, prevFirst: prev?.first, prevLast: prev?.last, snatAddr: ipv4ToU32(snat), flags: 0, smac: interfaceMac(ifname) });
    // Its services keep translating their flows on their indexes (retired until the first apply names
    // them again), so a packet of an adopted flow that comes before the plans finds its service.
    for (const s of previous?.services ?? []) program.setService(s.index, ipv4ToU32(s.host), s.port, SVC_FLAGS.RETIRED);
    if (found.link !== undefined) {
      link = loader.adoptLink(program, found.link, previous?.native ?? false);
      if (config.xdp.attach !== "auto" && config.xdp.attach !== link.mode) {
        log.warn("the XDP program stays attached in the mode it was attached in before the handover; xdp.attach takes effect after a stop and start", { mode: link.mode, attach: config.xdp.attach });
      }
    } else link = await loader.attachProgram(program, ifname, ifindex, config.xdp.attach, log);
    // Pinned from now on, so a crash leaves the flows to the next start. After a handover, once our
    // program runs (plane.ts takeOver): until then the pins describe the program on the link.
    if (found.link === undefined) pins?.pinMaps(new Map(program.mapFds()));
  } catch (err) {
    program?.close();
    pinning.closeLink(found);
    pins?.tidy();
    host.close();
    throw pinError(err);
  }
  const release = tryReserve(snatRanges(previous, config), log, host);
  log.info(found.link !== undefined ? "xdp program loaded; it replaces the handed-over one once the plans are written" : "xdp program attached", {
    interface: ifname,
    ifindex,
    mode: link.mode,
    snat_address: snat,
    flow_table_size: config.xdp.flow_table_size,
    capacity: program.capacity,
    pinned: pins?.mapsDir ?? null,
    adopted_flows: adopted,
  });
  if (forwardingOn(ifname) === false) {
    // Not a problem, and nothing is changed: said once so an operator reading the pass reasons knows.
    log.info("IPv4 forwarding is off on the interface: backend next hops come from featherlb's neighbour table (main routing table + ARP cache, re-read every second)", { interface: ifname });
  }
  if (link.mode === "native" && (await isVeth(ifname))) {
    log.warn("native XDP on a veth transmits (XDP_TX) only if the peer veth also has an XDP program; use xdp.attach: generic or auto if packets do not arrive", { interface: ifname });
  }
  return new XdpDataPlane(program, log, config, link, ifname, release, host, { pins, previous, prevRange: snatRanges(previous, config)[1] });
}

const sameRange = (a: PortRange, b: PortRange) => a.first === b.first && a.last === b.last;

/** The SNAT ranges: the config's, and a previous process's range its flows may still use. */
function snatRanges(previous: Previous | undefined, config: Config): PortRange[] {
  const snat = config.xdp.snat_ports;
  const old = previous && !sameRange(previous.snat, snat) ? previous.snat : previous?.prev;
  return old ? [snat, old] : [snat];
}

/** A failure to pin (a bpffs we may not write) as the user sees it; anything else as it is. */
function pinError(err: unknown): unknown {
  if (!isXdpError(err, "bpf") || !/bpf_obj_pin/.test(err.message)) return err;
  return new UserError(err.errno === 1 || err.errno === 13 ? "permission" : "unsupported", `could not pin the XDP maps (${err.message}); give featherlb's user the xdp.pin_path directory, run it as root, or set xdp.pin_path: off (restarts then reset flows).`);
}
