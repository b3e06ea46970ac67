/**
 * featherlb-e2e-backend: `BACKEND_ID=backend-a PORT=7000 featherlb-e2e-backend`.
 * Runs as PID 1 in a FROM-scratch container, so it handles SIGTERM itself (PID 1 has no default action).
 */
import { hostname } from "node:os";
import { startBackend } from "./server.ts";

const id = process.env.BACKEND_ID || hostname();
const port = Number(process.env.PORT || 7000);
const backend = startBackend({ id, port, hostname: process.env.HOST || "0.0.0.0" });
console.log(`backend ${id} (instance ${backend.instance}) listening on :${backend.port}`);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    const s = backend.stats;
    console.log(`backend ${id}: ${signal}, exiting (accepted ${s.accepted}, completed ${s.completed}, aborted ${s.aborted}, malformed ${s.malformed})`);
    backend.stop();
    process.exit(0);
  });
}
