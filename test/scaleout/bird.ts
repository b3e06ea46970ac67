/**
 * BIRD 2 processes for the scale-out suite, run from the example configs shipped in deploy/bird/: the
 * test replaces only their site block (the `define`s between the "site" markers) with its own
 * addresses, so what is tested is what operators copy. Each BIRD runs in the foreground in its
 * namespace with its own control socket and is stopped by its PID.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Proc } from "../support/proc.ts";
import { inNs } from "../xdp/netns/topology.ts";

const DEPLOY = join(import.meta.dir, "../../deploy/bird");
const SITE = /# ---- site:.*\n[\s\S]*?# ---- end of site -+\n/;

/** deploy/bird/<name> with its site block replaced by `defines` (name → BIRD literal). */
export function birdConfig(name: "router.conf" | "instance.conf", defines: Record<string, string>): string {
  const text = readFileSync(join(DEPLOY, name), "utf8");
  if (!SITE.test(text)) throw new Error(`${name}: no site block`);
  return text.replace(SITE, Object.entries(defines).map(([k, v]) => `define ${k} = ${v};\n`).join(""));
}

export interface Bird {
  proc: Proc;
  stop(): Promise<number>;
}

/** Start `bird -f` in namespace `ns` with `config`; resolves once it has read it (or throws with its output). */
export async function startBird(ns: string, config: string): Promise<Bird> {
  const dir = mkdtempSync(join(tmpdir(), `featherlb-bird-${ns}-`));
  const conf = join(dir, "bird.conf");
  writeFileSync(conf, config);
  const proc = new Proc(inNs(ns, "bird", "-f", "-c", conf, "-s", join(dir, "bird.ctl"), "-P", join(dir, "bird.pid")));
  // "Started" is logged once the config is loaded and the protocols are starting.
  const deadline = Date.now() + 10_000;
  while (!proc.lines.some((l) => /Started/.test(l.text))) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`bird in ${ns} did not start: ${proc.tail()}`);
    await Bun.sleep(20);
  }
  return {
    proc,
    async stop() {
      const code = await proc.stop(2000);
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
