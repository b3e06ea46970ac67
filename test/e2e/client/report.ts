/** Plain-text formatting for the run log: numbers, bars, tables. */

export const fmtInt = (n: number): string => Math.round(n).toLocaleString("en-US");

export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 100 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

export function fmtBytes(b: number): string {
  if (b < 1024) return `${b} B`;
  if (b < 1024 * 1024) return `${(b / 1024).toFixed(1)} KiB`;
  return `${(b / 1024 / 1024).toFixed(1)} MiB`;
}

/** A bar of `width` cells, the filled part proportional to `fraction` (0..1). */
export function bar(fraction: number, width = 30): string {
  const filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return "█".repeat(filled) + "·".repeat(width - filled);
}

export function pad(s: string, n: number): string {
  return s.length >= n ? s : s + " ".repeat(n - s.length);
}

export function padLeft(s: string, n: number): string {
  return s.length >= n ? s : " ".repeat(n - s.length) + s;
}

/** Rows of cells → aligned lines; numeric-looking cells are right-aligned. */
export function table(header: string[], rows: string[][], indent = "  "): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = (s: string) => /^[-+]?[\d,.]+( ?[a-zA-Z/%]+)?$|^–$/.test(s);
  const line = (cells: string[]) =>
    indent +
    cells
      .map((c, i) => (numeric(c) && i > 0 ? padLeft(c, widths[i]!) : pad(c, widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), indent + widths.map((w) => "─".repeat(w)).join("  "), ...rows.map(line)];
}

export interface SpreadRow {
  backend: string;
  weight: number;
  count: number;
  /** Expected share 0..1, or undefined when the algorithm promises none. */
  expect?: number;
}

/** One line per backend: name, weight, bar, count, share, expected share. */
export function spreadChart(rows: readonly SpreadRow[], indent = "    "): string[] {
  const total = rows.reduce((s, r) => s + r.count, 0) || 1;
  const name = Math.max(...rows.map((r) => r.backend.length));
  return rows.map(
    (r) =>
      `${indent}${pad(r.backend, name)}  w=${r.weight}  ${bar(r.count / total)}  ${padLeft(fmtInt(r.count), 7)}  ${padLeft(((r.count / total) * 100).toFixed(1), 5)}%` +
      (r.expect !== undefined ? `  (expect ${(r.expect * 100).toFixed(1)}%)` : ""),
  );
}

export function rule(title: string, width = 100): string {
  const head = `── ${title} `;
  return head + "─".repeat(Math.max(3, width - head.length));
}
