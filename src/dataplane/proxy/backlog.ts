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
 * is found by inode: /proc/net/tcp{,6} lists the LISTEN socket of host:port with its inode, and
 * /proc/self/fd has the descriptor linked to "socket:[inode]". listen() itself comes from libc through
 * bun:ffi. Everything here is best effort: on any failure the listener keeps Bun's 512.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import { endianness } from "node:os";
import { dlopen } from "bun:ffi";

/** What we ask for; the kernel lowers it to net.core.somaxconn (4096 by default since Linux 5.4). */
export const WANTED_BACKLOG = 65535;

const TCP_LISTEN = "0A"; // the `st` column of /proc/net/tcp for TCP_LISTEN

/** The effective backlog after raising: min(WANTED_BACKLOG, somaxconn), or an error sentence. */
export function raiseBacklog(host: string, port: number): { backlog: number } | { error: string } {
  try {
    const fd = listeningFd(host, port);
    if (fd === undefined) return { error: `no listening socket of this process for ${host}:${port} in /proc/net` };
    if (libcListen(fd, WANTED_BACKLOG) !== 0) return { error: "listen() refused the new backlog" };
    return { backlog: Math.min(WANTED_BACKLOG, somaxconn()) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/**
 * An address as /proc/net/tcp prints it: each 32-bit word of the network-order bytes read as a
 * native-endian integer, in %08X (so 127.0.0.1 is 0100007F on x86), then ":" and the port in %04X.
 */
export function procNetAddress(host: string, port: number): string {
  const bytes = isIPv4(host) ? Uint8Array.from(host.split(".").map(Number)) : ipv6Bytes(host);
  const view = new DataView(bytes.buffer);
  let hex = "";
  for (let i = 0; i < bytes.length; i += 4) hex += view.getUint32(i, endianness() === "LE").toString(16).toUpperCase().padStart(8, "0");
  return `${hex}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
}

function ipv6Bytes(host: string): Uint8Array {
  if (!isIPv6(host)) throw new Error(`${host} is not an IP address`);
  const [head = "", tail = ""] = host.split("::");
  const words = (s: string) => (s ? s.split(":").map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = host.includes("::") ? words(tail) : [];
  const all = [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  const out = new Uint8Array(16);
  all.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** This process's descriptor of the LISTEN socket bound to host:port. */
function listeningFd(host: string, port: number): number | undefined {
  const want = procNetAddress(host, port);
  const ours = socketFds();
  const table = readFileSync(isIPv4(host) ? "/proc/net/tcp" : "/proc/net/tcp6", "utf8");
  for (const line of table.split("\n").slice(1)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    const f = line.trim().split(/\s+/);
    if (f[1] === want && f[3] === TCP_LISTEN && ours.has(f[9]!)) return ours.get(f[9]!);
  }
  return undefined;
}

/** inode → descriptor, for this process's sockets. */
function socketFds(): Map<string, number> {
  const map = new Map<string, number>();
  for (const name of readdirSync("/proc/self/fd")) {
    let link: string;
    try {
      link = readlinkSync(`/proc/self/fd/${name}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) map.set(m[1]!, Number(name));
  }
  return map;
}

function somaxconn(): number {
  const n = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim());
  return Number.isFinite(n) && n > 0 ? n : WANTED_BACKLOG;
}

/**
 * listen(2) through bun:ffi, with libc opened for this call only: bun:ffi compiles a trampoline per
 * symbol, and closing the library afterwards gives that memory back.
 */
function libcListen(fd: number, backlog: number): number {
  const libc = dlopen("libc.so.6", { listen: { args: ["i32", "i32"], returns: "i32" } });
  try {
    return libc.symbols.listen(fd, backlog) as number;
  } finally {
    libc.close();
  }
}
