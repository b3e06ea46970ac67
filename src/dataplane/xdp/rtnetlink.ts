/**
 * The few rtnetlink requests featherlb makes, batched: a link's kind (RTM_GETLINK: is it a veth?), a
 * route lookup per backend (RTM_GETROUTE, what `ip route get` asks), a dump of the IPv4 neighbour table
 * (RTM_GETNEIGH), managed and tagged neighbour
 * entries (RTM_NEWNEIGH with NDA_FLAGS_EXT = NTF_EXT_MANAGED and NDA_PROTOCOL, what `ip neigh replace
 * … managed protocol 241` sends) and their removal (RTM_DELNEIGH). One socket (nlsocket.ts) carries
 * them; requests go out CHUNK at a time per datagram, so 10,000 backends take a few hundred sends and
 * no process at all.
 *
 * Wire format (linux/netlink.h, rtnetlink.h, neighbour.h), host byte order except addresses:
 *   nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid }            16 bytes
 *   rtmsg    { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags }  12 bytes
 *   ndmsg    { u8 family, pad; u16 pad; s32 ifindex; u16 state; u8 flags, type }           12 bytes
 *   rtattr   { u16 len; u16 type; data }, each padded to 4 bytes
 *   nlmsgerr { s32 error (0 = ack, else −errno); nlmsghdr request; … }
 */
import { ipv4ToU32, u32ToIpv4 } from "../../config/address.ts";
import { XdpError } from "./errors.ts";
import { NetlinkSocket } from "./nlsocket.ts";

const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const RTM_NEWROUTE = 24;
const RTM_GETROUTE = 26;
const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const RTM_GETNEIGH = 30;

const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const NLM_F_REPLACE = 0x100;
const NLM_F_CREATE = 0x400;

const AF_INET = 2;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTN_LOCAL = 2;

const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;

const NDA_DST = 1;
const NDA_PROTOCOL = 12;
const NDA_FLAGS_EXT = 15;
const NTF_EXT_MANAGED = 1 << 0;

/** Neighbour states (ndm_state). */
export const NUD = { NONE: 0x00, NOARP: 0x40, PERMANENT: 0x80 } as const;

const HDR = 16;
/** Requests per datagram: their acks must fit the socket's receive buffer (each ack costs ~1 KiB of it). */
const CHUNK = 64;

const align4 = (n: number) => (n + 3) & ~3;

/** A request: type, flags (NLM_F_REQUEST is added), the fixed header (rtmsg, ndmsg) and attributes. */
export interface Request {
  type: number;
  flags: number;
  fixed: Uint8Array;
  attrs?: [type: number, data: Uint8Array][];
}

/** Encode one message with sequence number `seq`. */
export function encodeMessage(r: Request, seq: number): Uint8Array {
  const attrs = r.attrs ?? [];
  const len = HDR + align4(r.fixed.length) + attrs.reduce((n, [, d]) => n + align4(4 + d.length), 0);
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  v.setUint32(0, len, true);
  v.setUint16(4, r.type, true);
  v.setUint16(6, r.flags | NLM_F_REQUEST, true);
  v.setUint32(8, seq, true);
  v.setUint32(12, 0, true);
  out.set(r.fixed, HDR);
  let at = HDR + align4(r.fixed.length);
  for (const [type, data] of attrs) {
    v.setUint16(at, 4 + data.length, true);
    v.setUint16(at + 2, type, true);
    out.set(data, at + 4);
    at += align4(4 + data.length);
  }
  return out;
}

/**
 * One received message, read in place (no copies: a dump of thousands of entries is parsed straight
 * from the receive buffer): its header fields, and where its payload is in `v`.
 */
export interface Message {
  type: number;
  seq: number;
  v: DataView;
  /** Offset of the payload (after the 16-byte header) in `v`, and its length. */
  at: number;
  len: number;
}

/** Each message in the first `n` bytes of `v` (one datagram). */
export function forEachMessage(v: DataView, n: number, fn: (m: Message) => void): void {
  for (let at = 0; at + HDR <= n; ) {
    const len = v.getUint32(at, true);
    if (len < HDR || at + len > n) break;
    fn({ type: v.getUint16(at + 4, true), seq: v.getUint32(at + 8, true), v, at: at + HDR, len: len - HDR });
    at += align4(len);
  }
}

/** The attributes of `m` after its fixed header of `fixed` bytes: type → offset of the data in m.v, and length. */
export function attrsOf(m: Message, fixed: number): Map<number, { at: number; len: number }> {
  const out = new Map<number, { at: number; len: number }>();
  const end = m.at + m.len;
  for (let at = m.at + align4(fixed); at + 4 <= end; ) {
    const len = m.v.getUint16(at, true);
    if (len < 4 || at + len > end) break;
    out.set(m.v.getUint16(at + 2, true) & 0x3fff, { at: at + 4, len: len - 4 }); // without NLA_F_NESTED / NET_BYTEORDER
    at += align4(len);
  }
  return out;
}

const u32le = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
};
/** An IPv4 address as it travels: 4 bytes, network order. */
const ipBytes = (ip: string) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, ipv4ToU32(ip), false);
  return b;
};
const ipAt = (v: DataView, at: number) => u32ToIpv4(v.getUint32(at, false));

function rtmsg(dstLen: number): Uint8Array {
  const m = new Uint8Array(12);
  m[0] = AF_INET;
  m[1] = dstLen;
  return m;
}

function ndmsg(ifindex: number, state = NUD.NONE): Uint8Array {
  const m = new Uint8Array(12);
  const v = new DataView(m.buffer);
  m[0] = AF_INET;
  v.setInt32(4, ifindex, true);
  v.setUint16(8, state, true);
  return m;
}

/** The route `ip route get` would print: output interface, gateway, and whether the address is local. */
export interface RouteAnswer {
  ifindex: number;
  gateway: string | undefined;
  local: boolean;
}

/** One IPv4 neighbour entry (RTM_NEWNEIGH of a dump). */
export interface NeighbourEntry {
  dst: string;
  ifindex: number;
  /** NUD_* bits. */
  state: number;
  /** NTF_EXT_MANAGED set. */
  managed: boolean;
  /** NDA_PROTOCOL; 0 when absent. */
  protocol: number;
}

export class RtNetlink {
  private seq = 0;
  private readonly buf = new Uint8Array(1 << 17);
  private readonly view = new DataView(this.buf.buffer);

  private constructor(private readonly sock: NetlinkSocket) {}

  /** Open a NETLINK_ROUTE socket. Throws XdpError("netlink"). */
  static open(): RtNetlink {
    return new RtNetlink(NetlinkSocket.open());
  }

  close(): void {
    this.sock.close();
  }

  /** The route to each address (RTM_GETROUTE): an answer, or the errno the kernel gave (ENETUNREACH…). */
  routes(ips: readonly string[]): Map<string, RouteAnswer | { errno: number }> {
    const found: (RouteAnswer | undefined)[] = [];
    const errnos = this.exchange(
      ips.map((ip) => ({ type: RTM_GETROUTE, flags: NLM_F_ACK, fixed: rtmsg(32), attrs: [[RTA_DST, ipBytes(ip)]] })),
      (i, m) => {
        if (m.type !== RTM_NEWROUTE) return;
        const a = attrsOf(m, 12);
        const oif = a.get(RTA_OIF);
        const gw = a.get(RTA_GATEWAY);
        found[i] = {
          ifindex: oif ? m.v.getUint32(oif.at, true) : 0,
          gateway: gw?.len === 4 ? ipAt(m.v, gw.at) : undefined,
          local: m.v.getUint8(m.at + 7) === RTN_LOCAL,
        };
      },
    );
    const out = new Map<string, RouteAnswer | { errno: number }>();
    ips.forEach((ip, i) => out.set(ip, errnos[i] || !found[i] ? { errno: errnos[i]! } : found[i]!));
    return out;
  }

  /** The kind of link `ifindex` is ("veth", "bridge", …; IFLA_INFO_KIND), undefined for a device without one (a NIC). */
  linkKind(ifindex: number): string | undefined {
    const ifinfomsg = new Uint8Array(16); // u8 family (AF_UNSPEC), pad; u16 type; s32 index; u32 flags, change
    new DataView(ifinfomsg.buffer).setInt32(4, ifindex, true);
    let kind: string | undefined;
    const [errno] = this.exchange([{ type: RTM_GETLINK, flags: NLM_F_ACK, fixed: ifinfomsg }], (_, m) => {
      if (m.type !== RTM_NEWLINK) return;
      const info = attrsOf(m, 16).get(IFLA_LINKINFO);
      if (!info) return;
      // IFLA_LINKINFO nests attributes: read them as a message whose payload is the nest.
      const nested = attrsOf({ ...m, at: info.at, len: info.len }, 0).get(IFLA_INFO_KIND);
      if (nested) kind = new TextDecoder().decode(new Uint8Array(m.v.buffer, m.v.byteOffset + nested.at, nested.len)).replace(/\0+$/, "");
    });
    if (errno) throw new XdpError("netlink", `RTM_GETLINK ${ifindex} failed (errno ${errno})`, errno);
    return kind;
  }

  /** Every IPv4 neighbour entry of this network namespace (RTM_GETNEIGH dump). */
  neighbours(): NeighbourEntry[] {
    const out: NeighbourEntry[] = [];
    const [errno] = this.exchange([{ type: RTM_GETNEIGH, flags: NLM_F_DUMP, fixed: ndmsg(0) }], (_, m) => {
      if (m.type !== RTM_NEWNEIGH || m.v.getUint8(m.at) !== AF_INET) return;
      const a = attrsOf(m, 12);
      const dst = a.get(NDA_DST);
      if (dst?.len !== 4) return;
      const ext = a.get(NDA_FLAGS_EXT);
      const protocol = a.get(NDA_PROTOCOL);
      out.push({
        dst: ipAt(m.v, dst.at),
        ifindex: m.v.getInt32(m.at + 4, true),
        state: m.v.getUint16(m.at + 8, true),
        managed: ext?.len === 4 && (m.v.getUint32(ext.at, true) & NTF_EXT_MANAGED) !== 0,
        protocol: protocol ? m.v.getUint8(protocol.at) : 0,
      });
    });
    if (errno) throw new XdpError("netlink", `RTM_GETNEIGH dump failed (errno ${errno})`, errno);
    return out;
  }

  /**
   * Create or replace a managed entry per next hop, tagged `protocol` (RTM_NEWNEIGH, NLM_F_CREATE |
   * NLM_F_REPLACE, state NUD_NONE: the kernel resolves it and keeps it resolved). The errno per entry
   * (0 = done), in order.
   */
  replaceManaged(entries: readonly { ifindex: number; dst: string }[], protocol: number): number[] {
    return this.exchange(
      entries.map(({ ifindex, dst }) => ({
        type: RTM_NEWNEIGH,
        flags: NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        fixed: ndmsg(ifindex, NUD.NONE),
        attrs: [
          [NDA_DST, ipBytes(dst)],
          [NDA_FLAGS_EXT, u32le(NTF_EXT_MANAGED)],
          [NDA_PROTOCOL, Uint8Array.of(protocol)],
        ],
      })),
    );
  }

  /** Delete one entry per next hop (RTM_DELNEIGH); the errno per entry (0 = deleted, ENOENT = absent). */
  remove(entries: readonly { ifindex: number; dst: string }[]): number[] {
    return this.exchange(entries.map(({ ifindex, dst }) => ({ type: RTM_DELNEIGH, flags: NLM_F_ACK, fixed: ndmsg(ifindex), attrs: [[NDA_DST, ipBytes(dst)]] })));
  }

  /**
   * Send `requests`, CHUNK per datagram, hand each data message to `data` with its request's index, and
   * return each request's errno: its ack (an NLMSG_ERROR: 0 or −errno) or, for a dump, NLMSG_DONE ends
   * it. Replies are queued by the time send() returns (or, for a dump, as it is read), so an empty
   * socket before every reply is complete is a bug (or a lost ack: ENOBUFS): XdpError("netlink").
   */
  private exchange(requests: readonly Request[], data: (i: number, m: Message) => void = () => {}): number[] {
    const errnos = new Array<number>(requests.length).fill(0);
    for (let from = 0; from < requests.length; from += CHUNK) {
      const chunk = requests.slice(from, from + CHUNK);
      const first = this.seq + 1;
      const bytes = chunk.map((r) => encodeMessage(r, ++this.seq));
      const datagram = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
      bytes.reduce((at, b) => (datagram.set(b, at), at + b.length), 0);
      this.sock.send(datagram);
      let open = chunk.length;
      while (open > 0) {
        const n = this.sock.recv(this.buf);
        if (n === 0) throw new XdpError("netlink", `the kernel answered ${chunk.length - open} of ${chunk.length} netlink requests`);
        forEachMessage(this.view, n, (m) => {
          const i = m.seq - first;
          if (i < 0 || i >= chunk.length) return; // not ours (a late reply to an earlier, failed exchange)
          if (m.type === NLMSG_ERROR) {
            errnos[from + i] = -m.v.getInt32(m.at, true);
            open--;
          } else if (m.type === NLMSG_DONE) {
            open--;
          } else {
            data(from + i, m);
          }
        });
      }
    }
    return errnos;
  }
}
