/**
 * The next hops of the backends, for the XDP program: the kernel is asked to keep each resolved
 * (managed neighbour entries, netif.ts; recorded by hoststate.ts and removed at exit), and featherlb's
 * neighbour table (flb_nbr, nexthops.ts) is re-read from procfs every NEIGHBOUR_REFRESH_MS.
 */
import type { Logger } from "../../control/log.ts";
import { isXdpError } from "./errors.ts";
import type { HostState } from "./hoststate.ts";
import { manageNeighbour, releaseNeighbour } from "./netif.ts";
import { NeighbourTable } from "./nexthops.ts";
import type { XdpProgram } from "./program.ts";

/** How often the neighbour table (nexthops.ts) is re-read; a moved backend MAC reaches flows this fast. */
export const NEIGHBOUR_REFRESH_MS = 1000;
/** While a backend's MAC is still unknown (just after start), the table is re-read this often. */
const NEIGHBOUR_RETRY_MS = 50;

export class BackendNeighbours {
  /** Backend IPs whose next hop we asked the kernel to keep resolved. */
  private readonly managed = new Set<string>();
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

  /** The backends changed: re-read now, and retry fast for a while if a MAC is still unknown. */
  changed(): void {
    this.since = Date.now();
    this.refresh();
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

  /** Ask the kernel to keep the next hop toward backend `ip` resolved (once per address). */
  keepResolved(ip: string): void {
    if (this.managed.has(ip)) return;
    this.managed.add(ip);
    try {
      const r = manageNeighbour(this.ifname, ip);
      if (r.ours) this.host.ownNeighbour({ dev: this.ifname, dst: r.nexthop });
    } catch (err) {
      if (!isXdpError(err, "neighbour")) throw err;
      this.log.warn("could not ask the kernel to keep a backend's MAC resolved; its first SYNs may be reset until ARP resolves it", { backend: ip, reason: err.message });
    }
  }

  /** Stop refreshing (the program is about to go). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** At exit: remove the neighbour entries that are ours (this run's and adopted ones), best effort. */
  release(): void {
    for (const n of this.host.neighbours()) {
      releaseNeighbour(n.dev, n.dst);
      this.host.forgetNeighbour(n);
    }
  }
}
