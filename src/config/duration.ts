/**
 * Durations in the config file: "500ms", "2s", "1m", "1h", compounds like "1m30s", or a bare integer of
 * milliseconds (HAProxy's convention). The result is always an integer number of milliseconds.
 */
import { describe, fail, ok, type Parsed } from "./result.ts";

/** setTimeout's limit (2^31 − 1 ms, ~24.8 days): a longer timer fires at once in Bun and Node. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** One "<number><unit>" term; the whole string must be a sequence of them. */
const TERM = /(\d+(?:\.\d+)?)([a-zA-Z]*)/y;

export interface DurationBounds {
  /** Smallest allowed value in ms (default 0). */
  min?: number;
}

export function parseDuration(input: unknown, bounds: DurationBounds = {}): Parsed<number> {
  const ms = toMilliseconds(input);
  if (!ms.ok) return ms;
  const min = bounds.min ?? 0;
  if (ms.value < min) return fail(`must be at least ${formatDuration(min)}, got ${show(input)}`);
  if (ms.value > MAX_DURATION_MS) {
    return fail(`must be at most ${MAX_DURATION_MS}ms (about 24.8 days, the timer limit), got ${show(input)}`);
  }
  return ms;
}

function toMilliseconds(input: unknown): Parsed<number> {
  if (typeof input === "number") {
    if (input < 0) return fail(`must not be negative, got ${input}`);
    if (!Number.isInteger(input)) {
      return fail(`a bare number is milliseconds and must be a whole number, got ${input}; write e.g. "1.5s"`);
    }
    return ok(input);
  }
  if (typeof input !== "string") return fail(`${EXPECTED}, got ${describe(input)}`);
  const text = input.trim();
  if (text.startsWith("-")) return fail(`must not be negative, got ${JSON.stringify(input)}`);
  if (/^\d+$/.test(text)) return ok(Number(text));
  if (text === "") return fail(`${EXPECTED}, got an empty string`);

  let total = 0;
  TERM.lastIndex = 0;
  while (TERM.lastIndex < text.length) {
    const m = TERM.exec(text);
    if (!m) return fail(`${EXPECTED}, got ${describe(input)}`);
    const [, amount = "", unit = ""] = m;
    if (unit === "") {
      // A number with no unit in a compound ("1m30") or after a fraction ("1.5"): ambiguous.
      return fail(`missing unit after "${amount}" in ${JSON.stringify(input)}; use ms, s, m or h`);
    }
    const factor = UNIT_MS[unit];
    if (factor === undefined) {
      return fail(`unknown unit "${unit}" in ${JSON.stringify(input)}; use ms, s, m or h`);
    }
    total += Number(amount) * factor;
  }
  // Decimal fractions are fine as long as they land on whole milliseconds ("1.5s", not "0.5ms").
  const rounded = Math.round(total * 1000) / 1000;
  if (!Number.isInteger(rounded)) return fail(`must be a whole number of milliseconds, got ${JSON.stringify(input)}`);
  return ok(rounded);
}

const EXPECTED = 'expected a duration like "500ms", "2s", "1m" or "1h" (or an integer of milliseconds)';

function show(input: unknown): string {
  return typeof input === "string" ? JSON.stringify(input) : String(input);
}

/** The shortest exact spelling of `ms`: 2000 → "2s", 90000 → "1m30s", 1500 → "1500ms", 0 → "0s". */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms % 1000 !== 0) return `${ms}ms`;
  let s = ms / 1000;
  let out = "";
  for (const [unit, size] of [["h", 3600], ["m", 60], ["s", 1]] as const) {
    if (s >= size) {
      out += `${Math.floor(s / size)}${unit}`;
      s %= size;
    }
  }
  return out;
}
