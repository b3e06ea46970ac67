import { describe, expect, test } from "bun:test";
import { formatHello, formatRequest, formatTrailer, LineReader, MAX_LINE, parseHello, parseRequest, parseTrailer } from "./protocol.ts";

const enc = (s: string) => new TextEncoder().encode(s);

describe("e2e protocol", () => {
  test("lines round-trip", () => {
    expect(parseHello(formatHello({ backend: "backend-a", instance: "1a2b3c4d" }).trimEnd())).toEqual({ backend: "backend-a", instance: "1a2b3c4d" });
    // Behind a PROXY header the HELLO names the client it gave (IPv4 or IPv6, port after the last colon).
    for (const client of ["10.213.61.200:40312", "2001:db8::7:1234"])
      expect(parseHello(formatHello({ backend: "backend-a", instance: "1a2b3c4d", client }).trimEnd())).toEqual({ backend: "backend-a", instance: "1a2b3c4d", client });
    expect(parseRequest(formatRequest({ length: 1 << 20, holdMs: 250 }).trimEnd())).toEqual({ length: 1 << 20, holdMs: 250 });
    const sha = "ab".repeat(32);
    expect(parseTrailer(formatTrailer({ sha256: sha, length: 64 }).trimEnd())).toEqual({ sha256: sha, length: 64 });
  });

  test.each([
    ["HELLO", null],
    ["HELLO a", null],
    ["HELLO a b c", null],
    ["HELLO a b 10.0.0.1", null],
    ["HELLO a b 10.0.0.1:80 x", null],
    ["HELO a b", null],
    ["HELLO a/b c", null],
  ])("rejects greeting %p", (line, want) => expect(parseHello(line)).toBe(want));

  test.each(["ECHO", "ECHO 1", "ECHO -1 0", "ECHO 1 0 0", "ECHO 99999999999 0", "ECHO 1 60001", "echo 1 0"])("rejects request %p", (line) =>
    expect(parseRequest(line)).toBeNull(),
  );

  test("LineReader joins a line split over chunks and returns what follows", () => {
    const r = new LineReader();
    expect(r.push(enc("HEL"))).toBeNull();
    expect(r.push(enc("LO x"))).toBeNull();
    const got = r.push(enc(" y\npayload"));
    expect(got?.line).toBe("HELLO x y");
    expect(new TextDecoder().decode(got?.rest)).toBe("payload");
  });

  test("LineReader refuses a line longer than MAX_LINE", () => {
    const r = new LineReader();
    expect(() => r.push(enc("x".repeat(MAX_LINE + 1)))).toThrow();
  });
});
