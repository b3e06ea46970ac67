/**
 * The schema's building blocks: small valibot combinators, each carrying its own human message. The
 * sections (sections.ts) are composed from these. Every message follows "file:line:col path: " (added by
 * load.ts) and says what was expected and what was found.
 */
import * as v from "valibot";
import { parseHostPort, type HostKind } from "./address.ts";
import { parseDuration, type DurationBounds } from "./duration.ts";
import { describe, type Parsed } from "./result.ts";
import { closest } from "./suggest.ts";

/** "expected X, got Y"; a number or boolean where text was expected gets a hint to quote it. */
export function expected(what: string, textual = false) {
  return (issue: { input: unknown }): string => {
    const hint = textual && (typeof issue.input === "number" || typeof issue.input === "boolean");
    return `expected ${what}, got ${describe(issue.input)}${hint ? " (quote it to make it a string)" : ""}`;
  };
}

/**
 * A mapping that rejects unknown keys, suggesting the nearest valid one. Valibot reports a missing
 * required key, an unknown key and a non-mapping through this one message function; they differ in
 * `expected` ("never" marks the unknown key) and in whether the issue has a path.
 */
export function mapping<const E extends v.ObjectEntries>(entries: E, what = "a mapping") {
  const keys = Object.keys(entries);
  // valibot's object schemas accept arrays (typeof [] === "object"); a YAML list is not a mapping.
  const notList = v.check((input: unknown) => !Array.isArray(input), expected(what));
  const object = v.strictObject(entries, (issue) => {
    const key = issue.path?.[0]?.key;
    if (typeof key !== "string") return expected(what)(issue);
    if (issue.expected !== "never") return `missing required key "${key}"`;
    const guess = closest(key, keys);
    return guess !== undefined
      ? `unknown key "${key}"; did you mean "${guess}"?`
      : `unknown key "${key}"; valid keys here: ${keys.join(", ")}`;
  });
  return v.pipe(v.unknown(), notList, object);
}

/** One of a fixed set of names (modes, algorithms…), listing them all when the input is not one. */
export function choice<const T extends readonly [string, ...string[]]>(options: T, noun: string) {
  const list = options.join(", ");
  return v.picklist(options, (issue) => {
    if (typeof issue.input !== "string") return `expected one of ${list}, got ${describe(issue.input)}`;
    const guess = closest(issue.input, options);
    const hint = guess !== undefined ? ` did you mean "${guess}"?` : "";
    return `unknown ${noun} "${issue.input}";${hint} expected one of ${list}`;
  });
}

/** A whole number, with the message the config uses everywhere. */
export function wholeNumber() {
  return v.pipe(
    v.number(expected("a number")),
    v.integer((issue) => `must be a whole number, got ${issue.input}`),
  );
}

/** An integer in [min, max]; `note` explains a special value ("0 = unlimited"). */
export function integer(min: number, max: number, note = "") {
  const range = `must be ${min}-${max}${note}`;
  return v.pipe(
    v.number(expected("a number")),
    v.integer((issue) => `must be a whole number, got ${issue.input}`),
    v.minValue(min, (issue) => `${range}, got ${issue.input}`),
    v.maxValue(max, (issue) => `${range}, got ${issue.input}`),
  );
}

/** Lift one of our parsers into the schema: its error becomes the issue message. */
export function parsedBy<I, O>(parse: (input: I) => Parsed<O>) {
  return v.rawTransform<I, O>(({ dataset, addIssue, NEVER }) => {
    const result = parse(dataset.value);
    if (result.ok) return result.value;
    addIssue({ message: result.error });
    return NEVER;
  });
}

/** A duration ("2s", "500ms", or integer milliseconds) → milliseconds. */
export function duration(bounds: DurationBounds = {}) {
  return v.pipe(
    v.unknown(),
    parsedBy((input: unknown) => parseDuration(input, bounds)),
  );
}

/** A bare number where an address was expected is most likely a port: show how to write it. */
export function expectedHostPort(kind: HostKind, alternatives = "") {
  return (issue: { input: unknown }): string => {
    const base = `expected "host:port"${alternatives}, got ${describe(issue.input)}`;
    if (typeof issue.input !== "number") return base;
    return `${base}; write "${kind === "listen" ? "0.0.0.0" : "HOST"}:${issue.input}"`;
  };
}

/** "host:port" → HostPort; a listener's host must be an IP literal, a backend's may be a name. */
export function hostPort(kind: HostKind) {
  return v.pipe(
    v.string(expectedHostPort(kind)),
    parsedBy((text: string) => parseHostPort(text, kind)),
  );
}
