/**
 * Two copies of one packet on two CPUs at once (a client's SYN and its retransmit crossing, a duplicate
 * from the network) must make ONE flow. The program's lookups and inserts are not atomic together, so
 * both copies can miss a lookup:
 * - two SYNs: the handshake insert with BPF_NOEXIST lets one win and the other follow it (bpf/featherlb.bpf.c
 *   new_flow, counted as `syn_race`): one handshake entry, one reverse entry, both copies sent to the same
 *   backend through the same SNAT port. With BPF_ANY the loser overwrote the winner's entry.
 * - two handshake ACKs: the compare-and-swap of FLOW_PROMOTING (flow.h promote) lets one move the flow to
 *   the established tables; the flow is counted once (flows_new), whichever copy got through.
 *
 * Two Bun Workers (threads: they share the program's fd) run BPF_PROG_TEST_RUN on the same packet in
 * lockstep (syn_race.worker.ts), ROUNDS distinct 4-tuples. The test also asserts the SYN race was
 * really reached (`syn_race` > 0), so it cannot pass by never hitting it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ALGORITHMS } from "../../src/control/algorithms/index.ts";
import { CFG_FLAGS, ipv4ToU32, u32ToIpv4 } from "../../src/dataplane/xdp/layout.ts";
import { possibleCpus } from "../../src/dataplane/xdp/libbpf.ts";
import { loadTestProgram, type TestProgram } from "./program-test.ts";
import { CLIENT_MAC, LB_MAC, TCP, mac, tcpPacket } from "./packets.ts";
import { bpfSuiteEnabled } from "./require.ts";

const ROUNDS = 20_000;
/** Handshakes whose ACK races too (fewer: the SYN-ACKs in between go one by one). */
const ACKS = 5000;
const VIP = "10.0.0.1";
const LB_ADDR = "10.0.0.2"; // the SNAT address
const BACKENDS = ["10.0.0.21", "10.0.0.22", "10.0.0.23"];

if (bpfSuiteEnabled("xdp duplicate-SYN race")) {
  let p: TestProgram;
  beforeAll(async () => {
    p = await loadTestProgram({ flowTableSize: 131072 }); // handshake tables of 32768: room for every round
    // The widest range, and the two CPUs' SNAT cursors 32,000 ports apart: each walks ports no other
    // round took, so a slow run (over SYN_TIMEOUT_S) never finds a handshake of an earlier round
    // abandoned and takes its port back (bpf/snat.h), which would be right but is not what this tests.
    p.writeConfig({ snatFirst: 1024, snatLast: 65535, snatAddr: ipv4ToU32(LB_ADDR), flags: CFG_FLAGS.STATIC_NEIGH, smac: mac(LB_MAC) });
    p.maps.cpu.update(0, Array.from({ length: p.cpus }, (_, cpu) => ({ port_cursor: cpu * (32_000 - 4099) })));
    BACKENDS.forEach((ip, i) => {
      p.setNeighbour(ipv4ToU32(ip), mac(`02:00:00:00:00:2${i + 1}`));
      p.setBackend(0, i, ipv4ToU32(ip), 8080);
    });
    p.setService(0, ipv4ToU32(VIP), 80);
    p.writePlan(0, ALGORITHMS.round_robin.plan(BACKENDS.map((ip, id) => ({ id, weight: 1, key: `${ip}:8080` })), { maglevTableSize: 65537 }));
  });
  afterAll(() => p?.close());

  /** Run `packets` twice, in lockstep on two threads; per round and thread the action and where it went. */
  async function lockstep(packets: Uint8Array[]) {
    const ctl = new SharedArrayBuffer(8);
    const workers = [0, 1].map(() => new Worker(new URL("./syn_race.worker.ts", import.meta.url).href));
    const done = workers.map(
      (w, me) =>
        new Promise<{ tx: number; dst: Uint32Array; sport: Uint16Array }>((resolve, reject) => {
          w.onmessage = (e) => resolve(e.data);
          w.onerror = (e) => reject(new Error(e.message));
          w.postMessage({ me, progFd: p.progFd, ctl, packets });
        }),
    );
    const results = await Promise.all(done);
    for (const w of workers) w.terminate();
    return results;
  }

  test(`${ROUNDS} SYNs, each processed twice at once on two CPUs, make ${ROUNDS} handshakes; ${ACKS} of their ACKs, raced the same way, ${ACKS} flows`, async () => {
    expect(possibleCpus()).toBeGreaterThanOrEqual(2);
    const client = (i: number) => ({ srcMac: CLIENT_MAC, dstMac: LB_MAC, src: `10.0.${2 + (i >> 14)}.${(i >> 6) & 255}`, dst: VIP, sport: 1024 + (i & 63) * 997, dport: 80 });
    const syns = Array.from({ length: ROUNDS }, (_, i) => tcpPacket({ ...client(i), flags: TCP.SYN, seq: i }));
    const results = await lockstep(syns);

    const reasons = p.reasons();
    const flows = p.flowCounts();
    console.log(`syn race: ${reasons.syn_race} of ${ROUNDS} rounds raced; tx ${results.map((r) => r.tx).join(" + ")}; entries ${JSON.stringify(flows)}`);
    expect({ tx: results[0]!.tx + results[1]!.tx, flows }).toEqual({ tx: 2 * ROUNDS, flows: { fwd: 0, rev: 0, synFwd: ROUNDS, synRev: ROUNDS } });
    let split = 0;
    for (let i = 0; i < ROUNDS; i++) if (results[0]!.dst[i] !== results[1]!.dst[i] || results[0]!.sport[i] !== results[1]!.sport[i]) split++;
    expect(split).toBe(0); // both copies of every SYN went to one backend from one SNAT port
    expect(reasons.syn_race).toBeGreaterThan(0);

    // The backends answer (one SYN-ACK each), then every client's ACK arrives twice at once.
    for (let i = 0; i < ACKS; i++) {
      const be = u32ToIpv4(results[0]!.dst[i]!);
      const synAck = tcpPacket({ srcMac: "02:00:00:00:00:21", dstMac: LB_MAC, src: be, dst: LB_ADDR, sport: 8080, dport: results[0]!.sport[i]!, flags: TCP.SYN | TCP.ACK, seq: 7000, ack: i + 1 });
      expect(p.run(synAck).retval).toBe(3);
    }
    const acks = Array.from({ length: ACKS }, (_, i) => tcpPacket({ ...client(i), flags: TCP.ACK, seq: i + 1, ack: 7001 }));
    const acked = await lockstep(acks);
    const tx = acked[0]!.tx + acked[1]!.tx;
    const opened = p.serviceCounters(0).flows_new;
    console.log(`ack race: tx ${acked.map((r) => r.tx).join(" + ")} (a copy that lost the promotion is dropped: syn_busy ${p.reasons().syn_busy}); flows_new ${opened}`);
    expect({ opened, flows: p.flowCounts() }).toEqual({ opened: ACKS, flows: { fwd: ACKS, rev: ACKS, synFwd: ROUNDS - ACKS, synRev: ROUNDS - ACKS } });
    expect(tx).toBeGreaterThanOrEqual(ACKS);
  }, 120_000);
}
