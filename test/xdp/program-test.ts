/**
 * What only the tests need of a loaded XDP program, on top of what the data plane uses (program.ts):
 * run a packet (BPF_PROG_TEST_RUN), count and read flow entries, set a backend's active gauge.
 */
import { MIN_CAPACITY } from "../../src/dataplane/xdp/capacity.ts";
import { FLOW_KEY, u32ToIpv4 } from "../../src/dataplane/xdp/layout.ts";
import { testRun, type TestRunResult } from "../../src/dataplane/xdp/libbpf.ts";
import { loadObject, wrap, type LoadOptions } from "../../src/dataplane/xdp/loader.ts";
import { XdpProgram } from "../../src/dataplane/xdp/program.ts";
import { TCP, hex, parseTcp, tcpPacket, type TcpSpec } from "./packets.ts";

const XDP_TX = 3;

/** A flow the program carries after a full handshake: where it went and each side's next sequence number. */
export interface Handshake {
  /** The backend the SYN went to (IPv4 text) and the SNAT port it came from. */
  backend: string;
  snat: number;
  /** The client's next sequence number (what the backend acknowledges), and the backend's. */
  cseq: number;
  bseq: number;
}

export class TestProgram extends XdpProgram {
  /** BPF_PROG_TEST_RUN on one packet. */
  run(packet: Uint8Array): TestRunResult {
    return testRun(this.progFd, packet);
  }

  /**
   * Open a flow: client SYN `syn` (seq = its ISN, default 1000), the backend's SYN-ACK (ISN `bisn`) to
   * the address and port the program chose, the client's ACK. Throws unless all three are transmitted.
   */
  handshake(syn: TcpSpec, bisn = 5000): Handshake {
    const isn = syn.seq ?? 1000;
    const step = (spec: TcpSpec, what: string) => {
      const r = this.run(tcpPacket(spec));
      if (r.retval !== XDP_TX) throw new Error(`handshake: ${what} got action ${r.retval}, not XDP_TX (${hex(r.data)})`);
      return r.data;
    };
    const out = step({ ...syn, flags: TCP.SYN, seq: isn }, "SYN");
    const { src, dst, sport } = parseTcp(out);
    const backend = u32ToIpv4(dst);
    const mac = (at: number) => [...out.subarray(at, at + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");
    step({ srcMac: mac(0), dstMac: mac(6), src: backend, dst: u32ToIpv4(src), sport: parseTcp(out).dport, dport: sport, flags: TCP.SYN | TCP.ACK, seq: bisn, ack: (isn + 1) >>> 0 }, "SYN-ACK");
    step({ ...syn, flags: TCP.ACK, seq: (isn + 1) >>> 0, ack: (bisn + 1) >>> 0, tcpOptions: undefined, payload: undefined }, "ACK");
    return { backend, snat: sport, cseq: (isn + 1) >>> 0, bseq: (bisn + 1) >>> 0 };
  }

  /** Set the gauge (emulate load for least/two_choices). */
  setBackendActive(svc: number, id: number, n: number): void {
    this.maps.beActive.update(this.backendKey(svc, id), n);
  }

  /** Entries in the flow tables, established and handshake (walks the keys: O(n)). */
  flowCounts(): { fwd: number; rev: number; synFwd: number; synRev: number } {
    const count = (map: { nextKey(prev: Uint8Array | null, out: Uint8Array): boolean }) => {
      let key: Uint8Array | null = null;
      const next = new Uint8Array(FLOW_KEY.size);
      let n = 0;
      while (map.nextKey(key, next)) {
        n++;
        key = Uint8Array.from(next);
      }
      return n;
    };
    return { fwd: count(this.maps.fwd), rev: count(this.maps.rev), synFwd: count(this.maps.synFwd), synRev: count(this.maps.synRev) };
  }

  /** The forward entry of an (encoded) flow key, established or handshake, decoded, or undefined. */
  lookupFlow(key: Uint8Array) {
    return this.maps.fwd.lookup(key) ?? this.maps.synFwd.lookup(key);
  }
}

/** The tests' default sizes: the smallest, with room in flb_nbr for the clients' MACs too (CFG_STATIC_NEIGH). */
export const TEST_CAPACITY = { ...MIN_CAPACITY, neighbours: 1024 };

/** loader.ts loadProgram, with the test-only methods. */
export async function loadTestProgram(options: LoadOptions): Promise<TestProgram> {
  const capacity = options.capacity ?? TEST_CAPACITY;
  return wrap(await loadObject({ ...options, capacity }), (obj) => new TestProgram(obj, capacity));
}
