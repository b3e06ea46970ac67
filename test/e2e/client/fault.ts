/**
 * The fault scenario: kill one backend under load, watch featherlb take it out and put it back. Two
 * loads run meanwhile: short connections with a 20 ms hold on the round_robin service (so the victim
 * holds connections when it dies), and paced connections from every client IP on the maglev service
 * (who moves, who stays). featherlb's view is its /metrics, polled every 100 ms. Everything is timed
 * in ms since the loads started (t0).
 */
import { lookup } from "node:dns/promises";
import { echoConns, randomPayload } from "../../support/conn.ts";
import type { LbBackend, LbConfig, LbService } from "../../support/lbconfig.ts";
import { startLoad, type ConnEvent, type LoadStats, type RunningLoad } from "../../support/load.ts";
import { backendIp, scrape } from "../../support/metrics.ts";
import { predictor } from "../../support/predict.ts";
import { predicted, type Check } from "./checks.ts";
import { bar, fmtInt, rule, table } from "./report.ts";
import type { SuiteIO, SuiteOptions } from "./suite.ts";

const now = () => performance.now();
/** Hold time of the rr load's connections. */
const HOLD_MS = 20;
/** Margin after a state change seen in /metrics (polled every 100 ms) before its effect is judged. */
const SETTLE_MS = 500;
/** The health check must take the victim out within this long of the kill. */
const DOWN_LIMIT_MS = 5000;

interface Scene {
  o: SuiteOptions;
  io: SuiteIO;
  rr: LbService;
  mg: LbService | undefined;
  victim: LbBackend;
  t0: number;
}

/** What the scenario observed, on the t0 clock. */
interface Observed {
  killAt: number;
  startAt: number;
  end: number;
  /** featherlb_backend_up of the victim flipped (rr service, maglev service). */
  downAt?: number;
  downMg?: number;
  upAt?: number;
  upMg?: number;
  ipBefore?: string;
  ipAfter?: string;
  dnsNow?: string;
  /** One event per connection of the rr load and of the maglev load (empty without one). */
  rr: ConnEvent[];
  mg: ConnEvent[];
  maglevRan: boolean;
}

export async function faultScenario(cfg: LbConfig, o: SuiteOptions, io: SuiteIO): Promise<Check[]> {
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
  const scene: Scene = { o, io, rr, mg, victim, t0: now() };
  const loads = startLoads(scene);
  const health = watchHealth(scene);
  const seen = await killAndRestart(scene, loads, health);
  reportTimeline(scene, seen);
  reportPerSecond(scene, seen);
  const checks = judge(scene, seen);
  for (const c of checks) io.out(`  ${c.pass ? "PASS" : "FAIL"}  ${c.name}: ${c.detail}`);
  return checks;
}

// ------------------------------------------------------------------ the steps, in order

function startLoads({ o, io, rr, mg }: Scene): { rr: RunningLoad; mg?: RunningLoad } {
  const payload = () => randomPayload(o.payloadBytes);
  const conns = (s: LbService, source?: (i: number) => string | undefined) =>
    echoConns({ host: o.lbHost, port: s.port, payload, holdMs: () => HOLD_MS, source, timeoutMs: o.timeoutMs });
  return {
    rr: startLoad({ label: `${o.mode} fault rr`, concurrency: 16, durationMs: 90_000, conn: conns(rr), keepEvents: true }, io.progress),
    mg:
      mg && o.sources.length
        ? startLoad({
            label: `${o.mode} fault maglev`,
            concurrency: o.sources.length,
            durationMs: 90_000,
            conn: conns(mg, (i) => o.sources[i % o.sources.length]),
            paceMs: 100,
            keepEvents: true,
          })
        : undefined,
  };
}

/** The victim's featherlb_backend_up in both services (each health-checks its own copy of it). */
function watchHealth({ o, t0, rr, mg, victim }: Scene) {
  const samples: { t: number; rr: boolean | undefined; mg: boolean | undefined }[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      try {
        const m = await scrape(o.metricsUrl, 500);
        samples.push({ t: now() - t0, rr: m.up(rr.name, victim.address), mg: mg ? m.up(mg.name, victim.address) : undefined });
      } catch {
        samples.push({ t: now() - t0, rr: undefined, mg: undefined });
      }
      await Bun.sleep(100);
    }
  })();
  /** When the victim was first seen `up` (or down) in one service after `after`. */
  const first = (key: "rr" | "mg", after: number, up: boolean) => samples.find((h) => h.t > after && h[key] === up)?.t;
  return {
    first,
    /** Until both services show the victim `up` (or down) after `after`, at most `ms`. */
    until: (after: number, up: boolean, ms: number) => until(() => first("rr", after, up) !== undefined && (!mg || first("mg", after, up) !== undefined), ms),
    async stop(): Promise<void> {
      polling = false;
      await poller;
    },
  };
}

async function until(pred: () => boolean, ms: number): Promise<boolean> {
  const end = now() + ms;
  while (!pred() && now() < end) await Bun.sleep(50);
  return pred();
}

/** Kill, wait for featherlb to take it out, keep it out, start it, wait for it to serve again. */
async function killAndRestart(scene: Scene, loads: ReturnType<typeof startLoads>, health: ReturnType<typeof watchHealth>): Promise<Observed> {
  const { o, io, rr, victim, t0 } = scene;
  const statusUrl = o.metricsUrl.replace(/\/metrics$/, "/status");
  const ipBefore = await backendIp(statusUrl, rr.name, victim.address);
  await Bun.sleep(o.faultKillAfterMs);

  const killAt = now() - t0;
  io.action("kill", victim.id);
  await health.until(killAt, false, 15_000);
  await Bun.sleep(o.faultOutageMs);

  const startAt = now() - t0;
  io.action("start", victim.id);
  await health.until(startAt, true, 30_000);
  const rrLoad = loads.rr.stats;
  await until(() => rrLoad.events.some((e) => e.ok && e.backend === victim.id && e.t + (rrLoad.started - t0) > startAt), 10_000);
  await Bun.sleep(1500);
  const ipAfter = await backendIp(statusUrl, rr.name, victim.address);
  const dnsNow = await lookup(victim.id, { family: 4 }).then((r) => r.address, () => undefined);

  loads.rr.stop();
  loads.mg?.stop();
  const [a, b] = await Promise.all([loads.rr.done, loads.mg?.done, health.stop()]);
  return {
    killAt,
    startAt,
    end: now() - t0,
    downAt: health.first("rr", killAt, false),
    downMg: health.first("mg", killAt, false),
    upAt: health.first("rr", startAt, true),
    upMg: health.first("mg", startAt, true),
    ipBefore,
    ipAfter,
    dnsNow,
    rr: onClock(a, t0),
    mg: b ? onClock(b, t0) : [],
    maglevRan: b !== undefined,
  };
}

/** A load's events moved from its own start to t0. */
function onClock(l: LoadStats, t0: number): ConnEvent[] {
  const shift = l.started - t0;
  return l.events.map((e) => ({ ...e, t: e.t + shift, start: e.start + shift, helloAt: e.helloAt === undefined ? undefined : e.helloAt + shift }));
}

// ------------------------------------------------------------------ what happened, for the log

const at = (t: number | undefined) => (t === undefined ? "never" : `+${(t / 1000).toFixed(1)} s`);
const firstError = (seen: Observed) => seen.rr.concat(seen.mg).filter((e) => !e.ok && e.t > seen.killAt).sort((x, y) => x.t - y.t)[0]?.t;
const rejoined = (seen: Observed, victim: LbBackend) => seen.rr.find((e) => e.ok && e.backend === victim.id && e.t > seen.startAt);

function errorKinds(ev: readonly ConnEvent[]): string {
  const m = new Map<string, number>();
  for (const e of ev) {
    const k = `${e.error}${e.backend ? `@${e.backend}` : ""}`;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return [...m].map(([k, n]) => `${k} ×${n}`).join(", ") || "none";
}

function reportTimeline({ o, io, rr, mg, victim }: Scene, seen: Observed): void {
  io.out(`  load      rr: 16 concurrent short connections, each held ${HOLD_MS} ms by the backend${seen.maglevRan ? `; maglev: ${o.sources.length} client IPs, one connection per IP every ~100 ms` : ""}`);
  const rejoin = rejoined(seen, victim);
  const oldInstance = seen.rr.find((e) => e.ok && e.backend === victim.id && e.t < seen.killAt)?.instance;
  // In time order; the metrics are polled every 100 ms, so a state change can show after its effect.
  const timeline: [number | undefined, string][] = [
    [0, "loads start"],
    [seen.killAt, `runner told to kill ${victim.id}`],
    [firstError(seen), "first failed client connection"],
    [seen.downAt, `featherlb_backend_up{service="${rr.name}",backend="${victim.address}"} = 0 (health check took it out)${mg ? `; service ${mg.name} at ${at(seen.downMg)}` : ""}`],
    [seen.startAt, `runner told to start ${victim.id}`],
    [seen.upAt, `featherlb_backend_up = 1 (rise)${mg ? `; service ${mg.name} at ${at(seen.upMg)}` : ""}`],
    [rejoin?.t, `${victim.id} serves again (instance ${oldInstance ?? "?"} → ${rejoin?.instance ?? "?"})`],
    [seen.end, "loads stop"],
  ];
  timeline.sort((x, y) => (x[0] ?? Infinity) - (y[0] ?? Infinity));
  timeline.forEach(([t, what], i) => io.out(`  ${i ? "          " : "timeline  "}${at(t).padEnd(10)} ${what}`));
}

/** Connections per second per backend on the rr service: the gap and the return are visible. */
function reportPerSecond({ io, rr, victim }: Scene, seen: Observed): void {
  io.out(`  rr connections completed per second (✗ = failed):`);
  const ids = rr.backends.map((x) => x.id);
  const marks: [number | undefined, string][] = [
    [seen.killAt, "kill"],
    [seen.downAt, "down"],
    [seen.startAt, "start"],
    [seen.upAt, "up"],
  ];
  const rows: string[][] = [];
  for (let i = 0; i < Math.ceil(seen.end / 1000); i++) {
    const inSecond = (t: number | undefined) => t !== undefined && t >= i * 1000 && t < (i + 1) * 1000;
    const slice = seen.rr.filter((e) => inSecond(e.t));
    const ok = slice.filter((e) => e.ok);
    const onVictim = ok.filter((e) => e.backend === victim.id).length;
    const here = marks.filter(([t]) => inSecond(t)).map(([, m]) => m);
    rows.push([`+${i} s`, ...ids.map((id) => fmtInt(ok.filter((e) => e.backend === id).length)), fmtInt(slice.length - ok.length), `${bar(onVictim / Math.max(1, ok.length), 20)} ${here.join(" ")}`]);
  }
  for (const line of table(["second", ...ids, "✗", `${victim.id} share`], rows, "    ")) io.out(line);
  const errors = (ev: ConnEvent[]) => ev.filter((e) => !e.ok);
  io.out(`  errors    rr: ${errors(seen.rr).length} (${errorKinds(errors(seen.rr))})${seen.maglevRan ? `; maglev: ${errors(seen.mg).length} (${errorKinds(errors(seen.mg))})` : ""}`);
}

// ------------------------------------------------------------------ the checks

function judge(scene: Scene, seen: Observed): Check[] {
  return [
    errorsBounded(scene, seen),
    noErrorsAfterRemoval(seen),
    markedDownInTime(seen),
    ...(seen.downAt !== undefined ? [othersServeMeanwhile(scene, seen, seen.downAt)] : []),
    rejoins(scene, seen),
    followsDns(seen),
    ...maglevFollowsPlan(scene, seen),
  ];
}

/**
 * The connections a kill can break: open at the moment it died and either greeted by the victim or
 * not greeted by anyone yet (featherlb may have been connecting them to it). That moment lies between
 * the kill request and the first failure; the bound is the largest such count in that window. The XDP
 * plane forwards packets: it cannot retry a connect on another backend the way the proxy does, so a
 * connection sent to the dead backend before the health check removed it fails too. Its bound adds
 * every connection opened between the kill request and the removal.
 */
function errorsBounded({ o, victim }: Scene, seen: Observed): Check {
  const firstErr = firstError(seen);
  const noRetry = o.mode === "xdp";
  const boundOf = (ev: readonly ConnEvent[], removed: number | undefined) => {
    let most = 0;
    if (firstErr !== undefined)
      for (let t = seen.killAt; t <= firstErr; t += 5) {
        const open = ev.filter((e) => e.start <= t && e.t >= t && (e.backend === victim.id || e.helloAt === undefined || e.helloAt > t)).length;
        most = Math.max(most, open);
      }
    const openedBeforeRemoval = noRetry && removed !== undefined ? ev.filter((e) => e.start >= seen.killAt && e.start <= removed).length : 0;
    return most + openedBeforeRemoval;
  };
  const errA = seen.rr.filter((e) => !e.ok).length;
  const errB = seen.mg.filter((e) => !e.ok).length;
  const boundA = boundOf(seen.rr, seen.downAt);
  const boundB = boundOf(seen.mg, seen.downMg);
  return {
    name: noRetry ? "errors bounded by the connections in flight to the victim or opened before its removal" : "errors bounded by the connections in flight to the victim when it died",
    pass: seen.downAt !== undefined && errA <= boundA && errB <= boundB,
    detail:
      `rr ${errA} ≤ ${boundA}${seen.maglevRan ? `, maglev ${errB} ≤ ${boundB}` : ""} (connections open when ${victim.id} died, greeted by it or by nobody yet` +
      `${noRetry ? ", plus those opened before featherlb removed it: XDP cannot retry a connect" : ""})`,
  };
}

/** Connections opened once featherlb had removed it (plus a margin for the metrics poll): none may fail. */
function noErrorsAfterRemoval(seen: Observed): Check {
  const late = (ev: readonly ConnEvent[], removed: number | undefined) => (removed === undefined ? [] : ev.filter((e) => !e.ok && e.start > removed + SETTLE_MS));
  const lateErrors = [...late(seen.rr, seen.downAt), ...late(seen.mg, seen.downMg)];
  const removed = seen.downAt !== undefined && (!seen.maglevRan || seen.downMg !== undefined);
  return {
    name: "no errors on connections opened after the health check removed it",
    pass: removed && lateErrors.length === 0,
    detail: !removed
      ? "it was never marked down"
      : `${lateErrors.length} failed of those opened more than ${SETTLE_MS} ms after its removal (rr ${at(seen.downAt)}${seen.maglevRan ? `, maglev ${at(seen.downMg)}` : ""})${lateErrors.length ? `: ${errorKinds(lateErrors)}` : ""}`,
  };
}

function markedDownInTime(seen: Observed): Check {
  const firstErr = firstError(seen);
  return {
    name: `health check marks it down within ${DOWN_LIMIT_MS / 1000} s`,
    pass: seen.downAt !== undefined && seen.downAt - seen.killAt <= DOWN_LIMIT_MS,
    detail:
      seen.downAt === undefined
        ? "never marked down"
        : `down ${((seen.downAt - seen.killAt) / 1000).toFixed(2)} s after the kill request${firstErr !== undefined ? `, ${((seen.downAt - firstErr) / 1000).toFixed(2)} s after the first failure` : ""}`,
  };
}

function othersServeMeanwhile({ rr, victim }: Scene, seen: Observed, downAt: number): Check {
  const during = seen.rr.filter((e) => e.ok && e.t > downAt + SETTLE_MS && e.t < seen.startAt);
  const others = rr.backends.map((b) => b.id).filter((id) => id !== victim.id);
  const perOther = others.map((id) => during.filter((e) => e.backend === id).length);
  const onVictim = during.filter((e) => e.backend === victim.id).length;
  return {
    name: "traffic continues on the others while it is down",
    pass: perOther.every((n) => n > 0) && onVictim === 0,
    detail: `${others.map((id, k) => `${id} ${perOther[k]}`).join(", ")}, ${victim.id} ${onVictim} between ${at(downAt + SETTLE_MS)} and ${at(seen.startAt)}`,
  };
}

function rejoins({ victim }: Scene, seen: Observed): Check {
  const rejoin = rejoined(seen, victim);
  return {
    name: "it rejoins after restart (health rise, DNS re-resolved) and serves again",
    pass: seen.upAt !== undefined && rejoin !== undefined,
    detail:
      seen.upAt === undefined
        ? "never marked up again"
        : rejoin
          ? `up ${((seen.upAt - seen.startAt) / 1000).toFixed(2)} s after the start request, first connection served ${((rejoin.t - seen.startAt) / 1000).toFixed(2)} s after`
          : "marked up but served nothing",
  };
}

function followsDns(seen: Observed): Check {
  const { ipBefore, ipAfter, dnsNow } = seen;
  return {
    name: "featherlb follows the name to the new container (DNS re-resolution)",
    pass: ipAfter !== undefined && ipAfter === dnsNow,
    detail: `featherlb used ${ipBefore ?? "?"} before the kill and ${ipAfter ?? "?"} after the restart; DNS now says ${dnsNow ?? "?"}${ipBefore && dnsNow && ipBefore !== dnsNow ? " (a new address)" : " (the same address: the restart did not move it)"}`,
  };
}

/** maglev, per client IP: the predicted backend before, while the victim is out (without it), and after. */
function maglevFollowsPlan({ o, io, mg, victim }: Scene, seen: Observed): Check[] {
  if (!mg || !seen.maglevRan || seen.downMg === undefined || seen.upMg === undefined) return [];
  const full = predictor(mg);
  const less = predictor(mg, [victim.id]);
  const moved = o.sources.filter((ip) => full(ip) !== less(ip));
  const movedOff = moved.filter((ip) => full(ip) === victim.id).length;
  io.out(`  maglev    ${moved.length} of ${o.sources.length} client IPs map elsewhere without ${victim.id} (${movedOff} were on it, ${moved.length - movedOff} table churn)`);
  return [
    predicted(sourcesOf(seen.mg, 0, seen.killAt), full, "maglev before the kill: every IP on its predicted backend"),
    predicted(sourcesOf(seen.mg, seen.downMg + SETTLE_MS, seen.startAt), less, `maglev while ${victim.id} is out: every IP on the backend predicted without it`),
    predicted(sourcesOf(seen.mg, seen.upMg + SETTLE_MS, seen.end), full, "maglev after it rejoins: every IP back on its original backend"),
  ];
}

/** source IP → backend → successful connections completed between `from` and `to`. */
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
