/**
 * The hash functions both data planes agree on. bpf/ implements the same arithmetic in C (see
 * bpf/hash.h); a test pins the values so the two cannot drift.
 */
import { ipv4OfPeer, parseIPv6 } from "../../config/address.ts";

/** MurmurHash3's 32-bit finalizer: full avalanche, cheap, trivially portable to BPF C. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Hash of a client IP as the data planes see it. IPv4 (and IPv4-mapped IPv6) hashes the address as a
 * host-order u32 — what the BPF program gets from bpf_ntohl(iph->saddr). IPv6 folds its eight groups.
 */
export function clientHash(ip: string): number {
  const v4 = ipv4OfPeer(ip);
  if (v4 !== null) return fmix32(v4);
  let h = 0;
  for (const group of parseIPv6(ip)?.groups ?? []) h = fmix32(h ^ group);
  return h;
}

/** FNV-1a over the UTF-8 bytes of `s`, from a chosen basis so one key yields independent hashes. */
export function fnv1a(s: string, basis = 0x811c9dc5): number {
  let h = basis >>> 0;
  for (const byte of new TextEncoder().encode(s)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}
