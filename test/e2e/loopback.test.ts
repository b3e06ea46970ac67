/**
 * The e2e backend and client pieces (test/support: the backend speaking the e2e protocol, the client
 * connection, the load runner) against each other on loopback: real sockets on 127.0.0.1, port 0, no
 * LB in between (the LB is what `make e2e` adds). Also peers that misbehave on purpose, to show the
 * client's verdicts are earned.
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { TCPSocketListener } from "bun";
import { startBackend } from "../support/backend.ts";
import { echoConns, randomPayload, runConn, type ConnOptions } from "../support/conn.ts";
import { runLoad } from "../support/load.ts";

const backend = startBackend("backend-t", { behaviour: "e2e" });
const listeners: TCPSocketListener<unknown>[] = [];
afterAll(() => {
  backend.stop();
  for (const l of listeners) l.stop(true);
});

const base = (port: number, over: Partial<ConnOptions> = {}): ConnOptions => ({
  host: "127.0.0.1",
  port,
  payload: randomPayload(64),
  holdMs: () => 0,
  timeoutMs: 3000,
  ...over,
});

/** A misbehaving peer: `open` decides what it does. */
function peer(open: (s: Bun.Socket<unknown>) => void, data?: (s: Bun.Socket<unknown>, d: Buffer) => void): number {
  const l = Bun.listen<unknown>({ hostname: "127.0.0.1", port: 0, socket: { open, data: data ?? (() => {}) } });
  listeners.push(l);
  return l.port;
}

describe("backend ↔ client on loopback", () => {
  test("a short echo is verified byte for byte and names the backend", async () => {
    const r = await runConn(base(backend.port));
    expect(r).toMatchObject({ ok: true, backend: "backend-t", instance: backend.instance, bytesSent: 64 + "ECHO 64 0\n".length });
  });

  test("a 8 MiB bulk echo passes SHA-256 at both ends", async () => {
    const r = await runConn(base(backend.port, { payload: randomPayload(8 << 20), timeoutMs: 20_000 }));
    expect(r.ok).toBe(true);
    expect(r.bytesSent).toBe((8 << 20) + `ECHO ${8 << 20} 0\n`.length);
    expect(r.bytesReceived).toBeGreaterThan(8 << 20);
  });

  test("the backend holds the connection as long as asked, per backend id", async () => {
    const r = await runConn(base(backend.port, { holdMs: (b) => (b === "backend-t" ? 150 : 0) }));
    expect(r.ok).toBe(true);
    expect(r.latencyMs).toBeGreaterThanOrEqual(145);
  });

  test("a zero-length request still gets a trailer", async () => {
    expect((await runConn(base(backend.port, { payload: randomPayload(0) }))).ok).toBe(true);
  });

  test("the source address can be chosen (how the client looks like many hosts)", async () => {
    let seen = "";
    const port = peer((s) => {
      seen = s.remoteAddress;
      s.end();
    });
    await runConn(base(port, { localAddress: "127.0.0.7" }));
    expect(seen).toBe("127.0.0.7");
  });

  test("a malformed request is refused and counted", async () => {
    const before = backend.stats.malformed;
    const reply = await new Promise<string>((resolve) => {
      let got = "";
      void Bun.connect({
        hostname: "127.0.0.1",
        port: backend.port,
        socket: {
          open: (s) => void s.write("GET / HTTP/1.0\n"),
          data: (_s, d) => void (got += d.toString()),
          close: () => resolve(got),
        },
      });
    });
    expect(reply).toContain("ERR");
    expect(backend.stats.malformed).toBe(before + 1);
  });
});

describe("the client catches what a broken LB or backend would do", () => {
  test("a flipped byte is corrupt", async () => {
    const port = peer(
      (s) => void s.write("HELLO liar x\n"),
      (s, d) => {
        const line = d.indexOf(10);
        if (line < 0) return;
        const body = Buffer.from(d.subarray(line + 1));
        body[0]! ^= 1;
        s.write(body);
      },
    );
    const r = await runConn(base(port));
    expect(r).toMatchObject({ ok: false, error: "corrupt", backend: "liar" });
  });

  test("a close after HELLO is truncated, a close before it is no_hello, a dead port is connect", async () => {
    const greetsAndCloses = peer(
      (s) => void s.write("HELLO quitter x\n"),
      (s) => void s.end(),
    );
    const closes = peer((s) => void s.end());
    const dead = peer(() => {});
    listeners.at(-1)!.stop(true);
    expect((await runConn(base(greetsAndCloses))).error).toBe("truncated");
    expect((await runConn(base(closes))).error).toBe("no_hello");
    expect((await runConn(base(dead))).error).toBe("connect");
  });

  test("a peer that never answers times out", async () => {
    const silent = peer(() => {});
    const r = await runConn(base(silent, { timeoutMs: 200 }));
    expect(r.error).toBe("timeout");
  });

  test("a wrong hash in the trailer is corrupt even if the echo was right", async () => {
    const port = peer(
      (s) => void s.write("HELLO forger x\n"),
      (s, d) => {
        const line = d.indexOf(10);
        if (line < 0) return;
        s.end(Buffer.concat([d.subarray(line + 1), Buffer.from(`OK ${"0".repeat(64)} 64\n`)]));
      },
    );
    expect((await runConn(base(port))).error).toBe("corrupt");
  });
});

describe("load runner", () => {
  test("counts connections per backend and per source, and latency percentiles", async () => {
    const sources = ["127.0.0.2", "127.0.0.3"];
    const stats = await runLoad({
      label: "t",
      concurrency: 4,
      durationMs: 2000,
      maxConns: 40,
      conn: echoConns({ host: "127.0.0.1", port: backend.port, payload: () => randomPayload(64), source: (i) => sources[i % 2], timeoutMs: 3000 }),
    });
    expect(stats.conns).toBe(40);
    expect(stats.ok).toBe(40);
    expect(stats.errorCount).toBe(0);
    expect(stats.perBackend.get("backend-t")).toBe(40);
    expect([...stats.perSource.keys()].sort()).toEqual(sources);
    expect(stats.latencies.length).toBe(40);
    expect(stats.inflight.get("backend-t")).toBe(0);
    expect(stats.awaitingHello).toBe(0);
  });
});
