/**
 * What sharing the picker's state across proxy workers costs per pick, against the alternative of one
 * picker in the main thread that workers ask by message (the two candidates). Prints ns per
 * operation; no assertion (figures go in docs/config.md#workers).
 *
 *   bun run test/bench/pick-cost.ts
 */
import { ServiceShared } from "../../src/control/shared.ts";
import { SourceTable, sourceKey } from "../../src/dataplane/proxy/sources.ts";

function time(what: string, n: number, f: () => void): void {
  for (let i = 0; i < n / 10; i++) f(); // warm up (JIT)
  const t0 = Bun.nanoseconds();
  for (let i = 0; i < n; i++) f();
  console.log(`${what.padEnd(58)} ${((Bun.nanoseconds() - t0) / n).toFixed(1).padStart(8)} ns`);
}

const N = 2_000_000;
let local = 0;
time("round robin, a cursor of one thread's own", N, () => void (local = (local + 1) % 3));
const shared = ServiceShared.create(2);
time("round robin, the shared cursor (compare-and-swap)", N, () => void shared.next(3));
time("least_connections bookkeeping: lock, count the pick, unlock", N, () => {
  shared.lock();
  shared.backendOpened(0, 1);
  shared.unlock();
  shared.backendClosed(0, 1);
});
const table = SourceTable.create(1 << 16, 2);
const keys = Array.from({ length: 1024 }, (_, i) => sourceKey(`10.0.${i >> 8}.${i & 255}`));
let k = 0;
time("max_connections_per_source: acquire + release (shared table)", N / 4, () => {
  const key = keys[k++ & 1023]!;
  table.acquire(1, key, 100, 0);
  table.release(1, key, 0);
});

// One shared picker instead: a worker posts "pick" to the main thread and waits for the answer.
const worker = new Worker(URL.createObjectURL(new Blob([`self.onmessage = (e) => self.postMessage(e.data + 1);`], { type: "application/javascript" })));
const rounds = 20_000;
await new Promise<void>((resolve) => {
  let i = 0;
  let t0 = 0;
  worker.onmessage = () => {
    if (++i === 1000) t0 = Bun.nanoseconds();
    if (i === 1000 + rounds) {
      console.log(`${"one shared picker: a message round trip between threads".padEnd(58)} ${((Bun.nanoseconds() - t0) / rounds).toFixed(1).padStart(8)} ns`);
      return resolve();
    }
    worker.postMessage(i);
  };
  worker.postMessage(0);
});
worker.terminate();
