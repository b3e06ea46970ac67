import { describe, expect, test } from "bun:test";
import { NeighbourTable, nextHopOn, parseArp, parseRoutes, procHexToU32 } from "./nexthops.ts";

// Verbatim shapes of /proc/net/route and /proc/net/arp (a little-endian host).
const ROUTES = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t0005000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0009000A\t00000000\t0201\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0007000A\t0200000A\t0003\t0\t0\t100\t00FFFFFF\t0\t0\t0
eth0\t0007000A\t0300000A\t0003\t0\t0\t50\t00FFFFFF\t0\t0\t0
`;
const ARP = `IP address       HW type     Flags       HW address            Mask     Device
10.0.0.21        0x1         0x2         02:00:00:00:00:21     *        eth0
10.0.0.22        0x1         0x0         00:00:00:00:00:00     *        eth0
10.0.0.1         0x1         0x2         02:00:00:00:00:01     *        eth0
10.0.0.3         0x1         0x2         02:00:00:00:00:03     *        eth0
10.0.5.9         0x1         0x2         02:00:00:00:05:09     *        eth1
`;

describe("procfs parsing", () => {
  test("addresses in /proc/net/route are the in-memory network-order words", () => {
    expect(procHexToU32("0100000A", true)).toBe(0x0a000001);
    expect(procHexToU32("0A000001", false)).toBe(0x0a000001);
  });

  test("routes: up only, reject routes skipped, gateways only with RTF_GATEWAY", () => {
    const r = parseRoutes(ROUTES, true);
    expect(r.length).toBe(5);
    expect(r[0]).toEqual({ ifname: "eth0", dest: 0, mask: 0, gateway: 0x0a000001, metric: 0 });
    expect(r[1]).toEqual({ ifname: "eth0", dest: 0x0a000000, mask: 0xffffff00, gateway: 0, metric: 0 });
  });

  test("next hop: on-link → itself, off-link → gateway, longest prefix then lowest metric, other interface → none", () => {
    const r = parseRoutes(ROUTES, true);
    expect(nextHopOn(r, "10.0.0.21", "eth0")).toBe("10.0.0.21");
    expect(nextHopOn(r, "192.168.1.1", "eth0")).toBe("10.0.0.1");
    expect(nextHopOn(r, "10.0.7.4", "eth0")).toBe("10.0.0.3");
    expect(nextHopOn(r, "10.0.5.9", "eth0")).toBeUndefined();
    // The reject route is skipped, so 10.0.9.x follows the default route.
    expect(nextHopOn(r, "10.0.9.1", "eth0")).toBe("10.0.0.1");
  });

  test("neighbours: complete entries of the interface only", () => {
    const a = parseArp(ARP, "eth0");
    expect([...a]).toEqual([
      ["10.0.0.21", "02:00:00:00:00:21"],
      ["10.0.0.1", "02:00:00:00:00:01"],
      ["10.0.0.3", "02:00:00:00:00:03"],
    ]);
  });
});

describe("NeighbourTable", () => {
  function table(arp: { text: string }) {
    const map = new Map<number, string>();
    const writes: string[] = [];
    const t = new NeighbourTable(
      "eth0",
      {
        set: (ip, mac) => {
          map.set(ip, [...mac].map((b) => b.toString(16).padStart(2, "0")).join(":"));
          writes.push(`set ${ip.toString(16)}`);
        },
        delete: (ip) => {
          map.delete(ip);
          writes.push(`del ${ip.toString(16)}`);
        },
      },
      { routes: () => ROUTES, arp: () => arp.text },
    );
    return { t, map, writes };
  }

  test("writes each backend's next-hop MAC once, reports the unresolved, keeps a known MAC while it re-resolves", () => {
    const arp = { text: ARP };
    const { t, map, writes } = table(arp);
    t.setBackends(["10.0.0.21", "10.0.0.22", "192.168.1.1", "10.0.5.9"]);
    expect(t.refresh().sort()).toEqual(["10.0.0.22", "10.0.5.9"]);
    expect(map.get(0x0a000015)).toBe("02:00:00:00:00:21");
    expect(map.get(0xc0a80101)).toBe("02:00:00:00:00:01"); // via the default gateway
    expect(writes.length).toBe(2);
    t.refresh();
    expect(writes.length).toBe(2); // nothing changed, nothing written

    // The kernel is re-resolving .21 (no complete entry for a moment): the last MAC stays.
    arp.text = ARP.replace("10.0.0.21        0x1         0x2", "10.0.0.21        0x1         0x0");
    expect(t.refresh()).toContain("10.0.0.21");
    expect(map.get(0x0a000015)).toBe("02:00:00:00:00:21");

    // A new MAC replaces the old one; a backend that left is removed.
    arp.text = ARP.replace("02:00:00:00:00:21", "02:00:00:00:99:21");
    t.setBackends(["10.0.0.21"]);
    t.refresh();
    expect([...map.entries()]).toEqual([[0x0a000015, "02:00:00:00:99:21"]]);
  });
});
