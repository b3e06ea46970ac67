/**
 * featherlb-e2e-backend: `BACKEND_ID=backend-a PORT=7000 featherlb-e2e-backend`, the test backend
 * (test/support/backend.ts) speaking the e2e protocol, and with PROXY_PORT=7100 the same protocol behind
 * a PROXY protocol header on that port. One image is deployed several times by
 * compose.yml; each instance learns its name from BACKEND_ID. Runs as PID 1 in a FROM-scratch
 * container, so it handles SIGTERM itself (PID 1 has no default action).
 */
import { hostname } from "node:os";
import { startBackend } from "../../support/backend.ts";

const id = process.env.BACKEND_ID || hostname();
// DSR_VIP (xdp mode, compose.xdp*.yml): this backend also serves featherlb's forwarding: dsr service,
// prepared by the documented steps, `featherlb dsr-backend <VIP> --apply` (the binary is in the image;
// Compose set the sysctls, /proc/sys being read-only here, so it adds the VIP to lo). docs/dsr.md.
if (process.env.DSR_VIP) {
  const r = Bun.spawnSync(["/usr/local/bin/featherlb", "dsr-backend", process.env.DSR_VIP, "--apply"], { stdout: "pipe", stderr: "pipe" });
  for (const line of `${r.stdout}${r.stderr}`.trim().split("\n")) console.log(`backend ${id}: ${line}`);
  if (r.exitCode !== 0) process.exit(1);
}
const host = process.env.HOST || "0.0.0.0";
const backend = startBackend(id, { host, port: Number(process.env.PORT || 7000), behaviour: "e2e" });
console.log(`backend ${id} (instance ${backend.instance}) listening on :${backend.port}`);
// PROXY_PORT: the same protocol behind a PROXY protocol header (for featherlb's send_proxy services);
// its HELLO names the client address the header gave.
const proxied = process.env.PROXY_PORT ? startBackend(id, { host, port: Number(process.env.PROXY_PORT), behaviour: "e2e", proxy: true, instance: backend.instance }) : undefined;
if (proxied) console.log(`backend ${id} expects a PROXY protocol header on :${proxied.port}`);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    const s = backend.stats;
    console.log(`backend ${id}: ${signal}, exiting (accepted ${s.accepted}, completed ${s.completed}, aborted ${s.aborted}, malformed ${s.malformed})`);
    backend.stop();
    proxied?.stop();
    process.exit(0);
  });
}
