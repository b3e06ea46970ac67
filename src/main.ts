#!/usr/bin/env bun
/**
 * featherlb — the command line. Parses arguments, runs the control plane, maps user errors to one
 * sentence and exit code 2, and wires signals to reload and drain.
 */
import { loadConfig } from "./config/load.ts";
import { dsrBackend } from "./dataplane/xdp/dsr-backend.ts";
import { ALGORITHMS } from "./control/algorithms/index.ts";
import { Runtime } from "./runtime.ts";
import { UserError } from "./errors.ts";
import { VERSION, versionLine } from "./version.ts";

const HELP = `featherlb ${VERSION} — a lightweight TCP (layer-4) load balancer

Usage:
  featherlb <config.yaml>          run (same as: featherlb run <config.yaml>)
  featherlb check <config.yaml>    validate the config and exit 0 (valid) or 2 (invalid), like nginx -t
  featherlb dsr-backend <VIP> [--ipip] [--apply]
                                   print (with --apply, also run) what a Linux backend of a
                                   forwarding: dsr service needs: the VIP on lo (--ipip: on an IPIP
                                   device), arp_ignore=1, arp_announce=2 (docs/dsr.md)
  featherlb --version              print the version, git commit, Bun version and target
  featherlb --help                 this text

Signals: SIGHUP reloads the config (invalid → rejected, old config keeps serving), as does a change
of the file's contents (config_watch, default every 1s);
SIGTERM/SIGINT stop accepting and drain established connections up to drain_timeout, then exit 0.
SIGUSR2 (mode: xdp) hands the data plane over: the process exits 0 leaving the XDP program attached
and its maps pinned (xdp.pin_path); the next start adopts them, established flows keep flowing.

Algorithms:
${Object.values(ALGORITHMS)
  .map((a) => `  ${a.name.padEnd(22)} ${a.summary}`)
  .join("\n")}

Docs: README.md and docs/config.md.`;

type Command =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "check"; path: string }
  | { kind: "run"; path: string }
  | { kind: "dsr-backend"; vip: string; ipip: boolean; apply: boolean };

function parseArgs(argv: string[]): Command {
  const [first, second, ...rest] = argv;
  if (first === undefined || first === "-h" || first === "--help" || first === "help") return { kind: "help" };
  if (first === "-v" || first === "--version" || first === "version") return { kind: "version" };
  const usage = (what: string) => new UserError("usage", `${what}; run featherlb --help for usage.`);
  if (first === "check" || first === "run") {
    if (second === undefined) throw usage(`${first} needs a config file`);
    if (rest.length > 0) throw usage(`unexpected argument "${rest[0]}"`);
    return { kind: first, path: second };
  }
  if (first === "dsr-backend") {
    if (second === undefined || second.startsWith("-")) throw usage("dsr-backend needs the service's IPv4 address (the VIP)");
    const flags = new Set(rest);
    for (const f of flags) if (f !== "--ipip" && f !== "--apply") throw usage(`unknown option "${f}" for dsr-backend (it takes --ipip and --apply)`);
    return { kind: "dsr-backend", vip: second, ipip: flags.has("--ipip"), apply: flags.has("--apply") };
  }
  if (first.startsWith("-")) throw usage(`unknown option "${first}"`);
  if (second !== undefined) throw usage(`unexpected argument "${second}"`);
  return { kind: "run", path: first };
}

async function run(path: string): Promise<void> {
  const runtime = await Runtime.start(path);
  process.on("SIGHUP", () => void runtime.reload());
  let signalled = false;
  const stop = (signal: string) => {
    if (signalled) {
      runtime.log.warn("second signal, exiting without waiting for connections", { signal });
      process.exit(0);
    }
    signalled = true;
    void runtime.shutdown(signal).then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  // Tests only: a way to make a worker thread die as a bug would (tests kill it to check that the
  // others keep serving). Off unless the environment asks for it.
  if (process.env.FEATHERLB_TEST_HOOKS === "1") process.on("SIGUSR1", () => runtime.crashWorker());
  process.on("SIGINT", () => stop("SIGINT"));
  // Upgrade without dropping flows: this process exits, the XDP program stays for the next start.
  process.on("SIGUSR2", () => void runtime.handover().then((done) => done && process.exit(0)));
  // A bug in one connection's handler must not take every other connection down with it.
  process.on("uncaughtException", (err) => runtime.log.error("uncaught exception", { error: String(err), stack: err.stack }));
  process.on("unhandledRejection", (err) => runtime.log.error("unhandled rejection", { error: String(err) }));
}

async function main(argv: string[]): Promise<number> {
  const command = parseArgs(argv);
  switch (command.kind) {
    case "help":
      console.log(HELP);
      return 0;
    case "version":
      console.log(versionLine());
      return 0;
    case "check": {
      const config = await loadConfig(command.path);
      const n = config.services.length;
      console.log(`${command.path}: ok (${n} service${n === 1 ? "" : "s"}, mode ${config.mode})`);
      return 0;
    }
    case "dsr-backend":
      dsrBackend(command.vip, command, (line) => console.log(line));
      return 0;
    case "run":
      await run(command.path);
      return -1; // keep running
  }
}

try {
  const code = await main(process.argv.slice(2));
  if (code >= 0) process.exit(code);
} catch (err) {
  if (err instanceof UserError) {
    console.error(`featherlb: ${err.message}`);
    process.exit(err.exitCode);
  }
  console.error(`featherlb: internal error: ${err instanceof Error ? err.message : String(err)}`);
  if (process.env.FEATHERLB_DEBUG) console.error(err);
  process.exit(1);
}
