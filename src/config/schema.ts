/**
 * The config file's schema (valibot): the sections (sections.ts, built from combinators.ts) validate the
 * parsed YAML and convert durations and addresses; then defaults.ts fills in what the file left out and
 * the cross-field checks (checks.ts, xdp.ts) run. Its output is exactly `Config` (checked at compile
 * time at the bottom).
 */
import * as v from "valibot";
import { checkConfig, type PathKey } from "./checks.ts";
import { applyDefaults } from "./defaults.ts";
import { File } from "./sections.ts";
import type { Config } from "./types.ts";

/** A valibot issue path from plain keys (only `key` is read back, by load.ts). */
function toIssuePath(keys: readonly PathKey[]): [v.IssuePathItem, ...v.IssuePathItem[]] | undefined {
  const items = keys.map(
    (key): v.IssuePathItem =>
      typeof key === "number"
        ? { type: "array", origin: "value", input: [], key, value: undefined }
        : { type: "object", origin: "value", input: {}, key, value: undefined },
  );
  const [first, ...rest] = items;
  return first === undefined ? undefined : [first, ...rest];
}

/** The whole file: parsed YAML (plain JS values) in, `Config` out. */
export const ConfigSchema = v.pipe(
  File,
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const config = applyDefaults(dataset.value);
    const problems = checkConfig(config, dataset.value);
    for (const p of problems) addIssue({ message: p.message, path: toIssuePath(p.path) });
    return problems.length > 0 ? NEVER : config;
  }),
);

// ---------------------------------------------------------------------------------------------------
// The schema's output must be exactly the Config contract of types.ts: this line fails `tsc` on drift.
// (`source` is not in the file: loadConfig adds it.)

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const outputIsConfig: Equal<v.InferOutput<typeof ConfigSchema>, Omit<Config, "source">> = true;
void outputIsConfig;
