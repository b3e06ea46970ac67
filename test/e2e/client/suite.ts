/**
 * The e2e suite the client container runs against featherlb: for every service (one per algorithm) a
 * short-connection load, bulk transfers, and the algorithm's own promise; then a fault scenario
 * (fault.ts).
 * Output protocol toward test/e2e/run.sh (the runner):
 *   "~ …"              live progress: console only
 *   "@@ACTION kill X"  the runner kills backend container X now ("start X" brings it back)
 *   anything else      the report: console and the run log
 */
import { echoConns, randomPayload, type Payload } from "../../support/conn.ts";
import type { LbConfig, LbService } from "../../support/lbconfig.ts";
import { percentile, runLoad, type LoadStats } from "../../support/load.ts";
import { scrape, type Metrics } from "../../support/metrics.ts";
import { predictor } from "../../support/predict.ts";
import { allServed, clientAddressSeen, exactEqual, noErrors, predicted, shareWithin, slowBackendAvoided, sticky, weightedExact, type BackendCount, type Check } from "./checks.ts";
import { faultScenario } from "./fault.ts";
import { fmtBytes, fmtInt, fmtMs, rule, spreadChart, table } from "./report.ts";

export interface SuiteOptions {
  /** "proxy" or "xdp": a label for the log. */
  mode: string;
  lbHost: string;
  metricsUrl: string;
  /** Short-connection load per service. */
  seconds: number;
  concurrency: number;
  payloadBytes: number;
  bulkMiB: number;
  bulkCount: number;
  /** Uneven-hold load (least_connections, power_of_two). */
  holdSeconds: number;
  holdConcurrency: number;
  slowHoldMs: number;
  fastHoldMs: number;
  /** Client source IPs (already local). */
  sources: string[];
  /** Backend id to kill in the fault scenario; "" skips it. */
  faultBackend: string;
  /** Only these algorithms (debugging); empty = all. */
  only: string[];
  timeoutMs: number;
  /** How long to wait for /metrics to show every backend eligible. */
  readyTimeoutMs: number;
  /** Fault scenario: load before the kill, and how long the backend stays out once removed. */
  faultKillAfterMs: number;
  faultOutageMs: number;
}

export interface SuiteIO {
  out(line: string): void;
  progress(line: string): void;
  action(verb: "kill" | "start", backend: string): void;
}

interface ServiceResult {
  service: LbService;
  short: LoadStats;
  bulk: LoadStats;
  hold?: LoadStats;
  checks: Check[];
}

const small = (n: number): Payload => randomPayload(n);
const now = () => performance.now();

export async function runSuite(cfg: LbConfig, o: SuiteOptions, io: SuiteIO): Promise<boolean> {
  const allChecks: Check[] = [];
  const results: ServiceResult[] = [];
  const ready = await waitReady(cfg, o, io);
  if (!ready.pass) {
    io.out(`  FAIL  ${ready.name}: ${ready.detail}`);
    io.out(`RESULT ${o.mode} FAIL`);
    return false;
  }
  io.out(`  ready: ${ready.detail}`);
  for (const service of cfg.services) {
    if (o.only.length && !o.only.includes(service.algorithm)) continue;
    const r = await testService(service, o, io);
    results.push(r);
    allChecks.push(...r.checks);
  }
  if (o.faultBackend) allChecks.push(...(await faultScenario(cfg, o, io)));

  io.out("");
  io.out(rule(`${o.mode}: summary`));
  io.out("");
  const rows = results.map((r) => {
    const lat = r.short.latencies;
    const bulkSecs = r.bulk.elapsedMs / 1000;
    const failed = r.checks.filter((c) => !c.pass).length;
    return [
      r.service.algorithm,
      `${r.service.name}:${r.service.port}`,
      `${planeOf(r.service, o)}${r.service.sendProxy !== "off" ? ` +pp ${r.service.sendProxy}` : ""}`,
      fmtInt(r.short.conns + r.bulk.conns + (r.hold?.conns ?? 0)),
      fmtInt(r.short.errorCount + r.bulk.errorCount + (r.hold?.errorCount ?? 0)),
      fmtInt(r.short.rate),
      fmtMs(percentile(lat, 50)),
      fmtMs(percentile(lat, 90)),
      fmtMs(percentile(lat, 99)),
      fmtBytes([r.short, r.bulk, r.hold].reduce((sum, l) => sum + (l ? l.bytesSent + l.bytesReceived : 0), 0)),
      `${(r.bulk.bytesSent / 1024 / 1024 / (bulkSecs || 1)).toFixed(0)} MiB/s`,
      failed ? `FAIL (${failed}/${r.checks.length})` : `PASS (${r.checks.length})`,
    ];
  });
  for (const line of table(["algorithm", "service", "plane", "conns", "errors", "conn/s", "p50", "p90", "p99", "bytes", "bulk", "checks"], rows)) io.out(line);
  io.out("  (latency: short connections, from connect() to the backend's close; bytes: sent + received by the");
  io.out("  client over all loads of the service; bulk: MiB/s each way with the transfers running concurrently)");
  const failed = allChecks.filter((c) => !c.pass);
  io.out("");
  io.out(`  ${o.mode}: ${allChecks.length - failed.length} of ${allChecks.length} checks passed`);
  for (const c of failed) io.out(`  FAIL  ${c.name}: ${c.detail}`);
  io.out(`RESULT ${o.mode} ${failed.length ? "FAIL" : "PASS"}`);
  return failed.length === 0;
}

/** Wait until the admin endpoint answers and every service has all its backends eligible. */
async function waitReady(cfg: LbConfig, o: SuiteOptions, io: SuiteIO): Promise<Check> {
  const deadline = now() + o.readyTimeoutMs;
  let last = "no answer yet";
  while (now() < deadline) {
    try {
      const m = await scrape(o.metricsUrl);
      const lacking = cfg.services.filter((s) => m.eligible(s.name) !== s.backends.length);
      if (!lacking.length) return { name: "LB ready", pass: true, detail: `${cfg.services.length} services, all backends eligible (${o.metricsUrl})` };
      last = lacking.map((s) => `${s.name} ${m.eligible(s.name) ?? "?"}/${s.backends.length}`).join(", ");
    } catch (err) {
      last = String(err);
    }
    io.progress(`waiting for the LB: ${last}`);
    await Bun.sleep(500);
  }
  return { name: `LB ready within ${o.readyTimeoutMs / 1000} s`, pass: false, detail: last };
}

function countsOf(service: LbService, ...loads: LoadStats[]): BackendCount[] {
  return service.backends.map((b) => ({
    backend: b.id,
    weight: b.weight,
    count: loads.reduce((s, l) => s + (l.perBackend.get(b.id) ?? 0), 0),
  }));
}

/** Connections per backend according to the LB's own counters. */
async function lbTotals(o: SuiteOptions, service: LbService): Promise<Map<string, number> | string> {
  let m: Metrics;
  try {
    m = await scrape(o.metricsUrl);
  } catch (err) {
    return String(err);
  }
  const out = new Map<string, number>();
  for (const b of service.backends) out.set(b.id, m.get("featherlb_backend_connections_total", { service: service.name, backend: b.address }) ?? NaN);
  for (const direction of ["in", "out"]) out.set(`@${direction}`, m.get("featherlb_service_bytes_total", { service: service.name, direction }) ?? NaN);
  // xdp: what the program did with packets (the totals; the services are tested one after another).
  for (const s of m.samples) if (s.name === "featherlb_xdp_packets_total" && s.labels.reason) out.set(`#${s.labels.reason}`, s.value);
  return out;
}

/**
 * The proxy counts payload bytes it relays: client → backend ("in") must equal every byte the client
 * sent, backend → client ("out") every byte it received. (The XDP plane counts bytes in the packets it
 * forwards, retransmissions included, so there the numbers are only shown.)
 */
function bytesAgree(before: Map<string, number> | string, after: Map<string, number> | string, sent: number, received: number): Check {
  const name = "LB byte counters = bytes the client sent and received";
  if (typeof before === "string" || typeof after === "string") return { name, pass: false, detail: "scrape failed" };
  const lbIn = after.get("@in")! - before.get("@in")!;
  const lbOut = after.get("@out")! - before.get("@out")!;
  return { name, pass: lbIn === sent && lbOut === received, detail: `in: lb ${fmtInt(lbIn)} / client sent ${fmtInt(sent)}; out: lb ${fmtInt(lbOut)} / client received ${fmtInt(received)}` };
}

/**
 * featherlb's per-backend connection counter against the client's count, exact in both modes: the
 * proxy counts accepted connections, the XDP plane one flow per completed handshake (the client's ACK of
 * the SYN-ACK; a duplicate SYN or ACK racing on another CPU follows the flow the first one made:
 * bpf/featherlb.bpf.c new_flow, bpf/flow.h promote). In xdp
 * mode the detail also lists what the program did with packets meanwhile, so an excess names its path.
 */
function metricsAgree(before: Map<string, number> | string, after: Map<string, number> | string, counts: BackendCount[], mode: string): Check {
  const xdp = mode === "xdp";
  const name = xdp ? "LB /metrics flow counts = the client's connections" : "LB /metrics connection counts = what the client saw";
  if (typeof before === "string" || typeof after === "string") return { name, pass: false, detail: `scrape failed: ${typeof before === "string" ? before : after}` };
  const rows = counts.map((c) => ({ ...c, lb: (after.get(c.backend) ?? NaN) - (before.get(c.backend) ?? NaN) }));
  const extra = rows.reduce((sum, r) => sum + (r.lb - r.count), 0);
  return {
    name,
    pass: rows.every((r) => r.lb === r.count),
    detail: `${rows.map((r) => `${r.backend} lb ${r.lb} / client ${r.count}`).join(", ")}${xdp ? `; ${extra} extra; packets by reason: ${reasonDeltas(before, after)}` : ""}`,
  };
}

/** xdp: the program's packet outcomes that changed between two scrapes ("no_flow +3, tx_c2b +120"). */
function reasonDeltas(before: Map<string, number>, after: Map<string, number>): string {
  const out: string[] = [];
  for (const [k, v] of after) {
    if (!k.startsWith("#")) continue;
    const d = v - (before.get(k) ?? 0);
    if (d) out.push(`${k.slice(1)} +${d}`);
  }
  return out.join(", ") || "none";
}

/** The plane a service runs in: its own mode, or the run's for auto. */
const planeOf = (service: LbService, o: SuiteOptions) => (service.plane === "auto" ? o.mode : service.plane);

async function testService(service: LbService, o: SuiteOptions, io: SuiteIO): Promise<ServiceResult> {
  const alg = service.algorithm;
  const hashed = alg === "source_hash" || alg === "maglev";
  const plane = planeOf(service, o);
  const label = `${o.mode} ${alg}${service.sendProxy !== "off" ? ` send_proxy ${service.sendProxy}` : ""}`;
  // Hash algorithms need many client IPs; send_proxy uses them to show every address reaches the backend.
  const source = (hashed || service.sendProxy !== "off") && o.sources.length ? (i: number) => o.sources[i % o.sources.length] : undefined;
  const before = await lbTotals(o, service);
  const conn = (payload: () => Payload, holdMs?: (backend: string) => number) =>
    echoConns({ host: o.lbHost, port: service.port, payload, holdMs, source, timeoutMs: o.timeoutMs });

  const short = await runLoad({ label: `${label} short`, concurrency: o.concurrency, durationMs: o.seconds * 1000, conn: conn(() => small(o.payloadBytes)) }, io.progress);
  const bulkBytes = o.bulkMiB * 1024 * 1024;
  const bulk = await runLoad(
    {
      label: `${label} bulk`,
      concurrency: o.bulkCount,
      maxConns: o.bulkCount,
      durationMs: 120_000,
      conn: echoConns({ host: o.lbHost, port: service.port, payload: () => randomPayload(bulkBytes), source, timeoutMs: 120_000 }),
    },
    io.progress,
  );
  const slow = service.backends[0]!.id;
  let hold: LoadStats | undefined;
  if (alg === "least_connections" || alg === "power_of_two") {
    hold = await runLoad(
      {
        label: `${label} uneven hold`,
        concurrency: o.holdConcurrency,
        durationMs: o.holdSeconds * 1000,
        conn: conn(
          () => small(o.payloadBytes),
          (b) => (b === slow ? o.slowHoldMs : o.fastHoldMs),
        ),
        keepEvents: true,
      },
      io.progress,
    );
  }
  // The algorithm's promise is about the steady state: the first wave of connections finds every
  // backend idle and spreads by weight whatever the algorithm, so the check counts the connections
  // opened after one slow hold time.
  const steady = (): BackendCount[] =>
    service.backends.map((b) => ({
      backend: b.id,
      weight: b.weight,
      count: hold!.events.filter((e) => e.backend === b.id && e.start >= o.slowHoldMs).length,
    }));
  const after = await lbTotals(o, service);

  const loads = [short, bulk, ...(hold ? [hold] : [])];
  const all = countsOf(service, ...loads);
  const errors = loads.reduce((s, l) => s + l.errorCount, 0);
  const conns = loads.reduce((s, l) => s + l.conns, 0);
  const checks: Check[] = [noErrors(errors, conns)];
  const bulkOk = bulk.ok === o.bulkCount;
  checks.push({
    name: `bulk: ${o.bulkCount} × ${o.bulkMiB} MiB echoed, SHA-256 equal at both ends`,
    pass: bulkOk,
    detail: `${bulk.ok} of ${o.bulkCount} verified in ${(bulk.elapsedMs / 1000).toFixed(2)} s${bulk.errorSamples.length ? `; ${bulk.errorSamples.join("; ")}` : ""}`,
  });
  const W = service.backends.reduce((s, b) => s + b.weight, 0);
  let expect: (b: BackendCount) => number | undefined = () => undefined;
  const shortBulk = countsOf(service, short, bulk);
  switch (alg) {
    case "round_robin":
      checks.push(exactEqual(shortBulk));
      expect = () => 1 / service.backends.length;
      break;
    case "weighted_round_robin":
      checks.push(...weightedExact(shortBulk));
      expect = (b) => b.weight / W;
      break;
    case "random":
      checks.push(shareWithin(shortBulk, 0.05, undefined, true), allServed(shortBulk));
      expect = (b) => b.weight / W;
      break;
    case "least_connections":
    case "power_of_two":
      checks.push(allServed(shortBulk), slowBackendAvoided(steady(), slow, alg === "least_connections" ? 0.25 : 0.5));
      break;
    case "source_hash":
    case "maglev": {
      const perSource = mergeSources(short, bulk);
      checks.push(sticky(perSource, Math.min(8, o.sources.length || 8)), predicted(perSource, predictor(service)));
      break;
    }
  }
  checks.push(metricsAgree(before, after, all, plane));
  const sent = loads.reduce((sum, l) => sum + l.bytesSent, 0);
  const received = loads.reduce((sum, l) => sum + l.bytesReceived, 0);
  const bytes = bytesAgree(before, after, sent, received);
  if (plane === "proxy") checks.push(bytes);
  if (service.sendProxy !== "off") {
    const sum = (k: "peerSeen" | "peerWrong") => loads.reduce((n, l) => n + l[k], 0);
    const ok = loads.reduce((n, l) => n + l.ok, 0);
    checks.push(clientAddressSeen(sum("peerSeen"), sum("peerWrong"), ok, loads.flatMap((l) => l.peerSamples).slice(0, 3), short.peerExample));
  }

  // The report section for this service.
  io.out("");
  const extra = plane !== o.mode || service.sendProxy !== "off" ? ` · ${plane} plane${service.sendProxy !== "off" ? `, send_proxy ${service.sendProxy}` : ""}` : "";
  io.out(rule(`${o.mode} · ${alg} · service ${service.name} (${o.lbHost}:${service.port})${extra}`));
  io.out(
    `  load      ${o.concurrency} concurrent short connections for ${o.seconds} s (${o.payloadBytes}-byte echo${source ? `, from ${o.sources.length} client IPs` : ""}), then ${o.bulkCount} × ${o.bulkMiB} MiB bulk echo`,
  );
  const lat = short.latencies;
  io.out(`  short     ${fmtInt(short.conns)} conns  ${fmtInt(short.errorCount)} errors  ${fmtInt(short.rate)} conn/s  latency p50 ${fmtMs(percentile(lat, 50))}  p90 ${fmtMs(percentile(lat, 90))}  p99 ${fmtMs(percentile(lat, 99))}  max ${fmtMs(lat.at(-1) ?? NaN)}`);
  io.out(`            ${fmtBytes(short.bytesSent)} sent, ${fmtBytes(short.bytesReceived)} received`);
  const bulkSecs = bulk.elapsedMs / 1000 || 1;
  io.out(`  bulk      ${bulk.ok}/${o.bulkCount} ok  ${fmtBytes(bulk.bytesSent)} sent + ${fmtBytes(bulk.bytesReceived)} echoed in ${bulkSecs.toFixed(2)} s = ${(bulk.bytesSent / 1024 / 1024 / bulkSecs).toFixed(0)} MiB/s each way`);
  io.out(`  spread (short + bulk)`);
  for (const line of spreadChart(shortBulk.map((b) => ({ ...b, expect: expect(b) })))) io.out(line);
  if (hold) {
    io.out(
      `  uneven hold: ${o.holdConcurrency} concurrent for ${o.holdSeconds} s; connections on ${slow} held ${o.slowHoldMs} ms, others ${o.fastHoldMs} ms: ${fmtInt(hold.conns)} conns, ${hold.errorCount} errors`,
    );
    for (const line of spreadChart(countsOf(service, hold))) io.out(line);
    const st = steady();
    io.out(`    after the first ${o.slowHoldMs} ms (steady state, what the check counts): ${st.map((r) => `${r.backend} ${r.count}`).join(", ")}`);
    const mean = hold.meanInflight();
    io.out(
      `    mean in flight (client view, per weight): ${service.backends.map((b) => `${b.id} ${(mean.get(b.id) ?? 0).toFixed(1)} (${((mean.get(b.id) ?? 0) / b.weight).toFixed(1)}/w)`).join(", ")}`,
    );
  }
  if (hashed) {
    const perSource = mergeSources(short, bulk);
    const byBackend = new Map<string, string[]>();
    for (const [ip, m] of perSource) for (const b of m.keys()) byBackend.set(b, [...(byBackend.get(b) ?? []), ip.split(".").at(-1)!]);
    io.out(`  client IPs per backend: ${[...byBackend].map(([b, ips]) => `${b} ← .${ips.join(" .")}`).join(";  ")}`);
  }
  if (plane !== "proxy") io.out(`  LB bytes  (shown, not checked: the XDP plane counts what it sees in packets, retransmissions included) ${bytes.detail}`);
  for (const l of loads) for (const s of l.errorSamples) io.out(`  error     ${s}`);
  for (const c of checks) io.out(`  ${c.pass ? "PASS" : "FAIL"}  ${c.name}: ${c.detail}`);
  return { service, short, bulk, hold, checks };
}

function mergeSources(...loads: LoadStats[]): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const l of loads)
    for (const [ip, m] of l.perSource) {
      let dst = out.get(ip);
      if (!dst) out.set(ip, (dst = new Map()));
      for (const [b, n] of m) dst.set(b, (dst.get(b) ?? 0) + n);
    }
  return out;
}
