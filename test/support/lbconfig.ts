/**
 * The part of featherlb's config a test client needs: each service's port, algorithm and backends. It is
 * read from the very file the LB runs with by featherlb's own parser (src/config/load.ts), so the two
 * cannot disagree on defaults or on what an address means. The e2e client reads the file mounted into
 * its container; the netns suite the file it wrote.
 */
import { parseConfig } from "../../src/config/load.ts";
import type { AlgorithmName, Forwarding, Mode, SendProxy } from "../../src/config/types.ts";

export interface LbBackend {
  /** "host:port" exactly as written: featherlb's metrics label and hash key. */
  address: string;
  /** The host part (the e2e backends use it as their HELLO id: BACKEND_ID in compose.yml). */
  id: string;
  weight: number;
}

export interface LbService {
  name: string;
  /** The listen address (a dsr service's VIP is not the LB's own address). */
  host: string;
  port: number;
  algorithm: AlgorithmName;
  backends: LbBackend[];
  maglevTableSize: number;
  /** The data plane the service asks for (its own mode, else the top-level one). */
  plane: Mode;
  sendProxy: SendProxy;
  forwarding: Forwarding;
}

export interface LbConfig {
  mode: string;
  services: LbService[];
}

export function readLbConfig(text: string, filename = "lb.yaml"): LbConfig {
  const config = parseConfig(text, filename);
  return {
    mode: config.mode,
    services: config.services.map((s) => ({
      name: s.name,
      host: s.listen.host,
      port: s.listen.port,
      algorithm: s.algorithm,
      backends: s.backends.map((b) => ({ address: b.address, id: b.host, weight: b.weight })),
      maglevTableSize: s.maglev_table_size,
      plane: s.mode,
      sendProxy: s.send_proxy,
      forwarding: s.forwarding,
    })),
  };
}
