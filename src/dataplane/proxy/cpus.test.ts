/** `workers: auto`: the affinity mask and the cgroup CPU quota, on files laid out as the kernel does. */
import { expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { affinityCpus, cgroupCpus, cpuListSize, usableCpus } from "./cpus.ts";

test("cpulist: ranges and single CPUs", () => {
  expect(cpuListSize("0-3,8,10-11\n")).toBe(7);
  expect(cpuListSize("5")).toBe(1);
  expect(cpuListSize("3-1")).toBeUndefined();
  expect(cpuListSize("")).toBeUndefined();
  expect(affinityCpus("Name:\tbun\nCpus_allowed:\tf\nCpus_allowed_list:\t0-1,4\n")).toBe(3);
});

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "featherlb-cgroup-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

test("cgroup v2: the lowest cpu.max on the way to the root, rounded up; max means none", () => {
  const root = tree({ "cpu.max": "max 100000\n", "pods/cpu.max": "250000 100000\n", "pods/app/cpu.max": "max 100000\n" });
  expect(cgroupCpus("0::/pods/app\n", root)).toBe(3);
  const free = tree({ "cpu.max": "max 100000\n", "a/cpu.max": "max 100000\n" });
  expect(cgroupCpus("0::/a\n", free)).toBeUndefined();
  const half = tree({ "a/cpu.max": "50000 100000\n" });
  expect(cgroupCpus("0::/a\n", half)).toBe(1);
});

test("cgroup v1: cfs_quota_us / cfs_period_us of the cpu controller; -1 means none", () => {
  const root = tree({ "cpu,cpuacct/docker/x/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n", "cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n" });
  expect(cgroupCpus("4:memory:/docker/x\n3:cpu,cpuacct:/docker/x\n", root)).toBe(2);
  expect(cgroupCpus("3:cpu,cpuacct:/\n", root)).toBeUndefined();
});

test("this process: at least one, at most the CPUs the machine has", () => {
  const n = usableCpus();
  expect(n).toBeGreaterThanOrEqual(1);
  expect(n).toBeLessThanOrEqual(navigator.hardwareConcurrency);
});
