/**
 * Reload on a config file change, with no signal (src/control/configwatch.ts). The file is mounted the
 * way kubelet mounts a ConfigMap: `lb.yaml → ..data/lb.yaml`, `..data → ..<timestamp>/`; an update
 * writes a new timestamped directory, points `..data_tmp` at it, renames `..data_tmp` over `..data`
 * (one atomic rename(2)) and deletes the old directory. featherlb must notice, log and apply it.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBackend, type TestBackend } from "../support/backend.ts";
import { lbYaml } from "../support/config.ts";
import { whoServes } from "../support/conn.ts";
import { startLB, type RunningLB } from "../support/lb.ts";
import { freePort } from "../support/net.ts";

/** A ConfigMap volume with one key, lb.yaml; `update` swaps it as kubelet's AtomicWriter does. */
function configMapVolume() {
  const dir = mkdtempSync(join(tmpdir(), "featherlb-configmap-"));
  let version = 0;
  let current = "";
  const writeVersion = (yaml: string) => {
    const name = `..2026_01_01_00_00_0${version++}.000000000`;
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, "lb.yaml"), yaml);
    return name;
  };
  return {
    dir,
    /** The first version: the directory, ..data and the lb.yaml link; returns the path featherlb reads. */
    create(yaml: string): string {
      current = writeVersion(yaml);
      symlinkSync(current, join(dir, "..data"));
      symlinkSync("..data/lb.yaml", join(dir, "lb.yaml"));
      return join(dir, "lb.yaml");
    },
    update(yaml: string): void {
      const next = writeVersion(yaml);
      symlinkSync(next, join(dir, "..data_tmp"));
      renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
      rmSync(join(dir, current), { recursive: true });
      current = next;
    },
  };
}

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
}, 20_000);

async function setup(top = "config_watch: 200ms") {
  const backends = ["a", "b"].map((n) => startBackend(n));
  cleanup.push(() => backends.forEach((b) => b.stop()));
  const port = freePort();
  const yaml = (b: TestBackend, extra = "") => lbYaml({ top: `${top}\n${extra}`, services: [{ name: "web", port, backends: [b.address] }] });
  const volume = configMapVolume();
  cleanup.push(() => rmSync(volume.dir, { recursive: true, force: true }));
  let adminLine = "";
  const lb: RunningLB = await startLB(yaml(backends[0]!), {
    write: (text) => {
      adminLine = text.split("\n")[0]!; // the admin address startLB chose: keep it in later versions
      return volume.create(text);
    },
  });
  cleanup.push(() => lb.stop());
  const update = (text: string) => volume.update(text.replace(/^admin: .*$/m, adminLine));
  return { lb, port, backends: backends as [TestBackend, TestBackend], yaml, update };
}

test("a ConfigMap-style symlink swap is reloaded without a signal, and logged (default config_watch: 1s)", async () => {
  const { lb, port, backends, yaml, update } = await setup("");
  expect(await whoServes("127.0.0.1", port)).toBe("a");
  const mark = lb.logs().length;
  update(yaml(backends[1]));
  const changed = await lb.waitForLog("config file changed, reloading", 5000, mark);
  expect(String(changed.path)).toEndWith("/lb.yaml");
  await lb.waitForLog("config reloaded", 5000, mark);
  expect(await whoServes("127.0.0.1", port)).toBe("b");
  expect(await lb.metric("featherlb_config_reloads_total", { result: "ok" })).toBe(1);
}, 20_000);

test("a changed file that does not load is rejected once, not every check; the old config keeps serving", async () => {
  const { lb, port, backends, yaml, update } = await setup();
  const mark = lb.logs().length;
  update(yaml(backends[1], "drain_timeout: soon"));
  await lb.waitForLog("reload rejected, still serving the previous config", 5000, mark);
  await Bun.sleep(1000); // five more checks of the same contents
  expect(lb.logs().slice(mark).filter((l) => l.msg === "reload rejected, still serving the previous config")).toHaveLength(1);
  expect(await lb.metric("featherlb_config_reloads_total", { result: "failed" })).toBe(1);
  expect(await whoServes("127.0.0.1", port)).toBe("a");
  // Fixed: the next version loads.
  update(yaml(backends[1]));
  await lb.waitForLog("config reloaded", 5000, mark);
  expect(await whoServes("127.0.0.1", port)).toBe("b");
}, 20_000);

test("config_watch: off leaves reloads to SIGHUP", async () => {
  const { lb, port, backends, yaml, update } = await setup("config_watch: off");
  update(yaml(backends[1]));
  await Bun.sleep(1500);
  expect(lb.logs().some((l) => l.msg === "config file changed, reloading")).toBe(false);
  expect(await whoServes("127.0.0.1", port)).toBe("a");
  const mark = lb.logs().length;
  lb.signal("SIGHUP");
  await lb.waitForLog("config reloaded", 5000, mark);
  expect(await whoServes("127.0.0.1", port)).toBe("b");
}, 20_000);
