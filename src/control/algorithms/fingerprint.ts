/**
 * A plan's fingerprint: the same config and the same health give the same fingerprint on every
 * featherlb instance, so operators running several behind ECMP can check that they all pick alike
 * (/status `plan.fingerprint`, /metrics `featherlb_service_plan_info`).
 *
 * Member ids are local to one process (a backend's id depends on the order of reloads that added it), so
 * the hash never sees them: it covers the algorithm, the plan kind, the members by key ("host:port") and
 * weight in plan order, and every slot as the position of its member in that list. Two plans that differ
 * only in ids hash alike; two that send some client elsewhere do not. Positions fit one byte
 * (MAX_BACKENDS = 256), so the bytes hashed do not depend on the host's byte order.
 */
import type { Plan } from "./types.ts";

/** The first 16 hex digits (64 bits) of SHA-256 over the plan as described above. */
export function planFingerprint(algorithm: string, plan: Plan, keyOf: (id: number) => string): string {
  const position = new Map<number, number>();
  plan.members.forEach((id, i) => position.set(id, i));
  const members = Array.from(plan.members, (id, i) => `${keyOf(id)}*${plan.weights[i]}`);
  const slots = Uint8Array.from(plan.slots, (id) => position.get(id)!);
  const hasher = new Bun.CryptoHasher("sha256");
  hasher.update(`${algorithm}\n${plan.kind}\n${members.join("\n")}\n`);
  hasher.update(slots);
  return hasher.digest("hex").slice(0, 16);
}
