/**
 * Which backend featherlb should pick for a client IP, computed with featherlb's own plan code
 * (src/control/algorithms). For the hash algorithms this turns "sticky" into an exact, per-IP
 * expectation; the e2e run then checks that the data plane (proxy or XDP) hashes the source address it
 * really sees to the same slot.
 */
import { ALGORITHMS } from "../../../src/control/algorithms/index.ts";
import { clientHash } from "../../../src/control/algorithms/hash.ts";
import { Picker } from "../../../src/control/algorithms/picker.ts";
import type { E2eService } from "./lbconfig.ts";

/**
 * Member ids are positions in the service's backend list (src/control/service.ts assigns them in file
 * order on the first load); `without` removes backends (by id) from the pick set, as a health check does.
 */
export function predictor(service: E2eService, without: readonly string[] = []): (ip: string) => string | undefined {
  const members = service.backends
    .map((b, id) => ({ id, weight: b.weight, key: b.address, name: b.id }))
    .filter((m) => !without.includes(m.name));
  const plan = ALGORITHMS[service.algorithm].plan(members, { maglevTableSize: service.maglevTableSize });
  const picker = new Picker(plan, { active: () => 0 });
  return (ip) => service.backends[picker.pick({ clientHash: clientHash(ip) })]?.id;
}
