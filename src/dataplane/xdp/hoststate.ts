/**
 * What mode: xdp changed on this host, written down so that it can be undone even after a crash.
 *
 * featherlb changes two things per network namespace (netif.ts does the changing):
 *  - it appends its SNAT range to net.ipv4.ip_local_reserved_ports;
 *  - it creates managed neighbour entries for the backends' next hops, tagged with NEIGH_PROTOCOL.
 * A clean exit undoes both. After `kill -9` both stay, so they are recorded in <run dir>/netns-<inode>.json
 * (the sysctl before it is written; the entries once made, and their tag lives in the kernel anyway).
 * The next start in that namespace finds the record, adopts the leftovers, and its clean exit restores
 * the state from before the FIRST start, not the leftover state.
 *
 * The run dir is /run/featherlb (tmpfs: a reboot, which undoes the changes too, empties it).
 * FEATHERLB_RUN_DIR overrides it; it exists for tests, which must not share /run with a real LB.
 */
import { mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../control/log.ts";
import { UserError } from "../../errors.ts";
import { XdpError } from "./errors.ts";

export const RUN_DIR = "/run/featherlb";

/** How featherlb reads and writes net.ipv4.ip_local_reserved_ports (netif.ts; a fake in unit tests). */
export interface Sysctl {
  read(): string;
  write(value: string): void;
}

/** A neighbour entry featherlb owns: created by it, or left tagged by an earlier featherlb. */
export interface Neighbour {
  dev: string;
  dst: string;
}

export interface PortsRecord {
  /** The SNAT ranges featherlb added, "first-last[,first-last]". */
  range: string;
  /** The value found before featherlb changed it: what a clean exit writes back, verbatim. */
  before: string;
  /** The value in the sysctl after featherlb's write, as the kernel reads it back (sorted, merged). */
  wrote: string;
}

export interface HostRecord {
  version: 1;
  /** The writer: pid plus its start time (field 22 of /proc/<pid>/stat), so a reused pid is not it. */
  pid: number;
  started: string;
  /** The inode of the writer's /proc/self/ns/net. */
  netns: string;
  reservedPorts?: PortsRecord;
  /** For the operator and for audit. A later start finds our entries by their protocol tag, which
   * the kernel keeps with the entry, so an entry created after the last record write is not lost. */
  neighbours: Neighbour[];
  /** The writer handed its XDP data plane over (SIGUSR2) and leaves these changes to the next start. */
  handedOver?: boolean;
}

/**
 * The value the kernel reads back after `value` is written to ip_local_reserved_ports: ranges sorted,
 * overlapping and adjacent ones merged, a one-port range printed as one number ("5,6,7,9" → "5-7,9").
 */
export function normaliseReserved(value: string): string {
  const ranges = value
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const [a, b = a] = part.split("-").map(Number) as [number, number?];
      return [a, b] as [number, number];
    })
    .sort((x, y) => x[0] - y[0]);
  const merged: [number, number][] = [];
  for (const [a, b] of ranges) {
    const last = merged.at(-1);
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else merged.push([a, b]);
  }
  return merged.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(",");
}

/** Whether the reserved-ports value `value` already holds every port of first-last. */
export function reservedCovers(value: string, first: number, last: number): boolean {
  return normaliseReserved(value)
    .split(",")
    .filter(Boolean)
    .some((part) => {
      const [a, b = a] = part.split("-").map(Number) as [number, number?];
      return a <= first && last <= b;
    });
}

/**
 * This process's network namespace: the inode of /proc/self/ns/net ("net:[4026531840]"). Reserved
 * ports and neighbour tables are per namespace while /run is shared by all namespaces of a host, so
 * the record is keyed by it. An inode is reused once its namespace is gone; see claim for the guard.
 */
export function netnsId(): string {
  return /\[(\d+)\]/.exec(readlinkSync("/proc/self/ns/net"))?.[1] ?? "unknown";
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), undefined if no such process. */
export function processStarted(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/**
 * What a start does with a dead writer's reservation, given the sysctl's current value. "adopt": it
 * still holds what was written, so a clean exit restores the recorded `before`. "none": it is back at
 * `before` (the writer died between recording and writing, or after restoring): nothing to undo.
 * "mismatch": edited since, or the record of an earlier namespace with this inode: the current value
 * is kept as the one to restore.
 */
export function portsVerdict(recorded: PortsRecord, current: string): "adopt" | "none" | "mismatch" {
  if (current === recorded.wrote) return "adopt";
  return current === recorded.before ? "none" : "mismatch";
}

/** How long a start waits for a featherlb that is handing over (SIGUSR2) to exit before claiming. */
export const HANDOVER_WAIT_MS = 5_000;

export interface ClaimOptions {
  /** Where records live; default FEATHERLB_RUN_DIR, else /run/featherlb. */
  dir?: string;
  /** The namespace key; default netnsId(). */
  netns?: string;
}

export class HostState {
  private warnedUnwritable = false;

  private constructor(
    private readonly log: Logger,
    private readonly sysctl: Sysctl,
    /** The record file, or undefined when nothing is recorded. */
    private path: string | undefined,
    private readonly record: HostRecord,
  ) {}

  /** Changes made and undone as before issue 9, nothing written down (tests without a namespace). */
  static unrecorded(log: Logger, sysctl: Sysctl): HostState {
    return new HostState(log, sysctl, undefined, { version: 1, pid: process.pid, started: "", netns: "", neighbours: [] });
  }

  /**
   * Take over this network namespace's record at start. `tagged` are the neighbour entries carrying
   * our protocol tag in this namespace (netif.taggedNeighbours): they are ours whatever the record says.
   *
   * A record whose writer is still running is not taken: this start fails with a UserError. One
   * featherlb per namespace owns its host changes, because ip_local_reserved_ports is one value per
   * namespace and restoring the recorded `before` verbatim is only right with a single writer (two
   * instances exiting in the wrong order would drop each other's range). A second instance could not
   * attach XDP to the same interface anyway; for another interface, run it in its own namespace.
   *
   * A dead writer's record is adopted only if the sysctl still holds the value it wrote: the operator
   * may have edited it since, or the record may be from an earlier namespace whose inode this one
   * reuses. Then the current value is what a clean exit restores, and a warning says so.
   */
  static claim(log: Logger, sysctl: Sysctl, tagged: Neighbour[], opts: ClaimOptions = {}): HostState {
    const dir = opts.dir ?? process.env.FEATHERLB_RUN_DIR ?? RUN_DIR;
    const netns = opts.netns ?? netnsId();
    const path = join(dir, `netns-${netns}.json`);
    const found = readRecord(path, log);
    if (found && found.pid !== process.pid && isRunning(found)) {
      throw new UserError(
        "interface",
        `another featherlb (pid ${found.pid}) runs mode: xdp in this network namespace and owns its host changes (${path}); stop it first, or run this one in another network namespace or with mode: proxy.`,
      );
    }

    const record: HostRecord = { version: 1, pid: process.pid, started: processStarted(process.pid) ?? "", netns, neighbours: tagged };
    let current: string | undefined;
    try {
      current = sysctl.read();
    } catch {
      // No sysctl to restore: reservePorts will fail and say so.
    }
    const ports = found?.reservedPorts;
    const verdict = ports && current !== undefined ? portsVerdict(ports, current) : "none";
    if (verdict === "adopt") record.reservedPorts = ports;
    if (verdict === "mismatch") {
      log.warn("the featherlb record for this network namespace does not match net.ipv4.ip_local_reserved_ports (edited since, or left by an earlier namespace); a clean exit restores the current value", {
        record: path,
        recorded: ports?.wrote,
        current,
      });
    }
    if (found?.handedOver) {
      log.info("taking over the host changes of the featherlb that handed its data plane over; a clean exit undoes them", {
        pid: found.pid,
        record: path,
        reserved_ports_before: record.reservedPorts?.before,
        neighbours: tagged.length,
      });
    } else if (found && (record.reservedPorts || tagged.length)) {
      log.info("adopting the host changes of a featherlb that did not exit cleanly; a clean exit undoes them", {
        pid: found.pid,
        record: path,
        reserved_ports_before: record.reservedPorts?.before,
        neighbours: tagged.map((n) => `${n.dst} dev ${n.dev}`),
      });
    } else if (tagged.length) {
      log.info("adopting neighbour entries tagged by an earlier featherlb; a clean exit removes them", { neighbours: tagged.map((n) => `${n.dst} dev ${n.dev}`) });
    }

    const state = new HostState(log, sysctl, path, record);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
    } catch (err) {
      state.unwritable(err);
    }
    state.save();
    return state;
  }

  /**
   * Reserve first-last (and the ranges in `also`: a range a reload replaced, while flows still use it)
   * in ip_local_reserved_ports. Replaces nothing: call the previous reservation's restore first (a
   * SIGHUP that changes the range does). Returns the restore for a clean exit.
   *
   * The kernel merges ranges, so "remove our range" could remove an operator's overlapping ports: the
   * restore writes `before` back verbatim, and only if the sysctl still holds what we wrote.
   * Throws XdpError("host") when the sysctl cannot be read or written.
   */
  reservePorts(first: number, last: number, also: readonly { first: number; last: number }[] = []): () => void {
    const current = sysctlOp("read", () => this.sysctl.read());
    const range = [{ first, last }, ...also].map((r) => `${r.first}-${r.last}`).join(",");
    // Still what we (or a crashed predecessor, adopted by claim) wrote: the older `before` stands.
    const adopted = this.record.reservedPorts;
    // Reserved already by the operator (a container's `sysctls:`, where /proc/sys is read-only, or the
    // host's own config): nothing to change, nothing to undo.
    if (!adopted && reservedCovers(current, first, last)) return () => {};
    const before = adopted && adopted.wrote === current ? adopted.before : current;
    const value = before ? `${before},${range}` : range;
    // Recorded before writing, so a crash right after the write still finds the record.
    const ports: PortsRecord = { range, before, wrote: normaliseReserved(value) };
    this.setPorts(ports);
    try {
      sysctlOp("write", () => this.sysctl.write(value));
    } catch (err) {
      this.setPorts(adopted); // nothing changed
      throw err;
    }
    const wrote = sysctlOp("read", () => this.sysctl.read());
    if (wrote !== ports.wrote) this.setPorts({ ...ports, wrote });

    let done = false;
    return () => {
      if (done) return;
      done = true;
      try {
        const now = this.sysctl.read();
        if (now === wrote) {
          this.sysctl.write(before || "\n"); // an empty write leaves the value as it is; "\n" clears it
        } else {
          this.log.warn("net.ipv4.ip_local_reserved_ports was changed while featherlb ran; leaving it as it is", { current: now, wrote, before });
        }
      } catch {
        // Best effort at exit.
      }
      this.setPorts(undefined);
    };
  }

  /**
   * Wait (up to HANDOVER_WAIT_MS) for the featherlb that owns this namespace's record to exit, if it
   * is handing over (SIGUSR2): `featherlb lb.yaml` right after `kill -USR2` must not find it running.
   */
  static async awaitHandover(opts: ClaimOptions = {}): Promise<void> {
    const dir = opts.dir ?? process.env.FEATHERLB_RUN_DIR ?? RUN_DIR;
    const path = join(dir, `netns-${opts.netns ?? netnsId()}.json`);
    for (const end = Date.now() + HANDOVER_WAIT_MS; Date.now() < end; await Bun.sleep(20)) {
      let r: HostRecord | undefined;
      try {
        r = JSON.parse(readFileSync(path, "utf8")) as HostRecord;
      } catch {
        return;
      }
      if (!r.handedOver || r.pid === process.pid || !isRunning(r)) return;
    }
  }

  /** SIGUSR2: the changes stay for the next start, which takes them over (claim). */
  handOver(): void {
    this.record.handedOver = true;
    this.save();
  }

  /** Note a neighbour entry as ours (netif.manageNeighbours made or found it with our tag). */
  ownNeighbour(n: Neighbour): void {
    this.ownNeighbours([n]);
  }

  /** Note neighbour entries as ours, with one write of the record for the lot. */
  ownNeighbours(list: readonly Neighbour[]): void {
    const known = new Set(this.record.neighbours.map(key));
    const added = list.filter((n) => !known.has(key(n)) && known.add(key(n)));
    if (added.length === 0) return;
    this.record.neighbours.push(...added);
    this.save();
  }

  /** The neighbour entries a clean exit removes: ours from this run and adopted leftovers. */
  neighbours(): Neighbour[] {
    return [...this.record.neighbours];
  }

  /** Note that a neighbour entry is gone (netif.releaseNeighbours removed it). */
  forgetNeighbour(n: Neighbour): void {
    this.forgetNeighbours([n]);
  }

  /** Note that neighbour entries are gone, with one write of the record for the lot. */
  forgetNeighbours(list: readonly Neighbour[]): void {
    const gone = new Set(list.map(key));
    this.record.neighbours = this.record.neighbours.filter((o) => !gone.has(key(o)));
    this.save();
  }

  /**
   * At exit: delete the record once nothing is left to undo (a clean exit restores the ports and
   * removes the neighbours first). A start that failed after claim keeps the adopted leftovers
   * recorded for the next start.
   */
  close(): void {
    if (!this.path || this.record.reservedPorts || this.record.neighbours.length) return;
    try {
      rmSync(this.path, { force: true });
    } catch {
      // Best effort at exit.
    }
  }

  private setPorts(ports: PortsRecord | undefined): void {
    this.record.reservedPorts = ports;
    this.save();
  }

  /** Write the record: to a temporary file, then renamed over, so a reader never sees half of it. */
  private save(): void {
    if (!this.path) return;
    const tmp = `${this.path}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify(this.record, null, 2) + "\n", { mode: 0o644 });
      renameSync(tmp, this.path);
    } catch (err) {
      this.unwritable(err);
    }
  }

  /** Not root (or a read-only /run): warn once, and go on as before issue 9, recording nothing. */
  private unwritable(err: unknown): void {
    if (!this.warnedUnwritable) {
      this.warnedUnwritable = true;
      this.log.warn("cannot record the host changes of mode: xdp; after a crash, restore net.ipv4.ip_local_reserved_ports and delete the managed neighbour entries by hand", {
        record: this.path,
        reason: (err as Error).message,
      });
    }
    this.path = undefined;
  }
}

const key = (n: Neighbour) => `${n.dev} ${n.dst}`;

/** `op` on net.ipv4.ip_local_reserved_ports, its failure (an fs error) as XdpError("host"). */
function sysctlOp<T>(what: "read" | "write", op: () => T): T {
  try {
    return op();
  } catch (err) {
    throw new XdpError("host", `could not ${what} net.ipv4.ip_local_reserved_ports: ${(err as Error).message}`);
  }
}

/** The record at `path`, or undefined when there is none or it is unreadable (then a warning). */
function readRecord(path: string, log: Logger): HostRecord | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  try {
    const r = JSON.parse(text) as HostRecord;
    if (r.version === 1 && typeof r.pid === "number" && Array.isArray(r.neighbours)) return r;
  } catch {}
  log.warn("ignoring an unreadable featherlb record; it is replaced", { record: path });
  return undefined;
}

/** The record's writer is still running: its pid exists and started when the writer did. */
function isRunning(r: HostRecord): boolean {
  const started = processStarted(r.pid);
  return started !== undefined && (r.started === "" || started === r.started);
}
