/**
 * Two copies of one SYN on two CPUs at once (a client's SYN and its retransmit crossing, or a duplicate
 * from the network) must make ONE flow: one flows_new, one forward and one reverse entry, and both
 * copies sent to the same backend through the same SNAT port. The program's lookup and insert are not
 * atomic together, so both copies can miss the lookup; the insert with BPF_NOEXIST lets one win and the
 * other follow it (bpf/featherlb.bpf.c new_flow, counted as `syn_race`). With BPF_ANY the loser
 * overwrote the winner's entry: an extra flow counted and an orphaned reverse entry per race.
 *
 * Two Bun Workers (threads: they share the program's fd) run BPF_PROG_TEST_RUN on the same SYN in
 * lockstep (syn_race.worker.ts), ROUNDS distinct 4-tuples. The test also asserts the race was really
 * reached (`syn_race` > 0), so it cannot pass by never hitting it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ALGORITHMS } from "../../src/control/algorithms/index.ts";
import { CFG_FLAGS, ipv4ToU32 } from "../../src/dataplane/xdp/layout.ts";
import { possibleCpus } from "../../src/dataplane/xdp/libbpf.ts";
import { loadTestProgram, type TestProgram } from "./program-test.ts";
import { CLIENT_MAC, LB_MAC, TCP, mac, tcpPacket } from "./packets.ts";
import { bpfSuiteEnabled } from "./require.ts";

const ROUNDS = 20_000;
const VIP = "10.0.0.1";
const BACKENDS = ["10.0.0.21", "10.0.0.22", "10.0.0.23"];

if (bpfSuiteEnabled("xdp duplicate-SYN race")) {
  let p: TestProgram;
  beforeAll(async () => {
    p = await loadTestProgram({ flowTableSize: 65536 });
    p.writeConfig({ snatFirst: 40000, snatLast: 59999, flags: CFG_FLAGS.STATIC_NEIGH, smac: mac(LB_MAC) });
    BACKENDS.forEach((ip, i) => {
      p.setNeighbour(ipv4ToU32(ip), mac(`02:00:00:00:00:2${i + 1}`));
      p.setBackend(0, i, ipv4ToU32(ip), 8080);
    });
    p.setService(0, ipv4ToU32(VIP), 80);
    p.writePlan(0, ALGORITHMS.round_robin.plan(BACKENDS.map((ip, id) => ({ id, weight: 1, key: `${ip}:8080` })), { maglevTableSize: 65537 }));
  });
  afterAll(() => p?.close());

  test(`${ROUNDS} SYNs, each processed twice at once on two CPUs, make ${ROUNDS} flows`, async () => {
    expect(possibleCpus()).toBeGreaterThanOrEqual(2);
    const packets = Array.from({ length: ROUNDS }, (_, i) =>
      tcpPacket({ srcMac: CLIENT_MAC, dstMac: LB_MAC, src: `10.0.${2 + (i >> 14)}.${(i >> 6) & 255}`, dst: VIP, sport: 1024 + (i & 63) * 997, dport: 80, flags: TCP.SYN, seq: i }),
    );
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

    const reasons = p.reasons();
    const flows = p.flowCounts();
    const opened = p.serviceCounters(0).flows_new;
    console.log(`syn race: ${reasons.syn_race} of ${ROUNDS} rounds raced; tx ${results.map((r) => r.tx).join(" + ")}; flows_new ${opened}; entries fwd ${flows.fwd} rev ${flows.rev}`);
    expect({ tx: results[0]!.tx + results[1]!.tx, opened, fwd: flows.fwd, rev: flows.rev }).toEqual({ tx: 2 * ROUNDS, opened: ROUNDS, fwd: ROUNDS, rev: ROUNDS });
    let split = 0;
    for (let i = 0; i < ROUNDS; i++) if (results[0]!.dst[i] !== results[1]!.dst[i] || results[0]!.sport[i] !== results[1]!.sport[i]) split++;
    expect(split).toBe(0); // both copies of every SYN went to one backend from one SNAT port
    expect(reasons.syn_race).toBeGreaterThan(0);
  }, 120_000);
}
