import { expect, test } from "bun:test";
import { networkInterfaces } from "node:os";
import { parseConfig } from "../../config/load.ts";
import { UserError } from "../../errors.ts";
import { snatAddress } from "./netif.ts";

// The loopback every Linux host has: 127.0.0.1, its primary (and usually only) IPv4 address. The
// service listens elsewhere (a SNAT address that is a listen address is refused by the config check).
const config = (xdp: string) => parseConfig(`mode: xdp\n${xdp}\nservices:\n  - name: web\n    listen: 127.0.0.3:80\n    backends: [{address: 127.0.0.2:8080}]\n`, "lb.yaml");

function refusal(fn: () => unknown): UserError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UserError) return err;
    throw err;
  }
  throw new Error("no UserError");
}

test("xdp.snat_address: an address of the interface is taken; left out, the interface's primary IPv4", () => {
  const primary = networkInterfaces().lo?.find((a) => a.family === "IPv4")?.address;
  expect(primary).toBe("127.0.0.1");
  expect(snatAddress(config("xdp: {}"), "lo")).toBe("127.0.0.1");
  expect(snatAddress(config("xdp: {snat_address: 127.0.0.1}"), "lo")).toBe("127.0.0.1");
});

test("xdp.snat_address that the interface does not have: a UserError naming it, the interface and the default", () => {
  const err = refusal(() => snatAddress(config("xdp: {snat_address: 192.0.2.77}"), "lo"));
  expect(err.code).toBe("interface");
  expect(err.message).toBe("xdp.snat_address 192.0.2.77 is not an address of lo, where backends' replies to it must arrive; add it to lo or leave xdp.snat_address out to use 127.0.0.1.");
});
