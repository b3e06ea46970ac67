/**
 * A worker thread that reads a config file (loadConfig) and posts back the Config or the UserError.
 * Parsing a large file is the one long, synchronous step of a reload: the YAML of 10,000 backends takes
 * a few hundred ms, which on the main thread would hold the event loop (no relaying, no admin answers)
 * for all of it. offthread.ts starts this worker for each reload.
 *
 * `bun build --compile` embeds it as a second entry point (Makefile); its URL is taken relative to
 * src/ (offthread.ts WORKER_PATH), where both the sources and the compiled binary's entries live.
 */
import { UserError } from "../errors.ts";
import { loadConfig } from "./load.ts";

/**
 * The Config travels as JSON, one string for the top level and one per service: parsing JSON costs the
 * main thread a fifth of a structured clone of the objects, and one service at a time it never holds
 * the event loop long (offthread.ts parses them in slices).
 */
export type WorkerReply = { config: { top: string; services: string[] } } | { error: { code: UserError["code"]; message: string; exitCode: number } } | { crash: string };

declare const self: Worker;

self.onmessage = async (event: MessageEvent<{ path: string }>) => {
  let reply: WorkerReply;
  try {
    const { services, ...top } = await loadConfig(event.data.path);
    reply = { config: { top: JSON.stringify(top), services: services.map((s) => JSON.stringify(s)) } };
  } catch (err) {
    reply = err instanceof UserError ? { error: { code: err.code, message: err.message, exitCode: err.exitCode } } : { crash: String(err) };
  }
  postMessage(reply);
};
