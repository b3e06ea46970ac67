/**
 * A larger accept backlog for Bun's listeners.
 *
 * Bun.listen always calls listen(fd, 512) and has no option for it. When the event loop stalls (a GC,
 * a busy host) while clients keep connecting, handshakes beyond those 512 overflow the queue and each
 * such client retransmits its SYN after a second: the bench opening 9,900 connections through the proxy
 * saw 10 overflows and needed ~10 s, HAProxy (backlog = maxconn) none and 0.3 s.
 *
 * Linux lets listen() be called again on a listening socket to change its backlog (inet_listen stores
 * the new value; the kernel caps it at net.core.somaxconn). The listener does not expose its fd, so it
 * is found among this process's own descriptors (/proc/self/fd): the socket that is listening
 * (SO_ACCEPTCONN) on the listener's address and port (getsockname). Only our descriptors are looked
 * at — never the namespace-wide /proc/net/tcp, which is megabytes on a busy host. The libc calls go
 * through bun:ffi. Best effort: on any failure the listener keeps Bun's 512.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { dlopen, ptr } from "bun:ffi";
import { parseIPv6 } from "../../config/address.ts";

/** What we ask for; the kernel lowers it to net.core.somaxconn (4096 by default since Linux 5.4). */
export const WANTED_BACKLOG = 65535;

const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const AF_INET = 2;
const AF_INET6 = 10;

/** The effective backlog after raising: min(WANTED_BACKLOG, somaxconn), or why it was not raised. */
export type Raised = { backlog: number } | { error: string };

/**
 * Raise the backlog of each listener (host, port), in the order given: libc is opened and this
 * process's descriptors are walked once for all of them (one walk per listener, with thousands of
 * health-check sockets open, took over a second at the start of 40 services). A listener whose `fd` is
 * known (Bun tells it, a property its types do not declare) is raised directly: with several worker
 * threads' sockets on one address, the walk would find any one of them.
 */
export function raiseBacklogs(listeners: readonly { host: string; port: number; fd?: number }[]): Raised[] {
  if (listeners.length === 0) return [];
  let libc: ReturnType<typeof openLibc> | undefined;
  try {
    libc = openLibc(); // throws where there is no glibc (musl): then Bun's 512 stays
    const { listen, getsockname, getsockopt } = libc.symbols;
    const raised = (fd: number): Raised => (listen(fd, WANTED_BACKLOG) !== 0 ? { error: "listen() refused the new backlog" } : { backlog: Math.min(WANTED_BACKLOG, somaxconn()) });
    const out: Raised[] = listeners.map(({ host, port }) => ({ error: `no listening socket of this process is bound to ${host}:${port}` }));
    const wanted = new Map<string, number>();
    listeners.forEach(({ host, port, fd }, i) => {
      if (fd !== undefined && fd >= 0) out[i] = raised(fd);
      else wanted.set(`${canonical(host)} ${port}`, i);
    });
    if (wanted.size === 0) return out;
    const addr = new Uint8Array(128); // sockaddr_storage
    const int = new Int32Array(1);
    const len = new Uint32Array(1);
    let left = wanted.size;
    for (const fd of socketFds()) {
      len[0] = 4;
      if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, ptr(int), ptr(len)) !== 0 || int[0] !== 1) continue;
      len[0] = addr.length;
      if (getsockname(fd, ptr(addr), ptr(len)) !== 0) continue;
      const i = wanted.get(sockaddrText(addr));
      if (i === undefined) continue;
      wanted.delete(sockaddrText(addr));
      out[i] = raised(fd);
      if (--left === 0) break;
    }
    return out;
  } catch (err) {
    return listeners.map(() => ({ error: (err as Error).message }));
  } finally {
    libc?.close(); // bun:ffi compiles a trampoline per symbol; closing gives that memory back
  }
}

function openLibc() {
  return dlopen("libc.so.6", {
    listen: { args: ["i32", "i32"], returns: "i32" },
    getsockname: { args: ["i32", "ptr", "ptr"], returns: "i32" },
    getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], returns: "i32" },
  });
}

/**
 * "address port" of a sockaddr_in / sockaddr_in6 as getsockname() fills it: sa_family (native u16),
 * then the port (network order) at offset 2, the IPv4 address at 4 or the IPv6 address at 8.
 */
export function sockaddrText(sa: Uint8Array): string {
  const view = new DataView(sa.buffer, sa.byteOffset, sa.byteLength);
  const family = sa[0]! | (sa[1]! << 8); // little-endian hosts (x86-64, arm64), where featherlb runs
  const port = view.getUint16(2, false);
  if (family === AF_INET) return `${sa.subarray(4, 8).join(".")} ${port}`;
  if (family === AF_INET6) {
    const words = Array.from({ length: 8 }, (_, i) => view.getUint16(8 + 2 * i, false).toString(16));
    return `${canonical(words.join(":"))} ${port}`;
  }
  return `family ${family}`;
}

/** One spelling per address (parseIPv6's eight groups for IPv6), so different spellings compare equal. */
export function canonical(host: string): string {
  return parseIPv6(host)?.groups.map((g) => g.toString(16)).join(":") ?? host;
}

/** This process's socket descriptors (from /proc/self/fd, where sockets link to "socket:[inode]"). */
function socketFds(): number[] {
  const fds: number[] = [];
  for (const name of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${name}`).startsWith("socket:")) fds.push(Number(name));
    } catch {
      // closed meanwhile
    }
  }
  return fds;
}

function somaxconn(): number {
  const n = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim());
  return Number.isFinite(n) && n > 0 ? n : WANTED_BACKLOG;
}
