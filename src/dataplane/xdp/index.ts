/**
 * `mode: xdp` — the kernel data plane. createXdpDataPlane chooses the interface (netif.ts), loads the
 * BPF program and attaches it with a bpf_link (loader.ts: gone when the process dies, even by SIGKILL),
 * and returns the DataPlane (plane.ts) that mirrors every Service's plan and backends into the maps.
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
import { capacityFor } from "./capacity.ts";
import { HostState } from "./hoststate.ts";
import { checkKernel } from "./kernel.ts";
import type { XdpLink } from "./loader.ts";
import { chooseInterface, ifindexOf, isVeth, reservedPorts, taggedNeighbours } from "./netif.ts";
import { forwardingOn, interfaceMac } from "./nexthops.ts";
import { XdpDataPlane, inFile, tryReserve } from "./plane.ts";
import type { XdpProgram } from "./program.ts";

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

  // Dynamically: loader.ts loads libbpf (bun:ffi), which a host may lack; the proxy never needs it.
  let loader: typeof import("./loader.ts");
  try {
    loader = await import("./loader.ts");
  } catch (err) {
    throw new UserError("unsupported", `the embedded libbpf could not be loaded (${(err as Error).message}); use mode: proxy.`);
  }

  let program: XdpProgram;
  try {
    program = await loader.loadProgram({ flowTableSize: config.xdp.flow_table_size, capacity: capacityFor(serving) });
  } catch (err) {
    throw loader.loadError(err);
  }

  let host: HostState | undefined;
  let link: XdpLink;
  try {
    // Before changing anything on the host: refuses if another featherlb owns this namespace's changes.
    host = HostState.claim(log, reservedPorts, taggedNeighbours());
    program.writeConfig({ snatFirst: config.xdp.snat_ports.first, snatLast: config.xdp.snat_ports.last, flags: 0, smac: interfaceMac(ifname) });
    link = await loader.attachProgram(program, ifname, ifindex, config.xdp.attach, log);
  } catch (err) {
    program.close();
    host?.close();
    throw err;
  }
  const release = tryReserve([config.xdp.snat_ports], log, host);
  log.info("xdp program attached", { interface: ifname, ifindex, mode: link.mode, flow_table_size: config.xdp.flow_table_size, capacity: program.capacity });
  if (forwardingOn(ifname) === false) {
    // Not a problem, and nothing is changed: said once so an operator reading the pass reasons knows.
    log.info("IPv4 forwarding is off on the interface: backend next hops come from featherlb's neighbour table (main routing table + ARP cache, re-read every second)", { interface: ifname });
  }
  if (link.mode === "native" && (await isVeth(ifname))) {
    log.warn("native XDP on a veth transmits (XDP_TX) only if the peer veth also has an XDP program; use xdp.attach: generic or auto if packets do not arrive", { interface: ifname });
  }
  return new XdpDataPlane(program, log, config, link, ifname, release, host);
}
