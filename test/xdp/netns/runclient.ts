/** Run the client script (netns/client.ts) in namespace `ns`, bounded by `deadlineS`; its last JSON line. */
import { join } from "node:path";
import { inNs } from "./topology.ts";

const CLIENT = join(import.meta.dir, "client.ts");

export function runClient(ns: string, args: string[], deadlineS: number): Record<string, any> {
  const r = Bun.spawnSync(inNs(ns, process.execPath, CLIENT, ...args), { env: { ...process.env, FLBX_DEADLINE_S: String(deadlineS) }, stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString().trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(out);
  } catch {
    throw new Error(`client ${args.join(" ")} printed no JSON (exit ${r.exitCode}): ${out} ${r.stderr.toString()}`);
  }
}
