/**
 * The part of featherlb's config the client needs: each service's port, algorithm and backends. It is
 * read from the very file the LB runs with (mounted into both containers) by featherlb's own parser
 * (src/config/load.ts), so the two cannot disagree on defaults or on what an address means.
 */
import { parseConfig } from "../../../src/config/load.ts";
import type { AlgorithmName } from "../../../src/config/types.ts";

export interface E2eBackend {
  /** "host:port" exactly as written: featherlb's metrics label and hash key. */
  address: string;
  /** The host part, which the backend also uses as its HELLO id (BACKEND_ID in compose.yml). */
  id: string;
  weight: number;
}

export interface E2eService {
  name: string;
  port: number;
  algorithm: AlgorithmName;
  backends: E2eBackend[];
  maglevTableSize: number;
}

export interface E2eConfig {
  mode: string;
  services: E2eService[];
}

export function readLbConfig(text: string, filename = "lb.yaml"): E2eConfig {
  const config = parseConfig(text, filename);
  return {
    mode: config.mode,
    services: config.services.map((s) => ({
      name: s.name,
      port: s.listen.port,
      algorithm: s.algorithm,
      backends: s.backends.map((b) => ({ address: b.address, id: b.host, weight: b.weight })),
      maglevTableSize: s.maglev_table_size,
    })),
  };
}
