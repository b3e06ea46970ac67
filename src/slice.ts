/**
 * Work on the one event loop in slices: no single step may hold it for more than a few milliseconds,
 * or connections stop being relayed and /healthz stops answering for that long. Long loops (a reload
 * diffing 10,000 backends, a batch of thousands of health results, /metrics for 10,000 backends) call
 * `await pause()` after each step; the plan rebuild queue (rebuild.ts) slices its builds by the same
 * budget.
 */

/** The longest a slice of work runs before it yields to the event loop. */
export const SLICE_MS = 4;

/**
 * `await pause()` after each step of a long loop: it yields to the event loop (setImmediate: I/O and
 * timers run in between) once `sliceMs` have passed since the last yield, else goes straight on.
 */
export function slicer(sliceMs = SLICE_MS): () => Promise<void> {
  let since = performance.now();
  return async () => {
    if (performance.now() - since < sliceMs) return;
    await new Promise((resolve) => setImmediate(resolve));
    since = performance.now();
  };
}
