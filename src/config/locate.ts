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
 */
export function offsetOf(doc: Document, path: readonly PathKey[], target: Target): number {
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  const result = (): number => (target === "end" ? (rangeEnd(node) ?? offset) : offset);
  for (const [depth, key] of path.entries()) {
    if (isAlias(node)) node = node.resolve(doc);
    let next: unknown;
    let keyNode: unknown;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && keyText(p.key) === String(key));
      next = pair?.value;
      keyNode = pair?.key;
    } else if (isSeq(node) && typeof key === "number") {
      next = node.items[key];
    }
    if (target === "key" && depth === path.length - 1 && keyNode !== undefined) return rangeStart(keyNode) ?? offset;
    if (next === undefined) return result();
    // A key with no value (`backends:`) has a null scalar whose range sits right after the colon.
    offset = rangeStart(next) ?? rangeStart(keyNode) ?? offset;
    node = next;
  }
  return result();
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
