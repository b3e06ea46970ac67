/**
 * Reading the config file: YAML → plain values → ConfigSchema → Config.
 *
 * Any problem becomes one UserError("config") whose message is a single line,
 * "file:line:col path: what is wrong", pointing at the offending value (or key). Only the first problem
 * in the file is reported, so fixes go top to bottom.
 */
import { readFile } from "node:fs/promises";
import * as v from "valibot";
import { isAlias, LineCounter, parseDocument, visit, type Document } from "yaml";
import { UserError } from "../errors.ts";
import type { PathKey } from "./checks.ts";
import { formatLocated, offsetOf } from "./locate.ts";
import { ConfigSchema } from "./schema.ts";
import type { Config } from "./types.ts";

export async function loadConfig(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new UserError("config", `cannot read config file ${path}: ${osReason(err)}`);
  }
  return { ...parseConfig(text, path), source: path };
}

/** The OS's reason without Node's "ENOENT: …, open 'x'" decoration. */
function osReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case "ENOENT":
      return "no such file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "it is a directory";
    default:
      return err instanceof Error ? err.message : String(err);
  }
}

export function parseConfig(text: string, filename: string): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter: lines,
    prettyErrors: false,
    // "<<: *anchor" merge keys (YAML 1.1, widely used with anchors to share service settings).
    merge: true,
  });
  const fail = (offset: number, path: readonly PathKey[], message: string): never => {
    throw new UserError("config", formatLocated(filename, lines, offset, path, message));
  };

  const syntax = doc.errors[0];
  if (syntax) fail(syntax.pos[0], [], `invalid YAML: ${firstLine(syntax.message)}`);
  if (doc.contents === null) fail(0, [], 'the file is empty; expected a mapping with a "services" list');

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    // toJS throws for an alias to an anchor that does not exist, or too many alias expansions.
    fail(firstBadAlias(doc), [], `invalid YAML: ${firstLine(err instanceof Error ? err.message : String(err))}`);
  }

  const result = v.safeParse(ConfigSchema, data);
  if (result.success) return result.output;
  const { offset, path, message } = mostRelevant(doc, result.issues);
  return fail(offset, path, message);
}

interface Located {
  offset: number;
  /** Where the problem sorts in document order (differs from `offset` for missing keys). */
  order: number;
  /** The path shown in the message: for key problems (unknown, missing) the mapping that holds the key. */
  path: PathKey[];
  message: string;
}

/**
 * The first issue in document order. A missing key is reported at the start of the mapping that lacks
 * it but sorts at its end: problems written inside that mapping come first, and an unknown key there is
 * probably the misspelt required one (`unknown key "backend"; did you mean "backends"?` beats
 * `missing required key "backends"`).
 */
function mostRelevant(doc: Document, issues: readonly v.BaseIssue<unknown>[]): Located {
  const located = issues.map((issue) => locate(doc, issue));
  located.sort((a, b) => a.order - b.order); // stable: ties keep valibot's order
  return located[0] ?? { offset: 0, order: 0, path: [], message: "invalid config" };
}

function locate(doc: Document, issue: v.BaseIssue<unknown>): Located {
  const keys: PathKey[] = (issue.path ?? []).map((item) => (typeof item.key === "number" ? item.key : String(item.key)));
  const last = issue.path?.at(-1);
  const keyProblem = last?.type === "object" && last.origin === "key";
  if (!keyProblem) {
    const offset = offsetOf(doc, keys, "value");
    return { offset, order: offset, path: keys, message: issue.message };
  }
  const parent = keys.slice(0, -1);
  if (issue.expected === "never") {
    // An unknown key: point at the key itself.
    const offset = offsetOf(doc, keys, "key");
    return { offset, order: offset, path: parent, message: issue.message };
  }
  return { offset: offsetOf(doc, parent, "value"), order: offsetOf(doc, parent, "end"), path: parent, message: issue.message };
}

function firstLine(message: string): string {
  return message.split("\n")[0]?.trim() ?? message;
}

/** Where the first alias that points nowhere is, for toJS's "Unresolved alias" error. */
function firstBadAlias(doc: Document): number {
  let offset = 0;
  visit(doc, {
    Alias(_, node) {
      if (isAlias(node) && node.resolve(doc) === undefined) {
        offset = node.range?.[0] ?? 0;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return offset;
}
