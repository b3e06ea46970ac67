/**
 * `make demo`: featherlb (dist/featherlb) in front of three demo backends on loopback, one service per
 * algorithm, a short bounded load on each, and a printout of how the requests spread.
 */
import { resolve } from "node:path";
import { startLB } from "../support/lb.ts";
import { startBackend } from "../support/backend.ts";
import { greetConn } from "../support/conn.ts";
import { runLoad } from "../support/load.ts";
import { freePort } from "../support/net.ts";
import { ALGORITHM_NAMES } from "../../src/config/types.ts";

const SECONDS_PER_SERVICE = 1.5;
const CONCURRENCY = 16;

process.env.FEATHERLB_BIN ??= resolve(import.meta.dir, "../../dist/featherlb");

const backends = [
  { name: "backend-a", weight: 1 },
  { name: "backend-b", weight: 2 },
  { name: "backend-c", weight: 3 },
].map((b) => ({ ...b, server: startBackend(b.name) }));

const ports = ALGORITHM_NAMES.map(() => freePort());
const yaml = `admin: { listen: ADMIN }
log: { level: warn }
services:
${ALGORITHM_NAMES.map(
  (algorithm, i) => `  - name: ${algorithm}
    listen: 127.0.0.1:${ports[i]}
    algorithm: ${algorithm}
    backends:
${backends.map((b) => `      - { address: "${b.server.address}", weight: ${b.weight} }`).join("\n")}`,
).join("\n")}
`;

const lb = await startLB(yaml);
console.log(`featherlb ${lb.pid} in front of ${backends.map((b) => `${b.name} (weight ${b.weight})`).join(", ")}\n`);
console.log("algorithm              requests   req/s   " + backends.map((b) => b.name.padEnd(24)).join(""));
try {
  for (const [i, algorithm] of ALGORITHM_NAMES.entries()) {
    // Short requests: connect, read the greeting (the backend's name), close.
    const load = await runLoad({
      label: algorithm,
      concurrency: CONCURRENCY,
      durationMs: SECONDS_PER_SERVICE * 1000,
      conn: (_, onHello) => greetConn({ host: "127.0.0.1", port: ports[i]!, onHello }),
    });
    const counts = load.perBackend;
    const errors = load.errorCount;
    const total = load.ok;
    const cells = backends.map((b) => {
      const n = counts.get(b.name) ?? 0;
      const share = total ? n / total : 0;
      return `${"█".repeat(Math.round(share * 12)).padEnd(12)} ${(share * 100).toFixed(1).padStart(5)}%    `;
    });
    console.log(
      `${algorithm.padEnd(22)} ${String(total).padStart(8)} ${String(Math.round(total / SECONDS_PER_SERVICE)).padStart(7)}   ${cells.join("")}${errors ? `  errors: ${errors}` : ""}`,
    );
  }
  console.log("\nsource_hash and maglev: every request here comes from 127.0.0.1, so one backend takes all (stickiness).");
  console.log("least_connections and power_of_two compare active connections per unit of weight, so under concurrency they follow the weights too.");
} finally {
  await lb.stop();
  backends.forEach((b) => b.server.stop());
}
