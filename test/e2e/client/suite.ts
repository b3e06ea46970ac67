/**
 * The e2e suite the client container runs against featherlb: for every service (one per algorithm) a
 * short-connection load, bulk transfers, and the algorithm's own promise; then a fault scenario.
 * Output protocol toward test/e2e/run.sh (the runner):
 *   "~ …"              live progress: console only
 *   "@@ACTION kill X"  the runner kills backend container X now ("start X" brings it back)
 *   anything else      the report: console and the run log
 */
import { lookup } from "node:dns/promises";
import { allServed, exactEqual, noErrors, predicted, shareWithin, slowBackendAvoided, sticky, weightedExact, type BackendCount, type Check } from "./checks.ts";
import { randomPayload, type Payload } from "./conn.ts";
import type { E2eConfig, E2eService } from "./lbconfig.ts";
import { percentile, runLoad, startLoad, type ConnEvent, type LoadStats } from "./load.ts";
import { backendIp, scrape, type Metrics } from "./metrics.ts";
import { predictor } from "./predict.ts";
import { bar, fmtBytes, fmtInt, fmtMs, rule, spreadChart, table } from "./report.ts";

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
  service: E2eService;
  short: LoadStats;
  bulk: LoadStats;
  hold?: LoadStats;
  checks: Check[];
}

const small = (n: number): Payload => randomPayload(n);
const now = () => performance.now();

export async function runSuite(cfg: E2eConfig, o: SuiteOptions, io: SuiteIO): Promise<boolean> {
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
  for (const line of table(["algorithm", "service", "conns", "errors", "conn/s", "p50", "p90", "p99", "bytes", "bulk", "checks"], rows)) io.out(line);
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
async function waitReady(cfg: E2eConfig, o: SuiteOptions, io: SuiteIO): Promise<Check> {
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

function countsOf(service: E2eService, ...loads: LoadStats[]): BackendCount[] {
  return service.backends.map((b) => ({
    backend: b.id,
    weight: b.weight,
    count: loads.reduce((s, l) => s + (l.perBackend.get(b.id) ?? 0), 0),
  }));
}

/** Connections per backend according to the LB's own counters. */
async function lbTotals(o: SuiteOptions, service: E2eService): Promise<Map<string, number> | string> {
  let m: Metrics;
  try {
    m = await scrape(o.metricsUrl);
  } catch (err) {
    return String(err);
  }
  const out = new Map<string, number>();
  for (const b of service.backends) out.set(b.id, m.get("featherlb_backend_connections_total", { service: service.name, backend: b.address }) ?? NaN);
  for (const direction of ["in", "out"]) out.set(`@${direction}`, m.get("featherlb_service_bytes_total", { service: service.name, direction }) ?? NaN);
  // xdp: what the program did with packets (global, not per service; the services are tested one after another).
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
 * proxy counts accepted connections, the XDP plane one flow per SYN that starts one (a duplicate SYN
 * racing on another CPU follows the flow the first one made: bpf/featherlb.bpf.c new_flow). In xdp
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

async function testService(service: E2eService, o: SuiteOptions, io: SuiteIO): Promise<ServiceResult> {
  const alg = service.algorithm;
  const hashed = alg === "source_hash" || alg === "maglev";
  const label = `${o.mode} ${alg}`;
  const source = hashed && o.sources.length ? (i: number) => o.sources[i % o.sources.length] : undefined;
  const before = await lbTotals(o, service);
  const base = { host: o.lbHost, port: service.port, timeoutMs: o.timeoutMs, source };

  const short = await runLoad(
    { ...base, label: `${label} short`, concurrency: o.concurrency, durationMs: o.seconds * 1000, payload: () => small(o.payloadBytes) },
    io.progress,
  );
  const bulkBytes = o.bulkMiB * 1024 * 1024;
  const bulk = await runLoad(
    { ...base, label: `${label} bulk`, concurrency: o.bulkCount, maxConns: o.bulkCount, durationMs: 120_000, timeoutMs: 120_000, payload: () => randomPayload(bulkBytes) },
    io.progress,
  );
  const slow = service.backends[0]!.id;
  let hold: LoadStats | undefined;
  if (alg === "least_connections" || alg === "power_of_two") {
    hold = await runLoad(
      {
        ...base,
        label: `${label} uneven hold`,
        concurrency: o.holdConcurrency,
        durationMs: o.holdSeconds * 1000,
        payload: () => small(o.payloadBytes),
        holdMs: (b) => (b === slow ? o.slowHoldMs : o.fastHoldMs),
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
  checks.push(metricsAgree(before, after, all, o.mode));
  const sent = loads.reduce((sum, l) => sum + l.bytesSent, 0);
  const received = loads.reduce((sum, l) => sum + l.bytesReceived, 0);
  const bytes = bytesAgree(before, after, sent, received);
  if (o.mode === "proxy") checks.push(bytes);

  // The report section for this service.
  io.out("");
  io.out(rule(`${o.mode} · ${alg} · service ${service.name} (${o.lbHost}:${service.port})`));
  io.out(
    `  load      ${o.concurrency} concurrent short connections for ${o.seconds} s (${o.payloadBytes}-byte echo${hashed ? `, from ${o.sources.length} client IPs` : ""}), then ${o.bulkCount} × ${o.bulkMiB} MiB bulk echo`,
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
  if (o.mode !== "proxy") io.out(`  LB bytes  (shown, not checked: the XDP plane counts what it sees in packets, retransmissions included) ${bytes.detail}`);
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

function sourcesOf(events: readonly ConnEvent[], from: number, to: number): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const e of events) {
    if (!e.ok || !e.backend || e.source === undefined || e.t < from || e.t > to) continue;
    let m = out.get(e.source);
    if (!m) out.set(e.source, (m = new Map()));
    m.set(e.backend, (m.get(e.backend) ?? 0) + 1);
  }
  return out;
}

/**
 * Kill one backend under load, watch featherlb take it out and put it back. Two loads run meanwhile:
 * short connections with a 20 ms hold on the round_robin service (so the victim holds connections when
 * it dies), and paced connections from every client IP on the maglev service (who moves, who stays).
 */
async function faultScenario(cfg: E2eConfig, o: SuiteOptions, io: SuiteIO): Promise<Check[]> {
  const rr = cfg.services.find((s) => s.algorithm === "round_robin");
  const mg = cfg.services.find((s) => s.algorithm === "maglev");
  const victim = rr?.backends.find((b) => b.id === o.faultBackend);
  io.out("");
  io.out(rule(`${o.mode} · fault: ${o.faultBackend} killed under load, then restarted`));
  if (!rr || !victim) {
    const detail = `needs a round_robin service with backend ${o.faultBackend}`;
    io.out(`  FAIL  fault scenario: ${detail}`);
    return [{ name: "fault scenario", pass: false, detail }];
  }
  const holdMs = 20;
  const t0 = now();
  const A = startLoad(
    { label: `${o.mode} fault rr`, host: o.lbHost, port: rr.port, concurrency: 16, durationMs: 90_000, payload: () => small(o.payloadBytes), holdMs: () => holdMs, timeoutMs: o.timeoutMs, keepEvents: true },
    io.progress,
  );
  const B =
    mg && o.sources.length
      ? startLoad({
          label: `${o.mode} fault maglev`,
          host: o.lbHost,
          port: mg.port,
          concurrency: o.sources.length,
          durationMs: 90_000,
          payload: () => small(o.payloadBytes),
          source: (i) => o.sources[i % o.sources.length],
          paceMs: 100,
          timeoutMs: o.timeoutMs,
          keepEvents: true,
        })
      : undefined;

  // featherlb's view, sampled every 100 ms.
  // Each service health-checks its own copy of the backend, so both services are watched.
  const health: { t: number; rr: boolean | undefined; mg: boolean | undefined }[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      try {
        const m = await scrape(o.metricsUrl, 500);
        health.push({ t: now() - t0, rr: m.up(rr.name, victim.address), mg: mg ? m.up(mg.name, victim.address) : undefined });
      } catch {
        health.push({ t: now() - t0, rr: undefined, mg: undefined });
      }
      await Bun.sleep(100);
    }
  })();
  const waitFor = async (pred: () => boolean, ms: number) => {
    const end = now() + ms;
    while (!pred() && now() < end) await Bun.sleep(50);
    return pred();
  };

  const statusUrl = o.metricsUrl.replace(/\/metrics$/, "/status");
  const ipBefore = await backendIp(statusUrl, rr.name, victim.address);
  await Bun.sleep(o.faultKillAfterMs);
  const killAt = now() - t0;
  io.action("kill", victim.id);
  const first = (key: "rr" | "mg", after: number, up: boolean) => health.find((h) => h.t > after && h[key] === up)?.t;
  const both = (after: number, up: boolean) => first("rr", after, up) !== undefined && (!mg || first("mg", after, up) !== undefined);
  await waitFor(() => both(killAt, false), 15_000);
  const downAt = first("rr", killAt, false);
  const downMg = first("mg", killAt, false);
  await Bun.sleep(o.faultOutageMs);
  const startAt = now() - t0;
  io.action("start", victim.id);
  await waitFor(() => both(startAt, true), 30_000);
  const upAt = first("rr", startAt, true);
  const upMg = first("mg", startAt, true);
  const servedAgain = () => A.stats.events.find((e) => e.ok && e.backend === victim.id && e.t + (A.stats.started - t0) > startAt);
  await waitFor(() => servedAgain() !== undefined, 10_000);
  await Bun.sleep(1500);
  const ipAfter = await backendIp(statusUrl, rr.name, victim.address);
  const dnsNow = await lookup(victim.id, { family: 4 }).then((r) => r.address, () => undefined);
  A.stop();
  B?.stop();
  polling = false;
  const [a, b] = await Promise.all([A.done, B?.done, poller]);
  const end = now() - t0;

  // Everything on one clock: ms since t0.
  const shift = (l: LoadStats) => l.started - t0;
  const onClock = (l: LoadStats) =>
    l.events.map((e) => ({ ...e, t: e.t + shift(l), start: e.start + shift(l), helloAt: e.helloAt === undefined ? undefined : e.helloAt + shift(l) }));
  const evA = onClock(a);
  const evB = b ? onClock(b) : [];
  const firstErr = evA.concat(evB).filter((e) => !e.ok && e.t > killAt).sort((x, y) => x.t - y.t)[0]?.t;
  const rejoin = evA.find((e) => e.ok && e.backend === victim.id && e.t > startAt);
  const oldInstance = evA.find((e) => e.ok && e.backend === victim.id && e.t < killAt)?.instance;

  /**
   * The connections a kill can break: open at the moment it died and either greeted by the victim or
   * not greeted by anyone yet (featherlb may have been connecting them to it). That moment lies between
   * the kill request and the first failure; the bound is the largest such count in that window.
   */
  const boundOf = (ev: readonly ConnEvent[]) => {
    if (firstErr === undefined) return 0;
    let most = 0;
    for (let t = killAt; t <= firstErr; t += 5) {
      const open = ev.filter((e) => e.start <= t && e.t >= t && (e.backend === victim.id || e.helloAt === undefined || e.helloAt > t)).length;
      most = Math.max(most, open);
    }
    return most;
  };
  const errorsOf = (ev: readonly ConnEvent[]) => ev.filter((e) => !e.ok);
  const kinds = (ev: readonly ConnEvent[]) => {
    const m = new Map<string, number>();
    for (const e of ev) m.set(`${e.error}${e.backend ? `@${e.backend}` : ""}`, (m.get(`${e.error}${e.backend ? `@${e.backend}` : ""}`) ?? 0) + 1);
    return [...m].map(([k, n]) => `${k} ×${n}`).join(", ") || "none";
  };
  const errA = errorsOf(evA);
  const errB = errorsOf(evB);
  // The XDP plane forwards packets: it cannot retry a connect on another backend the way the proxy
  // does, so a connection sent to the dead backend before the health check removed it fails too. Its
  // bound adds every connection opened between the kill request and the removal.
  const noRetry = o.mode === "xdp";
  const openedBeforeRemoval = (ev: readonly ConnEvent[], removed: number | undefined) =>
    noRetry && removed !== undefined ? ev.filter((e) => e.start >= killAt && e.start <= removed).length : 0;
  const boundA = boundOf(evA) + openedBeforeRemoval(evA, downAt);
  const boundB = boundOf(evB) + openedBeforeRemoval(evB, downMg);
  const settle = 500;

  // Timeline.
  const s = (t: number | undefined) => (t === undefined ? "never" : `+${(t / 1000).toFixed(1)} s`);
  io.out(`  load      rr: 16 concurrent short connections, each held ${holdMs} ms by the backend${b ? `; maglev: ${o.sources.length} client IPs, one connection per IP every ~100 ms` : ""}`);
  // In time order; the metrics are polled every 100 ms, so a state change can show after its effect.
  const timeline: [number | undefined, string][] = [
    [0, "loads start"],
    [killAt, `runner told to kill ${victim.id}`],
    [firstErr, "first failed client connection"],
    [downAt, `featherlb_backend_up{service="${rr.name}",backend="${victim.address}"} = 0 (health check took it out)${mg ? `; service ${mg.name} at ${s(downMg)}` : ""}`],
    [startAt, `runner told to start ${victim.id}`],
    [upAt, `featherlb_backend_up = 1 (rise)${mg ? `; service ${mg.name} at ${s(upMg)}` : ""}`],
    [rejoin?.t, `${victim.id} serves again (instance ${oldInstance ?? "?"} → ${rejoin?.instance ?? "?"})`],
    [end, "loads stop"],
  ];
  timeline.sort((x, y) => (x[0] ?? Infinity) - (y[0] ?? Infinity));
  timeline.forEach(([t, what], i) => io.out(`  ${i ? "          " : "timeline  "}${s(t).padEnd(10)} ${what}`));

  // Connections per second per backend on the rr service: the gap and the return are visible.
  io.out(`  rr connections completed per second (✗ = failed):`);
  const secs = Math.ceil(end / 1000);
  const ids = rr.backends.map((x) => x.id);
  const rows: string[][] = [];
  for (let i = 0; i < secs; i++) {
    const slice = evA.filter((e) => e.t >= i * 1000 && e.t < (i + 1) * 1000);
    const marks = [killAt, downAt, startAt, upAt].map((t, k) => (t !== undefined && t >= i * 1000 && t < (i + 1) * 1000 ? ["kill", "down", "start", "up"][k] : "")).filter(Boolean);
    rows.push([`+${i} s`, ...ids.map((id) => fmtInt(slice.filter((e) => e.ok && e.backend === id).length)), fmtInt(slice.filter((e) => !e.ok).length), `${bar(slice.filter((e) => e.ok && e.backend === victim.id).length / Math.max(1, slice.filter((e) => e.ok).length), 20)} ${marks.join(" ")}`]);
  }
  for (const line of table(["second", ...ids, "✗", `${victim.id} share`], rows, "    ")) io.out(line);
  io.out(`  errors    rr: ${errA.length} (${kinds(errA)})${b ? `; maglev: ${errB.length} (${kinds(errB)})` : ""}`);

  const checks: Check[] = [];
  checks.push({
    name: noRetry ? "errors bounded by the connections in flight to the victim or opened before its removal" : "errors bounded by the connections in flight to the victim when it died",
    pass: downAt !== undefined && errA.length <= boundA && errB.length <= boundB,
    detail:
      `rr ${errA.length} ≤ ${boundA}${b ? `, maglev ${errB.length} ≤ ${boundB}` : ""} (connections open when ${victim.id} died, greeted by it or by nobody yet` +
      `${noRetry ? ", plus those opened before featherlb removed it: XDP cannot retry a connect" : ""})`,
  });
  // Connections opened once featherlb had removed it (plus a margin for the metrics poll): none may fail.
  const late = (ev: readonly ConnEvent[], removed: number | undefined) => (removed === undefined ? [] : ev.filter((e) => !e.ok && e.start > removed + settle));
  const lateErrors = [...late(evA, downAt), ...late(evB, downMg)];
  const removed = downAt !== undefined && (!b || downMg !== undefined);
  checks.push({
    name: "no errors on connections opened after the health check removed it",
    pass: removed && lateErrors.length === 0,
    detail: !removed
      ? "it was never marked down"
      : `${lateErrors.length} failed of those opened more than ${settle} ms after its removal (rr ${s(downAt)}${b ? `, maglev ${s(downMg)}` : ""})${lateErrors.length ? `: ${kinds(lateErrors)}` : ""}`,
  });
  const limit = 5000;
  checks.push({
    name: `health check marks it down within ${limit / 1000} s`,
    pass: downAt !== undefined && downAt - killAt <= limit,
    detail: downAt === undefined ? "never marked down" : `down ${((downAt - killAt) / 1000).toFixed(2)} s after the kill request${firstErr !== undefined ? `, ${((downAt - firstErr) / 1000).toFixed(2)} s after the first failure` : ""}`,
  });
  if (downAt !== undefined) {
    const during = evA.filter((e) => e.ok && e.t > downAt + settle && e.t < startAt);
    const others = ids.filter((id) => id !== victim.id);
    const perOther = others.map((id) => during.filter((e) => e.backend === id).length);
    const onVictim = during.filter((e) => e.backend === victim.id).length;
    checks.push({
      name: "traffic continues on the others while it is down",
      pass: perOther.every((n) => n > 0) && onVictim === 0,
      detail: `${others.map((id, k) => `${id} ${perOther[k]}`).join(", ")}, ${victim.id} ${onVictim} between ${s(downAt + settle)} and ${s(startAt)}`,
    });
  }
  checks.push({
    name: "it rejoins after restart (health rise, DNS re-resolved) and serves again",
    pass: upAt !== undefined && rejoin !== undefined,
    detail: upAt === undefined ? "never marked up again" : rejoin ? `up ${((upAt - startAt) / 1000).toFixed(2)} s after the start request, first connection served ${((rejoin.t - startAt) / 1000).toFixed(2)} s after` : "marked up but served nothing",
  });
  checks.push({
    name: "featherlb follows the name to the new container (DNS re-resolution)",
    pass: ipAfter !== undefined && ipAfter === dnsNow,
    detail: `featherlb used ${ipBefore ?? "?"} before the kill and ${ipAfter ?? "?"} after the restart; DNS now says ${dnsNow ?? "?"}${ipBefore && dnsNow && ipBefore !== dnsNow ? " (a new address)" : " (the same address: the restart did not move it)"}`,
  });
  if (mg && b && downMg !== undefined && upMg !== undefined) {
    const full = predictor(mg);
    const less = predictor(mg, [victim.id]);
    const moved = o.sources.filter((ip) => full(ip) !== less(ip));
    const movedOff = moved.filter((ip) => full(ip) === victim.id).length;
    io.out(`  maglev    ${moved.length} of ${o.sources.length} client IPs map elsewhere without ${victim.id} (${movedOff} were on it, ${moved.length - movedOff} table churn)`);
    checks.push(predicted(sourcesOf(evB, 0, killAt), full, "maglev before the kill: every IP on its predicted backend"));
    checks.push(predicted(sourcesOf(evB, downMg + settle, startAt), less, `maglev while ${victim.id} is out: every IP on the backend predicted without it`));
    const afterFrom = upMg + settle;
    checks.push(predicted(sourcesOf(evB, afterFrom, end), full, "maglev after it rejoins: every IP back on its original backend"));
  }
  for (const c of checks) io.out(`  ${c.pass ? "PASS" : "FAIL"}  ${c.name}: ${c.detail}`);
  return checks;
}
