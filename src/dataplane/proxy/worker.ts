/**
 * A proxy worker thread: one ProxyDataPlane (its own listeners on every proxy address, SO_REUSEPORT,
 * and the connections the kernel gives them) driven by messages from the main thread (pool.ts,
 * protocol.ts). It never decides health or membership: it serves the ServiceViews the main thread
 * sends and reports connect results and its own faults back.
 *
 * An uncaught exception ends this thread (Bun's Worker semantics; its sockets close with it): the main
 * thread logs it and starts a fresh worker in this slot, so no state a bug may have corrupted survives.
 *
 * The message handler is installed before anything is awaited: messages posted while the script loads
 * are delivered to the handler the script installed (Bun docs, Workers).
 */
import { Logger } from "../../control/log.ts";
import { UserError } from "../../errors.ts";
import type { PlaneChange } from "../types.ts";
import type { IncidentSink } from "./connect.ts";
import { ProxyDataPlane } from "./index.ts";
import type { FromWorker, ToWorker } from "./protocol.ts";
import { PlaneShared } from "./shared.ts";
import { type ProxiedBackend, type ProxiedService, type ProxyHooks, ServiceView } from "./view.ts";

declare const self: Worker;

const post = (message: FromWorker) => self.postMessage(message);

const hooks: ProxyHooks = {
  connectFailed: (service: ProxiedService, backend: ProxiedBackend, reason: string) =>
    post({ t: "failed", uid: service.shared.uid, id: backend.id, key: backend.key, reason }),
  connected: (service: ProxiedService, backend: ProxiedBackend) => {
    // A success changes something only after a failure (it ends a failure streak): skip the message
    // otherwise, which is nearly always.
    if (service.shared.isSuspect(backend.id)) post({ t: "connected", uid: service.shared.uid, id: backend.id, key: backend.key });
  },
};

const incidents: IncidentSink = {
  localError: (errno, fields) => post({ t: "local", errno, fields }),
  internalError: (where, err, fields = {}) => {
    const e = err instanceof Error ? err : new Error(String(err));
    post({ t: "internal", where, name: e.name, message: e.message, stack: e.stack, fields });
  },
};

let log = new Logger();
let plane: ProxyDataPlane | null = null;
const views = new Map<number, ServiceView>();
const prepared = new Map<number, PlaneChange>();

async function handle(m: ToWorker): Promise<void> {
  switch (m.t) {
    case "init":
      log = new Logger(m.level, undefined, { worker: m.index });
      plane = new ProxyDataPlane(log, hooks, incidents, {
        index: m.index,
        shared: PlaneShared.attach(m.plane),
        logListeners: false,
        onRelayTable: (table) => post({ t: "relay", table }),
      });
      post({ t: "ready" });
      return;
    case "service": {
      const view = views.get(m.uid);
      if (view) view.update(m.state);
      else views.set(m.uid, new ServiceView(m.state));
      return;
    }
    case "forget":
      for (const uid of m.uids) views.delete(uid);
      return;
    case "prepare": {
      try {
        const pairs = m.listeners.map((l) => ({ config: l.config, service: views.get(l.uid)! }));
        prepared.set(m.seq, await plane!.prepare(pairs));
        post({ t: "prepared", seq: m.seq });
      } catch (err) {
        const e = err instanceof UserError ? err : new UserError("config", (err as Error).message);
        post({ t: "prepared", seq: m.seq, error: { code: e.code, message: e.message } });
      }
      return;
    }
    case "commit":
      prepared.get(m.seq)?.commit();
      prepared.delete(m.seq);
      return;
    case "abort":
      prepared.get(m.seq)?.abort();
      prepared.delete(m.seq);
      return;
    case "level":
      log.level = m.level;
      return;
    case "sync":
      post({ t: "synced", seq: m.seq });
      return;
    case "stats":
      plane?.syncRelayed();
      post({ t: "synced", seq: m.seq });
      return;
    case "drain": {
      // Not awaited: plan updates keep flowing while connections finish. plane.drain stops the
      // listeners before it first yields, so "stopped" follows it. What is still open at the deadline
      // is closed (reset) here, before "drained": the main thread exits right after it.
      const drained = plane?.drain(m.deadline) ?? Promise.resolve();
      post({ t: "stopped", seq: m.seq });
      void drained.then(() => {
        plane?.close();
        post({ t: "drained" });
      });
      return;
    }
    case "close":
      plane?.close();
      process.exit(0); // this thread only
      return;
    case "crash":
      setTimeout(() => {
        throw new Error("worker crash requested (FEATHERLB_TEST_HOOKS)");
      }, 0);
      return;
  }
}

// Messages are handled one at a time, in order: a prepare's await must not let its commit overtake it.
// A handler that throws is a bug: rethrown outside the chain, it ends this worker like any other.
let queue: Promise<void> = Promise.resolve();
self.onmessage = (event: MessageEvent<ToWorker>) => {
  queue = queue
    .then(() => handle(event.data))
    .catch((err) => {
      setTimeout(() => {
        throw err;
      }, 0);
    });
};
