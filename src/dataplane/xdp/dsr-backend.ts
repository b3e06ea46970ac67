/**
 * `featherlb dsr-backend <VIP> [--ipip] [--apply]`: what a Linux backend of a `forwarding: dsr` service
 * needs, which featherlb cannot do from the balancer (docs/dsr.md). The balancer hands the backend
 * client packets still addressed to the service address (VIP), so the backend must
 * - own the VIP, on an interface that does not answer ARP for it (lo; with --ipip the tunnel device):
 *   otherwise the kernel drops the packets as not addressed to it;
 * - never answer ARP for the VIP on its real interfaces (arp_ignore=1: answer only for addresses of the
 *   interface the request came in on) nor use it as the source of its own ARP requests
 *   (arp_announce=2), or clients' and routers' ARP caches would send the VIP's traffic to it directly.
 *   The kernel uses the larger of conf/all and conf/<interface>, so both are set.
 * - with --ipip, decapsulate IPIP: an `ipip` device in external (collect-metadata) mode takes every
 *   IPIP packet, whatever its outer addresses, and holds the VIP; rp_filter is turned off on it and
 *   in conf/all (again the larger of the two applies), because the inner source, the client, is not
 *   routed through the tunnel.
 * It prints these steps as shell commands; --apply runs them (sysctls in-process through /proc/sys,
 * addresses and links with ip(8)), each idempotent, so running it twice is harmless. A sysctl that
 * already has its value is not written: in a container /proc/sys is read-only, and Compose's
 * `sysctls:` sets them before the entrypoint runs (docs/dsr.md).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { parseIPv4 } from "../../config/address.ts";
import { UserError } from "../../errors.ts";

/** The tunnel device --ipip creates. */
export const IPIP_DEVICE = "flbdsr0";

/**
 * A sysctl to set, or an ip(8) command (skipped when `unless` succeeds). `atLeastVia`: the kernel uses
 * the larger of this key and that one (conf/all), so that one holding at least `value` makes this one
 * moot (arp_ignore, arp_announce).
 */
export type Step = { kind: "sysctl"; key: string; value: string; atLeastVia?: string } | { kind: "ip"; args: string[]; unless?: string[] };

/** The steps for `vip` on a host whose IPv4 interfaces (besides lo) are `interfaces`. */
export function dsrBackendSteps(vip: string, ipip: boolean, interfaces: readonly string[]): Step[] {
  const sysctl = (key: string, value: string): Step => ({ kind: "sysctl", key, value });
  const device = ipip ? IPIP_DEVICE : "lo";
  const steps: Step[] = [];
  if (ipip) {
    steps.push({ kind: "ip", args: ["link", "add", "name", IPIP_DEVICE, "type", "ipip", "external"], unless: ["link", "show", IPIP_DEVICE] });
    steps.push({ kind: "ip", args: ["link", "set", IPIP_DEVICE, "up"] });
  }
  steps.push({ kind: "ip", args: ["addr", "replace", `${vip}/32`, "dev", device] });
  for (const dev of ["all", ...interfaces]) {
    for (const [name, value] of [["arp_ignore", "1"], ["arp_announce", "2"]] as const) {
      steps.push({ kind: "sysctl", key: `net.ipv4.conf.${dev}.${name}`, value, atLeastVia: dev === "all" ? undefined : `net.ipv4.conf.all.${name}` });
    }
  }
  if (ipip) steps.push(sysctl("net.ipv4.conf.all.rp_filter", "0"), sysctl(`net.ipv4.conf.${IPIP_DEVICE}.rp_filter`, "0"));
  return steps;
}

/** A step as the shell command an operator would type. */
export function stepCommand(s: Step): string {
  return s.kind === "sysctl" ? `sysctl -w ${s.key}=${s.value}` : `ip ${s.args.join(" ")}`;
}

/** This host's interfaces with an IPv4 address, lo excepted. */
function ipv4Interfaces(): string[] {
  return Object.entries(networkInterfaces())
    .filter(([name, addrs]) => name !== "lo" && addrs?.some((a) => a.family === "IPv4"))
    .map(([name]) => name);
}

function readSysctl(key: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${key.replaceAll(".", "/")}`, "utf8").trim();
  } catch {
    return undefined;
  }
}

function applyStep(s: Step): void {
  if (s.kind === "sysctl") {
    const path = `/proc/sys/${s.key.replaceAll(".", "/")}`;
    if (!existsSync(path)) throw new UserError("interface", `${path} does not exist, so ${s.key} cannot be set; is the interface up in this network namespace?`);
    // Already so (a container whose runtime set it: /proc/sys is read-only there).
    if (readFileSync(path, "utf8").trim() === s.value) return;
    try {
      writeFileSync(path, s.value);
    } catch (err) {
      // Made moot by conf/all: Docker's `sysctls:` can set conf/all but not conf/eth0 (it does not exist
      // yet when they are applied), and the container cannot write it afterwards.
      if (s.atLeastVia && Number(readSysctl(s.atLeastVia)) >= Number(s.value)) return;
      throw new UserError("permission", `cannot set ${s.key} (${(err as Error).message}); run featherlb dsr-backend --apply as root (in a container: with NET_ADMIN and /proc/sys writable).`);
    }
    if (readFileSync(path, "utf8").trim() !== s.value) throw new UserError("permission", `${s.key} did not take the value ${s.value}; set it by hand with ${stepCommand(s)}.`);
    return;
  }
  if (s.unless && spawnSync("ip", s.unless, { stdio: "ignore" }).status === 0) return;
  const r = spawnSync("ip", s.args, { encoding: "utf8", timeout: 10_000 });
  if (r.error) throw new UserError("unsupported", `cannot run ip (${r.error.message}); install iproute2 or run the printed commands another way.`);
  if (r.status !== 0) throw new UserError("permission", `${stepCommand(s)} failed: ${r.stderr.trim()}; run it as root (in a container: with NET_ADMIN).`);
}

/** The subcommand: prints the steps (a shell script), and with `apply` runs them. */
export function dsrBackend(vip: string, o: { ipip: boolean; apply: boolean }, out: (line: string) => void): void {
  const bytes = parseIPv4(vip);
  if (!bytes || bytes.every((b) => b === 0)) throw new UserError("usage", `dsr-backend needs the service's IPv4 address (the VIP), got "${vip}"; run featherlb --help for usage.`);
  const steps = dsrBackendSteps(vip, o.ipip, ipv4Interfaces());
  out(`# featherlb dsr-backend ${vip}${o.ipip ? " --ipip" : ""}: make this host a direct-server-return backend for ${vip} (docs/dsr.md)`);
  out(o.ipip ? `# the VIP on ${IPIP_DEVICE}, an IPIP device that decapsulates every tunnelled packet; rp_filter off for it` : "# the VIP on lo, so the kernel accepts packets to it without answering ARP for it");
  out("# arp_ignore=1, arp_announce=2: the real interfaces never answer or announce the VIP");
  for (const s of steps) {
    out(stepCommand(s));
    if (o.apply) applyStep(s);
  }
  if (o.apply) out(`# applied: ${steps.length} steps`);
}
