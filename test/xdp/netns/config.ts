/** The `mode: xdp` configs the namespace suites run: one service on the LB's address, admin on the LB
 * namespace's loopback (read with netns/metrics.ts), not reachable from the other namespaces. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export interface XdpConfigSpec {
  /** The service's listen address (the LB's IP). */
  listen: string;
  snat: string;
  algorithm?: string;
  attach?: string;
  interface?: string;
  health?: { interval: number; timeout: number; rise: number; fall: number };
  backends: { address: string; weight?: number }[];
  flowTableSize?: number;
  drainTimeout?: string;
  /** xdp.pin_path (default: featherlb's). */
  pinPath?: string;
}

/** Where the admin endpoint listens, inside the LB's namespace. */
export const ADMIN = "127.0.0.1:9090";

const DEFAULT_HEALTH = { interval: 500, timeout: 300, rise: 1, fall: 2 };

export function xdpYaml(o: XdpConfigSpec): string {
  const h = o.health ?? DEFAULT_HEALTH;
  const xdp = [
    o.interface && `  interface: ${o.interface}`,
    o.attach && `  attach: ${o.attach}`,
    `  snat_ports: "${o.snat}"`,
    o.flowTableSize && `  flow_table_size: ${o.flowTableSize}`,
    o.pinPath && `  pin_path: "${o.pinPath}"`,
  ].filter(Boolean);
  return `mode: xdp
log:
  level: info
admin:
  listen: "${ADMIN}"
drain_timeout: ${o.drainTimeout ?? "1s"}
xdp:
${xdp.join("\n")}
services:
  - name: svc
    listen: "${o.listen}"
    algorithm: ${o.algorithm ?? "round_robin"}
    health_check: { interval: ${h.interval}ms, timeout: ${h.timeout}ms, rise: ${h.rise}, fall: ${h.fall} }
    backends:
${o.backends.map((b) => `      - { address: "${b.address}"${b.weight === undefined ? "" : `, weight: ${b.weight}`} }`).join("\n")}
`;
}

/** Write xdpYaml(o) to `dir/name.yaml`; its path. */
export function writeXdpConfig(dir: string, name: string, o: XdpConfigSpec): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, xdpYaml(o));
  return path;
}
