import { expect, test } from "bun:test";
import { SlotPool } from "./pool.ts";

test("slot pool: first fit, release coalesces, full pool refuses", () => {
  const pool = new SlotPool(100);
  expect(pool.alloc(40)).toBe(0);
  expect(pool.alloc(40)).toBe(40);
  expect(pool.alloc(30)).toBe(-1);
  pool.release(0, 40);
  expect(pool.alloc(30)).toBe(0);
  pool.release(40, 40);
  pool.release(0, 30);
  expect(pool.alloc(100)).toBe(0); // all three ranges merged back into one
});
