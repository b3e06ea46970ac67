/**
 * A sweep yields to the event loop between chunks of its walk (program.ts walk); a stop or a SIGUSR2
 * handover can close the program in between. The sweep must then end quietly, not go on with closed
 * fds (bpf_map_lookup_elem failed, errno 9: an unhandled rejection in the sweeper's timer).
 */
import { expect, test } from "bun:test";
import { ALGORITHMS } from "../../src/control/algorithms/index.ts";
import { loadTestProgram } from "./program-test.ts";
import { TCP, tcpPacket } from "./packets.ts";
import { XDP_TX, client, members, setupProgram } from "./fixture.ts";
import { bpfSuiteEnabled } from "./require.ts";

if (bpfSuiteEnabled("xdp sweep after close")) {
  test("a sweep in progress when the program is closed ends without touching the closed maps", async () => {
    const p = await loadTestProgram({ flowTableSize: 65536 });
    setupProgram(p);
    p.writePlan(0, ALGORITHMS.round_robin.plan(members([1, 1, 1]), { maglevTableSize: 65537 }));
    for (let port = 20_000; port < 20_050; port++) expect(p.run(tcpPacket(client(port, TCP.SYN))).retval).toBe(XDP_TX);
    expect(p.flowCounts().synFwd).toBe(50);
    const handshakes = p.sweepHandshakes(undefined, undefined, 4); // yields after every 4 keys
    const flows = p.sweepFlows(() => 300, 60, undefined, undefined, { chunk: 4 });
    p.close();
    const [h, f] = await Promise.all([handshakes, flows]);
    expect(h.walked).toBeLessThan(50); // it stopped at the first turn after the close
    expect({ handshakesDeleted: h.deleted, flowsDeleted: f.deleted }).toEqual({ handshakesDeleted: 0, flowsDeleted: 0 });
  });
}
