/**
 * Slot-pool bookkeeping for plan tables (pure TypeScript, no FFI).
 */
/** First-fit allocator of ranges in flb_slots, with coalescing on release. */
export class SlotPool {
  private free: { start: number; len: number }[];

  /** A pool of `size` slots (the flb_slots map's max_entries, capacity.ts). */
  constructor(size: number) {
    this.free = [{ start: 0, len: size }];
  }

  /** The start of a free range of `len` slots, now taken; -1 when no range is that long. */
  alloc(len: number): number {
    const i = this.free.findIndex((r) => r.len >= len);
    if (i < 0) return -1;
    const r = this.free[i]!;
    const start = r.start;
    r.start += len;
    r.len -= len;
    if (r.len === 0) this.free.splice(i, 1);
    return start;
  }

  release(start: number, len: number): void {
    if (len === 0) return;
    this.free.push({ start, len });
    this.free.sort((a, b) => a.start - b.start);
    const merged: { start: number; len: number }[] = [];
    for (const r of this.free) {
      const last = merged.at(-1);
      if (last && last.start + last.len === r.start) last.len += r.len;
      else merged.push({ ...r });
    }
    this.free = merged;
  }
}

