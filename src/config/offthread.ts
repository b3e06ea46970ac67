/**
 * loadConfig in a worker thread (worker.ts), for reloads: the main thread only waits for the answer,
 * so a 10,000-backend file is parsed while the event loop keeps relaying and answering. The result is
 * what loadConfig returns or throws (a UserError with the same sentence). When the worker cannot run
 * (it did not start, or failed in a way that is not about the file) the file is read on this thread
 * instead: slower for the event loop, but the reload happens.
 */
import { UserError } from "../errors.ts";
import { loadConfig } from "./load.ts";
import type { Config } from "./types.ts";
import type { WorkerReply } from "./worker.ts";
import { slicer } from "../slice.ts";

/** worker.ts relative to src/: the runtime resolves it against its own URL (see worker.ts). */
export const WORKER_PATH = "./config/worker.ts";

export async function loadConfigOffThread(path: string, workerUrl: URL): Promise<Config> {
  let worker: Worker;
  try {
    worker = new Worker(workerUrl.href);
  } catch {
    return loadConfig(path);
  }
  const reply = await new Promise<WorkerReply>((resolve) => {
    worker.onmessage = (event: MessageEvent<WorkerReply>) => resolve(event.data);
    worker.onerror = (event) => resolve({ crash: event.message });
    worker.postMessage({ path });
  }).finally(() => worker.terminate());
  if ("config" in reply) {
    // A Config is plain data (strings, numbers, booleans, arrays; undefined fields read back as absent).
    const pause = slicer();
    const services: Config["services"] = [];
    for (const s of reply.config.services) {
      services.push(JSON.parse(s) as Config["services"][number]);
      await pause();
    }
    return { ...(JSON.parse(reply.config.top) as Omit<Config, "services">), services };
  }
  if ("error" in reply) throw new UserError(reply.error.code, reply.error.message, reply.error.exitCode);
  return loadConfig(path);
}
