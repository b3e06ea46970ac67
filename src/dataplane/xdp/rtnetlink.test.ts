/**
 * rtnetlink.ts: the bytes of a request as iproute2 sends them, and real answers from this host's
 * kernel for what needs no privilege (route lookups, the neighbour dump). Creating and deleting entries
 * needs CAP_NET_ADMIN and a namespace: test/xdp/hoststate.test.ts does it with 200 backends.
 */
import { expect, test } from "bun:test";
import { RtNetlink, attrsOf, encodeMessage, forEachMessage, type Message } from "./rtnetlink.ts";

test("RTM_NEWNEIGH for a managed, tagged entry: the bytes `ip neigh replace 10.0.0.21 dev <3> managed protocol 241` sends", () => {
  const ndmsg = new Uint8Array(12);
  ndmsg[0] = 2; // AF_INET
  ndmsg[4] = 3; // ifindex 3 (little-endian s32)
  const msg = encodeMessage(
    {
      type: 28,
      flags: 0x4 | 0x400 | 0x100,
      fixed: ndmsg,
      attrs: [
        [1, Uint8Array.of(10, 0, 0, 21)],
        [15, Uint8Array.of(1, 0, 0, 0)],
        [12, Uint8Array.of(241)],
      ],
    },
    7,
  );
  // nlmsghdr (len 52, RTM_NEWNEIGH, REQUEST|ACK|REPLACE|CREATE, seq 7, pid 0), ndmsg, then NDA_DST,
  // NDA_FLAGS_EXT (NTF_EXT_MANAGED) and NDA_PROTOCOL (one byte, padded to four).
  expect(Buffer.from(msg).toString("hex")).toBe(
    "34000000" + "1c00" + "0505" + "07000000" + "00000000" + "020000000300000000000000" + "08000100" + "0a000015" + "08000f00" + "01000000" + "05000c00" + "f1000000",
  );
  const v = new DataView(msg.buffer);
  const seen: Message[] = [];
  forEachMessage(v, msg.length, (m) => seen.push(m));
  expect(seen.map((m) => [m.type, m.seq, m.len])).toEqual([[28, 7, 36]]);
  const attrs = attrsOf(seen[0]!, 12);
  expect([...attrs.keys()]).toEqual([1, 15, 12]);
  expect(v.getUint8(attrs.get(12)!.at)).toBe(241);
});

test("route lookups and the neighbour dump against this host's kernel, in batches larger than one datagram", () => {
  const nl = RtNetlink.open();
  try {
    const ips = Array.from({ length: 300 }, (_, i) => `127.0.${i >> 7}.${(i & 127) + 1}`);
    const routes = nl.routes(ips);
    expect(routes.size).toBe(300);
    // 127.0.0.0/8 is local on every Linux host: each answered, each local, on the loopback device.
    for (const r of routes.values()) expect(r).toMatchObject({ local: true, ifindex: 1 });
    expect(Array.isArray(nl.neighbours())).toBe(true);
    // The loopback device has no link kind; a veth (made by the netns suites) says "veth".
    expect(nl.linkKind(1)).toBeUndefined();
  } finally {
    nl.close();
  }
});
