/**
 * The verifier accepts the program at every flow_table_size the config allows (src/config/limits.ts
 * FLOW_TABLE_SIZES: powers of two 1024 … 1048576). Each size is a real load: maps created, program
 * verified, then everything closed.
 */
import { describe, expect, test } from "bun:test";
import { FLOW_TABLE_SIZES } from "../../src/dataplane/xdp/layout.ts";
import { loadProgram } from "../../src/dataplane/xdp/loader.ts";
import { bpfSuiteEnabled } from "./require.ts";

if (bpfSuiteEnabled("xdp verifier load")) {
  describe("verifier load at every allowed flow_table_size", () => {
    test("the sizes are the powers of two from 1024 to 1048576", () => {
      expect(FLOW_TABLE_SIZES[0]).toBe(1024);
      expect(FLOW_TABLE_SIZES.at(-1)).toBe(1048576);
      expect(FLOW_TABLE_SIZES.length).toBe(11);
    });
    for (const size of FLOW_TABLE_SIZES) {
      test(`flow_table_size ${size}`, async () => {
        const p = await loadProgram({ flowTableSize: size });
        try {
          expect(p.progFd).toBeGreaterThan(0);
        } finally {
          p.close();
        }
      });
    }
  });
}
