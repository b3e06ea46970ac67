/** What the small parsers in this folder return: a value, or one human sentence saying what is wrong. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

export const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
export const fail = <T = never>(error: string): Parsed<T> => ({ ok: false, error });

/** How a YAML value reads in an error message: `string "abc"`, `number 5`, `a list`, `an empty value`. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return "an empty value";
  if (typeof value === "string") return `string ${JSON.stringify(value)}`;
  if (typeof value === "number" || typeof value === "boolean") return `${typeof value} ${String(value)}`;
  if (Array.isArray(value) || value instanceof Set) return "a list";
  if (value instanceof Uint8Array) return "binary data";
  if (typeof value === "object") return "a mapping";
  return typeof value;
}
