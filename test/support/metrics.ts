/**
 * The one reader of featherlb's admin endpoints in the tests: /metrics (Prometheus text format; names in
 * src/control/metrics.ts) and the backend addresses in /status. Used by the integration tests through
 * lb.ts and by the e2e client inside its FROM-scratch container, so it imports nothing.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parse the text exposition format: `name{k="v",…} value` lines; comments and blanks skipped. */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (let l; (l = re.exec(m[2] ?? "")); ) labels[l[1]!] = l[2]!.replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

export class Metrics {
  constructor(readonly samples: Sample[]) {}

  get(name: string, labels: Record<string, string> = {}): number | undefined {
    return this.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
  }

  /** featherlb_backend_up for one backend address of one service. */
  up(service: string, backend: string): boolean | undefined {
    const v = this.get("featherlb_backend_up", { service, backend });
    return v === undefined ? undefined : v === 1;
  }

  eligible(service: string): number | undefined {
    return this.get("featherlb_service_backends_eligible", { service });
  }
}

export async function scrape(url: string, timeoutMs = 1000): Promise<Metrics> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Metrics(parseMetrics(await res.text()));
}

/** The address featherlb currently uses for one backend of one service, from its /status JSON. */
export async function backendIp(statusUrl: string, service: string, address: string): Promise<string | undefined> {
  try {
    const res = await fetch(statusUrl, { signal: AbortSignal.timeout(1000) });
    const body = (await res.json()) as { services?: { name: string; backends: { address: string; ip: string | null }[] }[] };
    return body.services?.find((s) => s.name === service)?.backends.find((b) => b.address === address)?.ip ?? undefined;
  } catch {
    return undefined;
  }
}
