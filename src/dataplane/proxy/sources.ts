/**
 * max_connections_per_source across worker threads: open connections per (service, client IP), in one
 * hash table in a SharedArrayBuffer that every worker reads and writes.
 *
 * Why a shared table and not an owner per source (hash(IP) → the worker that counts it): a client is
 * accepted by whichever worker the kernel picks (SO_REUSEPORT hashes the 4-tuple, ports included), so
 * an owner elsewhere would have to be asked across threads before each connect — a message round trip
 * on the accept path, where the table costs an uncontended lock and a few probes.
 *
 * Layout (Int32 words): a lock word, then `slots` entries of [tag, ip0, ip1, ip2, ip3, count per
 * worker]. tag is the service's uid + 1 (0 = empty slot); the IP is 128 bits (IPv4 as ::ffff:a.b.c.d,
 * the IPv4-mapped form, so an IPv4 client of a dual-stack listener counts once). Open addressing with
 * linear probing; a freed entry is filled by moving later entries of its run back (backward-shift
 * deletion), so there are no tombstones and a lookup stops at the first empty slot.
 *
 * Counts are kept per worker so that a worker that dies (its connections closed with it) can be taken
 * out (`retire`). Every operation holds the lock: they are a handful of loads and stores, and happen
 * only on accept and close of services that set the limit.
 */
import { ipv4OfPeer, parseIPv6 } from "../../config/address.ts";
import { fmix32 } from "../../control/algorithms/hash.ts";
import { lockWord, unlockWord } from "../../control/shared.ts";

const LOCK = 0;
const HEADER = 4;
/** Entry words before the per-worker counts. */
const KEY = 5;

/** A client IP as four 32-bit words (network order of the 128-bit IPv6 / IPv4-mapped address). */
export type SourceKey = readonly [number, number, number, number];

/** The key of a client address as Bun reports it ("1.2.3.4", "::ffff:1.2.3.4", "2001:db8::1"). */
export function sourceKey(ip: string): SourceKey {
  const v4 = ipv4OfPeer(ip);
  if (v4 !== null) return [0, 0, 0xffff, v4 | 0];
  const g = parseIPv6(ip)?.groups ?? [];
  const w = (i: number) => (((g[2 * i] ?? 0) << 16) | (g[2 * i + 1] ?? 0)) | 0;
  return [w(0), w(1), w(2), w(3)];
}

export type Acquired = "ok" | "limit" | "full";

export class SourceTable {
  private readonly words: Int32Array;
  private readonly entry: number;
  readonly slots: number;

  private constructor(
    readonly buffer: SharedArrayBuffer,
    readonly workers: number,
  ) {
    this.words = new Int32Array(buffer);
    this.entry = KEY + workers;
    this.slots = (this.words.length - HEADER) / this.entry;
  }

  /**
   * Room for `sources` client IPs at once (at most one per open connection, so the proxy's connection
   * capacity is enough), at a load factor of one half. Untouched pages are never resident.
   */
  static create(sources: number, workers: number): SourceTable {
    let slots = 1024;
    while (slots < 2 * sources && slots < 1 << 20) slots *= 2;
    return new SourceTable(new SharedArrayBuffer((HEADER + slots * (KEY + workers)) * 4), workers);
  }

  static attach(buffer: SharedArrayBuffer, workers: number): SourceTable {
    return new SourceTable(buffer, workers);
  }

  /** One more connection of `key` to service `uid` by `worker`, unless `limit` are open (all workers). */
  acquire(uid: number, key: SourceKey, limit: number, worker: number): Acquired {
    lockWord(this.words, LOCK);
    try {
      let at = this.find(uid, key);
      if (at < 0) {
        at = this.emptyFor(uid, key);
        if (at < 0) return "full";
        const w = this.words;
        w[at] = uid + 1;
        for (let i = 0; i < 4; i++) w[at + 1 + i] = key[i]!;
      } else if (this.total(at) >= limit) {
        return "limit";
      }
      this.words[at + KEY + worker]!++;
      return "ok";
    } finally {
      unlockWord(this.words, LOCK);
    }
  }

  /** A connection counted by `acquire` ended. */
  release(uid: number, key: SourceKey, worker: number): void {
    lockWord(this.words, LOCK);
    try {
      const at = this.find(uid, key);
      if (at < 0) return;
      if (this.words[at + KEY + worker]! > 0) this.words[at + KEY + worker]!--;
      if (this.total(at) === 0) this.remove(at);
    } finally {
      unlockWord(this.words, LOCK);
    }
  }

  /** Open connections of `key` to service `uid`, all workers (for tests and /status). */
  count(uid: number, key: SourceKey): number {
    lockWord(this.words, LOCK);
    try {
      const at = this.find(uid, key);
      return at < 0 ? 0 : this.total(at);
    } finally {
      unlockWord(this.words, LOCK);
    }
  }

  /** Worker `worker` is gone with its connections: its counts go, and entries left at zero are freed. */
  retire(worker: number): void {
    lockWord(this.words, LOCK);
    try {
      const kept: Int32Array[] = [];
      for (let s = 0; s < this.slots; s++) {
        const at = HEADER + s * this.entry;
        if (this.words[at] === 0) continue;
        this.words[at + KEY + worker] = 0;
        if (this.total(at) > 0) kept.push(this.words.slice(at, at + this.entry));
        this.words.fill(0, at, at + this.entry);
      }
      for (const e of kept) this.words.set(e, this.emptyFor(e[0]! - 1, [e[1]!, e[2]!, e[3]!, e[4]!]));
    } finally {
      unlockWord(this.words, LOCK);
    }
  }

  private home(uid: number, key: SourceKey): number {
    let h = fmix32(uid);
    for (let i = 0; i < 4; i++) h = fmix32(h ^ key[i]!);
    return h & (this.slots - 1);
  }

  private matches(at: number, uid: number, key: SourceKey): boolean {
    const w = this.words;
    return w[at] === uid + 1 && w[at + 1] === key[0] && w[at + 2] === key[1] && w[at + 3] === key[2] && w[at + 4] === key[3];
  }

  /** The entry of (uid, key), or -1. Stops at the first empty slot: runs have no holes. */
  private find(uid: number, key: SourceKey): number {
    for (let i = 0, s = this.home(uid, key); i < this.slots; i++, s = (s + 1) & (this.slots - 1)) {
      const at = HEADER + s * this.entry;
      if (this.words[at] === 0) return -1;
      if (this.matches(at, uid, key)) return at;
    }
    return -1;
  }

  /** The first empty slot of (uid, key)'s run, or -1 when the table is full. */
  private emptyFor(uid: number, key: SourceKey): number {
    for (let i = 0, s = this.home(uid, key); i < this.slots; i++, s = (s + 1) & (this.slots - 1)) {
      const at = HEADER + s * this.entry;
      if (this.words[at] === 0) return at;
    }
    return -1;
  }

  private total(at: number): number {
    let n = 0;
    for (let w = 0; w < this.workers; w++) n += this.words[at + KEY + w]!;
    return n;
  }

  /**
   * Free the entry at `at` and close the gap: each later entry of the run whose home slot is not
   * between the gap and itself (cyclically) moves back into the gap (Knuth's algorithm R).
   */
  private remove(at: number): void {
    const w = this.words;
    const mask = this.slots - 1;
    let gap = (at - HEADER) / this.entry;
    for (let s = (gap + 1) & mask; ; s = (s + 1) & mask) {
      const from = HEADER + s * this.entry;
      if (w[from] === 0) break;
      const home = this.home(w[from]! - 1, [w[from + 1]!, w[from + 2]!, w[from + 3]!, w[from + 4]!]);
      // Movable when home is cyclically outside (gap, s]: it was placed past the gap.
      const inRun = gap <= s ? home > gap && home <= s : home > gap || home <= s;
      if (inRun) continue;
      w.copyWithin(HEADER + gap * this.entry, from, from + this.entry);
      gap = s;
    }
    w.fill(0, HEADER + gap * this.entry, HEADER + (gap + 1) * this.entry);
  }
}
