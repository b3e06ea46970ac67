/**
 * How many CPUs this process may use, for `workers: auto`: the CPUs in its affinity mask
 * (sched_getaffinity: taskset, cpusets, a container's cpuset), lowered to its cgroup CPU quota
 * (cgroup v2 `cpu.max` of its cgroup and every ancestor, or v1 `cpu.cfs_quota_us`/`cfs_period_us`:
 * a container's `--cpus` / a pod's CPU limit) rounded up. What HAProxy (nbthread) and Go (GOMAXPROCS,
 * since 1.25) derive too. navigator.hardwareConcurrency alone counts the machine's CPUs.
 */
import { readFileSync } from "node:fs";

/** "0-3,8,10-11" (the kernel's cpulist format) → its number of CPUs; undefined if malformed. */
export function cpuListSize(list: string): number | undefined {
  let n = 0;
  for (const part of list.trim().split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return undefined;
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (last < first) return undefined;
    n += last - first + 1;
  }
  return n > 0 ? n : undefined;
}

/** The affinity mask's size from /proc/self/status (Cpus_allowed_list), or undefined. */
export function affinityCpus(status = read("/proc/self/status")): number | undefined {
  const line = status?.split("\n").find((l) => l.startsWith("Cpus_allowed_list:"));
  return line ? cpuListSize(line.slice("Cpus_allowed_list:".length)) : undefined;
}

/** "quota period" (cgroup v2 cpu.max) → CPUs (rounded up); "max …" or malformed → undefined. */
export function quotaCpus(quota: number, period: number): number | undefined {
  return quota > 0 && period > 0 ? Math.max(1, Math.ceil(quota / period)) : undefined;
}

/**
 * The lowest CPU quota over this process's cgroup and its ancestors (each level's limit applies), from
 * /proc/self/cgroup and the cgroup filesystem at `root`. undefined: no quota anywhere.
 */
export function cgroupCpus(cgroup = read("/proc/self/cgroup"), root = "/sys/fs/cgroup"): number | undefined {
  if (!cgroup) return undefined;
  let lowest: number | undefined;
  const take = (n: number | undefined) => {
    if (n !== undefined && (lowest === undefined || n < lowest)) lowest = n;
  };
  for (const line of cgroup.split("\n")) {
    // "hierarchy-id:controllers:path"; v2 is "0::/path", v1 lists its controllers ("cpu,cpuacct").
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, controllers, path] = m as unknown as [string, string, string];
    if (controllers === "") {
      for (const dir of ancestors(path)) {
        const [quota, period] = (read(`${root}${dir}/cpu.max`) ?? "").trim().split(/\s+/);
        take(quotaCpus(quota === "max" ? -1 : Number(quota), Number(period)));
      }
    } else if (controllers.split(",").includes("cpu")) {
      for (const mount of [`${root}/${controllers}`, `${root}/cpu,cpuacct`, `${root}/cpu`]) {
        for (const dir of ancestors(path)) {
          const quota = Number(read(`${mount}${dir}/cpu.cfs_quota_us`)?.trim());
          const period = Number(read(`${mount}${dir}/cpu.cfs_period_us`)?.trim());
          take(quotaCpus(quota, period));
        }
      }
    }
  }
  return lowest;
}

/** "/a/b" → ["/a/b", "/a", ""] (the cgroup root last, as "" so `${root}${dir}` is the mount itself). */
function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let p = path === "/" ? "" : path.replace(/\/$/, ""); ; p = p.slice(0, p.lastIndexOf("/"))) {
    out.push(p);
    if (p === "") return out;
  }
}

/** `workers: auto`: CPUs this process may use (at least 1). */
export function usableCpus(): number {
  const affinity = affinityCpus() ?? navigator.hardwareConcurrency ?? 1;
  const quota = cgroupCpus();
  return Math.max(1, quota === undefined ? affinity : Math.min(affinity, quota));
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}
