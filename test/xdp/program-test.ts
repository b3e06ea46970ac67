/**
 * What only the tests need of a loaded XDP program, on top of what the data plane uses (program.ts):
 * run a packet (BPF_PROG_TEST_RUN), count and read flow entries, set a backend's active gauge.
 */
import { MIN_CAPACITY } from "../../src/dataplane/xdp/capacity.ts";
import { FLOW_KEY } from "../../src/dataplane/xdp/layout.ts";
import { testRun, type TestRunResult } from "../../src/dataplane/xdp/libbpf.ts";
import { loadObject, wrap, type LoadOptions } from "../../src/dataplane/xdp/loader.ts";
import { XdpProgram } from "../../src/dataplane/xdp/program.ts";

export class TestProgram extends XdpProgram {
  /** BPF_PROG_TEST_RUN on one packet. */
  run(packet: Uint8Array): TestRunResult {
    return testRun(this.progFd, packet);
  }

  /** Set the gauge (emulate load for least/two_choices). */
  setBackendActive(svc: number, id: number, n: number): void {
    this.maps.beActive.update(this.backendKey(svc, id), n);
  }

  /** Entries in the forward and reverse flow tables (walks the keys: O(n)). */
  flowCounts(): { fwd: number; rev: number } {
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
    return { fwd: count(this.maps.fwd), rev: count(this.maps.rev) };
  }

  /** The forward entry of an (encoded) flow key, decoded, or undefined. */
  lookupFlow(key: Uint8Array) {
    return this.maps.fwd.lookup(key);
  }
}

/** The tests' default sizes: the smallest, with room in flb_nbr for the clients' MACs too (CFG_STATIC_NEIGH). */
export const TEST_CAPACITY = { ...MIN_CAPACITY, neighbours: 1024 };

/** loader.ts loadProgram, with the test-only methods. */
export async function loadTestProgram(options: LoadOptions): Promise<TestProgram> {
  const capacity = options.capacity ?? TEST_CAPACITY;
  return wrap(await loadObject({ ...options, capacity }), (obj) => new TestProgram(obj, capacity));
}
