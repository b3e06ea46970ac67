/**
 * From a path of keys (["services", 0, "backends", 2, "address"]) to a place in the YAML source, and the
 * one-line "file:line:col path: message" the user sees.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node } from "yaml";
import type { PathKey } from "./checks.ts";

/**
 * Which part of the node at a path: the start of its value (wrong values), its key (unknown keys), or
 * the end of its value (where a missing key would have gone, used for ordering).
 */
export type Target = "value" | "key" | "end";

/**
 * The source offset of the node at `path`. If the path goes further than the document (a value that
 * came from a default, a missing key), the deepest node that exists stands in for it.
 *
 * A path that goes through an alias (`*name`) or a merge key (`<<: *name`) points at that reference:
 * it is where this part of the config was written, even though the values live at the anchor.
 */
export function offsetOf(doc: Document, path: readonly PathKey[], target: Target): number {
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  let via: number | undefined;
  const finish = (): number => via ?? (target === "end" ? (rangeEnd(node) ?? offset) : offset);
  for (const [depth, key] of path.entries()) {
    if (isAlias(node)) {
      via ??= rangeStart(node);
      node = node.resolve(doc);
    }
    const step = child(doc, node, key);
    if (step === undefined) return finish();
    if (step.via !== undefined) via ??= step.via;
    if (target === "key" && depth === path.length - 1) return via ?? rangeStart(step.key) ?? offset;
    // A key with no value (`backends:`) has a null scalar whose range sits right after the colon.
    offset = rangeStart(step.value) ?? rangeStart(step.key) ?? offset;
    node = step.value;
  }
  return finish();
}

interface Step {
  value: unknown;
  /** The mapping key node (undefined for list items). */
  key?: unknown;
  /** Where the merge key that brought this entry in is, if it came from one. */
  via?: number;
}

/** The entry `key` of a mapping (directly or through `<<` merge keys) or item `key` of a list. */
function child(doc: Document, node: unknown, key: PathKey): Step | undefined {
  if (isAlias(node)) return child(doc, node.resolve(doc), key);
  if (isSeq(node)) return typeof key === "number" && key < node.items.length ? { value: node.items[key] } : undefined;
  if (!isMap(node)) return undefined;
  const pair = node.items.find((p) => isPair(p) && !isMergeKey(p.key) && keyText(p.key) === String(key));
  if (pair) return { value: pair.value, key: pair.key };
  for (const merge of node.items) {
    if (!isPair(merge) || !isMergeKey(merge.key)) continue;
    const sources = isSeq(merge.value) ? merge.value.items : [merge.value];
    for (const source of sources) {
      const found = child(doc, source, key);
      if (found) return { ...found, via: rangeStart(source) };
    }
  }
  return undefined;
}

/** `<<` with merge keys enabled (the yaml library gives its scalar a symbol value). */
function isMergeKey(key: unknown): boolean {
  return isScalar(key) && (typeof key.value === "symbol" || key.value === "<<");
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return undefined;
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as Node | null | undefined)?.range;
  return Array.isArray(range) ? range[0] : undefined;
}

/** The end of the node's value (range[1]: before any trailing comment). */
function rangeEnd(node: unknown): number | undefined {
  const range = (node as Node | null | undefined)?.range;
  return Array.isArray(range) ? range[1] : undefined;
}

/** services[0].backends[2].address */
export function formatPath(path: readonly PathKey[]): string {
  let out = "";
  for (const key of path) out += typeof key === "number" ? `[${key}]` : out === "" ? key : `.${key}`;
  return out;
}

/** "lb.yaml:12:9 services[0].backends[2].address: message", or without the path part at the top level. */
export function formatLocated(
  filename: string,
  lines: LineCounter,
  offset: number,
  path: readonly PathKey[],
  message: string,
): string {
  const { line, col } = lines.linePos(offset);
  const where = `${filename}:${line}:${col}`;
  return path.length === 0 ? `${where} ${message}` : `${where} ${formatPath(path)}: ${message}`;
}
