/**
 * What outlives a featherlb process of mode: xdp: its BPF maps, pinned in a bpf filesystem under
 * xdp.pin_path, and, between a SIGUSR2 handover and the next start, its bpf_link. The next start in the
 * same network namespace on the same interface adopts them (index.ts), so established flows survive an
 * upgrade (SIGUSR2, then the new binary) and a crash (maps pinned while running; the link dies with the
 * process, the next start attaches again over the same flow tables).
 *
 * Layout of the pins (one instance directory per network namespace and interface, so two featherlbs
 * never share one):
 *
 *   <pin_path>/netns-<inode>-<ifname>/link              the bpf_link, only between SIGUSR2 and the next start
 *   <pin_path>/netns-<inode>-<ifname>/layout-<N>/flb_*  every map, N = FLB_LAYOUT_VERSION (bpf/consts.h)
 *
 * A start adopts the maps of layout-N only if N is its own FLB_LAYOUT_VERSION and each map it keeps has
 * the type, key and value size, flags and entries it would create (loader.ts); otherwise it says why in
 * one log line, removes them and starts fresh. Which maps are kept and which rebuilt: KEPT below, and
 * bpf/README.md "Restarts and upgrades".
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, statfsSync, unlinkSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Logger } from "../../control/log.ts";
import { UserError } from "../../errors.ts";
import { isXdpError } from "./errors.ts";
import { netnsId } from "./hoststate.ts";
import { CFG_FLAGS, LAYOUT, MAPS, SVC_KEY, u32ToIpv4, type MapKey } from "./layout.ts";
import { BPF_LINK_TYPE_XDP, EACCES, EPERM, closeFd, linkInfo, mapInfo, mountBpffs, objGet, objPin } from "./libbpf.ts";
import { BpfMap } from "./map.ts";
import type { Capacity } from "./capacity.ts";
import type { PortRange } from "./program.ts";

/** statfs f_type of a bpf filesystem (linux/magic.h BPF_FS_MAGIC). */
const BPF_FS_MAGIC = 0xcafe4a11;
/** Where bpffs is conventionally mounted; a pin path under it gets a bpffs mounted here when none is. */
const SYS_FS_BPF = "/sys/fs/bpf";

/**
 * The maps a new process adopts, because their contents are state it cannot rebuild: the flows of both
 * stages (their ports, sequence windows, next hops), what the flows refer to by slot (backend slots
 * with their generations, the active gauges and the sweeper's corrections), the counters (so totals
 * never go down across an upgrade), the per-CPU flow-id counters and SNAT cursors (a restarted id
 * counter would hand out ids live flows carry), the SNAT back-off stamps and the neighbour table (so a
 * flow re-resolving its next hop right after the start finds it).
 *
 * Rebuilt by the new process from its config, before its program sees a packet: flb_config, the
 * service table flb_svc (the previous one is read to keep each listen address on its index), and the
 * plans (flb_svc_act, flb_plans, flb_members, flb_slots; its plans are written whole, into maps no
 * running program reads). .rodata (flb_sizes) is part of the program; its stride must match the kept
 * per-backend arrays, which is why the adopted capacity is the pinned one.
 */
export const KEPT: readonly MapKey[] = ["fwd", "rev", "synFwd", "synRev", "backends", "beActive", "beAdj", "beStats", "svcStats", "reasons", "cpu", "snatFull", "nbr"];

/** What the previous process's rebuilt maps said, read from their pins. */
export interface Previous {
  /** flb_svc: each listen address on its service index (retired ones included). */
  services: { host: string; port: number; index: number }[];
  /** flb_config: its SNAT range, the range a reload of it replaced (if flows still used it), its attach mode. */
  snat: PortRange;
  prev?: PortRange;
  native: boolean;
}

/** What a start found pinned. */
export interface Found {
  /** The previous process's link, handed over by SIGUSR2 (open fd), if any. */
  link?: number;
  /** Pinned maps of this layout by MapKey (open fds), if any. */
  maps?: Map<MapKey, number>;
  previous?: Previous;
}

const mapPath = (dir: string, key: MapKey) => join(dir, MAPS[key].name);

export class Pins {
  /** The instance directory: <pin_path>/netns-<inode>-<ifname>. */
  readonly dir: string;
  /** Where the maps are pinned: <dir>/layout-<FLB_LAYOUT_VERSION>. */
  readonly mapsDir: string;
  readonly linkPath: string;

  private constructor(pinPath: string, ifname: string, netns: string) {
    this.dir = join(pinPath, `netns-${netns}-${ifname}`);
    this.mapsDir = join(this.dir, `layout-${LAYOUT.FLB_LAYOUT_VERSION}`);
    this.linkPath = join(this.dir, "link");
  }

  /**
   * The pins of interface `ifname` in this network namespace under `pinPath`: a bpffs is mounted at the
   * pin path's mount point when none is there (and said), and the directories are created. Throws a
   * UserError when neither can be done.
   */
  static prepare(pinPath: string, ifname: string, log: Logger, netns = netnsId()): Pins {
    const pins = new Pins(resolve(pinPath), ifname, netns);
    ensureBpffs(resolve(pinPath), log);
    try {
      mkdirSync(pins.mapsDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "";
      throw new UserError(
        code === "EACCES" || code === "EPERM" ? "permission" : "unsupported",
        `xdp.pin_path: cannot create ${pins.mapsDir} (${code || (err as Error).message}); run featherlb as root or give its user that directory, or set xdp.pin_path: off (restarts then reset flows).`,
      );
    }
    return pins;
  }

  /**
   * What an earlier process left: its link (if handed over on this interface), and its maps if they
   * have this layout. Maps of another layout are removed, with one log line; a link of another interface
   * (not ours to take) is unpinned.
   */
  find(ifindex: number, log: Logger): Found {
    const found: Found = {};
    for (const entry of readdirSync(this.dir)) {
      const m = /^layout-(\d+)$/.exec(entry);
      if (!m || Number(m[1]) === LAYOUT.FLB_LAYOUT_VERSION) continue;
      log.warn("pinned XDP maps have another layout than this featherlb: starting with fresh maps (the flows they held are reset)", {
        pinned: join(this.dir, entry),
        pinned_layout: Number(m[1]),
        layout: LAYOUT.FLB_LAYOUT_VERSION,
      });
      removeTree(join(this.dir, entry));
    }
    if (existsSync(this.linkPath)) {
      const fd = tryGet(this.linkPath);
      const info = fd === undefined ? undefined : linkInfo(fd);
      if (fd !== undefined && info?.type === BPF_LINK_TYPE_XDP && info.ifindex === ifindex) found.link = fd;
      else {
        closeFd(fd ?? -1);
        log.warn("a pinned XDP link is not an attachment to this interface; unpinned", { pinned: this.linkPath, ifindex: info?.ifindex });
        unlinkQuiet(this.linkPath);
      }
    }
    const maps = new Map<MapKey, number>();
    for (const key of Object.keys(MAPS) as MapKey[]) {
      const fd = tryGet(mapPath(this.mapsDir, key));
      if (fd !== undefined) maps.set(key, fd);
    }
    if (maps.size === 0) return found;
    const missing = [...KEPT, "svc" as const, "config" as const].filter((k) => !maps.has(k));
    if (missing.length) {
      log.warn("pinned XDP maps are incomplete: starting with fresh maps", { pinned: this.mapsDir, missing: missing.map((k) => MAPS[k].name) });
      closeAll(maps);
      this.removeMaps();
      return found;
    }
    found.maps = maps;
    found.previous = readPrevious(maps);
    return found;
  }

  /**
   * Pin every map of a loaded program (`fds` by MapKey) under mapsDir, each replacing what is pinned
   * there: pinned under a temporary name, then renamed over, so a crash at any moment leaves a complete
   * set (the kept maps are the same objects either way).
   */
  pinMaps(fds: ReadonlyMap<MapKey, number>): void {
    mkdirSync(this.mapsDir, { recursive: true, mode: 0o700 });
    for (const [key, fd] of fds) {
      const path = mapPath(this.mapsDir, key);
      const tmp = `${path}_new${process.pid}`; // bpffs refuses names with dots (the kernel's own)
      unlinkQuiet(tmp);
      objPin(fd, tmp);
      renameSync(tmp, path);
    }
  }

  /** SIGUSR2: pin the link, so the program stays attached after this process exits. */
  pinLink(fd: number): void {
    unlinkQuiet(this.linkPath);
    objPin(fd, this.linkPath);
  }

  /** The link was taken over (this process holds it now): a crash of ours detaches it, as any start's. */
  unpinLink(): void {
    unlinkQuiet(this.linkPath);
  }

  removeMaps(): void {
    removeTree(this.mapsDir);
  }

  /** A start that failed: remove the directories it made if nothing is pinned in them. */
  tidy(): void {
    for (const d of [this.mapsDir, this.dir]) {
      try {
        rmdirSync(d);
      } catch {
        return; // not empty (an earlier process's pins), or gone
      }
    }
  }

  /** SIGTERM: nothing outlives the process. */
  removeAll(): void {
    removeTree(this.dir);
  }
}

/**
 * The capacity the pinned maps were sized for: services and the per-backend stride from the kept
 * per-service and per-backend arrays (a program with another stride would read other slots), the
 * neighbour table's entries, and `fresh`'s plan slots (the plan pool is rebuilt).
 */
export function pinnedCapacity(maps: ReadonlyMap<MapKey, number>, fresh: Capacity): Capacity {
  const services = mapInfo(maps.get("svcStats")!).maxEntries;
  return {
    services,
    backends: Math.floor(mapInfo(maps.get("backends")!).maxEntries / Math.max(1, services)),
    slots: fresh.slots,
    neighbours: mapInfo(maps.get("nbr")!).maxEntries,
  };
}

/** Close a found link that was not adopted. */
export function closeLink(found: Found): void {
  if (found.link !== undefined) closeFd(found.link);
}

export function closeAll(maps: ReadonlyMap<MapKey, number>): void {
  for (const fd of maps.values()) closeFd(fd);
}

// Unpinning is unlink(2). Bun's rmSync does more than unlink and rmdir, and fails with EFAULT on a
// bpffs (Bun 1.4.5), so these walk the tree themselves.

/** Unlink `path`; one that is not there is fine. */
function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

/** Remove directory `dir` and what it holds (pins and directories). */
function removeTree(dir: string): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) removeTree(path);
    else unlinkQuiet(path);
  }
  rmdirSync(dir);
}

/** bpf_obj_get, or undefined when nothing (usable) is pinned there. */
function tryGet(path: string): number | undefined {
  try {
    return objGet(path);
  } catch (err) {
    if (isXdpError(err, "bpf")) return undefined;
    throw err;
  }
}

function readPrevious(maps: ReadonlyMap<MapKey, number>): Previous {
  const svc = new BpfMap(MAPS.svc, maps.get("svc")!);
  const services: Previous["services"] = [];
  const key = new Uint8Array(8);
  let prev: Uint8Array | null = null;
  while (svc.nextKey(prev, key)) {
    prev = Uint8Array.from(key);
    const k = SVC_KEY.decode(prev);
    const v = svc.lookup(prev);
    if (v) services.push({ host: u32ToIpv4(k.addr), port: k.port, index: v.index });
  }
  const c = new BpfMap(MAPS.config, maps.get("config")!).lookup(0);
  return {
    services,
    snat: { first: c?.snat_first ?? 0, last: c?.snat_last ?? 0 },
    prev: c?.prev_first ? { first: c.prev_first, last: c.prev_last } : undefined,
    native: ((c?.flags ?? 0) & CFG_FLAGS.NATIVE) !== 0,
  };
}

/**
 * Make sure `pinPath` is on a bpf filesystem. If it is not, one is mounted: at /sys/fs/bpf when the pin
 * path is under it (where every tool looks), else at the pin path itself. A mount made here lives as
 * long as this mount namespace: fine on a host (the root namespace), lost at exit inside `ip netns exec`
 * or a container without the host's /sys/fs/bpf — hence the log line, and docs/config.md.
 */
function ensureBpffs(pinPath: string, log: Logger): void {
  if (onBpffs(pinPath)) return;
  const target = pinPath === SYS_FS_BPF || pinPath.startsWith(`${SYS_FS_BPF}/`) ? SYS_FS_BPF : pinPath;
  const fix = `mount one there (mount -t bpf bpf ${target}; Kubernetes: a hostPath volume of /sys/fs/bpf), run featherlb as root (mounting needs CAP_SYS_ADMIN), or set xdp.pin_path: off (restarts then reset flows)`;
  try {
    mkdirSync(target, { recursive: true, mode: 0o700 });
    mountBpffs(target);
  } catch (err) {
    const errno = isXdpError(err, "bpf") ? err.errno : 0;
    const denied = errno === EPERM || errno === EACCES || ["EACCES", "EPERM"].includes((err as NodeJS.ErrnoException).code ?? "");
    const how = denied ? "was not permitted" : `failed (${isXdpError(err, "bpf") ? `errno ${errno}` : (err as Error).message})`;
    throw new UserError(denied ? "permission" : "unsupported", `xdp.pin_path ${pinPath} is not on a bpf filesystem and mounting one at ${target} ${how}; ${fix}.`);
  }
  log.info("mounted a bpf filesystem for xdp.pin_path: pinned maps last as long as this mount namespace (mount one on the host to keep flows across restarts)", { mount: target, pin_path: pinPath });
}

/** Whether `path` (or, if it does not exist yet, its nearest existing parent) is on a bpffs. */
function onBpffs(path: string): boolean {
  for (let p = path; ; p = dirname(p)) {
    try {
      return statfsSync(p).type === BPF_FS_MAGIC;
    } catch {
      if (p === dirname(p)) return false;
    }
  }
}
