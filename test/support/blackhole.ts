/**
 * Addresses with a known, stable misbehaviour, made from raw sockets (test support only).
 *
 * blackhole(): a TCP address that never answers a SYN, on 127.0.0.1 and without root: a listening socket with
 * backlog 0 that never accepts, its one-entry accept queue filled by our own connection. Linux then
 * drops further SYNs (tcp_conn_request: accept queue full → drop), so a connect hangs until its timeout.
 *
 * Bun has no listen(backlog) knob, hence raw libc calls through bun:ffi (test support only).
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import { connect as netConnect, type Socket } from "node:net";

const libc = dlopen("libc.so.6", {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
});

const AF_INET = 2;
const SOCK_STREAM = 1;

export interface Blackhole {
  address: string;
  close(): void;
}

/** A socket bound to 127.0.0.1 on a kernel-chosen port; returns fd, port and the sockaddr buffer. */
function boundSocket(): { fd: number; port: number } {
  const fd = libc.symbols.socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw new Error("socket() failed");
  // struct sockaddr_in { u16 family (host order); u16 port (network order); u32 addr (network order); u8 zero[8] }
  const sa = new Uint8Array(16);
  const view = new DataView(sa.buffer);
  view.setUint16(0, AF_INET, true);
  view.setUint32(4, 0x7f000001, false);
  if (libc.symbols.bind(fd, ptr(sa), 16) !== 0) throw new Error("bind() failed");
  const len = new Uint32Array([16]);
  libc.symbols.getsockname(fd, ptr(sa), ptr(len));
  return { fd, port: view.getUint16(2, false) };
}

export function blackhole(): Blackhole {
  const { fd, port } = boundSocket();
  if (libc.symbols.listen(fd, 0) !== 0) throw new Error("listen() failed");
  // Fill the accept queue (backlog 0 admits one connection) so later SYNs are dropped.
  const filler: Socket = netConnect({ host: "127.0.0.1", port });
  filler.on("error", () => {});
  return {
    address: `127.0.0.1:${port}`,
    close() {
      filler.destroy();
      libc.symbols.close(fd);
    },
  };
}

/**
 * refusing(): a TCP address whose connects are refused at once (RST): the port is bound but not
 * listening, so — unlike a port that was merely free a moment ago — nothing else can take it meanwhile.
 */
export function refusing(): Blackhole {
  const { fd, port } = boundSocket();
  return { address: `127.0.0.1:${port}`, close: () => void libc.symbols.close(fd) };
}
