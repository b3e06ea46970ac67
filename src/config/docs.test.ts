/** docs/config.md must document every key the schema accepts, and nothing the schema does not know. */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ConfigSchema } from "./schema.ts";

/**
 * Every key path of a valibot schema, as the docs write them ("services[].backends[].weight"). Walks
 * through the wrappers the schema uses: optional (`wrapped`), pipes (`pipe`), arrays (`item`) and
 * objects (`entries`).
 */
function keyPaths(schema: unknown, prefix = ""): string[] {
  const s = schema as { entries?: Record<string, unknown>; item?: unknown; wrapped?: unknown; pipe?: unknown[] };
  if (s.wrapped !== undefined) return keyPaths(s.wrapped, prefix);
  // A pipe copies its first item's properties onto itself; walk its items instead, once each.
  if (s.pipe !== undefined) return s.pipe.flatMap((item) => keyPaths(item, prefix));
  if (s.entries !== undefined) {
    return Object.entries(s.entries).flatMap(([key, value]) => {
      const path = prefix === "" ? key : `${prefix}.${key}`;
      return [path, ...keyPaths(value, path)];
    });
  }
  if (s.item !== undefined) return keyPaths(s.item, `${prefix}[]`);
  return [];
}

test("docs/config.md documents exactly the schema's keys", async () => {
  const docs = await Bun.file(join(import.meta.dir, "../../docs/config.md")).text();
  const paths = keyPaths(ConfigSchema);
  expect(paths).toContain("services[].backends[].weight");
  expect(paths).toContain("defaults.health_check.rise");
  const documented = new Set([...docs.matchAll(/^\| `([a-z_.[\]]+)` \|/gm)].map((m) => m[1]));
  for (const path of paths) expect(documented).toContain(path);
  for (const path of documented) expect(paths).toContain(path as string);
});
