/**
 * YAML for the featherlb processes the integration tests start. `ADMIN` is replaced by startLB with a
 * free admin address.
 */
export type BackendSpec = string | { address: string; weight: number };

export interface ServiceSpec {
  name: string;
  port: number;
  /** The listen IP, default 127.0.0.1 (an IPv6 one is bracketed and quoted here). */
  host?: string;
  algorithm?: string;
  backends: BackendSpec[];
  /** Service-level YAML lines, indented four spaces. Default: health checks off. */
  settings?: string;
}

export function serviceYaml(s: ServiceSpec): string {
  const backends = s.backends.map((b) => (typeof b === "string" ? `      - address: ${b}` : `      - { address: "${b.address}", weight: ${b.weight} }`));
  return [
    `  - name: ${s.name}`,
    `    listen: ${s.host?.includes(":") ? `"[${s.host}]:${s.port}"` : `${s.host ?? "127.0.0.1"}:${s.port}`}`,
    `    algorithm: ${s.algorithm ?? "round_robin"}`,
    s.settings ?? "    health_check: { enabled: false }",
    "    backends:",
    ...backends,
    "",
  ].join("\n");
}

/** A whole config: admin on ADMIN, the given log level and top-level lines, then the services. */
export function lbYaml(o: { level?: string; top?: string; services: ServiceSpec[] }): string {
  return `admin: { listen: ADMIN }\nlog: { level: ${o.level ?? "info"} }\n${o.top ?? ""}\nservices:\n${o.services.map(serviceYaml).join("")}`;
}
