import { expect, test } from "bun:test";
import { UserError } from "../../errors.ts";
import { MIN_KERNEL, checkKernel } from "./kernel.ts";

test("kernels from 5.17 on pass; older ones are a UserError naming the need and the way out", () => {
  expect(MIN_KERNEL).toEqual([5, 17]);
  for (const ok of ["5.17.0", "5.17.15-arch1", "5.19.0", "6.1.0-18-amd64", "6.18.44-fc-v782", "10.0"]) expect(() => checkKernel(ok)).not.toThrow();
  for (const old of ["5.16.20", "5.10.0-28-amd64", "4.19.0"]) {
    let err: unknown;
    try {
      checkKernel(old);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect(err).toMatchObject({ code: "unsupported" });
    expect((err as Error).message).toBe(`mode: xdp needs Linux ≥ 5.17 (the XDP program uses bpf_loop); this kernel is ${old}. Upgrade the kernel or use mode: proxy.`);
  }
});

test("a release string it cannot read is let through (the load itself then says what fails)", () => {
  expect(() => checkKernel("unknown")).not.toThrow();
});
