/**
 * The config loader, end to end: YAML text in, Config or one located error line out.
 *
 * The error table is the heart: each row is a file (as lines, so line numbers are index + 1) and the
 * exact message a user sees.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { loadConfig, parseConfig } from "./load.ts";
import { MAGLEV_TABLE_SIZE_MAX, MAX_BACKENDS, MAX_SERVICES, SLOT_POOL_MAX } from "./limits.ts";
import type { Config } from "./types.ts";

/** A service "web" on 0.0.0.0:8080 with `lines` added at line 4 onward (4 spaces in: column 5). */
function web(...lines: string[]): string[] {
  return ["services:", "  - name: web", "    listen: 0.0.0.0:8080", ...lines.map((l) => `    ${l}`)];
}
/** web() with one good backend first (lines 4-5), then `lines` from line 6. */
function webWithBackend(...lines: string[]): string[] {
  return web("backends:", "  - address: 10.0.0.11:8080", ...lines);
}
/** A service "web" with one backend whose address is `address` (line 5, value at column 18). */
function backendAddress(address: string): string[] {
  return web("backends:", `  - address: ${address}`);
}

/**
 * One service per entry, s0, s1, … on 10.0.0.1:1000, :1001, …, each a flow mapping on one line (services[k]
 * on the line after "services:" + k, its "{" at column 5). An entry adds keys; one backend unless it lists them.
 */
function services(entries: readonly string[]): string[] {
  const backends = (extra: string) => (extra.includes("backends:") ? "" : ", backends: [{address: 10.0.0.11:80}]");
  return ["services:", ...entries.map((extra, k) => `  - {name: s${k}, listen: 10.0.0.1:${1000 + k}${extra}${backends(extra)}}`)];
}
/** 32 services with the largest Maglev table: 32 × 2 × 1048573 = 67108672 of the 67108864 pool slots, 192 left. */
const BIG_MAGLEVS = Array.from({ length: 32 }, () => ", algorithm: maglev, maglev: {table_size: 1048573}");
/** A service with these backend weights (10.0.0.11, .12, …) and `algorithm`, as a flow-mapping tail. */
const weighted = (algorithm: string, weights: number[]) =>
  `, algorithm: ${algorithm}, backends: [${weights.map((w, i) => `{address: 10.0.0.${11 + i}:80, weight: ${w}}`).join(", ")}]`;

function errorOf(text: string): string {
  try {
    parseConfig(text, "lb.yaml");
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).code).toBe("config");
    return (err as UserError).message;
  }
  throw new Error("expected parseConfig to throw, but it accepted:\n" + text);
}

const ROWS: Array<[string, string[], string]> = [
  // --- YAML itself
  ["unclosed flow sequence", ["services: ["], "lb.yaml:2:1 invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]"],
  ["duplicate key", ["mode: proxy", "mode: xdp"], "lb.yaml:2:1 invalid YAML: Map keys must be unique"],
  ["tab indentation", ["services:", "\t- name: web"], "lb.yaml:2:1 invalid YAML: Tabs are not allowed as indentation"],
  ["alias to no anchor", ["mode: *m"], "lb.yaml:1:7 invalid YAML: Unresolved alias (the anchor must be set before the alias): m"],
  ["two documents", ["mode: proxy", "---", "mode: xdp"], "lb.yaml:2:1 invalid YAML: Source contains multiple documents; please use YAML.parseAllDocuments()"],

  // --- the file's shape
  ["empty file", [""], 'lb.yaml:1:1 the file is empty; expected a mapping with a "services" list'],
  ["only comments", ["# nothing here", "# yet"], 'lb.yaml:1:1 the file is empty; expected a mapping with a "services" list'],
  ["top level is a list", ["- name: web"], "lb.yaml:1:1 expected a mapping at the top level, got a list"],
  ["top level is a scalar", ["hello"], 'lb.yaml:1:1 expected a mapping at the top level, got string "hello"'],
  ["no services key", ["mode: proxy"], 'lb.yaml:1:1 missing required key "services"'],
  ["workers: 0", ["workers: 0", ...webWithBackend()], "lb.yaml:1:10 workers: expected auto or a whole number of workers from 1 to 256, got number 0"],
  ["workers: a fraction", ["workers: 1.5", ...webWithBackend()], "lb.yaml:1:10 workers: expected auto or a whole number of workers from 1 to 256, got number 1.5"],
  ["workers: a word", ["workers: all", ...webWithBackend()], 'lb.yaml:1:10 workers: expected auto or a whole number of workers from 1 to 256, got string "all"'],
  ["services empty", ["services: []"], "lb.yaml:1:11 services: must list at least one service"],
  ["services not a list", ["services: 5"], "lb.yaml:1:11 services: expected a list of services, got number 5"],
  ["service not a mapping", ["services:", "  - web"], "lb.yaml:2:5 services[0]: expected a mapping, got string \"web\""],
  ["wrong value before a missing key of its mapping", ["services:", "  - name: web", "    listen: 0.0.0.0:99999"], "lb.yaml:3:13 services[0].listen: port must be 1-65535, got 99999"],
  ["service without listen", ["services:", "  - name: web", "    backends: [{address: 10.0.0.1:80}]"], 'lb.yaml:2:5 services[0]: missing required key "listen"'],

  // --- unknown keys: pointed at the key, with the nearest valid key
  ["misspelt top-level key", ["servces: []"], 'lb.yaml:1:1 unknown key "servces"; did you mean "services"?'],
  ["misspelt algorithm key", webWithBackend("algoritm: maglev"), 'lb.yaml:6:5 services[0]: unknown key "algoritm"; did you mean "algorithm"?'],
  ["transposed letters", webWithBackend("algorihtm: maglev"), 'lb.yaml:6:5 services[0]: unknown key "algorihtm"; did you mean "algorithm"?'],
  ["misspelt required key wins over missing", web("backend:", "  - address: 10.0.0.11:8080"), 'lb.yaml:4:5 services[0]: unknown key "backend"; did you mean "backends"?'],
  ["misspelt backend key", web("backends:", "  - adress: 10.0.0.11:8080"), 'lb.yaml:5:9 services[0].backends[0]: unknown key "adress"; did you mean "address"?'],
  ["unknown key, nothing close", webWithBackend("health_check:", "  color: red"), 'lb.yaml:7:7 services[0].health_check: unknown key "color"; valid keys here: enabled, interval, timeout, rise, fall'],
  ["unknown top-level key, nothing close", ["frontend: {}", ...webWithBackend()], 'lb.yaml:1:1 unknown key "frontend"; valid keys here: mode, workers, kernel_relay, log, admin, drain_timeout, dns_refresh, config_watch, xdp, announce, defaults, services'],
  ["unknown key in a flow mapping", web("backends: [{address: 10.0.0.1:80, wieght: 2}]"), 'lb.yaml:4:39 services[0].backends[0]: unknown key "wieght"; did you mean "weight"?'],
  ["service-only key in defaults", ["defaults:", "  listen: 0.0.0.0:80", ...web()], 'lb.yaml:2:3 defaults: unknown key "listen"; valid keys here: max_connections, connect_timeout, connect_retries, idle_timeout, half_close_timeout, max_connections_per_source, send_proxy, accept_proxy, forwarding, health_check'],
  ["mode is per service, not a default", ["defaults:", "  mode: xdp", ...web()], 'lb.yaml:2:3 defaults: unknown key "mode"; valid keys here: max_connections, connect_timeout, connect_retries, idle_timeout, half_close_timeout, max_connections_per_source, send_proxy, accept_proxy, forwarding, health_check'],

  // --- wrong types
  ["weight is text", web("backends:", "  - address: 10.0.0.11:8080", "    weight: abc"), 'lb.yaml:6:17 services[0].backends[0].weight: expected a number, got string "abc"'],
  ["quoted number", webWithBackend('max_connections: "100"'), 'lb.yaml:6:22 services[0].max_connections: expected a number, got string "100"'],
  ["yes is not a boolean in YAML 1.2", webWithBackend("health_check: {enabled: yes}"), 'lb.yaml:6:29 services[0].health_check.enabled: expected true or false, got string "yes"'],
  ["numeric name", ["services:", "  - name: 123", "    listen: 0.0.0.0:80", "    backends: [{address: 10.0.0.1:80}]"], "lb.yaml:2:11 services[0].name: expected a string, got number 123 (quote it to make it a string)"],
  ["backends is a mapping", web("backends: {address: 10.0.0.1:80}"), "lb.yaml:4:15 services[0].backends: expected a list of backends, got a mapping"],
  ["backend is a bare string", web("backends:", "  - 10.0.0.1:80"), 'lb.yaml:5:9 services[0].backends[0]: expected a mapping like {address: "10.0.0.11:8080"}, got string "10.0.0.1:80"'],
  ["listen is a bare port", ["services:", "  - name: web", "    listen: 8080"], 'lb.yaml:3:13 services[0].listen: expected "host:port", got number 8080; write "0.0.0.0:8080"'],
  ["log is not a mapping", ["log: debug", ...web()], 'lb.yaml:1:6 log: expected a mapping, got string "debug"'],
  ["section is a list", webWithBackend("health_check: [1]"), "lb.yaml:6:19 services[0].health_check: expected a mapping, got a list"],
  ["empty value", web("backends:"), "lb.yaml:4:14 services[0].backends: expected a list of backends, got an empty value"],

  // --- names from fixed lists
  ["unknown algorithm, close", webWithBackend("algorithm: roundrobin"), 'lb.yaml:6:16 services[0].algorithm: unknown algorithm "roundrobin"; did you mean "round_robin"? expected one of round_robin, weighted_round_robin, least_connections, random, power_of_two, source_hash, maglev'],
  ["unknown algorithm, far", webWithBackend("algorithm: fastest"), 'lb.yaml:6:16 services[0].algorithm: unknown algorithm "fastest"; expected one of round_robin, weighted_round_robin, least_connections, random, power_of_two, source_hash, maglev'],
  ["algorithm is a number", webWithBackend("algorithm: 3"), "lb.yaml:6:16 services[0].algorithm: expected one of round_robin, weighted_round_robin, least_connections, random, power_of_two, source_hash, maglev, got number 3"],
  ["unknown mode", ["mode: fast", ...web()], 'lb.yaml:1:7 mode: unknown mode "fast"; expected one of proxy, xdp, auto'],
  ["unknown log level", ["log: {level: verbose}", ...web()], 'lb.yaml:1:14 log.level: unknown log level "verbose"; expected one of debug, info, warn, error'],
  ["unknown attach mode", ["xdp: {attach: nativ}", ...web()], 'lb.yaml:1:15 xdp.attach: unknown attach mode "nativ"; did you mean "native"? expected one of auto, native, generic'],

  // --- service names
  ["empty name", ["services:", '  - name: ""', "    listen: 0.0.0.0:80", "    backends: [{address: 10.0.0.1:80}]"], "lb.yaml:2:11 services[0].name: must not be empty"],
  ["name with a space", ["services:", "  - name: my web", "    listen: 0.0.0.0:80", "    backends: [{address: 10.0.0.1:80}]"], 'lb.yaml:2:11 services[0].name: may only contain letters, digits, "_", "." and "-" (it is a metric label), got "my web"'],
  ["name too long", ["services:", `  - name: ${"a".repeat(64)}`, "    listen: 0.0.0.0:80", "    backends: [{address: 10.0.0.1:80}]"], "lb.yaml:2:11 services[0].name: must be at most 63 characters, got 64"],

  // --- backends and weights
  ["no backends", web("backends: []"), "lb.yaml:4:15 services[0].backends: must list at least one backend"],
  ["backend without address", web("backends:", "  - weight: 2"), 'lb.yaml:5:9 services[0].backends[0]: missing required key "address"'],
  ["weight 0", web("backends:", "  - address: 10.0.0.11:8080", "    weight: 0"), "lb.yaml:6:17 services[0].backends[0].weight: must be 1-1000, got 0"],
  ["weight negative", web("backends:", "  - address: 10.0.0.11:8080", "    weight: -2"), "lb.yaml:6:17 services[0].backends[0].weight: must be 1-1000, got -2"],
  ["weight fraction", web("backends:", "  - address: 10.0.0.11:8080", "    weight: 1.5"), "lb.yaml:6:17 services[0].backends[0].weight: must be a whole number, got 1.5"],
  ["weight too big", web("backends:", "  - address: 10.0.0.11:8080", "    weight: 1001"), "lb.yaml:6:17 services[0].backends[0].weight: must be 1-1000, got 1001"],
  [
    "more than MAX_BACKENDS backends",
    web("backends:", ...Array.from({ length: MAX_BACKENDS + 1 }, (_, i) => `  - address: 10.0.${i >> 8}.${i & 255}:80`)),
    `lb.yaml:5:7 services[0].backends: at most ${MAX_BACKENDS} backends per service, got ${MAX_BACKENDS + 1}`,
  ],

  // --- host:port
  ["port out of range", [...webWithBackend(), "      - address: 10.0.0.12:8080", "      - address: 10.0.0.13:70000"], "lb.yaml:7:18 services[0].backends[2].address: port must be 1-65535, got 70000"],
  ["port 0", backendAddress("10.0.0.1:0"), "lb.yaml:5:18 services[0].backends[0].address: port must be 1-65535, got 0"],
  ["port not a number", backendAddress("10.0.0.1:http"), 'lb.yaml:5:18 services[0].backends[0].address: port must be a number 1-65535, got "http"'],
  ["missing port", backendAddress("10.0.0.1"), 'lb.yaml:5:18 services[0].backends[0].address: missing port in "10.0.0.1"; expected host:port like "10.0.0.11:8080"'],
  ["port missing after colon", backendAddress('"10.0.0.1:"'), 'lb.yaml:5:18 services[0].backends[0].address: missing port in "10.0.0.1:"; expected host:port like "10.0.0.11:8080"'],
  ["empty host", backendAddress('":8080"'), 'lb.yaml:5:18 services[0].backends[0].address: missing host in ":8080"; expected host:port like "10.0.0.11:8080"'],
  ["empty listen host", ["services:", "  - name: web", '    listen: ":8080"'], 'lb.yaml:3:13 services[0].listen: missing host in ":8080"; write "0.0.0.0:8080" to listen on every IPv4 address'],
  ["IPv6 without brackets", backendAddress('"::1:80"'), 'lb.yaml:5:18 services[0].backends[0].address: IPv6 addresses must be in brackets with the port after them, like "[::1]:80"; got "::1:80"'],
  ["IPv6 unclosed bracket", backendAddress('"[::1:80"'), 'lb.yaml:5:18 services[0].backends[0].address: missing "]" after the IPv6 address in "[::1:80"; write it as "[::1]:80"'],
  ["IPv6 without port", backendAddress('"[::1]"'), 'lb.yaml:5:18 services[0].backends[0].address: missing port in "[::1]"; expected "[::1]:PORT"'],
  ["IPv6 junk after bracket", backendAddress('"[::1]-80"'), 'lb.yaml:5:18 services[0].backends[0].address: expected ":PORT" after "]" in "[::1]-80", got "-80"'],
  ["bracketed IPv4", backendAddress('"[10.0.0.1]:80"'), 'lb.yaml:5:18 services[0].backends[0].address: brackets are only for IPv6 addresses, got "[10.0.0.1]:80"; write "10.0.0.1:80"'],
  ["bad IPv6", backendAddress('"[fe80::zz]:80"'), 'lb.yaml:5:18 services[0].backends[0].address: invalid IPv6 address "fe80::zz" in "[fe80::zz]:80"'],
  ["bad IPv4", backendAddress("10.0.0.300:80"), 'lb.yaml:5:18 services[0].backends[0].address: invalid IPv4 address "10.0.0.300"'],
  ["bad hostname", backendAddress('"my host:80"'), 'lb.yaml:5:18 services[0].backends[0].address: invalid hostname "my host"'],
  ["listen on a hostname", ["services:", "  - name: web", "    listen: localhost:80"], 'lb.yaml:3:13 services[0].listen: the listen host must be an IP address (use 0.0.0.0 or [::] for every address), got "localhost"'],

  // --- uniqueness and listeners that cannot both bind
  [
    "duplicate service name",
    [...webWithBackend(), "  - name: web", "    listen: 0.0.0.0:8081", "    backends: [{address: 10.0.0.1:80}]"],
    'lb.yaml:6:11 services[1].name: duplicate service name "web" (services[0] has it too); names must be unique',
  ],
  [
    "same listen address",
    [...webWithBackend(), "  - name: api", "    listen: 0.0.0.0:8080", "    backends: [{address: 10.0.0.1:80}]"],
    'lb.yaml:7:13 services[1].listen: 0.0.0.0:8080 is already used by services[0] ("web")',
  ],
  [
    "specific address under a wildcard on the same port",
    [...webWithBackend(), "  - name: api", "    listen: 10.1.2.3:8080", "    backends: [{address: 10.0.0.1:80}]"],
    'lb.yaml:7:13 services[1].listen: 10.1.2.3:8080 overlaps services[0] ("web") on 0.0.0.0:8080; they cannot both bind port 8080',
  ],
  [
    "IPv6 wildcard is dual-stack",
    [...webWithBackend(), "  - name: api", '    listen: "[::]:8080"', "    backends: [{address: 10.0.0.1:80}]"],
    'lb.yaml:7:13 services[1].listen: [::]:8080 overlaps services[0] ("web") on 0.0.0.0:8080; they cannot both bind port 8080',
  ],
  [
    "two spellings of one IPv6 address",
    ["services:", "  - name: a", '    listen: "[::1]:80"', "    backends: [{address: 10.0.0.1:80}]", "  - name: b", '    listen: "[0:0::1]:80"', "    backends: [{address: 10.0.0.1:80}]"],
    'lb.yaml:6:13 services[1].listen: [0:0::1]:80 overlaps services[0] ("a") on [::1]:80; they cannot both bind port 80',
  ],
  [
    "service on the default admin port",
    ["services:", "  - name: web", "    listen: 0.0.0.0:9090", "    backends: [{address: 10.0.0.1:80}]"],
    "lb.yaml:3:13 services[0].listen: 0.0.0.0:9090 overlaps the admin listener (127.0.0.1:9090 by default); move the service or set admin.listen",
  ],
  [
    "admin listen on a service's port",
    ["admin: {listen: 127.0.0.1:8080}", ...webWithBackend()],
    'lb.yaml:1:17 admin.listen: 127.0.0.1:8080 overlaps services[0] ("web") on 0.0.0.0:8080; they cannot both bind port 8080',
  ],
  ["admin listen on a hostname", ["admin: {listen: localhost:9090}", ...webWithBackend()], 'lb.yaml:1:17 admin.listen: the listen host must be an IP address (use 0.0.0.0 or [::] for every address), got "localhost"'],
  ["admin listen false", ["admin: {listen: false}", ...webWithBackend()], 'lb.yaml:1:17 admin.listen: expected "host:port" or "off", got boolean false'],
  [
    "a conflict reached through an alias points at the alias",
    ["services:", "  - &svc {name: a, listen: 0.0.0.0:80, backends: [{address: 10.0.0.1:80}]}", "  - *svc"],
    'lb.yaml:3:5 services[1].name: duplicate service name "a" (services[0] has it too); names must be unique',
  ],
  [
    "a bad value in an anchor is reported where it is written",
    ["services:", "  - name: a", "    listen: 0.0.0.0:80", "    backends: &pool [{address: 10.0.0.1:80, weight: 0}]", "  - name: b", "    listen: 0.0.0.0:81", "    backends: *pool"],
    "lb.yaml:4:53 services[0].backends[0].weight: must be 1-1000, got 0",
  ],
  [
    "duplicate backend",
    web("backends:", "  - address: 10.0.0.11:8080", "  - address: 10.0.0.12:8080", "  - address: 10.0.0.11:8080"),
    "lb.yaml:7:18 services[0].backends[2].address: duplicate backend 10.0.0.11:8080 (also backends[0]); use weight to give it a bigger share",
  ],
  [
    "duplicate backend, hostname case differs",
    web("backends:", "  - address: app.local:80", "  - address: APP.local:80"),
    "lb.yaml:6:18 services[0].backends[1].address: duplicate backend APP.local:80 (also backends[0]); use weight to give it a bigger share",
  ],

  // --- Maglev
  ["maglev size not prime", webWithBackend("algorithm: maglev", "maglev: {table_size: 1000}"), "lb.yaml:7:26 services[0].maglev.table_size: must be a prime number so every backend's Maglev permutation covers the whole table, got 1000; try 1009"],
  [
    "maglev table too small",
    web("algorithm: maglev", "maglev:", "  table_size: 199", "backends:", "  - address: 10.0.0.1:80", "  - address: 10.0.0.2:80"),
    "lb.yaml:6:19 services[0].maglev.table_size: must be at least 100 × 2 backends = 200 so each backend's share stays even, got 199; try 211",
  ],
  ["maglev table too big", webWithBackend("maglev: {table_size: 2000003}"), "lb.yaml:6:26 services[0].maglev.table_size: must be at most 1048573, got 2000003"],
  ["maglev size fraction", webWithBackend("maglev: {table_size: 65537.5}"), "lb.yaml:6:26 services[0].maglev.table_size: must be a whole number, got 65537.5"],

  // --- durations
  ["duration garbage", webWithBackend("connect_timeout: abc"), 'lb.yaml:6:22 services[0].connect_timeout: expected a duration like "500ms", "2s", "1m" or "1h" (or an integer of milliseconds), got string "abc"'],
  ["duration negative text", webWithBackend("idle_timeout: -1s"), 'lb.yaml:6:19 services[0].idle_timeout: must not be negative, got "-1s"'],
  ["duration negative number", ["drain_timeout: -5", ...webWithBackend()], "lb.yaml:1:16 drain_timeout: must not be negative, got -5"],
  ["duration bare fraction", ["drain_timeout: 1.5", ...webWithBackend()], 'lb.yaml:1:16 drain_timeout: a bare number is milliseconds and must be a whole number, got 1.5; write e.g. "1.5s"'],
  ["duration below a millisecond", ["drain_timeout: 0.5ms", ...webWithBackend()], 'lb.yaml:1:16 drain_timeout: must be a whole number of milliseconds, got "0.5ms"'],
  ["duration unknown unit", ["drain_timeout: 10sec", ...webWithBackend()], 'lb.yaml:1:16 drain_timeout: unknown unit "sec" in "10sec"; use ms, s, m or h'],
  ["duration compound without last unit", ["drain_timeout: 1m30", ...webWithBackend()], 'lb.yaml:1:16 drain_timeout: missing unit after "30" in "1m30"; use ms, s, m or h'],
  ["duration zero where positive", webWithBackend("connect_timeout: 0"), "lb.yaml:6:22 services[0].connect_timeout: must be at least 1ms, got 0"],
  ["dns_refresh too often", ["dns_refresh: 500ms", ...webWithBackend()], 'lb.yaml:1:14 dns_refresh: must be at least 1s, got "500ms"'],
  ["duration too long for a timer", webWithBackend("idle_timeout: 1000h"), 'lb.yaml:6:19 services[0].idle_timeout: must be at most 2147483647ms (about 24.8 days, the timer limit), got "1000h"'],
  ["duration is a list", webWithBackend("idle_timeout: [1]"), 'lb.yaml:6:19 services[0].idle_timeout: expected a duration like "500ms", "2s", "1m" or "1h" (or an integer of milliseconds), got a list'],

  // --- health checks and other service settings
  ["rise 0", webWithBackend("health_check: {rise: 0}"), "lb.yaml:6:26 services[0].health_check.rise: must be 1-100, got 0"],
  ["max_connections negative", webWithBackend("max_connections: -1"), "lb.yaml:6:22 services[0].max_connections: must be 0-10000000 (0 = unlimited), got -1"],
  ["connect_retries too many", webWithBackend(`connect_retries: ${MAX_BACKENDS}`), `lb.yaml:6:22 services[0].connect_retries: must be 0-${MAX_BACKENDS - 1}, got ${MAX_BACKENDS}`],
  ["check timeout longer than interval", webWithBackend("health_check: {interval: 1s, timeout: 2s}"), "lb.yaml:6:43 services[0].health_check.timeout: health_check.timeout (2s) must not be longer than health_check.interval (1s)"],
  [
    "service interval shorter than the inherited timeout",
    ["defaults:", "  health_check: {timeout: 3s}", ...webWithBackend("health_check: {interval: 2s}")],
    "lb.yaml:8:30 services[0].health_check.interval: health_check.timeout (3s) must not be longer than health_check.interval (2s)",
  ],
  [
    "defaults timeout longer than the default interval",
    ["defaults:", "  health_check: {timeout: 5s}", ...webWithBackend()],
    "lb.yaml:2:27 defaults.health_check.timeout: health_check.timeout (5s) must not be longer than health_check.interval (2s)",
  ],

  // --- xdp
  ["snat ports below 1024", ["xdp: {snat_ports: 80-2000}", ...webWithBackend()], "lb.yaml:1:19 xdp.snat_ports: first port must be at least 1024, got 80"],
  ["snat ports reversed", ["xdp: {snat_ports: 50000-40000}", ...webWithBackend()], "lb.yaml:1:19 xdp.snat_ports: first port 50000 is above last port 40000"],
  ["snat range too small", ["xdp: {snat_ports: 40000-40100}", ...webWithBackend()], "lb.yaml:1:19 xdp.snat_ports: must span at least 1024 ports, got 101 (40000-40100)"],
  ["snat ports above 65535", ["xdp: {snat_ports: 40000-70000}", ...webWithBackend()], "lb.yaml:1:19 xdp.snat_ports: last port must be at most 65535, got 70000"],
  ["snat ports malformed", ['xdp: {snat_ports: "40000:50000"}', ...webWithBackend()], 'lb.yaml:1:19 xdp.snat_ports: expected a port range like "40000-59999", got "40000:50000"'],
  ["flow table not a power of two", ["xdp: {flow_table_size: 100000}", ...webWithBackend()], "lb.yaml:1:24 xdp.flow_table_size: must be a power of two from 1024 to 1048576, got 100000; try 65536 or 131072"],
  ["flow table too small", ["xdp: {flow_table_size: 512}", ...webWithBackend()], "lb.yaml:1:24 xdp.flow_table_size: must be a power of two from 1024 to 1048576, got 512"],
  ["pin path relative", ["xdp: {pin_path: featherlb/pins}", ...webWithBackend()], 'lb.yaml:1:17 xdp.pin_path: expected an absolute directory (no "..", ":" or spaces) or "off", got "featherlb/pins"'],
  ["snat address not IPv4", ['xdp: {snat_address: "fd00::1"}', ...webWithBackend()], 'lb.yaml:1:21 xdp.snat_address: expected an IPv4 address of the XDP interface like "10.0.1.12", got "fd00::1"'],
  ["snat address a name", ["xdp: {snat_address: lb1.example}", ...webWithBackend()], 'lb.yaml:1:21 xdp.snat_address: expected an IPv4 address of the XDP interface like "10.0.1.12", got "lb1.example"'],
  ["snat address 0.0.0.0", ["xdp: {snat_address: 0.0.0.0}", ...webWithBackend()], 'lb.yaml:1:21 xdp.snat_address: expected an IPv4 address of the XDP interface like "10.0.1.12", got "0.0.0.0"'],
  ["interface name too long", ["xdp: {interface: this-is-too-long0}", ...webWithBackend()], 'lb.yaml:1:18 xdp.interface: expected a network interface name (1-15 characters, no "/", ":" or spaces), got "this-is-too-long0"'],

  // --- what mode: xdp cannot do, known from the file alone
  [
    "mode: xdp on the IPv4 wildcard",
    ["mode: xdp", ...webWithBackend()],
    "lb.yaml:4:13 services[0].listen: mode: xdp needs a specific IPv4 address of this host, got 0.0.0.0; set listen to that address or use mode: proxy",
  ],
  [
    "mode: xdp on an IPv6 address",
    ["mode: xdp", "services:", "  - name: web", '    listen: "[::ffff:10.0.0.1]:8080"', "    backends: [{address: 10.0.0.11:8080}]"],
    "lb.yaml:4:13 services[0].listen: mode: xdp needs a specific IPv4 address of this host, got the IPv6 address ::ffff:10.0.0.1; set listen to that address or use mode: proxy",
  ],
  [
    "mode: xdp with one service more than the program holds",
    ["mode: xdp", ...services(Array.from({ length: MAX_SERVICES + 1 }, () => ""))],
    `lb.yaml:${3 + MAX_SERVICES}:5 services[${MAX_SERVICES}]: mode: xdp holds at most ${MAX_SERVICES} services and the file has ${MAX_SERVICES + 1}; remove 1, set services[].mode: proxy on one, or use mode: proxy`,
  ],
  [
    "mode: proxy with one service more than the program holds in mode: xdp: only those count",
    ["mode: proxy", ...services(Array.from({ length: MAX_SERVICES + 2 }, (_, k) => (k === 0 ? "" : ", mode: xdp")))],
    `lb.yaml:${4 + MAX_SERVICES}:5 services[${MAX_SERVICES + 1}]: mode: xdp holds at most ${MAX_SERVICES} services and the file has ${MAX_SERVICES + 1}; remove 1, set services[].mode: proxy on one, or use mode: proxy`,
  ],
  [
    "mode: xdp, a Maglev table that no longer fits the plan slots",
    ["mode: xdp", ...services([...BIG_MAGLEVS, ", algorithm: maglev, maglev: {table_size: 307}"])],
    `lb.yaml:35:80 services[32].maglev.table_size: with this service the XDP plan tables would need ${64 * MAGLEV_TABLE_SIZE_MAX + 2 * 307} slots, more than the ${SLOT_POOL_MAX} they can hold (every service keeps 2 plans; this one's Maglev table has 307 slots); lower maglev.table_size or use mode: proxy`,
  ],
  [
    "mode: xdp, the default Maglev table size 511 times fills the plan slots: the 512th does not fit",
    ["mode: xdp", ...services(Array.from({ length: 512 }, () => ", algorithm: maglev"))],
    `lb.yaml:514:5 services[511].maglev.table_size: with this service the XDP plan tables would need ${512 * 2 * 65537} slots, more than the ${SLOT_POOL_MAX} they can hold (every service keeps 2 plans; this one's Maglev table has 65537 slots); lower maglev.table_size or use mode: proxy`,
  ],
  [
    "mode: xdp, a weighted cycle of 64 + 33 slots after the 32 biggest Maglev tables (192 slots left)",
    ["mode: xdp", ...services([...BIG_MAGLEVS, weighted("weighted_round_robin", [64, 33])])],
    `lb.yaml:35:51 services[32].algorithm: with this service the XDP plan tables would need ${SLOT_POOL_MAX + 2} slots, more than the ${SLOT_POOL_MAX} they can hold (every service keeps 2 plans; this one's weighted_round_robin cycle has up to 97 slots, the sum of its weights divided by their gcd); lower the weights or use mode: proxy`,
  ],
  [
    "mode: xdp, round robin over 97 backends after the 32 biggest Maglev tables",
    ["mode: xdp", ...services([...BIG_MAGLEVS, weighted("round_robin", new Array(97).fill(1))])],
    `lb.yaml:35:51 services[32].algorithm: with this service the XDP plan tables would need ${SLOT_POOL_MAX + 2} slots, more than the ${SLOT_POOL_MAX} they can hold (every service keeps 2 plans; this one's round_robin plan has up to 97 slots); lower the earlier services' maglev.table_size or weights or use mode: proxy`,
  ],
  // --- forwarding: dsr
  ["unknown forwarding", webWithBackend("forwarding: direct"), 'lb.yaml:6:17 services[0].forwarding: unknown forwarding "direct"; expected one of nat, dsr'],
  [
    "dsr with a backend port other than the listen port",
    ["mode: xdp", "services:", "  - name: web", "    listen: 10.0.0.1:80", "    forwarding: dsr", "    backends: [{address: 10.0.0.11:80}, {address: 10.0.0.12:8080}]"],
    'lb.yaml:6:51 services[0].backends[1].address: forwarding: dsr cannot translate ports: the backend answers the client itself from the service\'s port 80, so it must listen on 80, not 8080; use 10.0.0.12:80 or forwarding: nat',
  ],
  [
    "dsr under the top-level mode: proxy",
    ["mode: proxy", "services:", "  - name: web", "    listen: 10.0.0.1:80", "    forwarding: dsr", "    backends: [{address: 10.0.0.11:80}]"],
    'lb.yaml:1:7 mode: forwarding: dsr needs mode: xdp (the proxy terminates connections, so replies always come back through it), and services[0] ("web") has mode: proxy; set services[0].mode: xdp or forwarding: nat',
  ],
  [
    "dsr under services[].mode: proxy",
    ["mode: xdp", "services:", "  - name: web", "    listen: 10.0.0.1:80", "    mode: proxy", "    forwarding: dsr", "    backends: [{address: 10.0.0.11:80}]"],
    'lb.yaml:5:11 services[0].mode: forwarding: dsr needs mode: xdp (the proxy terminates connections, so replies always come back through it), and services[0] ("web") has mode: proxy; set services[0].mode: xdp or forwarding: nat',
  ],
  [
    "dsr from defaults, under the default mode (proxy)",
    ["defaults: {forwarding: dsr}", "services:", "  - name: web", "    listen: 10.0.0.1:80", "    backends: [{address: 10.0.0.11:80}]"],
    'lb.yaml:1:24 defaults.forwarding: forwarding: dsr needs mode: xdp (the proxy terminates connections, so replies always come back through it), and services[0] ("web") has mode: proxy; set services[0].mode: xdp or forwarding: nat',
  ],
  [
    "mode: xdp, a service port inside the default snat_ports",
    ["mode: xdp", "services:", "  - name: web", "    listen: 10.0.0.1:40000", "    backends: [{address: 10.0.0.11:8080}]"],
    "lb.yaml:4:13 services[0].listen: port 40000 is inside xdp.snat_ports (40000-59999 by default), the source ports mode: xdp uses toward backends; choose a port outside it or set xdp.snat_ports",
  ],
  [
    "mode: xdp, snat_ports written over a service port",
    ["mode: xdp", "xdp:", "  snat_ports: 20000-29999", "services:", "  - name: web", "    listen: 10.0.0.1:8080", "    backends: [{address: 10.0.0.11:8080}]", "  - name: api", "    listen: 10.0.0.1:29999", "    backends: [{address: 10.0.0.11:8080}]"],
    'lb.yaml:3:15 xdp.snat_ports: 20000-29999 contains port 29999, where services[1] ("api") listens on 10.0.0.1:29999; mode: xdp could not tell its clients from backend replies, so choose a range without 29999',
  ],
  [
    "mode: xdp, snat_address is a service's listen address",
    ["mode: xdp", "xdp:", "  snat_address: 10.0.0.1", "services:", "  - name: web", "    listen: 10.0.0.1:8080", "    backends: [{address: 10.0.0.11:8080}]"],
    'lb.yaml:3:17 xdp.snat_address: 10.0.0.1 is where services[0] ("web") listens; the SNAT address must be the instance\'s own, since backends answer it and every instance behind ECMP holds the service address, so choose another address of the interface or leave xdp.snat_address out',
  ],

  // --- announce: and config_watch:
  [
    "announce into the main table",
    ["announce: {table: 254}", ...webWithBackend()],
    "lb.yaml:1:19 announce.table: table 254 is the kernel's main table; use a table of featherlb's own, e.g. 100",
  ],
  [
    "announce without a table",
    ["announce: {withdraw_grace: 1s}", ...webWithBackend()],
    'lb.yaml:1:11 announce: missing required key "table"',
  ],
  [
    "announce with a wildcard listener",
    ["announce: {table: 100}", ...webWithBackend()],
    "lb.yaml:4:13 services[0].listen: announce needs one specific IPv4 address to route as a /32, got 0.0.0.0; listen on the VIP itself or remove announce:",
  ],
  [
    "config_watch shorter than 100ms",
    ["config_watch: 10ms", ...webWithBackend()],
    "lb.yaml:1:15 config_watch: must be at least 100ms, got \"10ms\"",
  ],

  // --- backends that loop back into featherlb (every mode)
  [
    "backend is the service's own listen address",
    ["services:", "  - name: web", "    listen: 10.0.0.1:80", "    backends:", "      - address: 10.0.0.11:80", "      - address: 10.0.0.1:80"],
    "lb.yaml:6:18 services[0].backends[1].address: 10.0.0.1:80 reaches featherlb itself, where this service listens on 10.0.0.1:80; connections would loop back into it, so point the backend at the real server",
  ],
  [
    "backend on loopback, service on the IPv4 wildcard",
    backendAddress("127.0.0.5:8080"),
    "lb.yaml:5:18 services[0].backends[0].address: 127.0.0.5:8080 reaches featherlb itself, where this service listens on 0.0.0.0:8080; connections would loop back into it, so point the backend at the real server",
  ],
  [
    "backend is another service's listener, spelt differently",
    ["services:", "  - name: a", '    listen: "[::1]:80"', "    backends: [{address: 10.0.0.1:80}]", "  - name: b", "    listen: 10.0.0.2:80", '    backends: [{address: "[0:0::1]:80"}]'],
    'lb.yaml:7:26 services[1].backends[0].address: [0:0::1]:80 reaches featherlb itself, where services[0] ("a") listens on [::1]:80; connections would loop back into it, so point the backend at the real server',
  ],
  [
    "IPv4 loopback backend, service on the IPv6 wildcard (dual-stack)",
    ["services:", "  - name: web", '    listen: "[::]:8080"', "    backends: [{address: 127.0.0.1:8080}]"],
    "lb.yaml:4:26 services[0].backends[0].address: 127.0.0.1:8080 reaches featherlb itself, where this service listens on [::]:8080; connections would loop back into it, so point the backend at the real server",
  ],
  // --- a data plane per service
  ["services[].mode is proxy or xdp", webWithBackend("mode: auto"), 'lb.yaml:6:11 services[0].mode: unknown data plane "auto"; expected one of proxy, xdp'],
  [
    "a service in mode: xdp (inherited) on the wildcard: the hint moves that one service",
    ["mode: xdp", "services:", "  - {name: a, listen: 10.0.0.1:80, backends: [{address: 10.0.0.11:80}]}", "  - {name: b, listen: 0.0.0.0:81, backends: [{address: 10.0.0.11:80}]}"],
    "lb.yaml:4:23 services[1].listen: mode: xdp needs a specific IPv4 address of this host, got 0.0.0.0; set listen to that address or use services[1].mode: proxy",
  ],
  [
    "send_proxy on a service that runs in xdp",
    ["mode: xdp", "services:", "  - {name: a, listen: 10.0.0.1:80, backends: [{address: 10.0.0.11:80}]}", "  - {name: b, listen: 10.0.0.1:81, send_proxy: v2, backends: [{address: 10.0.0.11:80}]}"],
    'lb.yaml:4:48 services[1].send_proxy: send_proxy: v2 writes a PROXY protocol header into the stream, which only the proxy can do, and services[1] ("b") runs in xdp; set services[1].mode: proxy to run this service in the proxy',
  ],
  [
    "accept_proxy on a service whose own mode is xdp",
    ["services:", "  - {name: a, listen: 10.0.0.1:80, mode: xdp, accept_proxy: true, backends: [{address: 10.0.0.11:80}]}"],
    'lb.yaml:2:61 services[0].accept_proxy: accept_proxy reads a PROXY protocol header from the stream, which only the proxy can do, and services[0] ("a") runs in xdp; set services[0].mode: proxy to run this service in the proxy',
  ],
  [
    "send_proxy from defaults: reported there, naming the service that inherits it",
    ["mode: xdp", "defaults: {send_proxy: v1}", "services:", "  - {name: a, listen: 10.0.0.1:80, mode: proxy, backends: [{address: 10.0.0.11:80}]}", "  - {name: b, listen: 10.0.0.1:81, backends: [{address: 10.0.0.11:80}]}"],
    'lb.yaml:2:24 defaults.send_proxy: send_proxy: v1 writes a PROXY protocol header into the stream, which only the proxy can do, and services[1] ("b") runs in xdp (services[1] ("b") inherits it); set services[1].mode: proxy to run this service in the proxy',
  ],
  ["send_proxy: an unknown version", webWithBackend("send_proxy: v3"), 'lb.yaml:6:17 services[0].send_proxy: unknown PROXY protocol version "v3"; did you mean "v1"? expected one of off, v1, v2'],
  ["accept_proxy is a boolean", webWithBackend("accept_proxy: v2"), 'lb.yaml:6:19 services[0].accept_proxy: expected true or false, got string "v2"'],
  ["max_connections_per_source negative", webWithBackend("max_connections_per_source: -5"), "lb.yaml:6:33 services[0].max_connections_per_source: must be 0-10000000 (0 = unlimited), got -5"],
  ["half_close_timeout is a duration", webWithBackend("half_close_timeout: soon"), 'lb.yaml:6:25 services[0].half_close_timeout: expected a duration like "500ms", "2s", "1m" or "1h" (or an integer of milliseconds), got string "soon"'],
  [
    "a loop in mode: xdp too",
    ["mode: xdp", "services:", "  - name: web", "    listen: 10.0.0.1:80", "    backends: [{address: 10.0.0.1:80}]"],
    "lb.yaml:5:26 services[0].backends[0].address: 10.0.0.1:80 reaches featherlb itself, where this service listens on 10.0.0.1:80; connections would loop back into it, so point the backend at the real server",
  ],
];

describe("parseConfig rejects mistakes with one located line", () => {
  test.each(ROWS)("%s", (_name, lines, message) => {
    const got = errorOf(lines.join("\n") + "\n");
    expect(got).toBe(message);
    expect(got).not.toContain("\n");
  });
});

describe("parseConfig accepts valid files", () => {
  test("minimal file: every default applied", () => {
    const config = parseConfig(["services:", "  - name: web", "    listen: 0.0.0.0:8080", "    backends:", "      - address: 10.0.0.11:8080"].join("\n"), "m.yaml");
    const expected: Config = {
      mode: "proxy",
      workers: "auto",
      kernel_relay: { enabled: true, after_bytes: 65_536, pipe_bytes: 1_048_576 },
      log: { level: "info" },
      admin: { listen: { host: "127.0.0.1", port: 9090 } },
      drain_timeout_ms: 30_000,
      dns_refresh_ms: 30_000,
      config_watch_ms: 1000,
      xdp: { interface: undefined, attach: "auto", snat_ports: { first: 40_000, last: 59_999 }, snat_address: undefined, flow_table_size: 65_536, pin_path: "/sys/fs/bpf/featherlb", pin_required: false },
      announce: undefined,
      services: [
        {
          name: "web",
          mode: "proxy",
          listen: { host: "0.0.0.0", port: 8080 },
          algorithm: "round_robin",
          backends: [{ address: "10.0.0.11:8080", host: "10.0.0.11", port: 8080, weight: 1 }],
          max_connections: 10_000,
          connect_timeout_ms: 2000,
          connect_retries: 2,
          idle_timeout_ms: 300_000,
          half_close_timeout_ms: 60_000,
          max_connections_per_source: 0,
          send_proxy: "off",
          accept_proxy: false,
          forwarding: "nat",
          health_check: { enabled: true, interval_ms: 2000, timeout_ms: 1000, rise: 2, fall: 3 },
          maglev_table_size: 65_537,
        },
      ],
    };
    expect(config).toEqual(expected);
  });

  test("announce: the table and the withdraw grace; one /32 per listen address", () => {
    const text = ["announce: {table: 100, withdraw_grace: 500ms}", "services:", "  - name: web", "    listen: 10.0.0.1:80", "    backends: [{address: 10.0.0.11:8080}]"];
    expect(parseConfig(text.join("\n"), "a.yaml").announce).toEqual({ table: 100, withdraw_grace_ms: 500 });
    expect(parseConfig(text.slice(0, 1).map(() => "announce: {table: 7}").concat(text.slice(1)).join("\n"), "a.yaml").announce).toEqual({ table: 7, withdraw_grace_ms: 2000 });
  });

  test("every key set: durations converted, IPv6 parsed, defaults inherited and overridden", () => {
    const text = `
mode: auto
log: {level: debug}
admin: {listen: "[::1]:9100"}
drain_timeout: 1m30s
dns_refresh: 10s
config_watch: off
xdp:
  interface: eth0
  attach: native
  snat_ports: 20000-29999
  snat_address: 10.0.1.12
  flow_table_size: 262144
  pin_path: "off"
workers: 3
defaults:
  max_connections: 500
  connect_timeout: 1.5s
  connect_retries: 1
  idle_timeout: 10m
  half_close_timeout: 20s
  max_connections_per_source: 50
  send_proxy: v1
  health_check:
    interval: 5s
    rise: 4
services:
  - name: web
    mode: proxy
    listen: "[::]:443"
    algorithm: maglev
    maglev: {table_size: 307}
    backends:
      - address: "[2001:db8::1]:8443"
        weight: 3
      - address: app.internal:8443
  - name: db.primary
    listen: 10.1.2.3:5432
    algorithm: least_connections
    send_proxy: off
    accept_proxy: true
    half_close_timeout: 0
    max_connections_per_source: 0
    max_connections: 0
    connect_timeout: 250
    idle_timeout: 0
    health_check:
      enabled: false
      timeout: 1h
      interval: 2h
    backends:
      - address: 10.0.0.21:5432
`;
    const config = parseConfig(text, "full.yaml");
    expect(config.mode).toBe("auto");
    expect(config.workers).toBe(3);
    expect(config.log.level).toBe("debug");
    expect(config.admin.listen).toEqual({ host: "::1", port: 9100 });
    expect(config.drain_timeout_ms).toBe(90_000);
    expect(config.dns_refresh_ms).toBe(10_000);
    expect(config.xdp).toEqual({ interface: "eth0", attach: "native", snat_ports: { first: 20_000, last: 29_999 }, snat_address: "10.0.1.12", flow_table_size: 262_144, pin_path: null, pin_required: false });
    expect(config.config_watch_ms).toBe(0);

    const [web, db] = config.services;
    // web: everything but its own keys comes from defaults:, health_check merged key by key.
    expect(web).toEqual({
      name: "web",
      mode: "proxy",
      listen: { host: "::", port: 443 },
      algorithm: "maglev",
      backends: [
        { address: "[2001:db8::1]:8443", host: "2001:db8::1", port: 8443, weight: 3 },
        { address: "app.internal:8443", host: "app.internal", port: 8443, weight: 1 },
      ],
      max_connections: 500,
      connect_timeout_ms: 1500,
      connect_retries: 1,
      idle_timeout_ms: 600_000,
      half_close_timeout_ms: 20_000,
      max_connections_per_source: 50,
      send_proxy: "v1",
      accept_proxy: false,
      forwarding: "nat",
      health_check: { enabled: true, interval_ms: 5000, timeout_ms: 1000, rise: 4, fall: 3 },
      maglev_table_size: 307,
    });
    // db: its own keys override defaults:, the rest is still inherited.
    expect(db?.max_connections).toBe(0);
    expect(db?.connect_timeout_ms).toBe(250);
    expect(db?.connect_retries).toBe(1);
    expect(db?.idle_timeout_ms).toBe(0);
    // db inherits the top-level mode; its PROXY protocol and limits are its own.
    expect(db?.mode).toBe("auto");
    expect([db?.send_proxy, db?.accept_proxy, db?.half_close_timeout_ms, db?.max_connections_per_source]).toEqual(["off", true, 0, 0]);
    expect(db?.health_check).toEqual({ enabled: false, interval_ms: 7_200_000, timeout_ms: 3_600_000, rise: 4, fall: 3 });
    expect(db?.maglev_table_size).toBe(65_537);
  });

  test("admin off, and listeners that can coexist", () => {
    const config = parseConfig(
      [
        "admin: {listen: off}",
        "services:",
        ...[
          ["a", "0.0.0.0:9090"], // the admin port is free once admin is off
          ["b", '"[::1]:9090"'], // IPv6 loopback next to the IPv4 wildcard
          ["c", "10.0.0.1:80"],
          ["d", "10.0.0.2:80"], // other address, same port
        ].flatMap(([name, listen]) => [`  - name: ${name}`, `    listen: ${listen}`, "    backends: [{address: 10.0.0.9:80}]"]),
      ].join("\n"),
      "ok.yaml",
    );
    expect(config.admin.listen).toBeUndefined();
    expect(config.services.map((s) => s.listen)).toEqual([
      { host: "0.0.0.0", port: 9090 },
      { host: "::1", port: 9090 },
      { host: "10.0.0.1", port: 80 },
      { host: "10.0.0.2", port: 80 },
    ]);
  });

  test("anchors, aliases and << merge keys share settings between services", () => {
    const config = parseConfig(
      [
        "services:",
        "  - name: a",
        "    listen: 0.0.0.0:1",
        "    <<: &tuned {algorithm: least_connections, max_connections: 50, health_check: {interval: 10s}}",
        "    backends: &pool [{address: 10.0.0.1:80}, {address: 10.0.0.2:80, weight: 5}]",
        "  - name: b",
        "    listen: 0.0.0.0:2",
        "    <<: *tuned",
        "    max_connections: 60",
        "    backends: *pool",
      ].join("\n"),
      "ok.yaml",
    );
    const [a, b] = config.services;
    expect(b?.algorithm).toBe("least_connections");
    expect(b?.max_connections).toBe(60); // the service's own key beats the merged one
    expect(a?.max_connections).toBe(50);
    expect(b?.health_check.interval_ms).toBe(10_000);
    expect(b?.backends).toEqual(a?.backends ?? []);
    expect(b?.backends.map((x) => x.weight)).toEqual([1, 5]);
  });

  test("addresses keep the spelling of the file; the same backend may serve two services", () => {
    const config = parseConfig(
      [
        "services:",
        "  - {name: a, listen: 0.0.0.0:1, backends: [{address: Backend.Example.com.:80}, {address: '[::ffff:10.0.0.1]:80'}]}",
        "  - {name: b, listen: 0.0.0.0:2, backends: [{address: Backend.Example.com.:80}]}",
      ].join("\n"),
      "ok.yaml",
    );
    expect(config.services[0]?.backends.map((b) => [b.address, b.host, b.port])).toEqual([
      ["Backend.Example.com.:80", "Backend.Example.com.", 80],
      ["[::ffff:10.0.0.1]:80", "::ffff:10.0.0.1", 80],
    ]);
  });
});

describe("just beside what mode: xdp refuses, and in the other modes, files load", () => {
  const ok = (lines: string[]) => parseConfig(lines.join("\n") + "\n", "ok.yaml");
  const webOn = (listen: string) => ["services:", "  - name: web", `    listen: ${listen}`, "    backends: [{address: 10.0.0.11:8080}]"];

  test("the wildcard on a port inside the default snat_ports: proxy and auto (auto falls back at run time)", () => {
    for (const mode of ["proxy", "auto"] as const) expect(ok([`mode: ${mode}`, ...webOn("0.0.0.0:45000")]).mode).toBe(mode);
    expect(ok(["mode: auto", ...webOn('"[::]:8080"')]).mode).toBe("auto");
  });

  test("ports just outside snat_ports, the default range and a written one", () => {
    expect(ok(["mode: xdp", ...webOn("10.0.0.1:39999")]).services).toHaveLength(1);
    expect(ok(["mode: xdp", ...webOn("10.0.0.1:60000")]).services).toHaveLength(1);
    expect(ok(["mode: xdp", "xdp: {snat_ports: 20000-29999}", ...webOn("10.0.0.1:45000")]).xdp.snat_ports).toEqual({ first: 20000, last: 29999 });
    expect(ok(["mode: xdp", "xdp: {snat_ports: 20000-29999}", ...webOn("10.0.0.1:30000")]).services).toHaveLength(1);
  });

  test(`${MAX_SERVICES} services in mode: xdp; more in mode: proxy`, () => {
    expect(ok(["mode: xdp", ...services(Array.from({ length: MAX_SERVICES }, () => ""))]).services).toHaveLength(MAX_SERVICES);
    expect(ok(["mode: proxy", ...services(Array.from({ length: MAX_SERVICES + 1 }, () => ""))]).services).toHaveLength(MAX_SERVICES + 1);
  });

  test("plans that fill the slot pool exactly", () => {
    expect(ok(["mode: xdp", ...services(Array.from({ length: 511 }, () => ", algorithm: maglev"))]).services).toHaveLength(511);
    // The 192 slots left after the 32 largest Maglev tables: a weighted cycle of 16 (weights 30, 15, 3
    // reduce by their gcd to 10, 5, 1), round robin over 80 backends, and least_connections, which has
    // no slots: 2 × (16 + 80) = 192.
    const rest = [weighted("weighted_round_robin", [30, 15, 3]), weighted("round_robin", new Array(80).fill(1)), ", algorithm: least_connections"];
    expect(ok(["mode: xdp", ...services([...BIG_MAGLEVS, ...rest])]).services).toHaveLength(35);
    // The same plans in mode: proxy are no concern of the XDP tables.
    expect(ok(services([...BIG_MAGLEVS, ...BIG_MAGLEVS])).services).toHaveLength(64);
  });

  test("backends near a listener that do not loop", () => {
    const config = ok([
      "services:",
      "  - name: web",
      "    listen: 0.0.0.0:8080",
      "    backends:",
      '      - address: "[::1]:8080"', // 0.0.0.0 takes IPv4 only
      "      - address: 127.0.0.1:8081", // another port
      "      - address: localhost:8080", // a name: only DNS knows
      "  - name: api",
      "    listen: 127.0.0.1:80",
      "    backends: [{address: 127.0.0.2:80}]", // another loopback address
    ]);
    expect(config.services.map((s) => s.backends.length)).toEqual([3, 1]);
  });
});

describe("the documented example files", () => {
  for (const file of ["config/lb.yaml", "config/minimal.yaml"]) {
    test(`${file} loads`, async () => {
      const config = await loadConfig(join(import.meta.dir, "../..", file));
      expect(config.services.length).toBeGreaterThan(0);
    });
  }

  test("config/lb.yaml exercises every algorithm", async () => {
    const config = await loadConfig(join(import.meta.dir, "../../config/lb.yaml"));
    const used = new Set(config.services.map((s) => s.algorithm));
    const { ALGORITHM_NAMES } = await import("./types.ts");
    expect([...used].sort()).toEqual([...ALGORITHM_NAMES].sort());
  });
});

describe("loadConfig", () => {
  const dir = mkdtempSync(join(tmpdir(), "featherlb-config-"));

  test("a missing file is one sentence naming the path and the reason", async () => {
    const path = join(dir, "nope.yaml");
    expect(loadConfig(path)).rejects.toThrow(new UserError("config", `cannot read config file ${path}: no such file`));
  });

  test("a directory is not a config file", async () => {
    expect(loadConfig(dir)).rejects.toThrow(`cannot read config file ${dir}: it is a directory`);
  });

  test("the Config names its file, for run-time messages that have no line to point at", async () => {
    const path = join(dir, "named.yaml");
    writeFileSync(path, "services: [{name: web, listen: 0.0.0.0:80, backends: [{address: 10.0.0.1:80}]}]\n");
    expect((await loadConfig(path)).source).toBe(path);
  });

  test("errors name the path as given", async () => {
    const path = join(dir, "bad.yaml");
    writeFileSync(path, "services: []\n");
    expect(loadConfig(path)).rejects.toThrow(`${path}:1:11 services: must list at least one service`);
  });
});
