/**
 * A farm of backends for the scale tests and the scale bench: one TCP listener per address, in a
 * process of its own (so accepting thousands of health checks never slows the process that measures
 * featherlb). Each listener answers a connection with nothing and closes it — enough for TCP health
 * checks. Commands on stdin, one per line, each answered on stdout once done:
 *
 *   down   close every listener: connects are refused at once (RST), as after a rack outage → "down N"
 *   up     listen again on every address                                                   → "up N"
 *
 * It starts up ("ready N"). Addresses are host:port arguments, or
 *   `A.B/COUNT:PORT`        COUNT loopback hosts A.B.x.y on PORT (127.1/1000:9000 → 127.1.0.1 …
 *                           127.1.3.250; the kernel answers for all of 127.0.0.0/8 unconfigured);
 *   `A.B.C.D+H:PORT+N`      H hosts from A.B.C.D up (last byte) × N ports from PORT (10.66.0.100+40:9000+250:
 *                           40 addresses of a namespace × 250 ports = 10,000 backends).
 *
 *   bun test/support/farm.ts 127.1/2000:9000
 */
import type { TCPSocketListener } from "bun";
import { stdinLines } from "./stdin.ts";

/** Expand `a.b/COUNT:PORT` into COUNT host:port strings, hosts a.b.x.y with y in 1..250. */
export function farmAddresses(spec: string): string[] {
  const loop = /^(\d+\.\d+)\/(\d+):(\d+)$/.exec(spec);
  if (loop) {
    const [, prefix, count, port] = loop;
    return Array.from({ length: Number(count) }, (_, i) => `${prefix}.${Math.floor(i / 250)}.${(i % 250) + 1}:${port}`);
  }
  const grid = /^(\d+\.\d+\.\d+)\.(\d+)\+(\d+):(\d+)\+(\d+)$/.exec(spec);
  if (grid) {
    const [, net, first, hosts, port, ports] = grid.map(String) as [string, string, string, string, string, string];
    return Array.from({ length: Number(hosts) * Number(ports) }, (_, i) => `${net}.${Number(first) + Math.floor(i / Number(ports))}:${Number(port) + (i % Number(ports))}`);
  }
  return [spec];
}

function listenAll(addresses: string[]): TCPSocketListener[] {
  return addresses.map((a) => {
    const i = a.lastIndexOf(":");
    return Bun.listen({ hostname: a.slice(0, i), port: Number(a.slice(i + 1)), socket: { open: (s) => void s.end(), data() {} } });
  });
}

if (import.meta.main) {
  const addresses = process.argv.slice(2).flatMap(farmAddresses);
  let listeners = listenAll(addresses);
  console.log(`ready ${listeners.length}`);
  for await (const cmd of stdinLines()) {
    if (cmd === "down") {
      for (const l of listeners) l.stop(true);
      listeners = [];
      console.log(`down ${addresses.length}`);
    } else if (cmd === "up") {
      if (listeners.length === 0) listeners = listenAll(addresses);
      console.log(`up ${listeners.length}`);
    }
  }
}
