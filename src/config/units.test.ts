/** The small parsers and helpers behind the schema: durations, addresses, primes, suggestions, limits. */
import { describe, expect, test } from "bun:test";
import { ALGORITHMS } from "../control/algorithms/index.ts";
import { backendKey, ipv4OfPeer, ipv4ToU32, isIpLiteral, isIPv4, listenersConflict, parseHostPort, parseIPv6, u32ToIpv4 } from "./address.ts";
import { DEFAULT_FLOW_TABLE_SIZE, DEFAULT_MAGLEV_TABLE_SIZE, defaultMaglevTableSize } from "./defaults.ts";
import { formatDuration, MAX_DURATION_MS, parseDuration } from "./duration.ts";
import {
  FLOW_TABLE_SIZE_MAX,
  FLOW_TABLE_SIZE_MIN,
  FLOW_TABLE_SIZES,
  MAGLEV_DEFAULT_FITS,
  MAGLEV_SLOTS_PER_BACKEND,
  MAGLEV_TABLE_SIZE_MAX,
  MAX_BACKENDS,
} from "./limits.ts";
import { parseConfig } from "./load.ts";
import { isPrime, nextPrime } from "./primes.ts";
import { closest, editDistance } from "./suggest.ts";
import { ALGORITHM_NAMES } from "./types.ts";

describe("parseDuration", () => {
  test.each([
    ["500ms", 500],
    ["2s", 2000],
    ["1m", 60_000],
    ["1h", 3_600_000],
    ["1m30s", 90_000],
    ["1h2m3s4ms", 3_723_004],
    ["1.5s", 1500],
    ["0.1s", 100],
    ["0s", 0],
    ["250", 250],
    [250, 250],
    [0, 0],
  ] as const)("%p → %p ms", (input, ms) => {
    expect(parseDuration(input)).toEqual({ ok: true, value: ms });
  });

  test.each([[""], ["s"], ["2 s"], ["1.5"], ["2S"], ["1d"], ["-0s"], ["1s-"], [-1], [0.5], [true], [null], [{}], [Number.NaN]])(
    "%p is rejected",
    (input) => {
      expect(parseDuration(input).ok).toBe(false);
    },
  );

  test("the timer limit is inclusive", () => {
    expect(parseDuration(MAX_DURATION_MS)).toEqual({ ok: true, value: MAX_DURATION_MS });
    expect(parseDuration(MAX_DURATION_MS + 1).ok).toBe(false);
  });

  test("min bound", () => {
    expect(parseDuration("1s", { min: 1000 }).ok).toBe(true);
    expect(parseDuration("999ms", { min: 1000 })).toEqual({ ok: false, error: 'must be at least 1s, got "999ms"' });
  });

  test.each([
    [0, "0s"],
    [1, "1ms"],
    [1500, "1500ms"],
    [2000, "2s"],
    [90_000, "1m30s"],
    [3_600_000, "1h"],
    [3_723_000, "1h2m3s"],
  ])("formatDuration(%p) = %p and parses back", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
    expect(parseDuration(text)).toEqual({ ok: true, value: ms });
  });
});

describe("addresses", () => {
  test.each([
    ["10.0.0.1:80", "backend", "10.0.0.1", 80],
    ["[::1]:80", "listen", "::1", 80],
    ["[fe80::1%eth0]:80", "listen", "fe80::1%eth0", 80],
    ["[::ffff:10.0.0.1]:443", "backend", "::ffff:10.0.0.1", 443],
    ["db-1.prod.example.com:5432", "backend", "db-1.prod.example.com", 5432],
    ["my_service:80", "backend", "my_service", 80],
    ["0.0.0.0:65535", "listen", "0.0.0.0", 65535],
  ] as const)("%p (%s) parses", (text, kind, host, port) => {
    expect(parseHostPort(text, kind)).toEqual({ ok: true, value: { host, port } });
  });

  test.each([
    ["010.0.0.1:80"], // leading zero: octal to some resolvers
    ["-bad.example:80"],
    ["a..b:80"],
    [`${"a".repeat(64)}:80`],
  ])("%p is not a valid backend", (text) => {
    expect(parseHostPort(text, "backend").ok).toBe(false);
  });

  test("IPv6 forms", () => {
    expect(parseIPv6("::")?.groups).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseIPv6("2001:db8::1")?.groups).toEqual([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
    expect(parseIPv6("::ffff:1.2.3.4")?.groups).toEqual([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]);
    for (const bad of ["1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "::g", "1:2:3:4:5:6:7::8"]) {
      expect(parseIPv6(bad)).toBeNull();
    }
  });

  test("IP literals and IPv4 as numbers (the one parser the data planes use)", () => {
    expect(["10.0.0.1", "::1", "fe80::1%eth0", "::ffff:1.2.3.4"].every(isIpLiteral)).toBe(true);
    expect(["backend.example", "web", "1.2.3", "999.0.0.1"].some(isIpLiteral)).toBe(false);
    expect([isIPv4("10.0.0.1"), isIPv4("::1"), isIPv4("010.0.0.1")]).toEqual([true, false, false]);
    expect(ipv4ToU32("10.0.0.1")).toBe(0x0a000001);
    expect(ipv4ToU32("255.255.255.255")).toBe(0xffffffff);
    expect(u32ToIpv4(0xc0a80101)).toBe("192.168.1.1");
    expect(() => ipv4ToU32("::1")).toThrow("not an IPv4 address");
    expect(ipv4OfPeer("::ffff:10.0.0.1")).toBe(0x0a000001);
    expect(ipv4OfPeer("10.0.0.1")).toBe(0x0a000001);
    expect(ipv4OfPeer("::1")).toBeNull();
  });

  const hp = (host: string, port = 80) => ({ host, port });
  test.each([
    [hp("10.0.0.1"), hp("10.0.0.1"), true],
    [hp("10.0.0.1"), hp("10.0.0.2"), false],
    [hp("10.0.0.1"), hp("10.0.0.1", 81), false],
    [hp("0.0.0.0"), hp("10.0.0.1"), true],
    [hp("10.0.0.1"), hp("0.0.0.0"), true],
    [hp("0.0.0.0"), hp("::1"), false],
    [hp("::"), hp("10.0.0.1"), true],
    [hp("::"), hp("::1"), true],
    [hp("::1"), hp("0:0:0:0:0:0:0:1"), true],
    [hp("::ffff:10.0.0.1"), hp("10.0.0.1"), true],
    [hp("::ffff:10.0.0.1"), hp("0.0.0.0"), true],
    [hp("::1"), hp("::2"), false],
    [hp("fe80::1%eth0"), hp("fe80::1%eth1"), false],
  ])("listenersConflict(%p, %p) = %p", (a, b, conflict) => {
    expect(listenersConflict(a, b)).toBe(conflict);
    expect(listenersConflict(b, a)).toBe(conflict);
  });

  test("backend identity ignores spelling, not address", () => {
    expect(backendKey(hp("App.Local."))).toBe(backendKey(hp("app.local")));
    expect(backendKey(hp("::1"))).toBe(backendKey(hp("0::0:1")));
    expect(backendKey(hp("10.0.0.1"))).not.toBe(backendKey(hp("10.0.0.1", 81)));
  });
});

describe("primes and Maglev sizes", () => {
  test("isPrime / nextPrime", () => {
    expect([0, 1, 2, 3, 4, 9, 25, 97, 100].map(isPrime)).toEqual([false, false, true, true, false, false, false, true, false]);
    expect(nextPrime(1000)).toBe(1009);
    expect(nextPrime(1009)).toBe(1009);
  });

  test("the Maglev defaults and bounds are consistent", () => {
    expect(isPrime(DEFAULT_MAGLEV_TABLE_SIZE)).toBe(true);
    expect(isPrime(MAGLEV_TABLE_SIZE_MAX)).toBe(true);
    // The largest prime below 2^20: no prime between it and 2^20.
    expect(nextPrime(MAGLEV_TABLE_SIZE_MAX + 1)).toBeGreaterThan(2 ** 20);
    // The default must fit every service up to the largest, or a default could fail validation; up to
    // MAGLEV_DEFAULT_FITS backends it is the fixed 65537 (the tables of today's configs do not change).
    expect(DEFAULT_MAGLEV_TABLE_SIZE).toBeGreaterThanOrEqual(MAGLEV_SLOTS_PER_BACKEND * MAGLEV_DEFAULT_FITS);
    expect(defaultMaglevTableSize(MAGLEV_DEFAULT_FITS)).toBe(DEFAULT_MAGLEV_TABLE_SIZE);
    expect(defaultMaglevTableSize(MAGLEV_DEFAULT_FITS + 1)).toBe(nextPrime(MAGLEV_SLOTS_PER_BACKEND * (MAGLEV_DEFAULT_FITS + 1)));
    for (const n of [1, 256, MAGLEV_DEFAULT_FITS, 1024, MAX_BACKENDS]) {
      const size = defaultMaglevTableSize(n);
      expect(isPrime(size) && size >= MAGLEV_SLOTS_PER_BACKEND * n && size <= MAGLEV_TABLE_SIZE_MAX).toBe(true);
    }
  });
});

describe("suggestions", () => {
  test("edit distance counts a transposition as one edit", () => {
    expect(editDistance("algorithm", "algorithm")).toBe(0);
    expect(editDistance("algoritm", "algorithm")).toBe(1);
    expect(editDistance("algorihtm", "algorithm")).toBe(1);
    expect(editDistance("", "abc")).toBe(3);
  });

  test("closest suggests only plausible typos", () => {
    expect(closest("backend", ["name", "backends", "listen"])).toBe("backends");
    expect(closest("Listen", ["name", "backends", "listen"])).toBe("listen");
    expect(closest("color", ["enabled", "interval", "timeout"])).toBeUndefined();
  });
});

describe("one list of algorithm names", () => {
  test("the registry has exactly the names the schema accepts", () => {
    expect(Object.keys(ALGORITHMS).sort()).toEqual([...ALGORITHM_NAMES].sort());
  });
});

describe("flow_table_size bounds (a verifier test enumerates these)", () => {
  const withSize = (size: number) =>
    `xdp: {flow_table_size: ${size}}\nservices: [{name: a, listen: 0.0.0.0:80, backends: [{address: 10.0.0.1:80}]}]\n`;

  test("the allowed sizes are the powers of two between the bounds", () => {
    expect(FLOW_TABLE_SIZES[0]).toBe(FLOW_TABLE_SIZE_MIN);
    expect(FLOW_TABLE_SIZES.at(-1)).toBe(FLOW_TABLE_SIZE_MAX);
    expect(FLOW_TABLE_SIZES).toContain(DEFAULT_FLOW_TABLE_SIZE);
    expect(FLOW_TABLE_SIZES).toHaveLength(11);
  });

  test("every allowed size loads; the neighbours do not", () => {
    for (const size of FLOW_TABLE_SIZES) expect(parseConfig(withSize(size), "x.yaml").xdp.flow_table_size).toBe(size);
    for (const size of [FLOW_TABLE_SIZE_MIN / 2, FLOW_TABLE_SIZE_MIN - 1, FLOW_TABLE_SIZE_MIN + 1, FLOW_TABLE_SIZE_MAX * 2, 0, -1024]) {
      expect(() => parseConfig(withSize(size), "x.yaml")).toThrow("xdp.flow_table_size");
    }
  });
});
