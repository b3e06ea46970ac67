/**
 * Announce and withdraw: featherlb says which of its listen addresses (VIPs) it can serve, and a routing
 * daemon tells the routers (docs/scale-out.md). featherlb speaks no BGP itself; it keeps one route per
 * servable VIP in a kernel routing table of its own (`announce.table`):
 *
 *     blackhole 10.0.9.1/32 proto 241 table 100
 *
 * BIRD's `kernel` protocol imports that table (`learn`: routes of other origins) and a `bgp` protocol
 * exports it; the routers install ECMP next hops over every instance that announces. The route is never
 * used to forward (no rule looks the table up; `blackhole` says so), only read. Protocol 241 is the
 * number featherlb tags its neighbour entries with too (src/dataplane/xdp/netif.ts): no other daemon
 * claims it, so `ip route flush table T proto 241` removes exactly featherlb's routes.
 *
 * A VIP is servable when the data plane listens or is attached (the runtime syncs only after a plane
 * applied) and at least one service on it has a backend in its pick set. Each Service's plan event
 * re-evaluates; a shutdown withdraws everything before the drain starts and nothing is announced after.
 *
 * Routes are changed with one `ip route` process per change (no netlink code of its own), run one at a
 * time by a reconcile loop: it moves the kernel table (`applied`) toward what is wanted (`desired`), so
 * a flap while a command runs ends in the last state, never in an older one. A failed command is logged
 * and retried a second later. Changes are rare (health flips, reloads, shutdown).
 */
import { readFileSync } from "node:fs";
import { UserError } from "../errors.ts";
import type { AnnounceConfig } from "../config/types.ts";
import type { Logger } from "./log.ts";
import type { Service } from "./service.ts";

/** The route protocol number of featherlb's routes (`ip route show proto 241`). */
export const ROUTE_PROTOCOL = 241;
const RETRY_MS = 1000;
const IP_TIMEOUT_MS = 5000;

/** Runs `ip <args>`; resolves with its outcome (never rejects). Tests may pass their own. */
export type IpCommand = (args: string[]) => Promise<{ ok: boolean; error: string }>;

export const runIp: IpCommand = async (args) => {
  try {
    const proc = Bun.spawn(["ip", ...args], { stdout: "ignore", stderr: "pipe", timeout: IP_TIMEOUT_MS });
    const [error, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    return { ok: code === 0, error: error.trim() || `exit code ${code}` };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
};

/** CAP_NET_ADMIN (bit 12) in this process's effective set, from /proc (Linux). */
function hasNetAdmin(): boolean {
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    return hex !== undefined && (BigInt(`0x${hex}`) & (1n << 12n)) !== 0n;
  } catch {
    return false;
  }
}

export class Announcer {
  private table: number | undefined;
  /** The table the routes in `applied` are in (it lags `table` while a reload moves them). */
  private appliedTable: number | undefined;
  private readonly desired = new Set<string>();
  private readonly applied = new Set<string>();
  private readonly subscriptions = new Map<Service, () => void>();
  private services: readonly Service[] = [];
  private working: Promise<void> | null = null;
  private retry: ReturnType<typeof setTimeout> | undefined;
  /** Set by withdrawAll (shutdown): nothing is announced any more. */
  private withdrawn = false;
  /** `desired` changed since the reconcile loop last looked at it. */
  private dirty = false;

  constructor(
    private readonly log: Logger,
    private readonly ip: IpCommand = runIp,
  ) {}

  /** The VIPs announced right now (for /status and tests). */
  get announced(): string[] {
    return [...this.applied].sort();
  }

  /**
   * After the data plane applied a config: follow its services (their plan events) and its table. A table
   * used for the first time is cleared of featherlb's routes first (left by a featherlb that was killed);
   * when that fails (no CAP_NET_ADMIN, no `ip`) it throws a UserError.
   */
  async sync(config: AnnounceConfig | undefined, services: readonly Service[]): Promise<void> {
    for (const [service, unsubscribe] of this.subscriptions) {
      if (!services.includes(service)) {
        unsubscribe();
        this.subscriptions.delete(service);
      }
    }
    if (config !== undefined) {
      for (const s of services) if (!this.subscriptions.has(s)) this.subscriptions.set(s, s.onPlan(() => this.evaluate()));
    }
    this.services = services;
    if (config?.table !== undefined && config.table !== this.table && config.table !== this.appliedTable) {
      if (!hasNetAdmin()) {
        throw new UserError("permission", "announce: changing routes needs CAP_NET_ADMIN; run featherlb as root or with that capability, or remove announce:.");
      }
      const flushed = await this.ip(["route", "flush", "table", String(config.table), "proto", String(ROUTE_PROTOCOL)]);
      // A table that never held a route "does not exist": nothing to clear.
      if (!flushed.ok && !/table does not exist/.test(flushed.error)) {
        throw new UserError(
          "permission",
          `announce: cannot change routing table ${config.table} (ip route: ${flushed.error}); run featherlb with CAP_NET_ADMIN and iproute2 installed, or remove announce:.`,
        );
      }
    }
    this.table = config?.table;
    this.evaluate();
  }

  /** Withdraw every route and announce nothing again (shutdown); resolves once the table is clear or a removal failed. */
  async withdrawAll(): Promise<void> {
    this.withdrawn = true;
    this.evaluate();
    while (this.working) await this.working;
    clearTimeout(this.retry);
  }

  close(): void {
    for (const unsubscribe of this.subscriptions.values()) unsubscribe();
    this.subscriptions.clear();
    clearTimeout(this.retry);
  }

  /** Recompute the servable VIPs and start moving the table toward them. */
  private evaluate(): void {
    this.desired.clear();
    if (!this.withdrawn && this.table !== undefined) {
      for (const s of this.services) if (s.picker.size > 0) this.desired.add(s.config.listen.host);
    }
    this.dirty = true;
    this.working ??= this.reconcile().finally(() => {
      this.working = null;
      // A change that arrived after the loop's last look (and is not waiting for the retry timer).
      if (this.dirty) this.evaluate();
    });
  }

  private async reconcile(): Promise<void> {
    clearTimeout(this.retry);
    for (;;) {
      this.dirty = false;
      // Routes in a table that is no longer the one configured go first, then additions, then removals.
      const stale = this.appliedTable !== undefined && this.appliedTable !== this.table ? this.applied.values().next().value : undefined;
      const add = stale === undefined ? [...this.desired].find((ip) => !this.applied.has(ip)) : undefined;
      const remove = stale ?? (add === undefined ? [...this.applied].find((ip) => !this.desired.has(ip)) : undefined);
      if (add === undefined && remove === undefined) {
        if (this.applied.size === 0) this.appliedTable = this.table;
        return;
      }
      const ok = add !== undefined ? await this.announce(add) : await this.withdraw(remove!);
      if (!ok) {
        // Retried from a timer, unless a shutdown is waiting: it gets its answer now.
        if (!this.withdrawn) {
          this.retry = setTimeout(() => this.evaluate(), RETRY_MS);
          this.retry.unref();
        }
        return;
      }
    }
  }

  private async announce(ip: string): Promise<boolean> {
    const table = this.table!;
    if (this.applied.size === 0) this.appliedTable = table;
    const r = await this.ip(["route", "replace", "blackhole", `${ip}/32`, "table", String(table), "proto", String(ROUTE_PROTOCOL)]);
    if (!r.ok) {
      this.log.error("announce failed, retrying", { address: ip, table, error: r.error });
      return false;
    }
    this.applied.add(ip);
    this.log.info("address announced", { address: ip, table });
    return true;
  }

  private async withdraw(ip: string): Promise<boolean> {
    const table = this.appliedTable!;
    const r = await this.ip(["route", "del", "blackhole", `${ip}/32`, "table", String(table), "proto", String(ROUTE_PROTOCOL)]);
    // "No such process" (ESRCH): the route is gone already (someone flushed the table); that is the goal.
    if (!r.ok && !/No such process/.test(r.error)) {
      this.log.error("withdraw failed, retrying", { address: ip, table, error: r.error });
      return false;
    }
    this.applied.delete(ip);
    const why = this.withdrawn
      ? "shutdown"
      : table !== this.table
        ? "moving to another table"
        : this.services.some((s) => s.config.listen.host === ip)
          ? "no healthy backend"
          : "not in the config";
    this.log.info("address withdrawn", { address: ip, table, reason: why });
    return true;
  }
}
