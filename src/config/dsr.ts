/**
 * What `forwarding: dsr` (direct server return, bpf/dsr.h) refuses from the file alone: it runs only in
 * the XDP data plane (the proxy terminates each connection, so its replies always come back through
 * it), and it cannot translate ports (the backend answers the client itself, from the service address
 * and port). Whether the backends share the LB interface's subnet needs the host: the XDP data plane
 * checks it when it knows the interface (src/dataplane/xdp/dsr.ts).
 */
import type { PathKey, Problem } from "./checks.ts";
import type { FileOutput } from "./sections.ts";
import type { Config } from "./types.ts";

export function checkDsr(config: Config, file: FileOutput): Problem[] {
  const problems: Problem[] = [];
  config.services.forEach((service, i) => {
    if (service.forwarding !== "dsr") return;
    const own = file.services[i];
    const who = `services[${i}] ("${service.name}")`;
    if (service.mode !== "xdp") {
      // At the value that chose the plane, else at the one that chose dsr.
      const path: PathKey[] =
        own?.mode !== undefined ? ["services", i, "mode"] : file.mode !== undefined ? ["mode"] : own?.forwarding !== undefined ? ["services", i, "forwarding"] : ["defaults", "forwarding"];
      problems.push({
        path,
        message: `forwarding: dsr needs mode: xdp (the proxy terminates connections, so replies always come back through it), and ${who} has mode: ${service.mode}; set services[${i}].mode: xdp or forwarding: nat`,
      });
    }
    service.backends.forEach((backend, b) => {
      if (backend.port === service.listen.port) return;
      problems.push({
        path: ["services", i, "backends", b, "address"],
        message: `forwarding: dsr cannot translate ports: the backend answers the client itself from the service's port ${service.listen.port}, so it must listen on ${service.listen.port}, not ${backend.port}; use ${backend.host.includes(":") ? `[${backend.host}]` : backend.host}:${service.listen.port} or forwarding: nat`,
      });
    });
  });
  return problems;
}
