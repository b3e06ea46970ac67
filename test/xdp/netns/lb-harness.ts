/**
 * Stand-in for the LB process until src/main.ts wires mode: xdp (run inside the LB namespace): loads
 * the config, builds the Services, creates the XDP data plane and applies, and runs health checks —
 * what Runtime.start does once mode: xdp is wired. Logs go to stderr exactly as featherlb's do; events
 * go to stdout as JSON lines; "stats" on stdin prints the counters.
 *   bun lb-harness.ts <config.yaml>
 */
import { loadConfig } from "../../../src/config/load.ts";
import { HealthChecker } from "../../../src/control/health.ts";
import { Logger } from "../../../src/control/log.ts";
import { Service } from "../../../src/control/service.ts";
import { createXdpDataPlaneDetailed } from "../../../src/dataplane/xdp/index.ts";
import { UserError } from "../../../src/errors.ts";

const out = (o: object) => process.stdout.write(JSON.stringify(o) + "\n");
const config = await loadConfig(process.argv[2]!);
const log = new Logger(config.log.level, (line) => process.stderr.write(line));
const services = config.services.map((c) => new Service(c, log));

let plane;
try {
  plane = await createXdpDataPlaneDetailed(config, log);
} catch (err) {
  out({ event: "error", code: err instanceof UserError ? err.code : "bug", message: (err as Error).message });
  process.exit(2);
}
await plane.apply(config, services.map((service, i) => ({ config: config.services[i]!, service })));
for (const s of services) {
  s.onPlan(() => out({ event: "plan", service: s.name, members: [...s.picker.plan.members], at: Date.now() }));
}
const health = new HealthChecker();
health.sync(services);

const stop = () => {
  health.stop();
  plane.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

out({ event: "ready", attach: plane.attachMode, interface: plane.ifname, pid: process.pid });

for await (const line of console) {
  if (line.trim() !== "stats") continue;
  plane.refreshStats();
  out({
    event: "stats",
    services: services.map((s) => ({
      name: s.name,
      stats: { ...s.stats },
      backends: [...s.backends.values()].map((b) => ({ id: b.id, key: b.key, health: b.health, stats: { ...b.stats } })),
    })),
  });
}

