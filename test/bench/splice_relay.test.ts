/**
 * test/bench/tools/splice_relay.c, the splice(2) reference row of `make bench` (issue 13), is measured
 * against the balancers, so it has to relay correctly: compiled here with clang (as test/xdp/cprobe.ts
 * does) and run on loopback (no root) with real sockets. It must spread connections round robin, carry
 * both directions byte for byte, pass a half-close on (the other direction keeps flowing), hold a
 * reader's backpressure without spinning, refuse a client whose backend refuses, and give back every
 * descriptor when its connections are gone.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SRC = new URL("./tools/splice_relay.c", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "flb-splice-"));
const BIN = join(dir, "splice_relay");
const HOST = "127.0.0.1";

let relay: Bun.Subprocess<"ignore", "ignore", "pipe"> | undefined;
let stderr = ""; // what the relay printed: its counters on SIGUSR1
const servers: net.Server[] = [];
let relayPort = 0;
let refusedPort = 0;

/** A port nobody listens on right now (bound, read, released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, HOST, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function serve(handler: (s: net.Socket) => void): Promise<number> {
  const s = net.createServer({ allowHalfOpen: true }, handler);
  await new Promise<void>((r) => s.listen(0, HOST, r));
  servers.push(s);
  return (s.address() as net.AddressInfo).port;
}

/** Backend NAME: on connect it writes "NAME\n"; then it counts what the client sends and, at the client's
 * EOF (a half-close), answers with the count and the sha256 of the bytes, then ends. A client that writes
 * "BULK n" first instead gets n bytes of a fixed pattern and an EOF. */
function backend(name: string) {
  return serve((s) => {
    s.write(`${name}\n`);
    const h = createHash("sha256");
    let n = 0, first = true;
    s.on("data", (b: Buffer) => {
      if (first && b.toString("latin1").startsWith("BULK ")) {
        first = false;
        const total = Number(b.toString("latin1").slice(5).trim());
        const chunk = pattern(1 << 20);
        let sent = 0;
        const more = () => {
          while (sent < total) {
            sent += chunk.length;
            if (!s.write(chunk)) return void s.once("drain", more);
          }
          s.end();
        };
        more();
        return;
      }
      first = false;
      h.update(b);
      n += b.length;
    });
    s.on("end", () => s.end(`${n} ${h.digest("hex")}\n`));
    s.on("error", () => {});
  });
}

const pattern = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + (i >> 10)) & 0xff));

/** Connect through the relay; resolves with everything received once the relay ends the stream. */
function exchange(send?: Buffer, opts: { pauseMs?: number; onConnect?: (s: net.Socket) => void } = {}) {
  return new Promise<{ data: Buffer; error?: string }>((resolve) => {
    const parts: Buffer[] = [];
    const s = net.connect({ host: HOST, port: relayPort, allowHalfOpen: true }, () => {
      opts.onConnect?.(s);
      if (send) s.end(send);
    });
    if (opts.pauseMs) {
      s.pause();
      setTimeout(() => s.resume(), opts.pauseMs);
    }
    s.on("data", (b: Buffer) => parts.push(b));
    s.on("end", () => {
      s.end(); // a client that never half-closed (BULK) closes its side now
      resolve({ data: Buffer.concat(parts) });
    });
    s.on("error", (e) => resolve({ data: Buffer.concat(parts), error: String(e) }));
  });
}

const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(f[11]) + Number(f[12]);
};
const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
let baseFds = 0;

beforeAll(async () => {
  const cc = Bun.spawnSync(["clang", "-O2", "-Wall", "-Wextra", "-Werror", SRC, "-o", BIN], { stdout: "pipe", stderr: "pipe" });
  if (cc.exitCode !== 0) throw new Error(`clang could not build splice_relay: ${cc.stderr.toString()}`);
  const a = await backend("A"), b = await backend("B");
  relayPort = await freePort();
  refusedPort = await freePort();
  const dead = await freePort(); // a backend address nobody listens on
  relay = Bun.spawn([BIN, "-p", "262144", "-l", `${HOST}:${relayPort}=${HOST}:${a},${HOST}:${b}`, "-l", `${HOST}:${refusedPort}=${HOST}:${dead}`], { stdout: "ignore", stderr: "pipe" });
  void (async () => {
    for await (const chunk of relay!.stderr) stderr += new TextDecoder().decode(chunk);
  })();
  for (let i = 0; i < 50; i++) {
    const up = await new Promise<boolean>((r) => net.connect(relayPort, HOST).on("connect", function (this: net.Socket) { this.destroy(); r(true); }).on("error", () => r(false)));
    if (up) break;
    await Bun.sleep(50);
  }
  await Bun.sleep(100); // the probe connection's pair is closed
  baseFds = fds(relay.pid) - 2 * (await counters()).pooled; // listeners, epoll, stdio, the spare
});

afterAll(async () => {
  relay?.kill();
  await relay?.exited;
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

test("connections go round robin to the backends, and a half-close lets the answer come back", async () => {
  const names: string[] = [];
  for (let i = 0; i < 4; i++) {
    const payload = pattern(3_000_000 + i);
    const { data, error } = await exchange(payload);
    expect(error).toBeUndefined();
    const [name, count, sum] = data.toString("latin1").trim().split(/\s+/);
    names.push(name!);
    // the backend saw every byte, in order (its count and hash), after the client's EOF reached it
    expect(Number(count)).toBe(payload.length);
    expect(sum).toBe(createHash("sha256").update(payload).digest("hex"));
  }
  // the readiness probe of beforeAll took the first turn: the order is A,B,… or B,A,…
  expect(names.slice(2)).toEqual(names.slice(0, 2));
  expect([...names.slice(0, 2)].sort()).toEqual(["A", "B"]);
});

test("a reader that stops reading holds the sender back without the relay spinning, then gets every byte", async () => {
  const total = 64 << 20;
  const t0 = cpuTicks(relay!.pid);
  let during = 0;
  const { data, error } = await exchange(undefined, {
    pauseMs: 1500,
    onConnect: (s) => {
      s.write(`BULK ${total}`);
      setTimeout(() => (during = cpuTicks(relay!.pid) - t0), 1400); // just before the reader resumes
    },
  });
  expect(error).toBeUndefined();
  const body = data.subarray(data.indexOf(10) + 1);
  expect(body.length).toBe(total);
  expect(body.subarray(0, 1 << 20).equals(pattern(1 << 20))).toBe(true);
  expect(body.subarray(total - (1 << 20)).equals(pattern(1 << 20))).toBe(true);
  // 1.4 s blocked: a busy loop would burn ~140 ticks (CLK_TCK 100); filling the buffers takes a few
  expect(during).toBeLessThan(40);
});

test("a client whose backend refuses is closed, and the relay keeps serving", async () => {
  const r = await new Promise<string>((resolve) => {
    const s = net.connect(refusedPort, HOST);
    const t = setTimeout(() => resolve("still open after 3 s"), 3000);
    s.on("error", () => (clearTimeout(t), resolve("closed")));
    s.on("close", () => (clearTimeout(t), resolve("closed")));
    s.on("data", () => {});
  });
  expect(r).toBe("closed");
  const { data } = await exchange(Buffer.from("x"));
  expect(data.toString()).toMatch(/^[AB]\n1 /);
});

/** The relay's counters (SIGUSR1): connections still open and empty pipes kept for reuse. */
async function counters(): Promise<{ open: number; pooled: number }> {
  const before = stderr.length;
  process.kill(relay!.pid, "SIGUSR1");
  for (let i = 0; i < 40 && !stderr.slice(before).includes("\n"); i++) await Bun.sleep(25);
  const m = stderr.slice(before).match(/ open (-?\d+) .* pooled (\d+) /);
  if (!m) throw new Error(`no counters from the relay: ${stderr.slice(before)}`);
  return { open: Number(m[1]), pooled: Number(m[2]) };
}

test("every descriptor comes back when the connections are gone (or waits, an empty pipe, in the pool)", async () => {
  await Promise.all(Array.from({ length: 20 }, (_, i) => exchange(pattern(1000 + i))));
  // aborted clients too: gone before the backend answered
  await Promise.all(Array.from({ length: 20 }, () => new Promise<void>((r) => { const s = net.connect(relayPort, HOST, () => { s.destroy(); r(); }); s.on("error", () => r()); })));
  let c = await counters();
  for (let i = 0; i < 40 && c.open !== 0; i++) {
    await Bun.sleep(50);
    c = await counters();
  }
  expect(c.open).toBe(0);
  expect(c.pooled).toBeGreaterThan(0); // the pool is in use, so the count below means something
  expect(fds(relay!.pid)).toBe(baseFds + 2 * c.pooled);
  expect(relay!.exitCode).toBeNull();
});
