/**
 * One of the two threads of syn_race.test.ts: runs the XDP program (BPF_PROG_TEST_RUN) on round i's
 * SYN as soon as the other thread has reached round i too, so both copies of each SYN go through the
 * program on two CPUs at the same moment. The barrier is a spin on a shared Int32Array (Atomics): a
 * wake-up through the scheduler would be microseconds late, the program's lookup→insert window is less.
 */
import { testRun } from "../../src/dataplane/xdp/libbpf.ts";

declare const self: Worker;

self.onmessage = (e: MessageEvent<{ me: number; progFd: number; ctl: SharedArrayBuffer; packets: Uint8Array[] }>) => {
  const { me, progFd, ctl, packets } = e.data;
  const rounds = new Int32Array(ctl);
  const other = 1 - me;
  const deadline = Date.now() + 60_000;
  let tx = 0;
  /** Per round, where the copy went: the rewritten frame's IPv4 destination and TCP source port. */
  const dst = new Uint32Array(packets.length);
  const sport = new Uint16Array(packets.length);
  for (let i = 0; i < packets.length; i++) {
    Atomics.store(rounds, me, i + 1);
    while (Atomics.load(rounds, other) < i + 1) {
      if (Date.now() > deadline) throw new Error("syn_race worker: the other thread stopped");
    }
    const r = testRun(progFd, packets[i]!);
    if (r.retval !== 3) continue;
    tx++;
    const v = new DataView(r.data.buffer, r.data.byteOffset);
    dst[i] = v.getUint32(14 + 16);
    sport[i] = v.getUint16(14 + 20);
  }
  self.postMessage({ tx, dst, sport });
};
