/**
 * Client source IPs. featherlb's source_hash and maglev key on the client IP, and a container has one,
 * so stickiness could not be judged from it alone. The client container therefore owns several
 * addresses on the Compose network (outside Docker's dynamic ip_range, see compose.yml) and binds each
 * connection to one of them: to featherlb they are different hosts.
 *
 * Adding them takes NET_ADMIN in the client container and the `ip` tool (copied into its image). On
 * loopback (tests) 127.0.0.0/8 is already local and nothing is added.
 */
import { networkInterfaces } from "node:os";

/** "10.213.61.200-215" → 16 addresses; "a,b,c" → 3; "" → none. */
export function parseSources(spec: string): string[] {
  const out: string[] = [];
  for (const part of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+\.\d+\.\d+\.)(\d+)-(\d+)$/.exec(part);
    if (!m) {
      out.push(part);
      continue;
    }
    for (let i = Number(m[2]); i <= Number(m[3]); i++) out.push(`${m[1]}${i}`);
  }
  return out;
}

function localAddresses(): Set<string> {
  const set = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) set.add(a.address);
  return set;
}

/** Make every address in `wanted` local (127.x needs nothing); returns the usable ones and what failed. */
export function ensureSources(wanted: readonly string[], iface: string): { sources: string[]; problems: string[] } {
  const have = localAddresses();
  const sources: string[] = [];
  const problems: string[] = [];
  for (const ip of wanted) {
    if (have.has(ip) || ip.startsWith("127.")) {
      sources.push(ip);
      continue;
    }
    try {
      const r = Bun.spawnSync(["ip", "addr", "add", `${ip}/32`, "dev", iface], { stderr: "pipe", stdout: "ignore" });
      if (r.exitCode === 0) sources.push(ip);
      else problems.push(`ip addr add ${ip}/32 dev ${iface}: ${r.stderr.toString().trim() || `exit ${r.exitCode}`}`);
    } catch (err) {
      problems.push(`ip addr add ${ip}/32 dev ${iface}: ${String(err)}`);
    }
  }
  return { sources, problems };
}
