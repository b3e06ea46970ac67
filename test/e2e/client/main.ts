/**
 * featherlb-e2e-client: runs the e2e suite against a featherlb (see suite.ts). Configured by
 * environment (compose.yml sets it); exits 0 when every check passed, 1 otherwise, 2 on a setup error.
 */
import { readLbConfig } from "../../support/lbconfig.ts";
import { ensureSources, parseSources } from "./sources.ts";
import { runSuite, type SuiteOptions } from "./suite.ts";

const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const num = (name: string, fallback: number) => {
  const v = Number(env(name, String(fallback)));
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a number ≥ 0`);
  return v;
};

async function main(): Promise<number> {
  const configPath = env("E2E_CONFIG", "/etc/featherlb/lb.yaml");
  const cfg = readLbConfig(await Bun.file(configPath).text(), configPath);
  const lbHost = env("E2E_LB_HOST", "lb");
  const wanted = parseSources(env("E2E_SOURCES", ""));
  const { sources, problems } = ensureSources(wanted, env("E2E_IFACE", "eth0"));
  for (const p of problems.slice(0, 3)) console.log(`  warning: ${p}`);
  const o: SuiteOptions = {
    mode: env("E2E_MODE", cfg.mode),
    lbHost,
    metricsUrl: env("E2E_METRICS_URL", `http://${lbHost}:9090/metrics`),
    seconds: num("E2E_SECONDS", 5),
    concurrency: num("E2E_CONCURRENCY", 32),
    payloadBytes: num("E2E_PAYLOAD_BYTES", 64),
    bulkMiB: num("E2E_BULK_MIB", 16),
    bulkCount: num("E2E_BULK_COUNT", 3),
    holdSeconds: num("E2E_HOLD_SECONDS", 4),
    holdConcurrency: num("E2E_HOLD_CONCURRENCY", 24),
    slowHoldMs: num("E2E_SLOW_HOLD_MS", 250),
    fastHoldMs: num("E2E_FAST_HOLD_MS", 5),
    sources,
    faultBackend: env("E2E_FAULT_BACKEND", "backend-b"),
    only: env("E2E_ONLY", "").split(",").filter(Boolean),
    timeoutMs: num("E2E_TIMEOUT_MS", 10_000),
    readyTimeoutMs: num("E2E_READY_SECONDS", 30) * 1000,
    faultKillAfterMs: 2500,
    faultOutageMs: 3000,
  };
  console.log(
    `  client: ${o.mode} mode, LB ${lbHost}, ${cfg.services.length} services, ${sources.length} client source IPs` +
      `${sources.length ? ` (${sources[0]} … ${sources.at(-1)})` : ""}, ${o.seconds} s per load, concurrency ${o.concurrency}`,
  );
  const pass = await runSuite(cfg, o, {
    out: (line) => console.log(line),
    progress: (line) => console.log(`~ ${line}`),
    action: (verb, backend) => console.log(`@@ACTION ${verb} ${backend}`),
  });
  return pass ? 0 : 1;
}

// PID 1 in its container: without a handler SIGTERM would be ignored until Docker's SIGKILL.
for (const signal of ["SIGTERM", "SIGINT"] as const)
  process.on(signal, () => {
    console.log(`  client: ${signal}, stopping`);
    process.exit(3);
  });

main().then(
  (code) => process.exit(code),
  (err) => {
    console.log(`  FAIL  client setup: ${err instanceof Error ? err.message : String(err)}`);
    console.log("RESULT setup FAIL");
    process.exit(2);
  },
);
