/**
 * HostState's decisions with a temporary directory for /run/featherlb and a fake sysctl that reads back
 * as the kernel does (normaliseReserved). A "crash" is a HostState dropped without its restore; the next
 * claim in the same directory and namespace key plays the next start. The real thing, with kill -9 in
 * network namespaces: test/xdp/hoststate.test.ts.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Logger } from "../../control/log.ts";
import { UserError } from "../../errors.ts";
import { HostState, type HostRecord, netnsId, normaliseReserved, portsVerdict, processStarted } from "./hoststate.ts";

const NETNS = "4026530000";
const SNAT = [40000, 49999] as const;

let dir = "";
let logs: { level: string; msg: string; [k: string]: unknown }[] = [];
const log = () => new Logger("debug", (line) => void logs.push(JSON.parse(line)));
const recordPath = () => join(dir, `netns-${NETNS}.json`);
const record = () => JSON.parse(readFileSync(recordPath(), "utf8")) as HostRecord;
const warnings = () => logs.filter((l) => l.level === "warn").map((l) => l.msg);

/** ip_local_reserved_ports as the kernel keeps it: a write is read back sorted and merged. */
function sysctl(initial = "") {
  let value = normaliseReserved(initial);
  return { read: () => value, write: (v: string) => void (value = normaliseReserved(v)) };
}

const claim = (s: ReturnType<typeof sysctl>, tagged: { dev: string; dst: string }[] = []) => HostState.claim(log(), s, tagged, { dir, netns: NETNS });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "flbh-unit-"));
  logs = [];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("normaliseReserved reads back as the kernel does", () => {
  test.each([
    ["", ""],
    ["\n", ""],
    ["40000-49999", "40000-49999"],
    ["8000-8010,40005-40010,40000-49999", "8000-8010,40000-49999"],
    ["40000-49999,8000", "8000,40000-49999"],
    ["5,6,7,9", "5-7,9"],
    ["100-200,201-300", "100-300"],
  ])("%p → %p", (input, out) => expect(normaliseReserved(input)).toBe(out));
});

describe("portsVerdict: a dead writer's reservation against the sysctl now", () => {
  const recorded = { range: "40000-49999", before: "8000", wrote: "8000,40000-49999" };
  test.each([
    ["8000,40000-49999", "adopt"], // untouched since the crash
    ["8000", "none"], // the crash came before the write, or after the restore
    ["", "mismatch"], // an earlier namespace's record (reused inode)
    ["8000,40000-49999,50005", "mismatch"], // the operator edited it
  ] as const)("%p → %p", (current, verdict) => expect(portsVerdict(recorded, current)).toBe(verdict));
});

describe("HostState", () => {
  test("a clean run restores the value it found and removes its record", () => {
    const s = sysctl("8000-8010");
    const host = claim(s);
    const restore = host.reservePorts(...SNAT);
    expect(s.read()).toBe("8000-8010,40000-49999");
    expect(record().reservedPorts).toEqual({ range: "40000-49999", before: "8000-8010", wrote: "8000-8010,40000-49999" });
    host.ownNeighbour({ dev: "lb0", dst: "10.0.0.21" });
    expect(record().neighbours).toEqual([{ dev: "lb0", dst: "10.0.0.21" }]);
    restore();
    host.forgetNeighbour({ dev: "lb0", dst: "10.0.0.21" });
    host.close();
    expect(s.read()).toBe("8000-8010");
    expect(existsSync(recordPath())).toBe(false);
  });

  test("a range the operator reserved already (a container's sysctls, read-only /proc/sys) is not written, recorded or undone", () => {
    const s = sysctl("39000-60000");
    const host = claim(s);
    const writes: string[] = [];
    const write = s.write;
    s.write = (v: string) => {
      writes.push(v);
      write(v);
    };
    const restore = host.reservePorts(...SNAT);
    expect(writes).toEqual([]);
    expect(record().reservedPorts).toBeUndefined();
    restore();
    host.close();
    expect({ writes, value: s.read() }).toEqual({ writes: [], value: "39000-60000" });
  });

  test("after a crash the next start adopts the record and restores the value from before the first start, overlapping operator ports included", () => {
    const s = sysctl("8000-8010,40005-40010");
    const first = claim(s);
    first.reservePorts(...SNAT);
    first.ownNeighbour({ dev: "lb0", dst: "10.0.0.21" });
    // kill -9: no restore, no close.
    expect(s.read()).toBe("8000-8010,40000-49999"); // the kernel merged the operator's 40005-40010 into ours

    const second = claim(s, [{ dev: "lb0", dst: "10.0.0.21" }]);
    expect(logs.some((l) => l.msg.startsWith("adopting the host changes") && l.pid === process.pid)).toBe(true);
    expect(warnings()).toEqual([]);
    const restore = second.reservePorts(...SNAT);
    expect(record().reservedPorts?.before).toBe("8000-8010,40005-40010");
    expect(second.neighbours()).toEqual([{ dev: "lb0", dst: "10.0.0.21" }]);
    restore();
    expect(s.read()).toBe("8000-8010,40005-40010");
  });

  test("a record whose sysctl value was changed since is not adopted: warning, and the current value is restored", () => {
    const s = sysctl("");
    claim(s).reservePorts(...SNAT);
    // Crash, then the operator edits the sysctl (or the record is from an earlier namespace with this inode).
    s.write("40000-49999,50005");
    const second = claim(s);
    expect(warnings()).toEqual([expect.stringContaining("does not match net.ipv4.ip_local_reserved_ports")]);
    const restore = second.reservePorts(...SNAT);
    // The edited value still holds the whole range: nothing to write, so nothing recorded or undone.
    expect(record().reservedPorts).toBeUndefined();
    restore();
    expect(s.read()).toBe("40000-49999,50005");
  });

  test("a crash between recording and writing the sysctl leaves the value at `before`: taken without a warning", () => {
    const s = sysctl("8000");
    writeFileSync(recordPath(), JSON.stringify({ version: 1, pid: 999999999, started: "1", netns: NETNS, reservedPorts: { range: "40000-49999", before: "8000", wrote: "8000,40000-49999" }, neighbours: [] }));
    const restore = claim(s).reservePorts(...SNAT);
    expect(warnings()).toEqual([]);
    restore();
    expect(s.read()).toBe("8000");
  });

  test("a SNAT range changed by a reload is recorded, and a crash after it still restores the first `before`", () => {
    const s = sysctl("8000-8010,40005-40010");
    const first = claim(s);
    const restore = first.reservePorts(...SNAT);
    restore(); // checkXdpChanges: release the old range, reserve the new one
    first.reservePorts(41000, 42999);
    expect(s.read()).toBe("8000-8010,40005-40010,41000-42999");
    expect(record().reservedPorts).toEqual({ range: "41000-42999", before: "8000-8010,40005-40010", wrote: "8000-8010,40005-40010,41000-42999" });

    const again = claim(s).reservePorts(41000, 42999);
    again();
    expect(s.read()).toBe("8000-8010,40005-40010");
  });

  test("a restart with another SNAT range replaces the crashed run's range instead of keeping both", () => {
    const s = sysctl("");
    claim(s).reservePorts(...SNAT);
    const restore = claim(s).reservePorts(41000, 42999);
    expect(s.read()).toBe("41000-42999");
    restore();
    expect(s.read()).toBe("");
  });

  test("a sysctl changed while featherlb ran is left as it is at exit, with a warning", () => {
    const s = sysctl("");
    const host = claim(s);
    const restore = host.reservePorts(...SNAT);
    s.write("40000-49999,60000");
    restore();
    host.close();
    expect(s.read()).toBe("40000-49999,60000");
    expect(warnings()).toEqual([expect.stringContaining("was changed while featherlb ran")]);
    expect(existsSync(recordPath())).toBe(false);
  });

  test("a failed sysctl write leaves no reservation recorded", () => {
    const s = sysctl("");
    const host = HostState.claim(log(), { read: s.read, write: () => { throw new Error("EPERM"); } }, [], { dir, netns: NETNS });
    expect(() => host.reservePorts(...SNAT)).toThrow("EPERM");
    expect(record().reservedPorts).toBeUndefined();
    host.close();
    expect(existsSync(recordPath())).toBe(false);
  });

  test("a record whose writer is still running is not taken: the start fails with one sentence", async () => {
    const child = Bun.spawn(["sleep", "30"]);
    try {
      await Bun.sleep(20);
      const started = processStarted(child.pid)!;
      expect(started).toMatch(/^\d+$/);
      const theirs: HostRecord = { version: 1, pid: child.pid, started, netns: NETNS, reservedPorts: { range: "40000-49999", before: "", wrote: "40000-49999" }, neighbours: [] };
      writeFileSync(recordPath(), JSON.stringify(theirs));
      const s = sysctl("40000-49999");
      let err: unknown;
      try {
        claim(s);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UserError);
      expect((err as UserError).message).toBe(
        `another featherlb (pid ${child.pid}) runs mode: xdp in this network namespace and owns its host changes (${recordPath()}); stop it first, or run this one in another network namespace or with mode: proxy.`,
      );
      expect(record().pid).toBe(child.pid); // untouched

      // The same pid with another start time is a reused pid: the writer is gone, its record is adopted.
      writeFileSync(recordPath(), JSON.stringify({ ...theirs, started: "1" }));
      const restore = claim(s).reservePorts(...SNAT);
      restore();
      expect(s.read()).toBe("");
    } finally {
      process.kill(child.pid, "SIGKILL");
      await child.exited;
    }
  });

  test("an unwritable run directory: one warning, and the changes are still undone at a clean exit", () => {
    const file = join(dir, "not-a-dir");
    writeFileSync(file, "");
    const s = sysctl("");
    const host = HostState.claim(log(), s, [], { dir: join(file, "run"), netns: NETNS });
    const restore = host.reservePorts(...SNAT);
    host.ownNeighbour({ dev: "lb0", dst: "10.0.0.21" });
    restore();
    host.close();
    expect(s.read()).toBe("");
    expect(warnings()).toEqual([expect.stringContaining("cannot record the host changes")]);
  });

  test("an unreadable record is replaced with a warning", () => {
    writeFileSync(recordPath(), "{ half a reco");
    claim(sysctl("")).reservePorts(...SNAT);
    expect(warnings()).toEqual([expect.stringContaining("unreadable featherlb record")]);
    expect(record().pid).toBe(process.pid);
  });

  test("the namespace key is the inode of /proc/self/ns/net and the start time is a number", () => {
    expect(netnsId()).toMatch(/^\d+$/);
    expect(processStarted(process.pid)).toMatch(/^\d+$/);
    expect(processStarted(999999999)).toBeUndefined();
  });
});
