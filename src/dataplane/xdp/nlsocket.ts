/**
 * A netlink socket (NETLINK_ROUTE) through bun:ffi — with libbpf.ts, proxy/backlog.ts and
 * proxy/splice/libc.ts the only modules that import bun:ffi. Five libc calls: socket, bind, send,
 * recv, close. rtnetlink.ts builds and reads the messages; nothing here knows what they mean.
 *
 * Bun has no AF_NETLINK sockets, and the alternative, one `ip` process per backend, cost three process
 * spawns per backend at start (30,000 for 10,000 backends). rtnetlink answers a request while it is
 * being sent: when send() returns, the replies (acks, a route, the first part of a dump) are already
 * queued on the socket, and a dump refills the queue as recv() drains it. So every recv() here is
 * non-blocking (MSG_DONTWAIT) and "nothing queued" means the kernel has answered everything it will;
 * the event loop never waits on the kernel.
 */
import { dlopen, read } from "bun:ffi";
import { XdpError } from "./errors.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const EINTR = 4;

const libc = dlopen("libc.so.6", {
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
  send: { args: ["i32", "ptr", "u64", "i32"], returns: "i64" },
  recv: { args: ["i32", "ptr", "u64", "i32"], returns: "i64" },
  close: { args: ["i32"], returns: "i32" },
  __errno_location: { args: [], returns: "ptr" },
});
const c = libc.symbols;

function errno(): number {
  const p = c.__errno_location();
  return p ? read.i32(p, 0) : 0;
}

const failed = (call: string, e = errno()) => new XdpError("netlink", `${call} failed (errno ${e})`, e);

export class NetlinkSocket {
  private constructor(private fd: number) {}

  /** A NETLINK_ROUTE socket bound to a kernel-chosen port id. Throws XdpError("netlink"). */
  static open(): NetlinkSocket {
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) throw failed("socket(AF_NETLINK)");
    // struct sockaddr_nl { u16 nl_family; u16 nl_pad; u32 nl_pid (0: the kernel assigns); u32 nl_groups }
    const sa = new Uint8Array(12);
    new DataView(sa.buffer).setUint16(0, AF_NETLINK, true);
    if (c.bind(fd, sa, sa.byteLength) !== 0) {
      const e = errno();
      c.close(fd);
      throw failed("bind(AF_NETLINK)", e);
    }
    return new NetlinkSocket(fd);
  }

  /** Send one buffer of messages to the kernel (whole: a netlink send is one datagram). */
  send(bytes: Uint8Array): void {
    for (;;) {
      const n = Number(c.send(this.fd, bytes, bytes.byteLength, 0));
      if (n === bytes.byteLength) return;
      if (n < 0 && errno() === EINTR) continue;
      throw n < 0 ? failed("send(netlink)") : new XdpError("netlink", `send(netlink) took ${n} of ${bytes.byteLength} bytes`, 0);
    }
  }

  /** One queued datagram into `buf`: its length, or 0 when nothing is queued. */
  recv(buf: Uint8Array): number {
    for (;;) {
      const n = Number(c.recv(this.fd, buf, buf.byteLength, MSG_DONTWAIT));
      if (n >= 0) return n;
      const e = errno();
      if (e === EAGAIN) return 0;
      if (e !== EINTR) throw failed("recv(netlink)", e);
    }
  }

  close(): void {
    // close()'s result is not checked: the fd is released whatever it returns (Linux).
    if (this.fd >= 0) c.close(this.fd);
    this.fd = -1;
  }
}
