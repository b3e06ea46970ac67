/**
 * The shared per-source table against a plain Map model: random acquires and releases by several
 * workers over a few services and many IPs (so runs collide and backward-shift deletion is
 * exercised), a retired worker, and the limit counted across workers.
 */
import { expect, test } from "bun:test";
import { SourceTable, sourceKey } from "./sources.ts";

test("IPv4, IPv4-mapped and IPv6 keys; the two IPv4 spellings are one source", () => {
  expect(sourceKey("10.1.2.3")).toEqual([0, 0, 0xffff, 0x0a010203]);
  expect(sourceKey("::ffff:10.1.2.3")).toEqual(sourceKey("10.1.2.3"));
  expect(sourceKey("2001:db8::1")).toEqual([0x20010db8 | 0, 0, 0, 1]);
});

test("the limit counts every worker's connections; release and retire free entries", () => {
  const t = SourceTable.create(16, 3);
  const ip = sourceKey("192.0.2.7");
  expect(t.acquire(1, ip, 2, 0)).toBe("ok");
  expect(t.acquire(1, ip, 2, 1)).toBe("ok");
  expect(t.acquire(1, ip, 2, 2)).toBe("limit");
  // Another service is another count.
  expect(t.acquire(2, ip, 2, 2)).toBe("ok");
  t.release(1, ip, 0);
  expect(t.acquire(1, ip, 2, 2)).toBe("ok");
  expect(t.count(1, ip)).toBe(2);
  // Worker 1 dies: its connection goes, worker 2's stays.
  t.retire(1);
  expect(t.count(1, ip)).toBe(1);
  t.retire(2);
  expect(t.count(1, ip)).toBe(0);
  expect(t.count(2, ip)).toBe(0);
});

test("agrees with a model under random traffic (collisions, deletions inside runs, a retired worker)", () => {
  const workers = 4;
  const t = SourceTable.create(300, workers); // 1024 slots
  const model = new Map<string, number[]>();
  const open: Array<{ uid: number; ip: string; w: number }> = [];
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const limit = 3;
  for (let step = 0; step < 40_000; step++) {
    if (open.length > 0 && (rand(2) === 0 || open.length > 500)) {
      const [c] = open.splice(rand(open.length), 1);
      t.release(c!.uid, sourceKey(c!.ip), c!.w);
      model.get(`${c!.uid} ${c!.ip}`)![c!.w]!--;
    } else {
      const uid = 1 + rand(3);
      const ip = `10.0.${rand(2)}.${rand(200)}`;
      const w = rand(workers);
      const k = `${uid} ${ip}`;
      const counts = model.get(k) ?? new Array(workers).fill(0);
      const total = counts.reduce((a, b) => a + b, 0);
      const got = t.acquire(uid, sourceKey(ip), limit, w);
      expect(got).toBe(total >= limit ? "limit" : "ok");
      if (got === "ok") {
        counts[w]++;
        model.set(k, counts);
        open.push({ uid, ip, w });
      }
    }
    if (step === 20_000) {
      t.retire(2);
      for (const counts of model.values()) counts[2] = 0;
      for (let i = open.length - 1; i >= 0; i--) if (open[i]!.w === 2) open.splice(i, 1);
    }
    if (step % 997 === 0) {
      for (const [k, counts] of model) {
        const [uid, ip] = k.split(" ");
        expect(t.count(Number(uid), sourceKey(ip!))).toBe(counts.reduce((a, b) => a + b, 0));
      }
    }
  }
});
