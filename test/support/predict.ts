/**
 * The one hash predictor: which backend featherlb picks for a client IP, computed with featherlb's own
 * algorithm code (src/control/algorithms: the plan, the picker and the client hash), never a copy of
 * it. For source_hash and maglev this turns "sticky" into an exact per-IP expectation; the e2e run and
 * the netns suite then check that the data plane (proxy or XDP) hashes the source address it really
 * sees to the same slot.
 */
import { ALGORITHMS } from "../../src/control/algorithms/index.ts";
import { clientHash } from "../../src/control/algorithms/hash.ts";
import { Picker } from "../../src/control/algorithms/picker.ts";
import type { LbService } from "./lbconfig.ts";

/**
 * Member ids are positions in the service's backend list (featherlb assigns them in file order on the
 * first load); `without` removes backends (by id) from the pick set, as a health check does. Returns the
 * id of the backend picked for an IP.
 */
export function predictor(service: LbService, without: readonly string[] = []): (ip: string) => string | undefined {
  const members = service.backends
    .map((b, id) => ({ id, weight: b.weight, key: b.address, name: b.id }))
    .filter((m) => !without.includes(m.name));
  const plan = ALGORITHMS[service.algorithm].plan(members, { maglevTableSize: service.maglevTableSize });
  const picker = new Picker(plan, { active: () => 0 });
  return (ip) => service.backends[picker.pick({ clientHash: clientHash(ip) })]?.id;
}
