/**
 * The raw results the bench writes (lib/rows.sh, scale.ts): JSON lines, one `{meta}` line, result rows,
 * one `{end}` line. Read by report.ts and scale-report.ts.
 */
export type Meta = Record<string, string | number>;

export function parseResults<R>(text: string): { rows: R[]; meta: Meta; end: Meta } {
  const rows: R[] = [];
  let meta: Meta = {};
  let end: Meta = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const obj = JSON.parse(line) as { meta?: Meta; end?: Meta } & R;
    if (obj.meta) meta = obj.meta;
    else if (obj.end) end = obj.end;
    else rows.push(obj);
  }
  return { rows, meta, end };
}
