/**
 * The worker thread health probes run on (probe.ts probeRunner): a Prober whose results go back to the
 * main thread in batches, at most BATCH_MS after each probe, so that thousands of probes a second cost
 * the main thread a few messages, not thousands of connects.
 *
 * `bun build --compile` embeds it as an entry point of the binary (Makefile); the runtime resolves its
 * URL relative to src/, as for the config worker.
 */
import { Prober, type ProbeCommand, type ProbeResult } from "./probe.ts";

/** Results wait at most this long for the batch they travel in (health flips take rise/fall intervals anyway). */
const BATCH_MS = 10;

declare const self: Worker;

let batch: ProbeResult[] = [];
let timer: ReturnType<typeof setTimeout> | undefined;
const prober = new Prober((result) => {
  batch.push(result);
  timer ??= setTimeout(() => {
    timer = undefined;
    const sent = batch;
    batch = [];
    postMessage(sent);
  }, BATCH_MS);
});

self.onmessage = (event: MessageEvent<ProbeCommand>) => {
  if ("update" in event.data) prober.update(event.data.update, event.data.remove);
  else prober.stop();
};
