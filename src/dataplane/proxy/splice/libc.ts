/**
 * The libc calls of the kernel relay, through bun:ffi: splice(2) and the pipes, epoll and eventfd
 * around it. Every function returns what the system call returns (−1 on failure) and `errno()` reads
 * the calling thread's errno (glibc keeps one per thread, so each thread reads its own).
 *
 * Only the relay thread (pump.ts) and the handover (index.ts) call these; nothing here blocks except
 * epollWait, which only the relay thread calls.
 */
import { dlopen, ptr, read } from "bun:ffi";

const libc = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: "ptr" },
  splice: { args: ["i32", "ptr", "i32", "ptr", "u64", "u32"], returns: "i64" },
  pipe2: { args: ["ptr", "i32"], returns: "i32" },
  fcntl: { args: ["i32", "i32", "i32"], returns: "i32" },
  epoll_create1: { args: ["i32"], returns: "i32" },
  epoll_ctl: { args: ["i32", "i32", "i32", "ptr"], returns: "i32" },
  epoll_wait: { args: ["i32", "ptr", "i32", "i32"], returns: "i32" },
  eventfd: { args: ["u32", "i32"], returns: "i32" },
  read: { args: ["i32", "ptr", "u64"], returns: "i64" },
  write: { args: ["i32", "ptr", "u64"], returns: "i64" },
  shutdown: { args: ["i32", "i32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
});
const c = libc.symbols;

export const EAGAIN = 11;
export const EINTR = 4;

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_DUPFD_CLOEXEC = 1030;
const F_SETPIPE_SZ = 1031;
const SPLICE_F_MOVE = 1;
const SPLICE_F_NONBLOCK = 2;
const EFD_NONBLOCK = O_NONBLOCK;
const EFD_CLOEXEC = O_CLOEXEC;
const SHUT_WR = 1;
const SOL_SOCKET = 1;
const SO_LINGER = 13;

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
/** EPOLLERR and EPOLLHUP are always reported, asked for or not. */
export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 1 << 31;

/**
 * struct epoll_event: a u32 of events, then a u64 of user data. x86-64 packs it (12 bytes, data at 4);
 * every other architecture aligns the u64 (16 bytes, data at 8).
 */
export const EPOLL_EVENT_SIZE = process.arch === "x64" ? 12 : 16;
export const EPOLL_DATA_OFFSET = process.arch === "x64" ? 4 : 8;

export function errno(): number {
  const p = c.__errno_location();
  return p ? read.i32(p, 0) : 0;
}

/**
 * Move up to `len` bytes from `from` to `to` (one of them a pipe), without blocking on either and
 * without copying the payload through user space. Returns the bytes moved, 0 at the end of the
 * stream, −1 with errno (EAGAIN: nothing to read, or no room to write).
 */
export function splice(from: number, to: number, len: number): number {
  return Number(c.splice(from, null, to, null, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK));
}

const pipeFds = new Int32Array(2);
/** A non-blocking pipe of about `size` bytes (less if the kernel refuses: fs.pipe-max-size); null on failure. */
export function pipe(size: number): [read: number, write: number] | null {
  if (c.pipe2(ptr(pipeFds), O_NONBLOCK | O_CLOEXEC) !== 0) return null;
  // Best effort: a pipe keeps its default 64 KiB when the larger size is refused.
  c.fcntl(pipeFds[1]!, F_SETPIPE_SZ, size);
  return [pipeFds[0]!, pipeFds[1]!];
}

/** A second descriptor for the socket (or file) `fd` (close-on-exec), or −1. */
export function dup(fd: number): number {
  return c.fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

export function epollCreate(): number {
  return c.epoll_create1(O_CLOEXEC);
}

const event = new Uint8Array(16);
const eventView = new DataView(event.buffer);
export function epollAdd(ep: number, fd: number, events: number, data: number): number {
  eventView.setUint32(0, events >>> 0, true);
  eventView.setBigUint64(EPOLL_DATA_OFFSET, BigInt(data), true);
  return c.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ptr(event));
}

/** Wait for events into `events` (EPOLL_EVENT_SIZE bytes each); returns how many, or −1 (EINTR). */
export function epollWait(ep: number, events: Uint8Array, max: number, timeoutMs: number): number {
  return c.epoll_wait(ep, ptr(events), max, timeoutMs);
}

export function eventFd(): number {
  return c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

const one = new BigUint64Array([1n]);
/** Wake whoever polls the eventfd. */
export function signal(fd: number): void {
  // EAGAIN means the counter is already huge (never in practice): a wakeup is pending anyway.
  c.write(fd, ptr(one), 8);
}

const counter = new BigUint64Array(1);
/** Reset an eventfd after it woke us. */
export function consume(fd: number): void {
  // EAGAIN: nothing was pending (another event of the same batch reset it already).
  c.read(fd, ptr(counter), 8);
}

/** Send FIN on a socket: its write half closes, its read half stays open. */
export function shutdownWrite(fd: number): number {
  return c.shutdown(fd, SHUT_WR);
}

const lingerZero = new Int32Array([1, 0]);
/** Make the socket's last close send RST instead of FIN (SO_LINGER on, 0 s): an aborted relay. */
export function resetOnClose(fd: number): void {
  // On failure the close that follows sends FIN instead: still a close.
  c.setsockopt(fd, SOL_SOCKET, SO_LINGER, ptr(lingerZero), 8);
}

/** Close a descriptor. The result is not checked: on Linux the descriptor is released whatever it returns. */
export function close(fd: number): void {
  if (fd >= 0) c.close(fd);
}

export function epollDel(ep: number, fd: number): number {
  return c.epoll_ctl(ep, EPOLL_CTL_DEL, fd, null);
}
