/**
 * The next hops of the backends, for the XDP program: the kernel is asked to keep each resolved
 * (managed neighbour entries over netlink, netif.ts; recorded by hoststate.ts and removed at exit), and
 * featherlb's neighbour table (flb_nbr, nexthops.ts) is re-read from procfs every NEIGHBOUR_REFRESH_MS.
 *
 * Both are batched and deferred to the next turn of the event loop: an apply or a burst of plan events
 * that names 10,000 backends asks netlink about them in slices of MANAGE_BATCH addresses (a few ms
 * each), and re-reads the tables once, instead of once per backend.
 */
import type { Logger } from "../../control/log.ts";
import { isXdpError } from "./errors.ts";
import type { HostState } from "./hoststate.ts";
import { manageNeighbours, releaseNeighbours } from "./netif.ts";
import { NeighbourTable } from "./nexthops.ts";
import type { XdpProgram } from "./program.ts";

/** How often the neighbour table (nexthops.ts) is re-read; a moved backend MAC reaches flows this fast. */
export const NEIGHBOUR_REFRESH_MS = 1000;
/** While a backend's MAC is still unknown (just after start), the table is re-read this often. */
const NEIGHBOUR_RETRY_MS = 50;
/** Backend addresses handed to netlink per turn of the event loop (route lookups: ~15 µs each). */
const MANAGE_BATCH = 256;

export class BackendNeighbours {
  /** Backend IPs whose next hop we asked the kernel to keep resolved, or will on the next turn (pending). */
  private readonly managed = new Set<string>();
  private readonly pending = new Set<string>();
  private managing: ReturnType<typeof setImmediate> | undefined;
  /** Who waits for the pending addresses to be handed to the kernel (settled). */
  private waiting: (() => void)[] = [];
  private refreshing: ReturnType<typeof setImmediate> | undefined;
  /** Backend next-hop MACs for the program when forwarding is off (nexthops.ts). */
  private readonly table: NeighbourTable;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  /** When the set of backends last changed: the fast retries stop 5 s after it. */
  private since = Date.now();

  constructor(
    private readonly ifname: string,
    program: XdpProgram,
    private readonly host: HostState,
    private readonly log: Logger,
    /** The IPv4 addresses of every mirrored backend, now. */
    private readonly backendIps: () => Set<string>,
  ) {
    this.table = new NeighbourTable(ifname, {
      set: (ip, mac) => program.setNeighbour(ip, mac),
      delete: (ip) => program.deleteNeighbour(ip),
    });
  }

  /** Whether refreshing has started (the first apply starts it). */
  get started(): boolean {
    return this.timer !== undefined;
  }

  /** The backends changed: re-read on the next turn, and retry fast for a while if a MAC is still unknown. */
  changed(): void {
    this.since = Date.now();
    this.refreshing ??= setImmediate(() => {
      this.refreshing = undefined;
      this.refresh();
    });
  }

  /**
   * Re-read the next hops of every IPv4 backend into flb_nbr, then again in NEIGHBOUR_REFRESH_MS, or
   * sooner while a MAC is still being resolved (the managed entries resolve within milliseconds).
   */
  private refresh(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.table.setBackends(this.backendIps());
    let missing: string[] = [];
    try {
      missing = this.table.refresh();
    } catch (err) {
      this.log.warn("could not refresh the neighbour table", { reason: (err as Error).message });
    }
    const retry = missing.length > 0 && Date.now() - this.since < 5000;
    this.timer = setTimeout(() => this.refresh(), retry ? NEIGHBOUR_RETRY_MS : NEIGHBOUR_REFRESH_MS);
    this.timer.unref();
  }

  /** Ask the kernel to keep the next hop toward backend `ip` resolved (once per address; on the next turn). */
  keepResolved(ip: string): void {
    if (this.managed.has(ip)) return;
    this.managed.add(ip);
    this.pending.add(ip);
    this.managing ??= setImmediate(() => this.manage());
  }

  /** Resolves once every address asked for so far has been handed to the kernel. */
  settled(): Promise<void> {
    if (this.managing === undefined) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** One batch of pending addresses to netlink; the rest on the next turn. */
  private manage(): void {
    this.managing = undefined;
    const batch = [...this.pending].slice(0, MANAGE_BATCH);
    for (const ip of batch) this.pending.delete(ip);
    if (this.pending.size && !this.stopped) this.managing = setImmediate(() => this.manage());
    else for (const resolve of this.waiting.splice(0)) resolve();
    if (this.stopped) return;
    let results: ReturnType<typeof manageNeighbours>;
    try {
      results = manageNeighbours(this.ifname, batch);
    } catch (err) {
      if (!isXdpError(err, "netlink", "neighbour")) throw err;
      this.log.warn("could not ask the kernel to keep the backends' MACs resolved; their first SYNs may be reset until ARP resolves them", { backends: batch.length, reason: err.message });
      return;
    }
    this.host.ownNeighbours(results.flatMap((r) => ("nexthop" in r && r.ours ? [{ dev: this.ifname, dst: r.nexthop }] : [])));
    const failed = results.flatMap((r) => ("error" in r ? [r] : []));
    if (failed.length) {
      // One line for the batch: thousands of backends routed elsewhere must not mean thousands of lines.
      this.log.warn("could not ask the kernel to keep a backend's MAC resolved; its first SYNs may be reset until ARP resolves it", {
        backends: failed.length,
        first: failed.slice(0, 5).map((r) => `${r.ip}: ${r.error.message}`),
      });
    }
  }

  /** Stop refreshing (the program is about to go). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.managing) clearImmediate(this.managing);
    if (this.refreshing) clearImmediate(this.refreshing);
    this.managing = undefined;
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  /** At exit: remove the neighbour entries that are ours (this run's and adopted ones), best effort. */
  release(): void {
    const ours = this.host.neighbours();
    releaseNeighbours(ours);
    this.host.forgetNeighbours(ours);
  }
}
