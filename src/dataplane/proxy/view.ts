/**
 * What the proxy reads of a service and its backends. In the main thread that is the control plane's
 * own Service and Backend (they have these fields); in a worker thread it is a ServiceView, a copy the
 * main thread keeps up to date by message (pool.ts sends a ServiceState on start and on every new
 * plan), over the same shared memory (control/shared.ts) for the counts the algorithms read.
 */
import type { ServiceConfig } from "../../config/types.ts";
import { Picker } from "../../control/algorithms/picker.ts";
import type { Plan } from "../../control/algorithms/types.ts";
import { ServiceShared } from "../../control/shared.ts";

export interface ProxiedBackend {
  readonly id: number;
  readonly ip: string | undefined;
  readonly key: string;
  readonly config: { readonly port: number };
}

export interface ProxiedService {
  readonly name: string;
  readonly config: ServiceConfig;
  readonly picker: Picker;
  readonly backends: ReadonlyMap<number, ProxiedBackend>;
  readonly shared: ServiceShared;
}

/** What the proxy tells the control plane about connects to backends (passive health checks). */
export interface ProxyHooks {
  connectFailed(service: ProxiedService, backend: ProxiedBackend, reason: string): void;
  connected(service: ProxiedService, backend: ProxiedBackend): void;
}

/** One backend in a ServiceState message. */
export interface BackendState {
  id: number;
  ip: string | undefined;
  port: number;
  key: string;
}

/** A service as the main thread sends it to workers (structured clone: plain data and the shared buffer). */
export interface ServiceState {
  config: ServiceConfig;
  shared: SharedArrayBuffer;
  workers: number;
  plan: Plan;
  backends: BackendState[];
}

/** The state of a control-plane service, for a message. */
export function serviceState(service: ProxiedService): ServiceState {
  return {
    config: service.config,
    shared: service.shared.buffer,
    workers: service.shared.workers,
    plan: service.picker.plan,
    backends: [...service.backends.values()].map((b) => ({ id: b.id, ip: b.ip, port: b.config.port, key: b.key })),
  };
}

class BackendView implements ProxiedBackend {
  readonly config: { readonly port: number };
  constructor(
    readonly id: number,
    readonly ip: string | undefined,
    port: number,
    readonly key: string,
  ) {
    this.config = { port };
  }
}

/** A worker's copy of one service; `update` swaps in a new plan and backend set, as Service.rebuild does. */
export class ServiceView implements ProxiedService {
  config!: ServiceConfig;
  picker!: Picker;
  backends = new Map<number, BackendView>();
  readonly shared: ServiceShared;

  constructor(state: ServiceState) {
    this.shared = ServiceShared.attach(state.shared, state.workers);
    this.update(state);
  }

  get name(): string {
    return this.config.name;
  }

  update(state: ServiceState): void {
    this.config = state.config;
    this.backends = new Map(state.backends.map((b) => [b.id, new BackendView(b.id, b.ip, b.port, b.key)]));
    // The cursor is the shared one; the main thread reset it when it built this plan.
    this.picker = new Picker(state.plan, { active: (id) => this.shared.backendActive(id) }, undefined, this.shared);
  }
}
