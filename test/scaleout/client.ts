/**
 * The scale-out suite's client, run in the client namespace. Every connection reads the backend's
 * greeting "<backend>@<instance IP>" (test/xdp/netns/backend.ts echo-peer): which backend served it and
 * which featherlb instance carried it. Bounded by the deadline it is given; prints one JSON line.
 *
 *   flows <host> <port> <seconds> <concurrency> <ip,ip,…> [<at least>]
 *     new connections for <seconds>, source addresses in turn → {flows: [[startMs, ipIndex, "b1@10.81.1.2" | "!error"]]};
 *     on a slow (loaded) host it goes on until <at least> connections were made, for 10 s more at most
 *   hold <host> <port> <seconds> <ip,ip,…>
 *     one connection per address, held <seconds>, then a line echoed on each
 *     → {held: [{ip, who, ok, error?}]} (ok: the echo came back intact)
 */
import type net from "node:net";
import { greetConn } from "../support/conn.ts";

const [mode, host = "", portText = "0", secondsText = "1", ...rest] = process.argv.slice(2);
const port = Number(portText);
const seconds = Number(secondsText);
setTimeout(() => {
  console.log(JSON.stringify({ error: "deadline" }));
  process.exit(3);
}, (seconds + 20) * 1000).unref();

async function flows(concurrency: number, ips: string[], atLeast: number) {
  const out: [number, number, string][] = [];
  const end = Date.now() + seconds * 1000;
  const latest = end + 10_000;
  let next = 0;
  const more = () => Date.now() < end || (out.length < atLeast && Date.now() < latest);
  const worker = async () => {
    while (more()) {
      const i = next++ % ips.length;
      const start = Date.now();
      const r = await greetConn({ host, port, localAddress: ips[i], then: "end", timeoutMs: 3000 });
      out.push([start, i, r.ok ? r.backend! : `!${r.error}:${r.detail ?? ""}`]);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { flows: out.sort((a, b) => a[0] - b[0]) };
}

async function hold(ips: string[]) {
  const conns = await Promise.all(ips.map((ip) => greetConn({ host, port, localAddress: ip, then: "keep", timeoutMs: 3000 }).then((r) => ({ ip, r }))));
  await Bun.sleep(seconds * 1000);
  const held = await Promise.all(
    conns.map(async ({ ip, r }) => {
      if (!r.socket) return { ip, who: r.backend ?? null, ok: false, error: `connect: ${r.error}` };
      const echoed = await echo(r.socket, `ping from ${ip}\n`);
      return { ip, who: r.backend!, ...echoed };
    }),
  );
  return { held };
}

/** Write `line` and wait (up to 3 s) for it to come back; a reset or close first is an error. */
function echo(socket: net.Socket, line: string): Promise<{ ok: boolean; error?: string }> {
  return new Promise((resolve) => {
    let got = "";
    const done = (v: { ok: boolean; error?: string }) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done({ ok: false, error: "timeout" }), 3000);
    socket.on("data", (b: Buffer) => {
      got += b.toString();
      if (got === line) done({ ok: true });
      else if (!line.startsWith(got)) done({ ok: false, error: `corrupt: ${JSON.stringify(got)}` });
    });
    socket.on("error", (err: NodeJS.ErrnoException) => done({ ok: false, error: err.code ?? err.message }));
    socket.on("close", () => done({ ok: false, error: "closed" }));
    socket.write(line);
  });
}

const list = (s = "") => s.split(",").filter(Boolean);
let result: unknown;
if (mode === "flows") result = await flows(Number(rest[0]), list(rest[1]), Number(rest[2] ?? 0));
else if (mode === "hold") result = await hold(list(rest[0]));
else result = { error: `unknown mode ${mode}` };
console.log(JSON.stringify(result));
process.exit(0);
